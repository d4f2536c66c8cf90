"""The FUSE mount on a real cluster: POSIX behaviours, shell tools, errors, two mounts."""

from __future__ import annotations

import errno
import json
import mmap
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ecmem.meta import lease
from tests.harness import TestCluster

pytestmark = pytest.mark.integration
MiB = 1024 * 1024


def fuse_missing() -> str | None:
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing here (modprobe fuse)"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is not installed (make setup installs fuse3)"
    return None


class Mount:
    def __init__(self, c: TestCluster, where: Path, *extra: str) -> None:
        where.mkdir(parents=True, exist_ok=True)
        self.path = where
        self.c = c
        out = c.cli("mount", str(where), "--json", "--log-file", str(where) + ".log", *extra)
        assert out.returncode == 0, out.stdout + out.stderr
        self.pid = int(json.loads(out.stdout)["pid"])

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def umount(self) -> None:
        if os.path.ismount(self.path):
            out = self.c.cli("umount", str(self.path))
            if out.returncode != 0:  # leave no mount behind, then report
                subprocess.run(["fusermount3", "-u", "-z", str(self.path)], capture_output=True)
            assert out.returncode == 0, out.stdout + out.stderr
        assert not os.path.ismount(self.path)


@pytest.fixture(scope="module")
def mnt(cluster: TestCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mount]:
    why = fuse_missing()
    if why:
        pytest.skip(why)
    m = Mount(cluster, tmp_path_factory.mktemp("mnt") / "m")
    yield m
    m.umount()


def sh(cmd: str, cwd: Path) -> str:
    out = subprocess.run(cmd, shell=True, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"{cmd}: {out.stderr}"
    return out.stdout


def test_shell_tools(mnt: Mount, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(5 * MiB + 123))
    want = sh(f"sha256sum < {src}", tmp_path).split()[0]
    sh("mkdir -p tools/a/b", mnt.path)
    sh(f"cp {src} tools/a/b/copy.bin", mnt.path)
    assert sh("sha256sum < tools/a/b/copy.bin", mnt.path).split()[0] == want
    sh("dd if=/dev/urandom of=tools/dd.bin bs=1M count=3 status=none", mnt.path)
    assert (mnt / "tools/dd.bin").stat().st_size == 3 * MiB
    sh("echo hello > tools/1.txt && cat tools/1.txt tools/1.txt > tools/2.txt", mnt.path)
    sh("echo bye >> tools/2.txt", mnt.path)
    assert sh("cat tools/2.txt", mnt.path) == "hello\nhello\nbye\n"
    listing = sh("ls -l tools/a/b", mnt.path)
    assert "copy.bin" in listing and str(5 * MiB + 123) in listing
    sh("mv tools/a/b/copy.bin tools/moved.bin", mnt.path)
    assert sh("sha256sum < tools/moved.bin", mnt.path).split()[0] == want
    assert not (mnt / "tools/a/b/copy.bin").exists()
    mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    assert ["ecmem", str(mnt.path), "fuse.ecmem"] in [m[:3] for m in mounts]
    df = sh(f"df -P {mnt.path}", mnt.path).splitlines()[1].split()
    assert df[0] == "ecmem" and int(df[1]) > 0 and int(df[3]) > 0, df
    sh("rm -r tools", mnt.path)
    assert not (mnt / "tools").exists()


def test_open_flags_offsets_and_truncate(mnt: Mount) -> None:
    p = mnt / "flags.bin"
    fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o640)
    try:
        with pytest.raises(FileExistsError):
            os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        assert os.pwrite(fd, b"abc", 10) == 3
        assert os.pread(fd, 20, 0) == b"\0" * 10 + b"abc"
        os.pwrite(fd, b"XY", 1)
        assert os.pread(fd, 5, 0) == b"\0XY\0\0"
    finally:
        os.close(fd)
    assert p.read_bytes() == b"\0XY" + b"\0" * 7 + b"abc"
    with open(p, "ab") as f:  # O_APPEND: always at the end
        f.write(b"++")
    assert p.read_bytes().endswith(b"abc++")
    os.truncate(p, 4)
    assert p.read_bytes() == b"\0XY\0"
    os.truncate(p, 3 * MiB)  # up: a hole of zeros
    data = p.read_bytes()
    assert len(data) == 3 * MiB and data[:4] == b"\0XY\0" and data[4:] == bytes(3 * MiB - 4)
    fd = os.open(p, os.O_WRONLY | os.O_TRUNC)
    os.close(fd)
    assert p.stat().st_size == 0
    p.unlink()


def test_stat_chmod_chown_utime(mnt: Mount) -> None:
    p = mnt / "attrs.bin"
    before = time.time()
    p.write_bytes(b"x" * 5000)
    st = p.stat()
    assert stat.S_ISREG(st.st_mode) and st.st_size == 5000 and st.st_nlink == 1
    assert st.st_blocks == -(-5000 // 512)
    assert before - 2 <= st.st_mtime <= time.time() + 2
    ctime = p.stat().st_ctime
    time.sleep(0.05)
    os.chmod(p, 0o600)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert p.stat().st_ctime > ctime  # a change of attributes is a change
    fd = os.open(mnt.path, os.O_RDONLY)  # fsyncdir
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chown(p, 1234, 5678)
    st = p.stat()
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    os.utime(p, (1_000_000_000, 1_000_000_000))
    assert int(p.stat().st_mtime) == 1_000_000_000
    d = mnt / "attrdir"
    d.mkdir(mode=0o750)
    st = d.stat()
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o750
    os.chmod(d, 0o700)
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    d.rmdir()
    p.unlink()


def test_directories(mnt: Mount) -> None:
    d = mnt / "dirs"
    d.mkdir()
    with pytest.raises(FileExistsError):
        d.mkdir()
    (d / "sub").mkdir()
    (d / "sub" / "f").write_bytes(b"1")
    (d / "g").write_bytes(b"2")
    assert sorted(os.listdir(d)) == ["g", "sub"]
    with pytest.raises(OSError) as err:
        (d / "sub").rmdir()
    assert err.value.errno == errno.ENOTEMPTY
    (d / "sub" / "f").unlink()
    (d / "sub").rmdir()
    with pytest.raises(FileNotFoundError):
        (d / "nope").stat()
    with pytest.raises(FileNotFoundError):
        open(d / "nope", "rb")
    (d / "g").unlink()
    d.rmdir()
    assert not d.exists()


def test_unlink_while_open_frees_at_last_close(mnt: Mount, cluster: TestCluster) -> None:
    p = mnt / "unlinked.bin"
    p.write_bytes(b"keep me")
    with open(p, "r+b") as f:
        p.unlink()
        assert not p.exists()
        assert f.read() == b"keep me"
        f.write(b" and me")
        f.flush()
        os.fsync(f.fileno())
        f.seek(0)
        assert f.read() == b"keep me and me"
        with cluster.client() as cl:
            assert any(r.name.startswith(".ecmem-trash/") for r in cl.list_regions())
    with cluster.client() as cl:
        names = [r.name for r in cl.list_regions()]
    assert "unlinked.bin" not in names and not any(n.startswith(".ecmem-trash/") for n in names)


def test_rename_replaces_atomically(mnt: Mount, cluster: TestCluster) -> None:
    (mnt / "rn").mkdir()
    (mnt / "rn" / "other").mkdir()
    target = mnt / "rn" / "ckpt"
    target.write_bytes(b"old" * 1000)
    tmp = mnt / "rn" / "other" / "ckpt.tmp"
    with open(tmp, "wb") as f:
        f.write(b"new" * 2000)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, target)  # across directories, over an existing file
    assert target.read_bytes() == b"new" * 2000
    assert not tmp.exists()
    with cluster.client() as cl:
        names = [r.name for r in cl.list_regions()]
    assert names.count("rn/ckpt") == 1 and not any(n.startswith(".ecmem-trash/") for n in names)
    (mnt / "rn" / "other").rename(mnt / "rn" / "renamed")  # a directory, with its files
    (mnt / "rn" / "renamed" / "x").write_bytes(b"x")
    assert os.listdir(mnt / "rn" / "renamed") == ["x"]
    shutil.rmtree(mnt / "rn")


def test_shared_mmap_reads_and_writes(mnt: Mount) -> None:
    p = mnt / "mapped.bin"
    p.write_bytes(bytes(range(256)) * 64)
    with open(p, "r+b") as f:
        with mmap.mmap(f.fileno(), 0, mmap.MAP_SHARED) as m:
            assert m[:4] == b"\x00\x01\x02\x03"
            m[100:104] = b"MMAP"
            m.flush()
        os.fsync(f.fileno())
    data = p.read_bytes()
    assert data[100:104] == b"MMAP" and data[:4] == b"\x00\x01\x02\x03"
    p.unlink()


def test_statfs_reports_capacity_after_redundancy(mnt: Mount, cluster: TestCluster) -> None:
    s = os.statvfs(mnt.path)
    nodes = json.loads(cluster.cli("nodes", "--json").stdout)["nodes"]
    raw = sum(n["capacity"] for n in nodes if n["state"] == "up")
    assert abs(s.f_blocks * s.f_frsize - raw * 4 // 6) < 1 * MiB  # ec:4+2 keeps 4 of 6
    assert 0 < s.f_bavail <= s.f_blocks


def test_lease_held_elsewhere_is_ebusy(mnt: Mount, cluster: TestCluster) -> None:
    (mnt / "busy.bin").write_bytes(b"b")
    with cluster.client() as cl, cl.open("busy.bin", "r+b"):
        with pytest.raises(OSError) as err:
            open(mnt / "busy.bin", "r+b")
        assert err.value.errno == errno.EBUSY
        assert (mnt / "busy.bin").read_bytes() == b"b"  # reading is fine
    with open(mnt / "busy.bin", "r+b") as f:  # lease given back: writable again
        f.write(b"c")
    (mnt / "busy.bin").unlink()


def test_rename_waits_for_the_rebuilder_not_for_a_writer(mnt: Mount, cluster: TestCluster) -> None:
    """The rebuilder holds a closed file's lease while it repairs it: a rename (a
    checkpoint's tmp -> final) waits for it; a writer elsewhere still gives EBUSY."""
    (mnt / "ckpt.tmp").write_bytes(b"state")
    with cluster.meta() as md:
        rebuilder = {"holder": "rebuilder test", "rebuild": True}
        lease.acquire(md.zk, md.paths, "ckpt.tmp", rebuilder, None)
        threading.Timer(1.5, lease.release, (md.zk, md.paths, "ckpt.tmp")).start()
        t = time.monotonic()
        os.rename(mnt / "ckpt.tmp", mnt / "ckpt")
        assert time.monotonic() - t >= 1.0, "the rename did not wait for the lease"
    assert (mnt / "ckpt").read_bytes() == b"state"
    with cluster.client() as cl, cl.open("ckpt", "r+b"):
        with pytest.raises(OSError) as err:
            os.rename(mnt / "ckpt", mnt / "ckpt.old")
        assert err.value.errno == errno.EBUSY
    (mnt / "ckpt").unlink()


def test_second_mount_sees_closed_and_fsynced_writes(
    mnt: Mount, cluster: TestCluster, tmp_path: Path
) -> None:
    other = Mount(cluster, tmp_path / "second")
    try:
        (mnt / "shared.txt").write_bytes(b"first")
        assert (other / "shared.txt").read_bytes() == b"first"
        with open(mnt / "shared.txt", "r+b") as f:
            f.write(b"FIRST")
            f.flush()
            os.fsync(f.fileno())
            time.sleep(1.2)  # past the attribute cache
            assert (other / "shared.txt").read_bytes() == b"FIRST"
            with pytest.raises(OSError) as err:
                open(other / "shared.txt", "r+b")
            assert err.value.errno == errno.EBUSY
        (mnt / "shared.txt").unlink()
    finally:
        other.umount()


def test_umount_waits_for_open_files(cluster: TestCluster, tmp_path: Path) -> None:
    """README: umount waits (--wait, 30 s by default) for open files, naming who holds
    them; --wait 0 fails at once; what the file wrote is committed either way."""
    m = Mount(cluster, tmp_path / "um")
    try:
        (m / "job42").mkdir()
        f = open(m / "job42" / "open.bin", "wb")
        f.write(b"x" * 1000)
        f.flush()
        now = m.c.cli("umount", str(m.path), "--wait", "0")
        assert now.returncode == 2 and os.path.ismount(m.path)
        assert "busy" in now.stderr and f"{os.getpid()} (" in now.stderr, now.stderr
        assert "--wait SECONDS" in now.stderr and f"fuser -vm {m.path}" in now.stderr
        env = {**os.environ, "ECMEM_ZK": cluster.zk, "ECMEM_CLUSTER": cluster.name}
        waiting = subprocess.Popen(
            [sys.executable, "-m", "ecmem.cli.main", "umount", str(m.path), "--wait", "20"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        time.sleep(1.5)
        assert waiting.poll() is None, "umount waits while the file is open"
        f.close()
        out, err = waiting.communicate(timeout=60)
        assert waiting.returncode == 0, out + err
        assert "waiting up to 20s" in err and f"{os.getpid()} (" in err
        assert not os.path.ismount(m.path)
        with cluster.client() as cl:
            assert cl.pread("job42/open.bin", 0, 2000) == b"x" * 1000
            cl.delete_region("job42/open.bin")
    finally:
        m.umount()
