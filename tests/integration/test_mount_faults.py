"""The mount when things go wrong: write errors reach close(), a full cluster is ENOSPC,
more than M lost nodes is EIO (never wrong bytes), and the mount serves again once the
nodes are back, without a remount."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import make_cluster
from tests.integration.test_mount import Mount, fuse_missing

pytestmark = pytest.mark.integration
MiB = 1024 * 1024


@pytest.fixture(autouse=True)
def _needs_fuse() -> None:
    why = fuse_missing()
    if why:
        pytest.skip(why)


def test_write_errors_are_reported_by_close(
    zk_hosts: str, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    c = make_cluster(zk_hosts, tmp_path_factory, nodes=6)
    m = Mount(c, tmp_path / "mnt")
    try:
        fd = os.open(m / "doomed.bin", os.O_CREAT | os.O_WRONLY, 0o644)
        os.write(fd, b"a" * 1000)
        os.fdatasync(fd)  # durable so far
        c.kill("node-1", "node-2")  # ec:4+2 writes need 5 of 6 fragments
        failed = None
        try:
            os.write(fd, b"b" * (8 * MiB))  # may be taken in, but is never acknowledged
        except OSError as exc:
            failed = exc
        with pytest.raises(OSError) as err:  # close() reports it (again)
            os.close(fd)
        assert err.value.errno == errno.EIO and (failed is None or failed.errno == errno.EIO)
        assert (m / "doomed.bin").read_bytes()[:1000] == b"a" * 1000
    finally:
        try:
            m.umount()
        finally:
            c.down()


def test_full_cluster_is_enospc(
    zk_hosts: str, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    c = make_cluster(zk_hosts, tmp_path_factory, nodes=6, capacity="64MiB")
    m = Mount(c, tmp_path / "mnt")
    try:
        # 6 x 64 MiB raw is 256 MiB of ec:4+2 data: 400 MiB cannot fit.
        with pytest.raises(OSError) as err:
            with open(m / "huge.bin", "wb") as f:
                block = os.urandom(4 * MiB)
                for _ in range(100):
                    f.write(block)
        assert err.value.errno == errno.ENOSPC, err.value
        # df shows the space as taken once the nodes publish their usage (each second).
        deadline = time.monotonic() + 10
        while (s := os.statvfs(m.path)).f_bavail >= s.f_blocks // 2:
            assert time.monotonic() < deadline, s
            time.sleep(0.2)
    finally:
        try:
            m.umount()
        finally:
            c.down()


def test_more_than_m_lost_is_eio_and_serves_again_after(
    zk_hosts: str, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    c = make_cluster(zk_hosts, tmp_path_factory, nodes=6, persist=True)
    m = Mount(c, tmp_path / "mnt")
    try:
        data = os.urandom(12 * MiB)
        (m / "precious.bin").write_bytes(data)
        c.kill("node-1", "node-3", "node-5")  # one more than ec:4+2 survives
        with pytest.raises(OSError) as err:
            (m / "precious.bin").read_bytes()
        assert err.value.errno == errno.EIO
        assert (m / "precious.bin").stat().st_size == len(data)  # names still answer
        c.restart("node-1", "node-3", "node-5")
        assert (m / "precious.bin").read_bytes() == data  # same mount, no remount
    finally:
        try:
            m.umount()
        finally:
            c.down()


def test_unlinked_open_file_outlives_nothing_but_its_mount(
    zk_hosts: str,
    tmp_path_factory: pytest.TempPathFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ECMEM_TRASH_DELAY", "2")  # the coordinator started below reads it
    c = make_cluster(zk_hosts, tmp_path_factory, nodes=6, rebuild_grace=1.0)
    m = Mount(c, tmp_path / "mnt")
    try:
        (m / "scratch.bin").write_bytes(b"s" * 1000)
        f = open(m / "scratch.bin", "rb")
        (m / "scratch.bin").unlink()

        def trash() -> list[str]:
            with c.client() as cl:
                return [r.name for r in cl.list_regions(".ecmem-trash/")]

        time.sleep(4)  # past the coordinator's delay: the mount's lease keeps it
        assert len(trash()) == 1
        assert f.read() == b"s" * 1000
        os.kill(m.pid, signal.SIGKILL)  # the mount dies with the file open
        with contextlib.suppress(OSError):  # its file system is gone with it
            f.close()
        deadline = time.monotonic() + 60
        while trash():
            assert time.monotonic() < deadline, "the coordinator never collected the trash"
            time.sleep(0.5)
    finally:
        subprocess.run(["fusermount3", "-u", "-z", str(m.path)], capture_output=True)
        c.down()
