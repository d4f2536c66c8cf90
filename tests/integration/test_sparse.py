"""Sparse regions on real nodes: a page at 1 PiB on six 4 GiB nodes, the nodes charged
for the bytes written only, the region's ZooKeeper record small, and fio writing and
verifying pages scattered over a 1 TiB file through the mount."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from ecmem.layout import Layout
from tests.conftest import make_cluster
from tests.harness import TestCluster
from tests.integration.test_fio import fio
from tests.integration.test_mount import Mount, fuse_missing

pytestmark = pytest.mark.integration
PiB, TiB = 1 << 50, 1 << 40


def nodes_used(c: TestCluster) -> int:
    """The bytes ``ecmem nodes`` says the nodes use, once they published their usage
    (each does every second)."""
    used = 0
    for _ in range(20):
        out = c.cli("nodes", "--json")
        assert out.returncode == 0, out.stderr
        used = sum(n["used"] or 0 for n in json.loads(out.stdout)["nodes"])
        if used:
            break
        time.sleep(0.5)
    return used


def test_sparse_region_on_six_4gib_nodes_and_fio_through_the_mount(
    zk_hosts: str, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    c = make_cluster(zk_hosts, tmp_path_factory, nodes=6, capacity="4GiB")
    try:
        page = os.urandom(4096)
        with c.client() as cl:
            cl.create_region("sparse/pib", 0, "ec:4+2")
            cl.pwrite("sparse/pib", PiB, page)
            cl.release("sparse/pib")
        with c.client() as cl:
            assert cl.stat("sparse/pib").size == PiB + 4096
            assert cl.pread("sparse/pib", PiB, 4096) == page
            for hole in (0, 64 << 20, TiB, PiB - 8192):
                assert cl.pread("sparse/pib", hole, 8192) == bytes(8192), hole
        with c.meta() as store:
            raw, _ = store.zk.get(store.paths.region("sparse/pib"))
        assert len(raw) < 4096, f"the region's record is {len(raw)} bytes"
        first = nodes_used(c)
        assert 0 < first < 2 << 20, f"nodes report {first} bytes used for one written page"

        why = fuse_missing()
        if why:
            pytest.skip(why)
        if shutil.which("fio") is None:
            pytest.fail("fio is missing: make setup installs it")
        m = Mount(c, tmp_path / "mnt")
        try:
            f = m / "sparse.fio"
            f.touch()
            os.truncate(f, TiB)
            assert os.stat(f).st_size == TiB
            # 64 pages at random over the whole TiB: most land in slabs of their own.
            args = ("--filesize=1T", "--io_size=256K", "--randseed=7")
            fio(f, "randwrite", "4k", 1 << 20, "--do_verify=1", *args)
            fio(f, "randwrite", "4k", 1 << 20, "--verify_only", *args)
            with open(f, "rb") as fh:
                fh.seek(TiB // 2 + 12345)
                assert len(fh.read(65536)) == 65536
        finally:
            m.umount()
        # Charged for the stripes written (the first page written to a stripe stores
        # its fragments up to that page's end), not for the terabyte.
        with c.client() as cl:
            meta = cl.region_meta("sparse.fio")
        lay = Layout.of(meta.policy, meta.chunk, meta.slab_stripes)
        stripes = sum(e - f for f, e in meta.written)
        assert 0 < stripes <= 64 and len(meta.slabs) <= 64
        used = nodes_used(c)
        bound = stripes * lay.policy.width * lay.fragment_size
        assert used <= first + bound + (1 << 20), (
            f"nodes use {used} bytes for {stripes} stripes written"
        )
    finally:
        c.down()
