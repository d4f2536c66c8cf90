"""Scenario 6: corrupt 1..M fragments of stripes (flips and truncations, data and parity):
reads stay correct; M+1 in a stripe: an error, never wrong bytes; scrub finds and
repairs every corruption.
"""

from __future__ import annotations

import random

import ecmem
from ecmem import wire

from ..cluster import ask
from ..report import RunReport
from ..target import Target
from .common import BLOCK, MiB, block_data


def corruption(c: Target, seed: int, mib: int, report: RunReport) -> None:
    """Scenario 6: corrupt 1..M fragments of stripes (flips and truncations, data and
    parity): reads stay correct; M+1 in a stripe: an error, never wrong bytes; scrub
    finds and repairs every corruption."""
    from ecmem.scrub import Scrubber

    rng = random.Random(seed)
    stripes = max(8, min(64, mib * MiB // BLOCK))
    data = b"".join(block_data(seed, i) for i in range(stripes))
    with ecmem.connect(c.zk, cluster=c.cluster) as cl:
        cl.create_region(c.region("s6"), 0, "ec:4+2")
        cl.pwrite(c.region("s6"), 0, data)
        meta = cl.run(cl.async_client.region_meta(c.region("s6")))
        live = cl.async_client.live_nodes()
        m = 2
        plan: dict[int, list[int]] = {}
        for s in rng.sample(range(stripes), stripes // 2):
            plan[s] = rng.sample(range(6), rng.randint(1, m))  # up to M per stripe
        beyond = rng.choice([s for s in range(stripes) if s not in plan])
        plan[beyond] = rng.sample(range(6), m + 1)

        def corrupt(stripe: int, index: int) -> None:
            node = meta.slabs[stripe // meta.slab_stripes][index][0]
            mode = rng.choice(["flip", "truncate"])
            offset = rng.randrange(4096, meta.chunk - 4096)
            reply = ask(live[node].address, wire.Corrupt(meta.id, stripe, index, mode, offset))
            if not isinstance(reply, wire.Ok):
                raise RuntimeError(f"corrupting {stripe}/{index} on {node}: {reply}")

        for stripe, indexes in sorted(plan.items()):
            for i in indexes:
                corrupt(stripe, i)
        injected = sum(len(v) for v in plan.values())
        report.numbers.update(stripes=stripes, corrupted_fragments=injected, beyond_m=beyond)
        for s in range(stripes):
            try:
                got = cl.pread(c.region("s6"), s * BLOCK, BLOCK)
            except ecmem.EcmemError as exc:
                if s != beyond:
                    report.fail(f"stripe {s} with <= M corruptions failed to read: {exc}")
                continue
            if s == beyond:
                report.fail(f"stripe {s} with M+1 corruptions read without an error")
            if got != data[s * BLOCK : (s + 1) * BLOCK]:
                report.fail(f"stripe {s} read WRONG BYTES")
        found = cl.run(Scrubber(cl.async_client).run_once([c.region("s6")], repair=True))
        seen = {(f.stripe, f.index) for f in found.findings}
        want = {(s, i) for s, v in plan.items() for i in v}
        if seen != want:
            report.fail(
                f"scrub found {len(seen)} of {len(want)} corruptions; missed "
                f"{sorted(want - seen)[:8]}, extra {sorted(seen - want)[:8]}"
            )
        unrepaired = {(f.stripe, f.index) for f in found.unrepaired}
        if unrepaired - {(beyond, i) for i in plan[beyond]}:
            report.fail(f"scrub left {sorted(unrepaired)[:8]} unrepaired")
        report.numbers["scrub_found"] = len(seen)
        report.numbers["scrub_repaired"] = len(found.findings) - len(found.unrepaired)
        again = cl.run(Scrubber(cl.async_client).run_once([c.region("s6")], repair=False))
        left = {(f.stripe, f.index) for f in again.findings}
        if left - {(beyond, i) for i in plan[beyond]}:
            report.fail(f"a second scrub still finds {sorted(left)[:8]}")
        for s in range(stripes):
            if (
                s != beyond
                and cl.pread(c.region("s6"), s * BLOCK, BLOCK) != data[s * BLOCK : (s + 1) * BLOCK]
            ):
                report.fail(f"stripe {s} differs after the repair")
    report.passed = not report.problems
