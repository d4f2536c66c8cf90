"""Operator commands that drive the coordinator: rebuild, drain, node rm.

The work itself is done by the elected coordinator (so it goes on if this command
is killed, and a rerun joins it); these commands file requests in ZooKeeper and,
with --wait, watch the damage they asked about go away.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import click

from ecmem import heartbeat
from ecmem.errors import ConfigError, EcmemError, NodeUnavailable
from ecmem.units import format_size

from .output import (
    EXIT_ERR,
    EXIT_OK,
    EXIT_WARN,
    cluster_options,
    connect_cli,
    emit,
    handle_errors,
    json_option,
)

POLL = 0.5


class _View:
    """What the commands read of the cluster, with the same damage rules as the rebuilder."""

    def __init__(self, cl: Any) -> None:
        from ecmem.meta.records import Records

        self.md = cl.async_client.meta
        self.records = Records(self.md.zk, self.md.paths)
        self.metas: dict[str, Any] = {}  # regions as last read, to size the work left

    def coordinators(self) -> list[str]:
        try:
            return list(self.md.zk.get_children(self.md.paths.election))
        except EcmemError:
            raise
        except Exception:  # no election folder yet: none ever ran
            return []

    def remaining(self, node: str = "", region: str = "", forced: bool = False) -> list[Any]:
        from ecmem.damage import find_damage

        grace = float(self.records.progress().get("grace_delay", 30.0))
        live = self.md.live_nodes()
        regions = [m for m in self.md.regions() if not region or m.name == region]
        self.metas = {m.name: m for m in regions}
        down = set(self.records.down_since()) | (set(self.md.registered_nodes()) - set(live))
        damage = find_damage(
            regions,
            live,
            self.records.down_since(),
            time.time(),
            grace,
            self.records.drains(),
            ([node] if node else sorted(down)) if forced else [],
        )
        # A writer (or the rebuilder's own takeover) vacates a lost node's slots: those
        # are the node's too until rebuilt.
        return [s for s in damage.slots if not node or s.holder[0] in (node, "")]

    def held_by(self, node: str) -> list[tuple[str, int, int]]:
        self.metas = {m.name: m for m in self.md.regions()}
        return [
            (m.name, slab, i)
            for m in self.metas.values()
            for slab, placement in m.slabs.items()
            for i, (n, _) in enumerate(placement)
            if n == node
        ]

    def amount(self, items: list[Any]) -> tuple[int, int]:
        """Fragment bytes and slabs of slots, each a Slot or (region, slab, index)."""
        from ecmem.health import slab_stripe_count
        from ecmem.layout import Layout

        nbytes = 0
        slabs: set[tuple[str, int]] = set()
        for it in items:
            region, slab = (it.region, it.slab) if hasattr(it, "region") else (it[0], it[1])
            meta = self.metas.get(region)
            if meta is None:
                continue
            size = Layout.of(meta.policy, meta.chunk, meta.slab_stripes).fragment_size
            nbytes += slab_stripe_count(meta, slab) * size
            slabs.add((region, slab))
        return nbytes, len(slabs)


def _known_node(v: _View, node: str, known: dict[str, Any] | None = None) -> Any:
    known = v.md.all_nodes() if known is None else known
    if node not in known:
        raise ConfigError(f"no node {node!r}: see 'ecmem nodes' for the node ids")
    return known[node]


def _until_deregistered(v: _View, info: Any, wait: bool, as_json: bool, timeout: float) -> None:
    """A node that answers no heartbeat but is still listed (its ZooKeeper session has
    not expired yet): say so, and with ``wait`` count down until its record goes."""
    session = info.session_timeout
    within = f"within {session:.0f}s of its death" if session else "at its session's timeout"
    click.echo(
        f"node {info.id} at {info.address} answers no heartbeats, but ZooKeeper lists it "
        f"until its session expires ({within}); the rebuild starts then",
        err=True,
    )
    if not wait:
        return
    start = time.monotonic()
    tty = sys.stderr.isatty() and not as_json
    while v.md.all_nodes().get(info.id, info).state == "up":
        waited = time.monotonic() - start
        if timeout and waited > timeout:
            raise NodeUnavailable(
                f"node {info.id} still listed as up after {waited:.0f}s: if its host "
                f"is gone, its ZooKeeper session should have ended; check ZooKeeper"
            )
        if tty:
            left = f"{max(0.0, session - waited):.0f}s left" if session else ""
            click.echo(
                f"\rwaiting for node {info.id}'s session to expire {left}  ", nl=False, err=True
            )
        time.sleep(0.2)
    if tty:
        click.echo("", err=True)


def _need_coordinator(v: _View) -> None:
    if not v.coordinators():
        raise NodeUnavailable(
            "no coordinator is running, so nothing would do the work: start one "
            "('python -m coordinator --zk HOSTS', or 'ecmem up' for a local cluster) and rerun"
        )


@dataclass
class Watched:
    left: int = 0  # fragment slots still to do when the watch ended
    bytes_total: int = 0
    bytes_done: int = 0
    slabs_total: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        rate = self.bytes_done / self.seconds / 1e6 if self.seconds > 0 else 0.0
        return {**asdict(self), "MBps": rate}


def _watch(v: _View, label: str, left: Any, as_json: bool, timeout: float) -> Watched:
    """Wait until ``left()`` (slots still to do) is empty, showing fragment bytes, slabs,
    rate and ETA on a terminal."""
    start = time.monotonic()
    slots = left()
    w = Watched(len(slots))
    w.bytes_total, w.slabs_total = v.amount(slots)
    slabs_left = w.slabs_total

    def show(_: object) -> str:
        secs = max(time.monotonic() - start, 1e-6)
        return f"{slabs_left}/{w.slabs_total} slabs left, {w.bytes_done / secs / 1e6:.0f} MB/s"

    bar = None
    if not as_json and sys.stderr.isatty() and slots:
        bar = click.progressbar(
            length=max(1, w.bytes_total),
            label=label,
            file=sys.stderr,
            show_eta=True,
            show_percent=True,
            item_show_func=show,
        )
        bar.__enter__()
    try:
        while True:
            w.left = len(slots)
            nbytes, slabs_left = v.amount(slots)
            done = max(0, w.bytes_total - nbytes)
            if bar is not None and done > w.bytes_done:
                bar.update(done - w.bytes_done, None)
            w.bytes_done = max(w.bytes_done, done)
            w.seconds = time.monotonic() - start
            if not slots or (timeout and w.seconds > timeout):
                return w
            time.sleep(POLL)
            slots = left()
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)


@click.command()
@click.option("--node", default="", help="rebuild this node's fragments now (no grace delay)")
@click.option("--region", default="", help="only this region")
@click.option("--wait", is_flag=True, help="return when the rebuild is done")
@click.option("--timeout", type=float, default=0.0, help="with --wait: give up after S seconds")
@cluster_options
@json_option
@handle_errors
def rebuild(
    node: str,
    region: str,
    wait: bool,
    timeout: float,
    zk: str | None,
    cluster: str | None,
    state_dir: str,
    as_json: bool,
) -> None:
    """Start (or join) the rebuild of lost fragments and show its progress."""
    started = time.monotonic()
    with connect_cli(zk, cluster, state_dir) as cl:
        v = _View(cl)
        dead_but_listed = False
        if node:
            info = _known_node(v, node)
            if info.state == "up":
                if heartbeat.probe(info.address):
                    raise ConfigError(
                        f"node {node} is up and serves its fragments: to move them off it, "
                        f"use 'ecmem drain {node}'"
                    )
                dead_but_listed = True
        if region:
            cl.stat(region)  # a clear error for an unknown region
        _need_coordinator(v)
        listed_for = (info.session_timeout or 30.0) + 10.0 if dead_but_listed else 0.0
        v.records.request(node or "*", region, listed_for)
        if dead_but_listed:
            _until_deregistered(v, info, wait, as_json, timeout)
        slots = v.remaining(node, region, forced=True)
        before = len(slots)
        watched = Watched(before, v.amount(slots)[0])
        if wait:
            watched = _watch(
                v,
                "rebuild",
                lambda: v.remaining(node, region, forced=True),
                as_json,
                timeout,
            )
        left = watched.left
        progress = v.records.progress()
    secs = time.monotonic() - started
    data = {
        "requested": {"node": node, "region": region},
        "slots_at_start": before,
        "slots_left": left if wait else before,
        "waited": wait,
        "seconds": secs,
        "watched": watched.to_dict(),
        "progress": progress,
    }
    if wait and left:
        text = f"rebuild not finished after {secs:.0f}s: {left} fragment slots left"
    elif wait:
        text = (
            f"rebuild done: {before} fragment slots ({format_size(watched.bytes_total)} in "
            f"{watched.slabs_total} slabs) rebuilt or found healthy in {secs:.1f}s"
            if before
            else "nothing to rebuild: every fragment has a healthy holder"
        )
    else:
        text = (
            f"rebuild requested: {before} fragment slots to rebuild; watch it with "
            "'ecmem status' or rerun with --wait"
        )
    emit(as_json, data, text)
    sys.exit(EXIT_ERR if wait and left else EXIT_OK)


@click.command()
@click.argument("node")
@click.option("--wait", is_flag=True, help="return when the node holds nothing")
@click.option("--dry-run", is_flag=True, help="only say what would move")
@click.option("--cancel", is_flag=True, help="stop draining the node (what moved stays moved)")
@click.option("--timeout", type=float, default=0.0, help="with --wait: give up after S seconds")
@cluster_options
@json_option
@handle_errors
def drain(
    node: str,
    wait: bool,
    dry_run: bool,
    cancel: bool,
    timeout: float,
    zk: str | None,
    cluster: str | None,
    state_dir: str,
    as_json: bool,
) -> None:
    """Move every fragment off NODE, keeping full redundancy throughout."""
    from ecmem.layout import Layout

    started = time.monotonic()
    with connect_cli(zk, cluster, state_dir) as cl:
        v = _View(cl)
        known = v.md.all_nodes()
        _known_node(v, node, known)
        if cancel:
            stopped = v.records.stop_drain(node)
            emit(
                as_json,
                {"node": node, "cancelled": stopped},
                f"node {node} is no longer drained" if stopped else f"node {node} was not draining",
            )
            return
        held = v.held_by(node)
        metas = {m.name: m for m in v.md.regions()}
        moving = 0
        for name, _, _ in held:
            m = metas[name]
            moving += Layout.of(m.policy, m.chunk, m.slab_stripes).slab_fragment_bytes
        live = [n for n in known.values() if n.state == "up" and n.id != node]
        widest = max((Layout.of(m.policy, 4096, 1).policy.width for m in metas.values()), default=0)
        touched = sorted({r for r, _, _ in held})
        plan = {
            "node": node,
            "slots": len(held),
            "regions": touched,
            "bytes_at_most": moving,
            "other_live_nodes": len(live),
        }
        if widest > len(live):
            raise NodeUnavailable(
                f"cannot drain {node}: a region needs {widest} distinct nodes and only "
                f"{len(live)} others are up; add nodes first"
            )
        if dry_run:
            emit(
                as_json,
                {**plan, "dry_run": True},
                f"would move {len(held)} fragment slots of {len(touched)} regions "
                f"(at most {format_size(moving)}) off {node} onto {len(live)} other nodes",
            )
            return
        _need_coordinator(v)
        fresh = v.records.start_drain(node)
        left = len(held)
        watched = Watched(left)
        if wait:
            watched = _watch(v, f"drain {node}", lambda: v.held_by(node), as_json, timeout)
            left = watched.left
    secs = time.monotonic() - started
    if wait and not left:
        text = f"node {node} drained in {secs:.1f}s; remove it with 'ecmem node rm {node}'"
    elif wait:
        text = f"drain of {node} not finished after {secs:.0f}s: {left} fragment slots left"
    else:
        text = (
            f"draining {node}{'' if fresh else ' (already asked)'}: {left} fragment slots to "
            "move; watch with 'ecmem status' or rerun with --wait"
        )
    emit(as_json, {**plan, "slots_left": left, "seconds": secs, "watched": watched.to_dict()}, text)
    sys.exit(EXIT_ERR if wait and left else EXIT_OK)


@click.command()
@click.argument("regions", nargs=-1)
@click.option("--repair", is_flag=True, help="rebuild damaged fragments from the good ones")
@cluster_options
@json_option
@handle_errors
def scrub(
    regions: tuple[str, ...],
    repair: bool,
    zk: str | None,
    cluster: str | None,
    state_dir: str,
    as_json: bool,
) -> None:
    """Read every fragment of REGIONS (default: all), check sums and parity; --repair fixes."""
    from ecmem import extents
    from ecmem.layout import Layout
    from ecmem.meta.records import Records
    from ecmem.scrub import Scrubber

    from .output import Progress, show_progress, table

    with connect_cli(zk, cluster, state_dir) as cl:
        md = cl.async_client.meta
        names = list(regions) or md.region_names()
        total = 0
        for name in names:
            cl.stat(name)  # a clear error for an unknown region
            meta = md.get_region(name)[0]
            layout = Layout.of(meta.policy, meta.chunk, meta.slab_stripes)
            # Written stripes, not the size: a sparse region's size is address space.
            total += extents.count(meta.written) * layout.policy.width * layout.fragment_size
        with Progress(show_progress(as_json), total, "scrub") as bar:
            scrubber = Scrubber(cl.async_client, on_bytes=bar.update)
            report = cl.run(scrubber.run_once(names, repair))
        if not regions:
            Records(md.zk, md.paths).set_scrub(report.summary(time.time()))
    data = report.to_dict()

    def text() -> None:
        click.echo(
            f"scrubbed {report.regions} regions, {report.stripes} stripes, "
            f"{format_size(report.bytes)} in {report.seconds:.1f}s: "
            f"{len(report.findings)} damaged fragments"
            + (f", {len(report.findings) - len(report.unrepaired)} repaired" if repair else "")
        )
        if report.findings:
            rows = [
                (
                    f.region,
                    f.slab,
                    f.stripe,
                    f.index,
                    f.node,
                    "yes" if f.repaired else "no",
                    f.problem,
                )
                for f in report.findings
            ]
            click.echo(
                table(rows, ["REGION", "SLAB", "STRIPE", "FRAG", "NODE", "FIXED", "PROBLEM"])
            )
        for name, why in report.skipped.items():
            click.echo(f"region {name}: {why}")
        if report.unrepaired and not repair:
            click.echo("repair with: ecmem scrub --repair " + " ".join(regions))

    emit(as_json, data, text)
    sys.exit(EXIT_ERR if report.unrepaired else EXIT_WARN if report.findings else EXIT_OK)


@click.group()
def node() -> None:
    """Storage node records."""


@node.command("rm")
@click.argument("node_id")
@cluster_options
@json_option
@handle_errors
def node_rm(
    node_id: str, zk: str | None, cluster: str | None, state_dir: str, as_json: bool
) -> None:
    """Forget NODE_ID; it must hold no fragments (drain it first) and be stopped."""
    with connect_cli(zk, cluster, state_dir) as cl:
        v = _View(cl)
        info = _known_node(v, node_id)
        held = v.held_by(node_id)
        if held:
            raise ConfigError(
                f"node {node_id} still holds {len(held)} fragment slots: run "
                f"'ecmem drain {node_id} --wait' (or wait for the rebuild) first"
            )
        if info.state == "up":
            raise ConfigError(
                f"node {node_id} is still running: stop its process (after 'ecmem drain "
                f"{node_id} --wait' if it holds data), then rerun"
            )
        v.md.forget_node(node_id)
    emit(as_json, {"removed": node_id}, f"node {node_id} forgotten")
