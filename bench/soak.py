"""make soak: many acknowledged 4 KiB writes to one region, watching memory.

Writes N blocks of 4 KiB at random offsets of a 64 MiB region (ec:4+2 with
16 KiB stripes: each write is a page patch of one data fragment, on 3 nodes)
through the blocking client, in pwritev calls of --batch pages (each page an
acknowledged write; --batch 1 for one pwrite each), and reports the write rate, the peak resident
memory of the client and of the storage nodes, and the writer's unfolded patch
bytes as it goes: patches are folded into their stripes (after 64 on a stripe,
or once the unfolded bytes reach their bound) and dropped, so memory must stay
flat and the unfolded bytes under their bound. Writes bench/out/soak.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import resource
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ecmem  # noqa: E402
from ecmem import pagelog  # noqa: E402
from ecmem.localcluster import LocalCluster  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
SPAN = 64 * 1024 * 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--writes", type=int, default=1_000_000)
    ap.add_argument("--every", type=int, default=10_000, help="report every N writes")
    ap.add_argument(
        "--batch",
        type=int,
        default=64,
        help="pages per pwritev call, each page acknowledged (1: one pwrite per page)",
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("kazoo").setLevel(logging.ERROR)  # retried connection hiccups
    OUT.mkdir(parents=True, exist_ok=True)
    lc = LocalCluster(OUT / "soak-cluster")
    lc.down()
    state = lc.up(6, "2GiB", cluster="soak")
    nodes = [psutil.Process(n.pid) for n in state.nodes.values()]
    samples = []
    try:
        with ecmem.connect(state.zk, cluster="soak") as cl:
            cl.create_region("soak", SPAN, "ec:4+2", chunk=4096, slab_size="1MiB")
            block = os.urandom(4096)
            rng = random.Random(1)
            start = last = time.perf_counter()
            peak = 0  # unfolded patch bytes, after every write
            done = reported = 0
            while done < args.writes:
                n = min(args.batch, args.writes - done)
                pages = [(rng.randrange(SPAN // 4096) * 4096, block) for _ in range(n)]
                if n == 1:
                    cl.pwrite("soak", *pages[0])
                else:
                    cl.pwritev("soak", pages)
                done += n
                peak = max(peak, cl.async_client.writer_of("soak").patched.total)
                if done - reported >= args.every or done == args.writes:
                    now = time.perf_counter()
                    sample = {
                        "writes": done,
                        "ops_per_s": (done - reported) / (now - last),
                        "client_rss_mib": psutil.Process().memory_info().rss >> 20,
                        "node_rss_mib": max(p.memory_info().rss for p in nodes) >> 20,
                        "unfolded_peak_kib": peak >> 10,
                    }
                    last, reported = now, done
                    samples.append(sample)
                    print(json.dumps(sample), flush=True)
            elapsed = time.perf_counter() - start
    finally:
        lc.down()
    result = {
        "writes": args.writes,
        "batch": args.batch,
        "seconds": elapsed,
        "ops_per_s": args.writes / elapsed,
        "client_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10,
        "node_peak_rss_mib": max(s["node_rss_mib"] for s in samples),
        "unfolded_peak_kib": max(s["unfolded_peak_kib"] for s in samples),
        "unfolded_bound_kib": pagelog.UNFOLDED_MAX >> 10,
        "samples": samples,
    }
    (OUT / "soak.json").write_text(json.dumps(result, indent=2))
    print(
        f"{args.writes} writes ({args.batch} a call) in {elapsed:.0f}s "
        f"({result['ops_per_s']:.0f}/s); peak RSS: "
        f"client {result['client_peak_rss_mib']} MiB, nodes {result['node_peak_rss_mib']} MiB; "
        f"unfolded patches at most {result['unfolded_peak_kib']} KiB (bound "
        f"{result['unfolded_bound_kib']} KiB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
