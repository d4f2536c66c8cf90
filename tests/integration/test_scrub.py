"""ecmem scrub: finds every injected corruption, --repair fixes them, then it is clean."""

from __future__ import annotations

import json
import os
import random

import pytest

from ecmem import wire
from tests.harness import TestCluster

pytestmark = pytest.mark.integration
MiB = 1024 * 1024


def test_scrub_finds_and_repairs_every_injected_corruption(fresh_cluster: TestCluster) -> None:
    c = fresh_cluster
    rng = random.Random(11)
    contents = {"s/ec": os.urandom(24 * MiB), "s/rep": os.urandom(3 * MiB)}
    with c.client() as cl:
        cl.create_region("s/ec", len(contents["s/ec"]), "ec:4+2", chunk=256 * 1024)
        cl.create_region("s/rep", len(contents["s/rep"]), "rep:3", chunk=256 * 1024)
        for name, data in contents.items():
            cl.pwrite(name, 0, data)
        metas = {n: cl.region_meta(n) for n in contents}

    clean = c.cli("scrub", "--json")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert json.loads(clean.stdout)["findings"] == []

    injected: set[tuple[str, int, int]] = set()
    for name, indexes in (("s/ec", [0, 3, 4, 5]), ("s/rep", [0, 1, 2])):
        meta = metas[name]
        stripes = -(-len(contents[name]) // (meta.chunk * (4 if name == "s/ec" else 1)))
        for n, index in enumerate(indexes):  # data and parity fragments, both kinds of damage
            stripe = rng.randrange(stripes)
            node = meta.slabs[stripe // meta.slab_stripes][index][0]
            mode = "flip" if n % 2 == 0 else "truncate"
            offset = rng.randrange(64, meta.chunk) if mode == "flip" else meta.chunk // 2
            reply = c.ask(node, wire.Corrupt(meta.id, stripe, index, mode, offset))
            assert isinstance(reply, wire.Ok), reply
            injected.add((name, stripe, index))

    found = c.cli("scrub", "--json")
    assert found.returncode == 2, found.stdout + found.stderr
    report = json.loads(found.stdout)
    assert {(f["region"], f["stripe"], f["index"]) for f in report["findings"]} == injected
    st = json.loads(c.cli("status", "--json").stdout)
    assert "SCRUB_ERRORS" in st["checks"]

    fixed = c.cli("scrub", "--repair", "--json")
    assert fixed.returncode == 1, fixed.stdout + fixed.stderr
    report = json.loads(fixed.stdout)
    assert len(report["findings"]) == len(injected) and report["unrepaired"] == 0

    again = c.cli("scrub", "--json")
    assert again.returncode == 0, again.stdout
    assert json.loads(again.stdout)["findings"] == []
    assert "SCRUB_ERRORS" not in json.loads(c.cli("status", "--json").stdout)["checks"]
    with c.client() as cl:
        for name, data in contents.items():
            assert cl.pread(name, 0, len(data)) == data
