"""fio writes with --verify=crc32c through the mount, then verifies, also after M nodes
are killed between the write and the verify. Sizes: ECMEM_FIO_MIB (make fio: 1 GiB)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import make_cluster
from tests.integration.test_mount import Mount, fuse_missing

pytestmark = pytest.mark.integration
SIZES = {  # MiB written per job: small blocks cost a FUSE call each, so less in make test
    "1m": int(os.environ.get("ECMEM_FIO_MIB", "64")),
    "4k": int(os.environ.get("ECMEM_FIO_MIB", "4")),
}


def fio(path: Path, rw: str, bs: str, size_mib: int, *extra: str, ok: bool = True) -> None:
    cmd = [
        "fio",
        "--name=check",
        f"--filename={path}",
        f"--rw={rw}",
        f"--bs={bs}",
        f"--size={size_mib}M",
        "--ioengine=psync",
        "--verify=crc32c",
        "--verify_fatal=1",
        "--randrepeat=1",
        "--end_fsync=1",
        *extra,
    ]
    # fio leaves its verify state where it runs: next to the file, not in the checkout.
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, cwd=path.parent)
    said = f"{' '.join(cmd)}\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
    if ok:
        assert out.returncode == 0 and "verify" not in out.stderr.lower(), said
    else:
        assert out.returncode != 0 and "verify" in out.stderr.lower(), said


@pytest.mark.parametrize("rw,bs", [("write", "1m"), ("randwrite", "4k")])
def test_fio_verifies_before_and_after_m_nodes_die(
    zk_hosts: str, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, rw: str, bs: str
) -> None:
    why = fuse_missing()
    if why:
        pytest.skip(why)
    if shutil.which("fio") is None:
        pytest.fail("fio is missing: make setup installs it")
    c = make_cluster(zk_hosts, tmp_path_factory, nodes=6, capacity="2GiB")
    m = Mount(c, tmp_path / "mnt")
    try:
        size = SIZES[bs]
        fio(m / "fio.verified", rw, bs, size, "--do_verify=1")
        fio(m / "fio.killed", rw, bs, size, "--do_verify=0")
        small = min(size, 16)  # enough to show the check can fail
        fio(m / "fio.tampered", rw, bs, small, "--do_verify=0")
        with open(m / "fio.tampered", "r+b") as f:  # the check can fail: a changed block
            f.seek(small * 1024 * 1024 // 2 + 100)
            f.write(b"\x00tampered\x00")
        c.kill("node-3", "node-6")  # M = 2 of ec:4+2
        fio(m / "fio.killed", rw, bs, size, "--verify_only")
        fio(m / "fio.verified", rw, bs, size, "--verify_only")
        fio(m / "fio.tampered", rw, bs, small, "--verify_only", ok=False)
    finally:
        try:
            m.umount()
        finally:
            c.down()
