"""Chaos scenarios, each with its pass criteria in code.

A scenario takes a running Target (chaos/target.py), a seed (which fixes every random choice,
so a failing seed replays the same faults) and a size, and fills a RunReport.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import os
import random
import signal
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

from .checker import Open, Write, check_region
from .cluster import ask
from .history import FAIL, INFO, OK
from .report import RunReport, Sample
from .schedule import KILL, Fault
from .target import Target

MiB = 1024 * 1024
BLOCK = 4 * MiB  # one stripe of the default ec:4+2 geometry: a write is whole or absent


def _block(seed: int, i: int) -> bytes:
    return random.Random(seed * 1_000_003 + i).randbytes(BLOCK)


def _digest(data: bytes) -> str:
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


def _health(c: Target) -> str:
    from ecmem.meta.catalog import connect_zk

    zk = connect_zk(c.zk, timeout=20)
    try:
        md = MetadataStore(zk, c.cluster)
        report, _ = assess(md.all_nodes(), md.regions())
        return report.status
    finally:
        zk.stop()
        zk.close()


def _healthy_within(c: Target, report: RunReport, bound: float, when: str) -> None:
    """Wait for HEALTH_OK (full redundancy, nothing pending), failing past ``bound``."""
    t = time.monotonic()
    while _health(c) != HEALTH_OK:
        if time.monotonic() - t > bound:
            report.fail(f"full redundancy did not return within {bound:.0f} s {when}")
            break
        time.sleep(1)
    report.numbers["redundancy_restored_s"] = round(time.monotonic() - t, 1)


def kill_during_write(c: Target, seed: int, mib: int, report: RunReport) -> None:
    """Scenario 1: SIGKILL M hosts during a long sequential write."""
    rng = random.Random(seed)
    blocks = max(4, mib * MiB // BLOCK)
    m = 2
    victims = rng.sample(c.node_hosts, m)
    at = sorted(rng.sample(range(blocks // 5, max(blocks // 5 + m, 3 * blocks // 5)), m))
    writes: list[Write] = []
    opens: list[Open] = []
    acked = 0
    t0 = time.monotonic()
    reader = Reader(c, c.region("s1"), lambda: acked, t0)
    with ecmem.connect(c.zk, cluster=c.cluster) as cl:
        cl.create_region(c.region("s1"), 0, "ec:4+2")
        reader.start()
        with cl.open(c.region("s1"), "r+b") as f:
            epoch = cl.async_client.writer_of(c.region("s1")).epoch
            opens.append(Open(epoch, time.monotonic() - t0))
            for i in range(blocks):
                if at and i == at[0]:
                    at.pop(0)
                    _kill(c, report, t0, [victims[len(report.faults)]])
                data = _block(seed, i)
                start = time.monotonic()
                try:
                    f.write(data)
                    f.flush()  # committed: acknowledged
                    outcome = OK
                    acked = i + 1
                except ecmem.EcmemError as exc:
                    outcome = FAIL if not exc.retriable else INFO
                    report.fail(f"write of block {i} failed with {m} hosts down: {exc}")
                end = time.monotonic()
                writes.append(Write(epoch, i, {i: _digest(data)}, outcome, start - t0, end - t0))
                report.samples.append(
                    Sample(start - t0, "write", end - start, BLOCK, outcome == OK)
                )
        reader.stop.set()
        reader.join()
        report.samples += reader.samples
        final = {i: _digest(cl.pread(c.region("s1"), i * BLOCK, BLOCK)) for i in range(blocks)}
    verdict = check_region(writes, final, opens)
    for p in verdict.problems:
        report.fail(p)
    slowest = max((s.seconds for s in reader.samples), default=0.0)
    report.numbers.update(
        blocks=blocks,
        acknowledged=acked,
        slowest_read_s=slowest,
        failed_reads=len(reader.errors),
    )
    if reader.errors:
        report.fail(f"{len(reader.errors)} reads failed, first: {reader.errors[0]}")
    if slowest > c.session_timeout + 2:
        report.fail(f"a read took {slowest:.1f}s, over session timeout + 2 s")
    # Full redundancy comes back by itself...
    _healthy_within(c, report, 180, "after the kills")
    # ...for real: M more hosts die and every block still reads the same.
    _kill(c, report, t0, rng.sample([h for h in c.node_hosts if h not in victims], m))
    with ecmem.connect(c.zk, cluster=c.cluster) as cl:
        again = {i: _digest(cl.pread(c.region("s1"), i * BLOCK, BLOCK)) for i in range(blocks)}
    if again != final:
        bad = sorted(i for i in final if again.get(i) != final[i])
        report.fail(f"after {m} more hosts died, blocks {bad[:8]} read differently")
    report.passed = not report.problems


Scenario = Callable[[Target, int, int, RunReport], None]

# name -> (scenario, storage hosts it needs, the coordinator's rebuild grace in seconds)
SCENARIOS: dict[str, tuple[Scenario, int, float]] = {
    # K+M hosts must survive the first M deaths for redundancy to come back: 8 for ec:4+2.
    "kill-during-write": (kill_during_write, 8, 2.0),
}


def _writer_history(path: Path) -> tuple[list[Write], list[Open], int]:
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


def _start_writer(
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


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _pages(cl: ecmem.Client, region: str, size: int, n: int) -> dict[int, str | None]:
    """Each page's digest; None for a page of zeros (never written: a hole)."""
    zeros = _digest(bytes(size))
    out: dict[int, str | None] = {}
    for i in range(n):
        got = _digest(cl.pread(region, i * size, size))
        out[i] = None if got == zeros else got
    return out


def stale_writer(c: Target, seed: int, mib: int, report: RunReport) -> None:
    """Scenario 4: a writer paused past its ZooKeeper session, a new writer takes over,
    the old one resumes: none of its writes may be accepted."""
    size = 65536
    history = c.root / "writer-a.jsonl"
    with ecmem.connect(c.zk, cluster=c.cluster) as cl:
        cl.create_region(c.region("s4"), 0, "ec:4+2", chunk=16384)
    proc = _start_writer(c, c.region("s4"), seed, size, history, "writer-a")
    t0 = time.time()
    try:
        rng = random.Random(seed)
        want = rng.randrange(10, 40)

        def lines() -> int:
            return len(history.read_text().splitlines()) if history.exists() else 0

        while lines() < want + 1:
            if proc.poll() is not None or time.time() - t0 > 60:
                report.fail("writer A stopped or stalled before the pause")
                return
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGSTOP)
        paused = time.time()
        report.faults.append(Fault(paused - t0, "pause", "writer-a", 0.0))
        time.sleep(3 + 4)  # past A's session timeout: its lease is gone
        writes_a, _, last = _writer_history(history)
        b_writes: list[Write] = []
        opens_b: list[Open] = []
        with ecmem.connect(c.zk, cluster=c.cluster) as cl:
            with cl.open(c.region("s4"), "r+b", timeout=20) as f:
                epoch_b = cl.async_client.writer_of(c.region("s4")).epoch
                opens_b.append(Open(epoch_b, time.time()))
                for j, blk in enumerate(range(0, last + 1, 3)):  # B overwrites every third
                    data = random.Random(-seed - blk).randbytes(size)
                    start = time.time()
                    f.seek(blk * size)
                    f.write(data)
                    f.flush()
                    b_writes.append(Write(epoch_b, j, {blk: _digest(data)}, OK, start, time.time()))
        report.faults[-1] = Fault(paused - t0, "pause", "writer-a", time.time() - paused)
        os.kill(proc.pid, signal.SIGCONT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            report.fail("writer A kept going after being fenced: it never got an error")
            proc.kill()
            proc.wait()
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
            proc.wait()
    writes_a, opens_a, last = _writer_history(history)
    after = [w for w in writes_a if w.start > opens_b[0].time]
    if not after:
        report.fail("writer A made no write after it was resumed: nothing was tested")
    accepted = [w for w in after if w.outcome == OK]
    report.numbers.update(
        writes_before_pause=sum(1 for w in writes_a if w.start <= paused),
        writes_after_resume=len(after),
        accepted_after_resume=len(accepted),
        refusals=sorted({r.get("why", "")[:400] for r in _records(history) if r.get("why")}),
    )
    with ecmem.connect(c.zk, cluster=c.cluster) as cl:
        final = _pages(cl, c.region("s4"), size, cl.stat(c.region("s4")).size // size)
    verdict = check_region(writes_a + b_writes, final, opens_a + opens_b)
    for p in verdict.problems:
        report.fail(p)
    report.passed = not report.problems


SCENARIOS["stale-writer"] = (stale_writer, 7, 2.0)


def corruption(c: Target, seed: int, mib: int, report: RunReport) -> None:
    """Scenario 6: corrupt 1..M fragments of stripes (flips and truncations, data and
    parity): reads stay correct; M+1 in a stripe: an error, never wrong bytes; scrub
    finds and repairs every corruption."""
    from ecmem.scrub import Scrubber

    rng = random.Random(seed)
    stripes = max(8, min(64, mib * MiB // BLOCK))
    data = b"".join(_block(seed, i) for i in range(stripes))
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


SCENARIOS["corruption"] = (corruption, 6, 2.0)


def _kill(c: Target, report: RunReport, t0: float, hosts: list[str]) -> None:
    for host in hosts:
        c.kill(host)
        report.faults.append(Fault(time.monotonic() - t0, KILL, host, 0.0))


def _reads_back(c: Target, region: str, data: bytes) -> bool:
    with ecmem.connect(c.zk, cluster=c.cluster) as cl:
        return cl.pread(region, 0, len(data)) == data


def _region_with_data(c: Target, name: str, seed: int, blocks: int) -> bytes:
    data = b"".join(_block(seed, i) for i in range(blocks))
    with ecmem.connect(c.zk, cluster=c.cluster) as cl:
        cl.create_region(name, 0, "ec:4+2")
        cl.pwrite(name, 0, data)
    return data


def slow_host(c: Target, seed: int, mib: int, report: RunReport) -> None:
    """Scenario 7: a host SIGSTOPped for seconds during reads: reads keep going from the
    other fragments, each within a second; p99 during the pause is reported."""
    rng = random.Random(seed)
    blocks = max(4, min(64, mib * MiB // BLOCK))
    data = _region_with_data(c, c.region("s7"), seed, blocks)
    with ecmem.connect(c.zk, cluster=c.cluster) as cl:
        meta = cl.run(cl.async_client.region_meta(c.region("s7")))
        victim = meta.slabs[0][rng.randrange(4)][0]  # holds data fragments: reads need it
        t0 = time.monotonic()
        pause_at, pause_for = 2.0, min(3.0, c.session_timeout - 1)
        paused = resumed = False
        wrong = 0
        while time.monotonic() - t0 < pause_at + pause_for + 2:
            now = time.monotonic() - t0
            if not paused and now >= pause_at:
                c.pause(victim)
                paused = True
            if paused and not resumed and now >= pause_at + pause_for:
                c.resume(victim)
                resumed = True
                report.faults.append(Fault(pause_at, "pause", victim, pause_for))
            off = rng.randrange(len(data) // 65536) * 65536
            t = time.monotonic()
            try:
                got = cl.pread(c.region("s7"), off, 65536)
                ok = True
                wrong += got != data[off : off + 65536]
            except ecmem.EcmemError as exc:
                ok = False
                report.fail(f"a read failed during the pause: {exc}")
            report.samples.append(Sample(t - t0, "read", time.monotonic() - t, 65536, ok))
    during = sorted(s.seconds for s in report.samples if pause_at <= s.time <= pause_at + pause_for)
    p99 = during[min(len(during) - 1, int(0.99 * len(during)))] if during else 0.0
    report.numbers.update(
        reads=len(report.samples),
        reads_during_pause=len(during),
        p99_during_pause_s=p99,
        slowest_s=max((s.seconds for s in report.samples), default=0.0),
    )
    if wrong:
        report.fail(f"{wrong} reads returned WRONG BYTES")
    if not during:
        report.fail("no read completed during the pause")
    elif during[-1] > 1.0:
        report.fail(f"a read took {during[-1]:.2f}s during the pause (over a second)")
    report.passed = not report.problems


def rebuild_cli_killed(c: Target, seed: int, mib: int, report: RunReport) -> None:
    """Scenario 8: 'ecmem rebuild --wait' killed mid-way and run again: it completes,
    redundancy is full, and the data is identical (also with M more hosts gone)."""
    rng = random.Random(seed)
    blocks = max(8, min(64, mib * MiB // BLOCK))
    data = _region_with_data(c, c.region("s8"), seed, blocks)
    victim = rng.choice(c.node_hosts)
    c.kill(victim)
    t0 = time.monotonic()
    report.faults.append(Fault(0.0, KILL, victim, 0.0))
    c.wait_gone([victim])
    env = {**os.environ, "ECMEM_ZK": c.zk, "ECMEM_CLUSTER": c.cluster}
    cli = [sys.executable, "-m", "ecmem.cli.main", "rebuild", "--node", victim, "--wait"]
    first = subprocess.Popen(cli, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(rng.uniform(0.5, 2.0))
    first.kill()
    first.wait()
    report.faults.append(Fault(time.monotonic() - t0, KILL, "ecmem rebuild", 0.0))
    again = subprocess.run(
        [*cli, "--json", "--timeout", "240"], env=env, capture_output=True, text=True
    )
    report.numbers["rerun_exit"] = again.returncode
    if again.returncode != 0:
        report.fail(f"the rerun of ecmem rebuild did not finish: {again.stdout[-500:]}")
    if _health(c) != HEALTH_OK:
        report.fail(f"health is {_health(c)} after the rebuild, not HEALTH_OK")
    _kill(c, report, t0, rng.sample([h for h in c.node_hosts if h != victim], 2))
    if not _reads_back(c, c.region("s8"), data):
        report.fail("the region reads differently after the rebuild and 2 more deaths")
    report.numbers["seconds"] = time.monotonic() - t0
    report.passed = not report.problems


SCENARIOS["slow-host"] = (slow_host, 7, 2.0)
# A grace delay longer than the run: only the operator's request drives this rebuild.
SCENARIOS["rebuild-cli-killed"] = (rebuild_cli_killed, 7, 600.0)


def beyond_m(c: Target, seed: int, mib: int, report: RunReport) -> None:
    """Scenario 2: SIGKILL M+1 hosts: reads fail clearly, never with wrong bytes; writes
    are refused; once the hosts return (with their data), nothing is lost."""
    rng = random.Random(seed)
    blocks = max(8, min(64, mib * MiB // BLOCK))
    data = _region_with_data(c, c.region("s2"), seed, blocks)
    victims = rng.sample(c.node_hosts, 3)
    t0 = time.monotonic()
    _kill(c, report, t0, victims)
    c.wait_gone(victims)
    errors = wrong = 0
    with ecmem.connect(c.zk, cluster=c.cluster) as cl:
        for i in range(blocks):
            try:
                got = cl.pread(c.region("s2"), i * BLOCK, BLOCK)
                wrong += got != data[i * BLOCK : (i + 1) * BLOCK]
            except ecmem.DataUnavailableError:
                errors += 1
            except ecmem.EcmemError as exc:
                report.fail(f"block {i}: an unclear error with M+1 hosts down: {exc!r}")
        try:
            cl.pwrite(c.region("s2"), 0, b"x" * 4096)
            report.fail("a write was acknowledged with M+1 hosts down")
        except ecmem.EcmemError:
            pass
    report.numbers.update(blocks=blocks, unreadable_blocks=errors)
    if wrong:
        report.fail(f"{wrong} blocks read WRONG BYTES with M+1 hosts down")
    if errors == 0:
        report.fail("every block read with M+1 hosts down: the hosts held nothing?")
    for host in victims:
        c.start(host)
    c.wait_nodes(victims)
    if not _reads_back(c, c.region("s2"), data):
        report.fail("after the hosts returned, the region reads differently")
    report.numbers["seconds"] = time.monotonic() - t0
    report.passed = not report.problems


SCENARIOS["beyond-m"] = (beyond_m, 6, 600.0)


def mount_under_failure(c: Target, seed: int, mib: int, report: RunReport) -> None:
    """Scenario 9: checkpoint files written through a mount (temporary file, fsync,
    rename) while M hosts die survive byte-identical, through that mount and a fresh one."""
    rng = random.Random(seed)
    files = max(6, min(48, mib * MiB // BLOCK))
    victims = rng.sample(c.node_hosts, 2)
    kill_at = sorted(rng.sample(range(1, files - 1), 2))
    where = c.root / "mnt"
    written: dict[str, str] = {}
    t0 = time.monotonic()

    def mount() -> subprocess.Popen[bytes]:
        where.mkdir(exist_ok=True)
        log = open(c.root / "logs" / "mount.log", "ab")
        p = subprocess.Popen(
            [sys.executable, "-m", "ecmem.mount", str(where), "--zk", c.zk, "--cluster", c.cluster],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while not os.path.ismount(where):
            if p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the mount did not come up; see mount.log")
            time.sleep(0.05)
        return p

    def umount(p: subprocess.Popen[bytes]) -> None:
        subprocess.run(["fusermount3", "-u", str(where)], capture_output=True)
        if os.path.ismount(where):
            subprocess.run(["fusermount3", "-u", "-z", str(where)], capture_output=True)
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def verify(label: str) -> None:
        for name, digest in written.items():
            try:
                got = _digest((where / "job" / name).read_bytes())
            except OSError as exc:
                report.fail(f"{label}: {name} unreadable: {exc}")
                continue
            if got != digest:
                report.fail(f"{label}: {name} differs from what was fsynced")

    p = mount()
    try:
        (where / "job").mkdir()
        for i in range(files):
            if kill_at and i == kill_at[0]:
                kill_at.pop(0)
                _kill(c, report, t0, [victims[len(report.faults)]])
            data = _block(seed, i)
            name = f"rank-{i}.ckpt"
            start = time.monotonic()
            try:
                with open(where / "job" / f"{name}.tmp", "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.rename(where / "job" / f"{name}.tmp", where / "job" / name)
                written[name] = _digest(data)
                ok = True
            except OSError as exc:
                ok = False
                report.fail(f"checkpoint {name} failed with {len(report.faults)} hosts down: {exc}")
            report.samples.append(Sample(start - t0, "write", time.monotonic() - start, BLOCK, ok))
        verify("same mount")
    finally:
        umount(p)
    p = mount()
    try:
        verify("fresh mount")
        leftover = [n for n in os.listdir(where / "job") if n.endswith(".tmp")]
        if leftover:
            report.fail(f"temporary files left behind: {leftover[:4]}")
    finally:
        umount(p)
    report.numbers.update(files=files, checkpoints=len(written))
    report.passed = not report.problems


SCENARIOS["mount-under-failure"] = (mount_under_failure, 8, 2.0)


def thrash(c: Target, seed: int, mib: int, report: RunReport) -> None:
    """Scenario 3: kill, restart and pause storage hosts (at most M out at once), the
    coordinator and ZooKeeper servers (one at a time) while a writer
    and readers work on one region: the writes pass the write checker, reads of each
    page are linearizable, and full redundancy returns within a bound after."""
    from .history import INVOKE, Event, History
    from .linearizable import check as linearizable
    from .schedule import PAUSE, generate

    page = 65536
    pages = 64
    seconds = max(20.0, min(600.0, mib / 4))
    schedule = generate(seed, c.node_hosts, seconds, max_down=2, kinds=[KILL, PAUSE])
    # The control plane too: the coordinator and one ZooKeeper server at a time (the
    # ensemble keeps its quorum), killed and restarted or paused.
    if c.control_hosts:
        schedule = sorted(
            schedule
            + generate(seed + 1, c.control_hosts, seconds, 1, [KILL, PAUSE], every=6.0, longest=5.0)
        )
    history = History()
    lock = threading.Lock()
    stop = threading.Event()
    t0 = time.monotonic()
    zeros = _digest(bytes(page))
    with ecmem.connect(c.zk, cluster=c.cluster) as cl:
        cl.create_region(c.region("s3"), pages * page, "ec:4+2", chunk=page // 4)

    why: collections.Counter[str] = collections.Counter()  # errors, for the report

    def record(e: Event) -> None:
        with lock:
            history.add(e)

    def writer() -> None:
        rng = random.Random(seed)
        with ecmem.connect(c.zk, cluster=c.cluster) as cl:
            seq = epoch = 0
            while not stop.is_set():
                p = rng.randrange(pages)
                data = rng.randbytes(page)
                value = _digest(data)
                seq += 1
                now = time.monotonic() - t0
                record(Event(0, INVOKE, "write", c.region("s3"), p, value, now, 0, seq))
                try:
                    cl.pwrite(c.region("s3"), p * page, data)
                    epoch = cl.async_client.writer_of(c.region("s3")).epoch
                    kind = OK
                except ecmem.EcmemError as exc:
                    # The outcome of a failed write is unknown (it may be recovered later)
                    # unless the client says it never happened; its epoch is the writer's.
                    w = cl.async_client.writer_of(c.region("s3"))
                    epoch = w.epoch if w is not None else epoch
                    fenced = isinstance(exc, ecmem.Fenced)
                    kind = INFO if exc.retriable or fenced else FAIL
                    with lock:
                        why[f"write {type(exc).__name__}: {str(exc)[:160]}"] += 1
                    if fenced:  # the lease went (an expired session): the next pwrite retakes it
                        with contextlib.suppress(ecmem.EcmemError):
                            cl.release(c.region("s3"))
                    time.sleep(0.2)
                done = time.monotonic() - t0
                record(Event(0, kind, "write", c.region("s3"), p, None, done, epoch, seq))
                report.samples.append(Sample(now, "write", done - now, page, kind == OK))

    def reader(n: int) -> None:
        rng = random.Random(seed + n)
        with ecmem.connect(c.zk, cluster=c.cluster) as cl:
            while not stop.is_set():
                p = rng.randrange(pages)
                now = time.monotonic() - t0
                record(Event(n, INVOKE, "read", c.region("s3"), p, None, now))
                try:
                    got = _digest(cl.pread(c.region("s3"), p * page, page))
                    record(
                        Event(
                            n,
                            OK,
                            "read",
                            c.region("s3"),
                            p,
                            None if got == zeros else got,
                            time.monotonic() - t0,
                        )
                    )
                    ok = True
                except ecmem.EcmemError as exc:
                    record(Event(n, FAIL, "read", c.region("s3"), p, None, time.monotonic() - t0))
                    ok = False
                    with lock:
                        why[f"read {type(exc).__name__}: {str(exc)[:160]}"] += 1
                report.samples.append(Sample(now, "read", time.monotonic() - t0 - now, page, ok))

    workers = [threading.Thread(target=writer, daemon=True)] + [
        threading.Thread(target=reader, args=(n,), daemon=True) for n in (1, 2)
    ]
    for w in workers:
        w.start()
    pending: list[tuple[float, Fault]] = []
    for f in schedule:
        while time.monotonic() - t0 < f.at:
            time.sleep(0.02)
            _undo_due(c, pending, t0)
        _undo_due(c, pending, t0)
        if f.host in {p.host for _, p in pending}:
            continue
        (c.kill if f.kind == KILL else c.pause)(f.host)
        pending.append((f.until, f))
        report.faults.append(f)
    while time.monotonic() - t0 < seconds:
        time.sleep(0.05)
        _undo_due(c, pending, t0)
    for _, f in pending:
        _undo(c, f)
    stop.set()
    for w in workers:
        w.join(timeout=60)
    ops = history.ops()
    verdict = linearizable(ops)
    if not verdict:
        report.fail(f"reads of region {c.region('s3')} page {verdict.page} are not linearizable")
    writes = [
        Write(o.epoch, o.seq, {o.page: o.value or ""}, o.outcome, o.start, o.end)
        for o in ops
        if o.f == "write"
    ]
    _healthy_within(c, report, 120, "after the thrash")
    with ecmem.connect(c.zk, cluster=c.cluster) as cl:
        try:
            final = _pages(cl, c.region("s3"), page, pages)
        except ecmem.DataUnavailableError as exc:
            report.fail(f"a page is unreadable after the thrash: {exc}")
            report.numbers["holdings"] = _holdings(c, cl, c.region("s3"), exc.stripe)
            report.passed = False
            return
    verdict_w = check_region(writes, final)
    for problem in verdict_w.problems:
        report.fail(problem)
    report.numbers.update(
        seconds=seconds,
        faults=len(report.faults),
        writes_ok=sum(1 for w in writes if w.outcome == OK),
        reads=sum(1 for o in ops if o.f == "read"),
        reads_failed=sum(1 for o in ops if o.f == "read" and o.outcome == FAIL),
        errors=why.most_common(6),
    )
    report.passed = not report.problems


def _holdings(c: Target, cl: ecmem.Client, region: str, stripe: int) -> dict[str, Any]:
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


def _undo(c: Target, f: Fault) -> None:
    if f.kind == KILL:
        c.start(f.host)
    else:
        c.resume(f.host)


def _undo_due(c: Target, pending: list[tuple[float, Fault]], t0: float) -> None:
    now = time.monotonic() - t0
    for item in [x for x in pending if x[0] <= now]:
        pending.remove(item)
        _undo(c, item[1])


SCENARIOS["thrash"] = (thrash, 7, 2.0)
