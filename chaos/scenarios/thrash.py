"""Scenario 3: kill, restart and pause storage hosts (at most M out at once), the
coordinator and ZooKeeper servers (one at a time) while a writer and readers work on one
region: the writes pass the write checker, reads of each page are linearizable, and full
redundancy returns within a bound after.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import random
import threading
import time

import ecmem

from ..checker import Write, check_region
from ..history import FAIL, INFO, OK
from ..report import RunReport, Sample
from ..schedule import KILL, Fault
from ..target import Target
from .common import (
    digest_of,
    healthy_within,
    holdings_of,
    kill_hosts,
    page_digests,
    undo_due,
    undo_fault,
)

log = logging.getLogger(__name__)
HEAL = 10.0  # seconds a killed host's data is given to be rebuilt before it counts as back


def thrash(c: Target, seed: int, mib: int, report: RunReport) -> None:
    """Scenario 3: kill, restart and pause storage hosts (at most M out at once), the
    coordinator and ZooKeeper servers (one at a time) while a writer
    and readers work on one region: the writes pass the write checker, reads of each
    page are linearizable, and full redundancy returns within a bound after."""
    registers(c, seed, mib, report, c.region("s3"), page=65536, pages=64, chunk=16384)


def page_writes(c: Target, seed: int, mib: int, report: RunReport) -> None:
    """Scenario 13: the thrash, with 4 KiB pages inside 1 MiB stripes that hold data from
    the start, so writes go as slices (a column of each fragment) and reads around a
    host that is out decode columns; then, with full redundancy back, M more hosts are
    killed and every page must read the same (stale parity would show here)."""
    registers(c, seed, mib, report, c.region("s13"), page=4096, pages=512, chunk=262144)
    if report.problems:
        return
    rng = random.Random(seed + 13)
    with ecmem.connect(c.zk, cluster=c.cluster) as cl:
        before = page_digests(cl, c.region("s13"), 4096, 512)
    kill_hosts(c, report, time.monotonic(), rng.sample(c.node_hosts, 2))
    with ecmem.connect(c.zk, cluster=c.cluster) as cl:
        try:
            after = page_digests(cl, c.region("s13"), 4096, 512)
        except ecmem.EcmemError as exc:
            report.fail(f"with M hosts killed after the run, a page is unreadable: {exc}")
            report.passed = False
            return
    bad = sorted(p for p in before if after.get(p) != before[p])
    if bad:
        report.fail(f"with M hosts killed after the run, pages {bad[:8]} read differently")
    report.passed = not report.problems


def registers(
    c: Target,
    seed: int,
    mib: int,
    report: RunReport,
    region: str,
    page: int,
    pages: int,
    chunk: int,
) -> None:
    """One writer and two readers of ``pages`` pages (registers) of ``region`` while
    storage hosts are killed and paused (at most M at once) and the control plane too."""
    from ..history import INVOKE, Event, History
    from ..linearizable import check as linearizable
    from ..schedule import PAUSE, generate

    seconds = max(20.0, min(600.0, mib / 4))
    # A killed host restarts empty: it stays lost (and counts against M) for HEAL s
    # while its fragments are rebuilt.
    schedule = generate(seed, c.node_hosts, seconds, max_down=2, kinds=[KILL, PAUSE], heal=HEAL)
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
    zeros = digest_of(bytes(page))
    with ecmem.connect(c.zk, cluster=c.cluster) as cl:
        cl.create_region(region, 0, "ec:4+2", chunk=chunk)
        cl.pwrite(region, 0, bytes(pages * page))  # written zeros: overwrites from here on

    why: collections.Counter[str] = collections.Counter()  # errors, for the report
    write_errors = [0]  # writes that raised, other than by a takeover

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
                value = digest_of(data)
                seq += 1
                now = time.monotonic() - t0
                record(Event(0, INVOKE, "write", region, p, value, now, 0, seq))
                try:
                    cl.pwrite(region, p * page, data)
                    epoch = cl.async_client.writer_of(region).epoch
                    kind = OK
                except ecmem.EcmemError as exc:
                    # The outcome of a failed write is unknown (it may be recovered later)
                    # unless the client says it never happened; its epoch is the writer's.
                    with contextlib.suppress(ecmem.EcmemError):  # the lease may be gone
                        epoch = cl.async_client.writer_of(region).epoch
                    # Fenced follows a takeover (an expired session); WriterStopped is a
                    # write of this writer's own that failed, so it counts.
                    fenced = isinstance(exc, ecmem.Fenced)
                    taken_over = fenced and not isinstance(exc, ecmem.WriterStopped)
                    kind = INFO if exc.retriable or fenced else FAIL
                    with lock:
                        why[f"write {type(exc).__name__}: {str(exc)[:160]}"] += 1
                        write_errors[0] += not taken_over
                    if fenced:  # the lease went (an expired session): the next pwrite retakes it
                        with contextlib.suppress(ecmem.EcmemError):
                            cl.release(region)
                    time.sleep(0.2)
                done = time.monotonic() - t0
                record(Event(0, kind, "write", region, p, None, done, epoch, seq))
                report.samples.append(Sample(now, "write", done - now, page, kind == OK))

    def reader(n: int) -> None:
        rng = random.Random(seed + n)
        with ecmem.connect(c.zk, cluster=c.cluster) as cl:
            while not stop.is_set():
                p = rng.randrange(pages)
                now = time.monotonic() - t0
                record(Event(n, INVOKE, "read", region, p, None, now))
                try:
                    got = digest_of(cl.pread(region, p * page, page))
                    record(
                        Event(
                            n,
                            OK,
                            "read",
                            region,
                            p,
                            None if got == zeros else got,
                            time.monotonic() - t0,
                        )
                    )
                    ok = True
                except ecmem.EcmemError as exc:
                    record(Event(n, FAIL, "read", region, p, None, time.monotonic() - t0))
                    ok = False
                    with lock:
                        why[f"read {type(exc).__name__}: {str(exc)[:600]}"] += 1
                report.samples.append(Sample(now, "read", time.monotonic() - t0 - now, page, ok))

    workers = [threading.Thread(target=writer, daemon=True)] + [
        threading.Thread(target=reader, args=(n,), daemon=True) for n in (1, 2)
    ]
    for w in workers:
        w.start()
    pending: list[tuple[float, Fault]] = []
    try:
        for f in schedule:
            while time.monotonic() - t0 < f.at:
                time.sleep(0.02)
                undo_due(c, pending, t0)
            undo_due(c, pending, t0)
            if f.host in {p.host for _, p in pending}:
                continue
            log.warning("t=%.1fs: %s %s for %.1fs", f.at, f.kind, f.host, f.until - f.at)
            (c.kill if f.kind == KILL else c.pause)(f.host)
            pending.append((f.until, f))
            report.faults.append(f)
        while time.monotonic() - t0 < seconds:
            time.sleep(0.05)
            undo_due(c, pending, t0)
        for _, f in pending:
            undo_fault(c, f)
    finally:  # a fault that could not be made (a host died by itself) stops the workers too
        stop.set()
        for w in workers:
            w.join(timeout=60)
    ops = history.ops()
    verdict = linearizable(ops)
    if not verdict:
        report.fail(f"reads of region {region} page {verdict.page} are not linearizable")
        # The page's operations, for whoever replays it: (f, value, start, end, outcome).
        report.numbers["nonlinearizable_page_ops"] = [
            (o.f, (o.value or "")[:8], round(o.start, 4), round(o.end, 4), o.outcome, o.seq)
            for o in sorted(verdict.ops or [], key=lambda o: o.start)
        ]
    writes = [
        Write(o.epoch, o.seq, {o.page: o.value or ""}, o.outcome, o.start, o.end)
        for o in ops
        if o.f == "write"
    ]
    healthy_within(c, report, 120, "after the thrash")
    with ecmem.connect(c.zk, cluster=c.cluster) as cl:
        try:
            final = page_digests(cl, region, page, pages)
        except ecmem.DataUnavailableError as exc:
            report.fail(f"a page is unreadable after the thrash: {exc}")
            report.numbers["holdings"] = holdings_of(c, cl, region, exc.stripe)
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
        writes_failed=write_errors[0],
        read_ms=report.latency_ms("read"),
        write_ms=report.latency_ms("write"),
        errors=why.most_common(6),
    )
    report.passed = not report.problems
