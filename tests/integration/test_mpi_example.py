"""README's MPI example runs as written: no LD_LIBRARY_PATH, the virtualenv's python."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.test_mount_durable import ROOT, _mpi_env

pytestmark = pytest.mark.integration


def test_mpi_example_runs_without_ld_library_path(tmp_path: Path) -> None:
    if shutil.which("mpiexec") is None:
        pytest.fail("mpiexec is missing: make setup installs Debian's mpich")
    job = ["mpiexec", "-n", "2", "python", str(ROOT / "examples" / "mpi_checkpoint.py")]
    env = _mpi_env()
    assert "LD_LIBRARY_PATH" not in env
    where = str(tmp_path / "job1")
    for phase in (["checkpoint", "--mib", "1"], ["restart"]):
        out = subprocess.run(
            [*job, phase[0], "--dir", where, *phase[1:]],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert out.returncode == 0, out.stdout + out.stderr
    assert "2/2 ranks verified" in out.stdout
