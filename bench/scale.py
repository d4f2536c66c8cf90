"""make bench-scale: the control plane with many regions (no redis counterpart).

A 7-node local cluster (one more than ec:4+2 needs, so a dead node's fragments have
somewhere to go) gets ``--regions`` empty regions (default 100,000) and a few
written ones, then:
- the idle leader coordinator's CPU, as a share of one core over ``--idle`` seconds;
- how long ``ecmem status --json`` and ``ecmem region ls`` (every region) take;
- a node holding fragments of the written regions is killed: the seconds until the
  coordinator has noticed and ``ecmem status`` is HEALTH_OK again, the data intact.
Each is printed beside its goal (issue 14); writes bench/out/scale.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ecmem  # noqa: E402
import ecmem.aio  # noqa: E402
from ecmem.localcluster import LocalCluster  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
CLUSTER = "scale"
WRITTEN = 12  # regions with data, for the node death
MiB = 1024 * 1024
GOALS = {"coordinator_cpu_pct": 5.0, "status_s": 1.0, "region_ls_s": 5.0}


async def create(zk: str, count: int, width: int) -> float:
    """``count`` empty regions, ``width`` creates in flight; returns the seconds taken."""
    # Creates are ZooKeeper calls in threads: as many threads as creates in flight.
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(width))
    client = await ecmem.aio.connect(zk, cluster=CLUSTER)
    start = time.monotonic()
    try:
        gate = asyncio.Semaphore(width)

        async def one(i: int) -> None:
            async with gate:
                await client.create_region(f"many/r{i:07d}", 0, "ec:4+2", exist_ok=True)

        for first in range(0, count, 5000):
            await asyncio.gather(*(one(i) for i in range(first, min(count, first + 5000))))
            print(f"  {min(count, first + 5000)} regions", flush=True)
    finally:
        await client.close()
    return time.monotonic() - start


ECMEM = [str(Path(sys.executable).parent / "ecmem")]


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Seconds ``ecmem cmd`` took, and what it printed (exit 0-2: ok, warn, error)."""
    start = time.monotonic()
    done = subprocess.run(ECMEM + cmd, capture_output=True, text=True, env=env, timeout=600)
    took = time.monotonic() - start
    if done.returncode not in (0, 1, 2) or not done.stdout:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return took, done.stdout


def status(env: dict[str, str]) -> dict[str, Any]:
    _, out = timed(["status", "--json"], env)
    parsed: dict[str, Any] = json.loads(out)
    return parsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--regions", type=int, default=100_000)
    ap.add_argument("--idle", type=float, default=20.0, help="seconds the CPU is measured")
    ap.add_argument("--width", type=int, default=64, help="region creates in flight")
    ap.add_argument(
        "--settle", type=float, default=3.0, help="seconds after creating before measuring"
    )
    ap.add_argument("--keep", action="store_true", help="leave the cluster up, to look at it")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("kazoo").setLevel(logging.ERROR)
    OUT.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the cluster on the way out
    lc = LocalCluster(OUT / "scale-cluster")
    lc.down()
    print("starting 7 storage nodes, ZooKeeper and a coordinator ...", flush=True)
    state = lc.up(7, "4GiB", cluster=CLUSTER, rebuild_grace=2.0)
    env = {**os.environ, "ECMEM_ZK": state.zk, "ECMEM_CLUSTER": CLUSTER}
    results: dict[str, Any] = {"regions": args.regions}
    try:
        print(f"creating {args.regions} empty regions ...", flush=True)
        results["create_s"] = asyncio.run(create(state.zk, args.regions, args.width))
        data = os.urandom(MiB)
        with ecmem.connect(state.zk, cluster=CLUSTER) as cl:
            for i in range(WRITTEN):
                cl.create_region(f"written/w{i}", MiB, "ec:4+2")
                cl.pwrite(f"written/w{i}", 0, data)
            victim = cl.region_meta("written/w0").slabs[0][0][0]
        print(f"idle for {args.idle:.0f}s, measuring the coordinator ...", flush=True)
        coord = psutil.Process(lc.load().coordinator_pid)
        time.sleep(args.settle)  # past its first passes
        coord.cpu_percent(None)
        time.sleep(args.idle)
        results["coordinator_cpu_pct"] = coord.cpu_percent(None)
        results["coordinator_rss_mib"] = coord.memory_info().rss / MiB
        results["status_s"], _ = timed(["status", "--json"], env)
        took, out = timed(["region", "ls"], env)
        results["region_ls_s"], results["region_ls_lines"] = took, len(out.splitlines())
        print(f"killing {victim} ...", flush=True)
        lc.kill_node(victim, signal.SIGKILL)
        killed = time.monotonic()
        noticed = healthy = 0.0
        while time.monotonic() - killed < 600:
            report = status(env)
            if not noticed and report.get("status") != "HEALTH_OK":
                noticed = time.monotonic() - killed
            if noticed and report.get("status") == "HEALTH_OK":
                healthy = time.monotonic() - killed
                break
            time.sleep(1.0)
        results["death_noticed_s"], results["healthy_again_s"] = noticed, healthy
        with ecmem.connect(state.zk, cluster=CLUSTER) as cl:
            results["data_intact"] = all(
                cl.pread(f"written/w{i}", 0, MiB) == data for i in range(WRITTEN)
            )
    finally:
        if not args.keep:
            lc.down()
    (OUT / "scale.json").write_text(json.dumps(results, indent=2))
    print()
    print(
        f"{args.regions} regions created in {results['create_s']:.0f}s; the leader's memory "
        f"{results['coordinator_rss_mib']:.0f} MiB"
    )
    for key, goal in GOALS.items():
        got = results[key]
        verdict = "ok" if got < goal else "MISSED"
        print(f"{key:>22}: {got:8.2f}  (goal < {goal:g})  {verdict}")
    noticed, healthy = results["death_noticed_s"], results["healthy_again_s"]
    print(
        "  a node's death "
        + (f"noticed after {noticed:.0f}s" if noticed else "NOT noticed within 600s")
        + (f", HEALTH_OK again after {healthy:.0f}s" if healthy else ", NOT healthy within 600s")
        + f"; written data intact: {results['data_intact']}"
    )
    print(f"wrote {OUT / 'scale.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
