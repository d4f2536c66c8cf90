"""make bench: ecmem and a local redis-server side by side, in one run.

Measures sequential write and read of 1 GiB through the Python API on an
ec:4+2 region over 6 storage nodes, 4 KiB random reads and acknowledged 4 KiB
random writes, against redis-py SET/GET of 1 MiB values and GET/SET of 4 KiB
values on the same machine at the same time; 4 KiB writes from 16 asyncio tasks of
one client, and pwritev of 64 pages against a redis pipeline of 64 SETs; 4 KiB
reads with one storage node paused; and the floor under a page write, one Ping to 3
nodes at once, against redis PING. Prints MB/s, p50/p99 and
ecmem/redis ratios, and writes them to bench/out/results.json. Each measurement
is repeated, alternating the two systems, and the best run of each is kept:
these machines are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ecmem  # noqa: E402
from bench.peers import RedisServer  # noqa: E402
from ecmem import wire  # noqa: E402
from ecmem.blocking import BlockingPool  # noqa: E402
from ecmem.localcluster import LocalCluster  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
MiB = 1 << 20
BLOCK = 8 * MiB  # application write/read size for the sequential runs


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


def ecmem_seq(cl: ecmem.Client, data: bytes, name: str) -> dict[str, float]:
    if cl.exists(name):
        cl.delete_region(name)
    cl.create_region(name, 0, "ec:4+2")
    mv = memoryview(data)
    t = time.perf_counter()
    with cl.open(name, "r+b") as f:
        for i in range(0, len(data), BLOCK):
            f.write(mv[i : i + BLOCK])
    write = len(data) / (time.perf_counter() - t) / 1e6
    buf = bytearray(BLOCK)
    t = time.perf_counter()
    with cl.open(name, "rb") as f:
        while f.readinto(buf):
            pass
    read = len(data) / (time.perf_counter() - t) / 1e6
    t = time.perf_counter()
    with cl.open(name, "rb") as f:
        while f.read(BLOCK):
            pass
    read_bytes = len(data) / (time.perf_counter() - t) / 1e6
    return {"seq_write_MBps": write, "seq_read_MBps": read, "seq_read_bytes_MBps": read_bytes}


def redis_seq(r: Any, data: bytes) -> dict[str, float]:
    r.flushall()
    mv = memoryview(data)
    t = time.perf_counter()
    for i in range(0, len(data), MiB):
        r.set(f"seq:{i // MiB}", mv[i : i + MiB])
    write = len(data) / (time.perf_counter() - t) / 1e6
    t = time.perf_counter()
    for i in range(0, len(data), MiB):
        r.get(f"seq:{i // MiB}")
    read = len(data) / (time.perf_counter() - t) / 1e6
    return {"seq_write_MBps": write, "seq_read_MBps": read}


def ecmem_rand(cl: ecmem.Client, name: str, size: int, n: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    lat = []
    for _ in range(n):
        off = rng.randrange(0, size // 4096) * 4096
        t = time.perf_counter()
        cl.pread(name, off, 4096)
        lat.append(time.perf_counter() - t)
    return {
        "rand_read_4k_p50_us": pct(lat, 0.5) * 1e6,
        "rand_read_4k_p99_us": pct(lat, 0.99) * 1e6,
        "rand_read_4k_max_us": max(lat) * 1e6,
    }


def redis_rand(r: Any, keys: int, n: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    lat = []
    for _ in range(n):
        k = f"r4k:{rng.randrange(keys)}"
        t = time.perf_counter()
        r.get(k)
        lat.append(time.perf_counter() - t)
    return {"rand_read_4k_p50_us": pct(lat, 0.5) * 1e6, "rand_read_4k_p99_us": pct(lat, 0.99) * 1e6}


def ecmem_small_writes(
    cl: ecmem.Client, name: str, size: int, n: int, seed: int
) -> dict[str, float]:
    """Acknowledged 4 KiB pwrites at random offsets: per second, and latency."""
    rng = random.Random(seed)
    block = os.urandom(4096)
    lat = []
    t = time.perf_counter()
    for _ in range(n):
        off = rng.randrange(0, size // 4096) * 4096
        t0 = time.perf_counter()
        cl.pwrite(name, off, block)
        lat.append(time.perf_counter() - t0)
    return _writes(n / (time.perf_counter() - t), lat)


def redis_small_writes(r: Any, keys: int, n: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    block = os.urandom(4096)
    lat = []
    t = time.perf_counter()
    for _ in range(n):
        k = f"r4k:{rng.randrange(keys)}"
        t0 = time.perf_counter()
        r.set(k, block)
        lat.append(time.perf_counter() - t0)
    return _writes(n / (time.perf_counter() - t), lat)


def _writes(ops: float, lat: list[float]) -> dict[str, float]:
    return {
        "small_write_4k_ops": ops,
        "small_write_4k_p50_us": pct(lat, 0.5) * 1e6,
        "small_write_4k_p99_us": pct(lat, 0.99) * 1e6,
    }


def ecmem_concurrent_writes(
    cl: ecmem.Client, name: str, size: int, n: int, tasks: int, seed: int
) -> float:
    """Acknowledged 4 KiB pwrites per second from ``tasks`` asyncio tasks of one client."""
    rng = random.Random(seed)
    block = os.urandom(4096)
    offsets = [rng.randrange(0, size // 4096) * 4096 for _ in range(n)]
    ac = cl.async_client

    async def worker(mine: list[int]) -> None:
        for off in mine:
            await ac.pwrite(name, off, block)

    async def run() -> None:
        await asyncio.gather(*(worker(offsets[i::tasks]) for i in range(tasks)))

    t = time.perf_counter()
    cl.run(run())
    return n / (time.perf_counter() - t)


def ecmem_pwritev(cl: ecmem.Client, name: str, size: int, batches: int, seed: int) -> float:
    """4 KiB pages per second written by pwritev calls of 64 pages each."""
    rng = random.Random(seed)
    block = os.urandom(4096)
    t = time.perf_counter()
    for _ in range(batches):
        cl.pwritev(name, [(rng.randrange(0, size // 4096) * 4096, block) for _ in range(64)])
    return batches * 64 / (time.perf_counter() - t)


def redis_pipeline(r: Any, keys: int, batches: int, seed: int) -> float:
    rng = random.Random(seed)
    block = os.urandom(4096)
    t = time.perf_counter()
    for _ in range(batches):
        pipe = r.pipeline(transaction=False)
        for _ in range(64):
            pipe.set(f"r4k:{rng.randrange(keys)}", block)
        pipe.execute()
    return batches * 64 / (time.perf_counter() - t)


def ecmem_fanout(cl: ecmem.Client, n: int) -> dict[str, float]:
    """The floor under an acknowledged page write: one Ping to M+1 = 3 nodes at once over
    blocking sockets, waiting for every answer (a write needs two such round trips)."""
    ac = cl.async_client
    pool = BlockingPool(ac.address)
    nodes = sorted(ac.live_nodes())[:3]
    lat = []
    try:
        for _ in range(n):
            t = time.perf_counter()
            reqs = [(c, c.send(wire.Ping())) for c in map(pool.get, nodes)]
            for c, req in reqs:
                c.receive(req)
            lat.append(time.perf_counter() - t)
    finally:
        pool.close()
    return {"fanout3_p50_us": pct(lat, 0.5) * 1e6}


def redis_ping(r: Any, n: int) -> dict[str, float]:
    lat = []
    for _ in range(n):
        t = time.perf_counter()
        r.ping()
        lat.append(time.perf_counter() - t)
    return {"fanout3_p50_us": pct(lat, 0.5) * 1e6}


def cluster_status(zk: str) -> dict[str, Any]:
    """Status and degraded stripes, as ``ecmem status --json`` tells an operator."""
    out = subprocess.run(
        [sys.executable, "-m", "ecmem.cli.main", "status", "--json", "--zk", zk,
         "--cluster", "bench"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    try:
        got = json.loads(out.stdout)
    except json.JSONDecodeError:
        return {"status": f"unknown ({out.stderr.strip()[-200:]})", "degraded_stripes": -1}
    return {"status": got["status"], "degraded_stripes": got["stripes"]["degraded"]}


def best(runs: list[dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key in runs[0]:
        vals = [r[key] for r in runs]
        out[key] = min(vals) if key.endswith("_us") else max(vals)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024, help="sequential data size")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--reads", type=int, default=3000, help="4 KiB random reads per run")
    ap.add_argument("--nodes", type=int, default=6)
    ap.add_argument("--small-writes", type=int, default=500, help="4 KiB pwrites per run")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("kazoo").setLevel(logging.ERROR)  # retried connection hiccups
    size = args.size_mib * MiB
    OUT.mkdir(parents=True, exist_ok=True)
    lc = LocalCluster(OUT / "cluster")
    lc.down()
    print(f"starting {args.nodes} storage nodes and ZooKeeper ...", flush=True)
    state = lc.up(args.nodes, "4GiB", cluster="bench")
    data = os.urandom(size)
    results: dict[str, Any] = {}
    try:
        with RedisServer(OUT / "redis") as r, ecmem.connect(state.zk, cluster="bench") as cl:
            e_runs, r_runs = [], []
            for i in range(args.repeat):
                print(f"sequential run {i + 1}/{args.repeat} ...", flush=True)
                e_runs.append(ecmem_seq(cl, data, "bench/seq"))
                r_runs.append(redis_seq(r, data))
            # 4 KiB random reads over a 256 MiB working set on both sides.
            rset = 256 * MiB
            cl.create_region("bench/rand", 0, "ec:4+2")
            cl.pwrite("bench/rand", 0, data[:rset])
            r.flushall()
            for k in range(rset // 4096):
                r.set(f"r4k:{k}", data[k * 4096 : (k + 1) * 4096])
            for i in range(args.repeat):
                print(f"random-read run {i + 1}/{args.repeat} ...", flush=True)
                e_runs[i].update(ecmem_rand(cl, "bench/rand", rset, args.reads, i))
                r_runs[i].update(redis_rand(r, rset // 4096, args.reads, i))
                e_runs[i].update(ecmem_fanout(cl, args.small_writes))
                r_runs[i].update(redis_ping(r, args.small_writes))
                print(f"small-write run {i + 1}/{args.repeat} ...", flush=True)
                e_runs[i].update(ecmem_small_writes(cl, "bench/rand", rset, args.small_writes, i))
                r_runs[i].update(redis_small_writes(r, rset // 4096, args.small_writes * 10, i))
                print(f"concurrent-write and pwritev run {i + 1}/{args.repeat} ...", flush=True)
                e_runs[i]["writers16_4k_ops"] = ecmem_concurrent_writes(
                    cl, "bench/rand", rset, args.small_writes * 2, 16, i
                )
                e_runs[i]["pwritev64_pages"] = ecmem_pwritev(cl, "bench/rand", rset, 20, i)
                r_runs[i]["pwritev64_pages"] = redis_pipeline(r, rset // 4096, 200, i)
            # What a healthy cluster under this load should never show: suspicions,
            # handoffs, degraded reads or stripes (read before a node is paused on purpose).
            quiet = {**cl.metrics.snapshot(), **cluster_status(state.zk)}
            # The same reads with one storage node paused (SIGSTOP): degraded page reads.
            victim = state.nodes[sorted(state.nodes)[0]].pid
            print("random-read run, one node paused ...", flush=True)
            os.kill(victim, signal.SIGSTOP)
            try:
                paused = ecmem_rand(cl, "bench/rand", rset, args.reads, 99)
            finally:
                os.kill(victim, signal.SIGCONT)
            for run in e_runs:
                run.update({f"paused_{k}": v for k, v in paused.items()})
            e, rd = best(e_runs), best(r_runs)
    finally:
        lc.down()
    results = {
        "ecmem": e,
        "redis": rd,
        "ratios": {
            "seq_write": e["seq_write_MBps"] / rd["seq_write_MBps"],
            "seq_read": e["seq_read_MBps"] / rd["seq_read_MBps"],
            "seq_read_bytes": e["seq_read_bytes_MBps"] / rd["seq_read_MBps"],
            "rand_read_4k_p50": e["rand_read_4k_p50_us"] / rd["rand_read_4k_p50_us"],
            "small_write_4k": e["small_write_4k_ops"] / rd["small_write_4k_ops"],
            "small_write_4k_p50": e["small_write_4k_p50_us"] / rd["small_write_4k_p50_us"],
            "writers16_4k": e["writers16_4k_ops"] / rd["small_write_4k_ops"],
            "pwritev64": e["pwritev64_pages"] / rd["pwritev64_pages"],
            "fanout3_p50": e["fanout3_p50_us"] / rd["fanout3_p50_us"],
        },
        "config": {
            "size_mib": args.size_mib,
            "repeat": args.repeat,
            "reads": args.reads,
            "small_writes": args.small_writes,
            "nodes": args.nodes,
            "policy": "ec:4+2",
            "block": BLOCK,
            "cpus": os.cpu_count(),
        },
        "runs": {"ecmem": e_runs, "redis": r_runs},
        "healthy_cluster": quiet,
    }
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    print()
    print(f"{'':28}{'ecmem':>12}{'redis':>12}{'ratio':>10}")
    rows = [
        ("seq write MB/s", "seq_write_MBps", "seq_write_MBps", "seq_write"),
        ("seq read MB/s (readinto)", "seq_read_MBps", "seq_read_MBps", "seq_read"),
        ("seq read MB/s (read)", "seq_read_bytes_MBps", "seq_read_MBps", "seq_read_bytes"),
        ("4 KiB read p50 us", "rand_read_4k_p50_us", "rand_read_4k_p50_us", "rand_read_4k_p50"),
        ("4 KiB write ops/s", "small_write_4k_ops", "small_write_4k_ops", "small_write_4k"),
        (
            "4 KiB write p50 us",
            "small_write_4k_p50_us",
            "small_write_4k_p50_us",
            "small_write_4k_p50",
        ),
        ("16 writers 4 KiB ops/s *", "writers16_4k_ops", "small_write_4k_ops", "writers16_4k"),
        ("pwritev 64 pages/s", "pwritev64_pages", "pwritev64_pages", "pwritev64"),
        ("ping 3 nodes / PING p50 us", "fanout3_p50_us", "fanout3_p50_us", "fanout3_p50"),
    ]
    for label, ek, rk, ratio in rows:
        print(f"{label:28}{e[ek]:12.0f}{rd[rk]:12.0f}{results['ratios'][ratio]:10.3f}")
    print(
        f"{'4 KiB read p99 us':28}{e['rand_read_4k_p99_us']:12.0f}{rd['rand_read_4k_p99_us']:12.0f}"
    )
    print(
        f"{'4 KiB write p99 us':28}{e['small_write_4k_p99_us']:12.0f}"
        f"{rd['small_write_4k_p99_us']:12.0f}"
    )
    print("* against one redis-py client's SET")
    print(
        f"\n4 KiB reads, one node paused: p50 {e['paused_rand_read_4k_p50_us']:.0f} us "
        f"({e['paused_rand_read_4k_p50_us'] / e['rand_read_4k_p50_us']:.2f}x healthy), "
        f"p99 {e['paused_rand_read_4k_p99_us']:.0f} us, "
        f"max {e['paused_rand_read_4k_max_us'] / 1000:.0f} ms"
    )
    print(
        f"\nhealthy runs: {quiet['suspicions']:.0f} suspicions, {quiet['handoffs']:.0f} "
        f"handoffs, {quiet['degraded_reads']:.0f} degraded reads, "
        f"{quiet['degraded_stripes']} degraded stripes, {quiet['status']}"
    )
    print(f"\nwrote {OUT / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
