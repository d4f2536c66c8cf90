"""Data written through the mount survives M lost nodes: big files, an MPI job's
checkpoint and restart, HDF5 files, fio's own verification."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_cluster
from tests.harness import TestCluster
from tests.integration.test_mount import Mount, fuse_missing

pytestmark = pytest.mark.integration
MiB = 1024 * 1024
ROOT = Path(__file__).resolve().parents[2]
BIG = int(os.environ.get("ECMEM_MOUNT_BIG_MIB", "256")) * MiB  # make fio: 1 GiB


@pytest.fixture()
def mounted(
    zk_hosts: str, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> tuple[TestCluster, Mount]:
    why = fuse_missing()
    if why:
        pytest.skip(why)
    c = make_cluster(zk_hosts, tmp_path_factory, nodes=6, capacity="2GiB")
    m = Mount(c, tmp_path / "mnt")
    yield c, m  # type: ignore[misc]
    try:
        m.umount()
    finally:
        c.down()


def _pattern(n: int) -> bytes:
    block = os.urandom(MiB)
    return b"".join(bytes([i % 251]) + block[1:] for i in range(n // MiB))


def test_big_file_survives_m_nodes_through_both_mounts(
    mounted: tuple[TestCluster, Mount], tmp_path: Path
) -> None:
    c, m = mounted
    data = _pattern(BIG)
    want = hashlib.sha256(data).hexdigest()
    with open(m / "big.bin", "wb") as f:
        for i in range(0, len(data), 4 * MiB):
            f.write(data[i : i + 4 * MiB])
        f.flush()
        os.fsync(f.fileno())
    del data
    c.kill("node-2", "node-5")  # M = 2 of ec:4+2
    h = hashlib.sha256()
    with open(m / "big.bin", "rb") as f:
        while chunk := f.read(8 * MiB):
            h.update(chunk)
    assert h.hexdigest() == want
    fresh = Mount(c, tmp_path / "fresh")
    try:
        out = subprocess.run(
            ["sha256sum", str(fresh / "big.bin")], capture_output=True, text=True, check=True
        )
        assert out.stdout.split()[0] == want
    finally:
        fresh.umount()


def _mpi_env() -> dict[str, str]:
    """As README runs the example: the virtualenv's python first on PATH, and nothing
    set for the MPI library (the example finds .venv/lib/libmpi.so.12 itself)."""
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env


def test_mpi_checkpoint_restart_after_m_nodes_lost(mounted: tuple[TestCluster, Mount]) -> None:
    if shutil.which("mpiexec") is None:
        pytest.fail("mpiexec is missing: make setup installs Debian's mpich")
    c, m = mounted
    job = ["python", str(ROOT / "examples" / "mpi_checkpoint.py")]
    run = ["mpiexec", "-n", "4", *job]

    def mpi(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*run, *args], capture_output=True, text=True, timeout=300, env=_mpi_env()
        )

    for where in (m / "job1", m / "job2"):
        out = mpi("checkpoint", "--dir", str(where), "--step", "7", "--mib", "8")
        assert out.returncode == 0, out.stdout + out.stderr
    assert sorted(os.listdir(m / "job1")) == [
        "manifest.json",
        "rank-0.bin",
        "rank-1.bin",
        "rank-2.bin",
        "rank-3.bin",
    ]
    # A damaged rank file must fail the restart: the check can fail.
    with open(m / "job2" / "rank-2.bin", "r+b") as f:
        f.seek(1000)
        f.write(b"\xff" * 8)
    c.kill("node-1", "node-4")
    out = mpi("restart", "--dir", str(m / "job1"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "4/4 ranks verified" in out.stdout
    out = mpi("restart", "--dir", str(m / "job2"))
    assert out.returncode == 1 and "3/4 ranks verified" in out.stdout, out.stdout


def test_h5py_file_round_trip(mounted: tuple[TestCluster, Mount]) -> None:
    _, m = mounted
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "h5py_roundtrip.py"), str(m / "data.h5")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "read back identical" in out.stdout
    import h5py

    with h5py.File(m / "data.h5", "r") as f:  # and from this process, with HDF5's locking
        assert f["particles/ids"].shape == (1_000_000,)
