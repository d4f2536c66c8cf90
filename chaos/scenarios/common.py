"""What the scenarios share: their data, a reader that times its reads, health waits,
writer processes and their histories, and a few fault helpers."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ecmem
from ecmem import wire
from ecmem.health import HEALTH_OK, assess
from ecmem.meta.catalog import MetadataStore

from ..checker import Open, Write
from ..cluster import ask
from ..history import INFO
from ..report import RunReport, Sample
from ..schedule import KILL, Fault
from ..target import Target

MiB = 1024 * 1024
BLOCK = 4 * MiB  # one stripe of the default ec:4+2 geometry: a write is whole or absent
Scenario = Callable[[Target, int, int, RunReport], None]


def block_data(seed: int, i: int) -> bytes:
    return random.Random(seed * 1_000_003 + i).randbytes(BLOCK)


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


class Reader(threading.Thread):
    """Random reads of what was acknowledged, timing each, until stopped."""

    def __init__(self, c: Target, name: str, acked: Callable[[], int], t0: float) -> None:
        super().__init__(daemon=True)
        self.c, self.name_, self.acked, self.t0 = c, name, acked, t0
        self.samples: list[Sample] = []
        self.stop = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        rng = random.Random(7)
        with ecmem.connect(self.c.zk, cluster=self.c.cluster) as cl:
            while not self.stop.is_set():
                n = self.acked()
                if n == 0:
                    time.sleep(0.05)
                    continue
                off = rng.randrange(n * BLOCK // 65536) * 65536
                t = time.monotonic()
                try:
                    cl.pread(self.name_, off, 65536)
                    ok = True
                except ecmem.EcmemError as exc:
                    ok = False
                    self.errors.append(str(exc))
                self.samples.append(Sample(t - self.t0, "read", time.monotonic() - t, 65536, ok))


def health_now(c: Target) -> str:
    from ecmem.meta.catalog import connect_zk

    zk = connect_zk(c.zk, timeout=20)
    try:
        md = MetadataStore(zk, c.cluster)
        report, _ = assess(md.all_nodes(), md.regions())
        return report.status
    finally:
        zk.stop()
        zk.close()


def healthy_within(c: Target, report: RunReport, bound: float, when: str) -> None:
    """Wait for HEALTH_OK (full redundancy, nothing pending), failing past ``bound``."""
    t = time.monotonic()
    while health_now(c) != HEALTH_OK:
        if time.monotonic() - t > bound:
            report.fail(f"full redundancy did not return within {bound:.0f} s {when}")
            break
        time.sleep(1)
    report.numbers["redundancy_restored_s"] = round(time.monotonic() - t, 1)


def writer_history(path: Path) -> tuple[list[Write], list[Open], int]:
    """A chaos.writer's history: writes (one invoked but never completed is of unknown
    outcome), its opens, and the highest block it touched."""
    writes, opens = [], []
    invoked: dict[int, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if r["kind"] == "open":
            opens.append(Open(r["epoch"], r["time"]))
        elif r["kind"] == "invoke":
            invoked[r["block"]] = r
        elif r["kind"] == "write":
            invoked.pop(r["block"], None)
            page = {r["block"]: r["digest"]}
            writes.append(Write(r["epoch"], r["block"], page, r["outcome"], r["start"], r["end"]))
    for r in invoked.values():
        writes.append(Write(r["epoch"], r["block"], {r["block"]: r["digest"]}, INFO, r["start"]))
    return writes, opens, max((w.seq for w in writes), default=-1)


def start_writer(
    c: Target,
    region: str,
    seed: int,
    size: int,
    history: Path,
    name: str,
    wrap: Callable[[list[str]], list[str]] | None = None,
    extra: tuple[str, ...] = (),
) -> subprocess.Popen[bytes]:
    """A chaos.writer process, here or as ``wrap`` says (on a namespaced host)."""
    args = [
        sys.executable, "-m", "chaos.writer", "--zk", c.zk, "--cluster", c.cluster,
        "--region", region,
        "--seed", str(seed), "--block", str(size), "--history", str(history),
        "--session-timeout", "3", *extra,
    ]  # fmt: skip
    with open(c.root / "logs" / f"{name}.log", "ab") as log:
        return subprocess.Popen(
            wrap(args) if wrap else args,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
            cwd=Path(__file__).resolve().parents[1],
        )


def read_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def page_digests(cl: ecmem.Client, region: str, size: int, n: int) -> dict[int, str | None]:
    """Each page's digest; None for a page of zeros (never written: a hole)."""
    zeros = digest_of(bytes(size))
    out: dict[int, str | None] = {}
    for i in range(n):
        got = digest_of(cl.pread(region, i * size, size))
        out[i] = None if got == zeros else got
    return out


def kill_hosts(c: Target, report: RunReport, t0: float, hosts: list[str]) -> None:
    for host in hosts:
        c.kill(host)
        report.faults.append(Fault(time.monotonic() - t0, KILL, host, 0.0))


def reads_back(c: Target, region: str, data: bytes) -> bool:
    with ecmem.connect(c.zk, cluster=c.cluster) as cl:
        return cl.pread(region, 0, len(data)) == data


def region_with_data(c: Target, name: str, seed: int, blocks: int) -> bytes:
    data = b"".join(block_data(seed, i) for i in range(blocks))
    with ecmem.connect(c.zk, cluster=c.cluster) as cl:
        cl.create_region(name, 0, "ec:4+2")
        cl.pwrite(name, 0, data)
    return data


def holdings_of(c: Target, cl: ecmem.Client, region: str, stripe: int) -> dict[str, Any]:
    """What every live node holds of one stripe, committed and staged, and what the
    metadata says: the evidence for a stripe that cannot be read."""
    meta = cl.region_meta(region)
    out: dict[str, Any] = {
        "epoch": meta.epoch,
        "placement": meta.slabs[stripe // meta.slab_stripes],
    }
    for node, info in sorted(cl.async_client.live_nodes().items()):
        for staged in (0, 1):
            reply = ask(info.address, wire.List(meta.id, staged))
            if isinstance(reply, wire.Listing):
                rows = [e[2:5] for e in reply.entries if e[1] == stripe]
                out[f"{node} {'staged' if staged else 'committed'}"] = rows
    return out


def undo_fault(c: Target, f: Fault) -> None:
    if f.kind == KILL:
        c.start(f.host)
    else:
        c.resume(f.host)


def undo_due(c: Target, pending: list[tuple[float, Fault]], t0: float) -> None:
    now = time.monotonic() - t0
    for item in [x for x in pending if x[0] <= now]:
        pending.remove(item)
        undo_fault(c, item[1])
