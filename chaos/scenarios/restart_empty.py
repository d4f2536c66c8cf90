"""Restarts that lose node memory: a few hosts, more than M, or the whole cluster.

Storage hosts here keep fragments in RAM only, so a restarted host comes back
empty. Each seeded round writes fresh regions (erasure-coded, replicated and a
sparse one with holes), restarts hosts empty, and reads everything back. The
checker fails on any read that returns bytes other than those written (zeros
for lost data above all); a loss must be reported (REGION_DATA_LOST naming the
region) and cleared when the region is removed; a restart within the policy
must heal to full redundancy with every byte intact.
"""

from __future__ import annotations

import random
import time

import ecmem
from ecmem.meta.catalog import MetadataStore, connect_zk
from ecmem.meta.model import RegionMeta

from ..report import RunReport
from ..target import Target
from .common import BLOCK, MiB, block_data, healthy_within, kill_hosts

ROUNDS = ("within-m", "beyond-m", "all")
KINDS = (("ec", "ec:4+2", 1), ("rep", "rep:3", 1), ("holes", "ec:4+2", 3))  # every: written blocks
REPORT_BOUND = 60.0  # seconds for a loss to show in the regions' records


def _regions(c: Target) -> list[RegionMeta]:
    zk = connect_zk(c.zk, timeout=20)
    try:
        return MetadataStore(zk, c.cluster).regions()
    finally:
        zk.stop()
        zk.close()


def _meta(c: Target, name: str) -> RegionMeta:
    return next(m for m in _regions(c) if m.name == name)


def _lost(c: Target) -> dict[str, list[tuple[int, int]]]:
    return {m.name: m.lost for m in _regions(c) if m.lost}


def _write(c: Target, tag: str, seed: int, blocks: int) -> dict[str, dict[int, bytes]]:
    """Three regions, and what each block holds (a hole's block is absent)."""
    want: dict[str, dict[int, bytes]] = {}
    with ecmem.connect(c.zk, cluster=c.cluster) as cl:
        for kind, policy, every in (
            ("ec", "ec:4+2", 1),
            ("rep", "rep:3", 1),
            ("holes", "ec:4+2", 3),
        ):
            name = c.region(f"{tag}-{kind}")
            cl.create_region(name, blocks * BLOCK, policy)
            want[name] = {}
            for i in range(0, blocks, every):
                data = block_data(seed, i + len(want) * 1000)
                cl.pwrite(name, i * BLOCK, data)
                want[name][i] = data
            cl.release(name)
    return want


def _check(
    c: Target, want: dict[str, dict[int, bytes]], blocks: int, report: RunReport
) -> tuple[int, set[str]]:
    """Read every block: the bytes written (zeros for a hole) or a clear error, never
    other bytes. Returns the blocks read wrong and the regions that failed a read."""
    wrong, failed = 0, set()
    # Reads of a region restarted empty fail after waiting out the patience, each: a
    # short one keeps the check of every block from taking minutes.
    with ecmem.connect(c.zk, cluster=c.cluster, read_patience=0.5) as cl:
        for name, blocks_ in want.items():
            for i in range(blocks):
                expect = blocks_.get(i, bytes(BLOCK))
                try:
                    got = cl.pread(name, i * BLOCK, BLOCK)
                except ecmem.DataUnavailableError:
                    failed.add(name)
                    continue
                except ecmem.EcmemError as exc:
                    report.fail(f"{name} block {i}: an unclear error: {exc!r}")
                    continue
                if got != expect:
                    wrong += 1
                    zeros = got == bytes(BLOCK)
                    report.fail(
                        f"{name} block {i} read WRONG BYTES"
                        + (" (zeros where data was written)" if zeros else "")
                    )
    return wrong, failed


def restart_empty(c: Target, seed: int, mib: int, report: RunReport) -> None:
    """Scenario: rounds of memory-losing restarts (within M, beyond M, every host) in
    an order the seed picks; see the module's text for what must hold."""
    rng = random.Random(seed)
    blocks = max(3, min(12, mib * MiB // BLOCK))
    rounds = list(ROUNDS)
    rng.shuffle(rounds)
    t0 = time.monotonic()
    wrong_total = 0
    for r, kind in enumerate(rounds):
        want = _write(c, f"r{r}", seed + r, blocks)
        ec = next(iter(want))
        holders = [n for n, _ in _meta(c, ec).slabs[0]]
        if kind == "within-m":
            victims = rng.sample(c.node_hosts, 2)
        elif kind == "beyond-m":
            victims = rng.sample(holders, 3)
        else:
            victims = list(c.node_hosts)
        kill_hosts(c, report, t0, victims)
        c.wait_gone(victims)
        for host in victims:
            c.start(host)
        c.wait_nodes(victims)
        if kind == "within-m":
            healthy_within(c, report, 120, f"after {len(victims)} hosts restarted empty")
        wrong, failed = _check(c, want, blocks, report)
        wrong_total += wrong
        report.numbers[f"round{r}_{kind}_unreadable_regions"] = len(failed)
        if kind == "within-m" and failed:
            report.fail(f"within the policy, reads failed after a restart: {sorted(failed)}")
        if kind != "within-m":
            lost_expected = {ec} if kind == "beyond-m" else set(want)
            if not lost_expected <= failed:
                report.fail(f"{kind}: every block of {sorted(lost_expected - failed)} read back")
            t = time.monotonic()
            while not lost_expected <= set(_lost(c)) and not wrong:
                if time.monotonic() - t > REPORT_BOUND:
                    report.fail(
                        f"{kind}: loss of {sorted(lost_expected - set(_lost(c)))} not recorded "
                        f"within {REPORT_BOUND:.0f} s (status would say healthy)"
                    )
                    break
                time.sleep(1)
            # Once recorded, reads still never return other bytes.
            wrong_total += _check(c, want, blocks, report)[0]
        with ecmem.connect(c.zk, cluster=c.cluster) as cl:
            for name in want:
                cl.delete_region(name)
        left = set(_lost(c)) & set(want)
        if left:
            report.fail(f"removed regions still reported lost: {sorted(left)}")
        healthy_within(c, report, 120, f"after round {r} ({kind}) was cleaned up")
        if report.problems:
            break  # the run has failed: the rounds left would only say so again
    report.numbers.update(
        rounds=r + 1, blocks=blocks, wrong_blocks=wrong_total, seconds=time.monotonic() - t0
    )
    report.passed = not report.problems
