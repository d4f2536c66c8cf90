"""Scenario 14: acknowledged page writes survive M lost hosts before they are folded.

A writer acknowledges 4 KiB page writes (page patches, fewer than a fold takes) to
two data fragments of a stripe, then the two hosts holding those fragments are
SIGKILLed: every page must read back as last acknowledged, decoded around them with
the patches laid from a surviving parity node's copies. A build that acknowledges a
patch held by the fragment's node alone (``--break early-ack``) loses them here.
"""

from __future__ import annotations

import random
import time

import ecmem
from ecmem.pagelog import FOLD

from ..report import RunReport
from ..target import Target
from .common import digest_of, kill_hosts

CHUNK = 262144  # 1 MiB stripes of ec:4+2
PAGE = 4096


def page_log(c: Target, seed: int, mib: int, report: RunReport) -> None:
    """Scenario 14: acknowledged page writes survive M lost hosts before they are
    folded."""
    rng = random.Random(seed)
    region = c.region("s14")
    acked: dict[int, bytes] = {}
    with ecmem.connect(c.zk, cluster=c.cluster) as cl:
        cl.create_region(region, 0, "ec:4+2", chunk=CHUNK)
        cl.pwrite(region, 0, rng.randbytes(4 * CHUNK))
        holders = [n for n, _ in cl.region_meta(region).slabs[0]]
        for i in range(min(FOLD.after - 1, max(8, mib // 4))):
            fragment = i % 2  # data fragments 0 and 1, whose hosts die below
            off = fragment * CHUNK + rng.randrange(CHUNK // PAGE) * PAGE
            data = rng.randbytes(PAGE)
            cl.pwrite(region, off, data)
            acked[off] = data
        cl.release(region)
    victims = holders[:2]
    kill_hosts(c, report, time.monotonic(), victims)
    c.wait_gone(victims)
    lost = []
    with ecmem.connect(c.zk, cluster=c.cluster) as cl:
        for off, data in sorted(acked.items()):
            got = cl.pread(region, off, PAGE)
            if got != data:
                lost.append(off // PAGE)
                report.fail(
                    f"acknowledged page write at byte {off} of region {region} is lost with "
                    f"hosts {', '.join(victims)} down: it reads {digest_of(got)}, "
                    f"was written {digest_of(data)}"
                )
    report.numbers.update(pages_written=len(acked), pages_lost=len(lost), killed=victims)
    report.passed = not report.problems
