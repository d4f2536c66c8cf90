"""make bench, part two: self-healing numbers (no redis counterpart).

- rebuild throughput: a 7-node cluster, an ec:4+2 region, one node killed; the
  rebuilder's pass is timed and reported as MB/s of fragments reconstructed and
  MB/s of region data made fully redundant again;
- reads around a paused node: 4 KiB random reads while one node holding data
  fragments is SIGSTOPped (shorter than its ZooKeeper session), p50/p99/max.
Writes bench/out/heal.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ecmem  # noqa: E402
import ecmem.aio  # noqa: E402
from coordinator.rebuild import Rebuilder  # noqa: E402
from ecmem.localcluster import LocalCluster  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
MiB = 1024 * 1024


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))] if s else 0.0


async def rebuild_pass(zk: str, cluster: str) -> tuple[float, Any]:
    client = await ecmem.aio.connect(zk, cluster=cluster)
    try:
        rb = Rebuilder(client, grace=0.0, identifier="bench")
        start = time.perf_counter()
        progress = await rb.run_once()
        return time.perf_counter() - start, progress
    finally:
        await client.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=512)
    ap.add_argument("--pause", type=float, default=2.0, help="seconds a node stays stopped")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("kazoo").setLevel(logging.ERROR)
    OUT.mkdir(parents=True, exist_ok=True)
    lc = LocalCluster(OUT / "heal-cluster")
    lc.down()
    print("starting 7 storage nodes and ZooKeeper ...", flush=True)
    state = lc.up(7, "4GiB", cluster="heal", rebuild_grace=3600)
    # The pass is timed here, in this process: no coordinator may race it.
    os.kill(state.coordinator_pid, signal.SIGTERM)
    size = args.size_mib * MiB
    results: dict[str, Any] = {}
    try:
        with ecmem.connect(state.zk, cluster="heal") as cl:
            data = os.urandom(size)
            cl.create_region("heal/pause", size, "ec:4+2")
            cl.pwrite("heal/pause", 0, data)
            meta = cl.region_meta("heal/pause")
            holder = meta.slabs[0][0][0]
            rng = random.Random(3)
            before: list[float] = []
            during: list[float] = []
            pid = lc.load().nodes[holder].pid
            stopped_at = 0.0
            start = time.monotonic()
            try:
                while time.monotonic() - start < 1.0 + args.pause:
                    if not stopped_at and time.monotonic() - start > 1.0:
                        os.kill(pid, signal.SIGSTOP)
                        stopped_at = time.monotonic()
                    # Data fragment 0 of the first slab's stripes: on the paused node.
                    stripe = rng.randrange(meta.slab_stripes)
                    off = stripe * 4 * meta.chunk + rng.randrange(meta.chunk // 4096) * 4096
                    t0 = time.perf_counter()
                    got = cl.pread("heal/pause", off, 4096)
                    took = (time.perf_counter() - t0) * 1e6
                    assert got == data[off : off + 4096]
                    (during if stopped_at else before).append(took)
            finally:
                os.kill(pid, signal.SIGCONT)
            results["paused_node_reads"] = {
                "pause_s": args.pause,
                "before_p50_us": pct(before, 0.5),
                "before_p99_us": pct(before, 0.99),
                "during_p50_us": pct(during, 0.5),
                "during_p99_us": pct(during, 0.99),
                "during_max_us": max(during, default=0.0),
                "reads_during": len(during),
            }
            cl.create_region("heal/rebuild", size, "ec:4+2")
            cl.pwrite("heal/rebuild", 0, data)
            victim = cl.region_meta("heal/rebuild").slabs[0][1][0]
        lc.kill_node(victim, signal.SIGKILL)
        time.sleep(state.session_timeout + 2)  # until ZooKeeper says it is gone
        print("rebuilding ...", flush=True)
        secs, progress = asyncio.run(rebuild_pass(state.zk, "heal"))
        with ecmem.connect(state.zk, cluster="heal") as cl:
            m = cl.region_meta("heal/rebuild")
            slab_data = m.slab_stripes * 4 * m.chunk
            data_bytes = progress.slots_done * slab_data
            ok = cl.pread("heal/rebuild", 0, size) == data
        results["rebuild"] = {
            "seconds": secs,
            "slots": progress.slots_done,
            "fragment_bytes": progress.bytes_done,
            "reconstructed_MBps": progress.bytes_done / secs / 1e6,
            "region_data_MBps": data_bytes / secs / 1e6,
            "data_identical": ok,
        }
    finally:
        lc.down()
    (OUT / "heal.json").write_text(json.dumps(results, indent=2))
    p, r = results["paused_node_reads"], results["rebuild"]
    print()
    print(
        f"rebuild: {r['slots']} fragment slots, {r['fragment_bytes'] / MiB:.0f} MiB "
        f"reconstructed in {r['seconds']:.2f}s: {r['reconstructed_MBps']:.0f} MB/s of "
        f"fragments, {r['region_data_MBps']:.0f} MB/s of region data made whole again"
    )
    print(
        f"4 KiB reads with a node paused {p['pause_s']:.1f}s: p50 {p['during_p50_us']:.0f} us, "
        f"p99 {p['during_p99_us']:.0f} us, max {p['during_max_us'] / 1000:.0f} ms "
        f"(before: p50 {p['before_p50_us']:.0f} us, p99 {p['before_p99_us']:.0f} us)"
    )
    print(f"wrote {OUT / 'heal.json'}")
    return 0 if r["data_identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
