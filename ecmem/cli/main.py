"""ecmem: operate a cluster and move data in and out of regions."""

from __future__ import annotations

import os
import sys
import time

import click

from ecmem.units import format_size, parse_size

from .output import (
    EXIT_ERR,
    EXIT_OK,
    EXIT_WARN,
    cluster_options,
    connect_cli,
    emit,
    handle_errors,
    json_option,
    quit_on_broken_pipe,
    stdout_broken,
    table,
)

COPY_BLOCK = 16 * 1024 * 1024


def _local_pids(state_dir: str) -> dict[str, int]:
    from ecmem.localcluster import LocalCluster

    try:
        return LocalCluster(state_dir).pids()
    except (OSError, ValueError):
        return {}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ecmem")
def cli() -> None:
    """ecmem: regions of memory kept in the RAM of other machines, erasure-coded or
    replicated so they survive the loss of those machines."""


# -- local cluster --------------------------------------------------------------


@cli.command()
@click.option(
    "--nodes",
    type=int,
    default=None,
    help="storage nodes to run [new cluster: 6; running one: more adds nodes]",
)
@click.option("--state-dir", default=".ecmem", show_default=True, envvar="ECMEM_STATE_DIR")
@click.option("--capacity", default=None, help="RAM per node [new cluster: 4GiB]")
@click.option("--cluster", default=None, help="cluster name [new cluster: default]")
@click.option("--zk", default=None, help="use this ZooKeeper instead of starting one")
@click.option(
    "--persist/--no-persist",
    default=None,
    help="mirror node fragments to disk under STATE_DIR/nodes, so that 'ecmem down "
    "--keep-data' then 'ecmem up' keeps the regions [new cluster: --persist]; with "
    "--no-persist fragments live in RAM only and die with the node processes",
)
@click.option("--allow-debug", is_flag=True, help="let nodes accept debug (corrupt) requests")
@click.option(
    "--session-timeout",
    default=4.0,
    show_default=True,
    help="ZooKeeper session timeout of the nodes, seconds",
)
@json_option
@handle_errors
def up(
    nodes: int | None,
    state_dir: str,
    capacity: str | None,
    cluster: str | None,
    zk: str | None,
    persist: bool | None,
    allow_debug: bool,
    session_timeout: float,
    as_json: bool,
) -> None:
    """Start a local cluster (ZooKeeper, coordinator, storage nodes); harmless if running.

    On a cluster that exists already (running, or stopped with --keep-data) it starts
    what is not running; options that would change the existing nodes are not applied
    and are named in a warning (exit code 1)."""
    from ecmem.localcluster import LocalCluster, up_conflicts

    cap = parse_size(capacity) if capacity is not None else None
    lc = LocalCluster(state_dir)
    before = lc.load()
    warnings = up_conflicts(before, nodes=nodes, capacity=cap, persist=persist, cluster=cluster)
    state = lc.up(
        nodes,
        cap,
        cluster=cluster or "default",
        zk=zk,
        # A new cluster persists unless told not to; an existing one keeps its way.
        persist=(persist is not False) if not before.nodes else None,
        allow_debug=allow_debug,
        session_timeout=session_timeout,
    )
    added = [n for n in state.nodes if n not in before.nodes and before.nodes]
    data = {
        "zk": state.zk,
        "cluster": state.cluster,
        "state_dir": str(lc.dir),
        "persist": state.persist,
        "nodes": [{"id": n.id, "pid": n.pid, "address": n.address} for n in state.nodes.values()],
        "added": added,
        "warnings": warnings,
    }

    def text() -> None:
        for w in warnings:
            click.secho(f"warning: {w}", fg="yellow", err=True)
        kept = (
            f"fragments mirrored in {lc.dir / 'nodes'}"
            if state.persist
            else "fragments in RAM only (--no-persist)"
        )
        click.echo(
            f"cluster {state.cluster!r} up: {len(state.nodes)} storage nodes, {kept}, "
            f"logs in {lc.logs}"
        )
        if added:
            click.echo(f"added {', '.join(added)}")
        click.echo(
            table(
                [(n.id, n.pid, n.address) for n in state.nodes.values()], ["NODE", "PID", "ADDRESS"]
            )
        )
        click.echo(f"export ECMEM_ZK={state.zk}")

    emit(as_json, data, text)
    sys.exit(EXIT_WARN if warnings else EXIT_OK)


@cli.command()
@click.option("--state-dir", default=".ecmem", show_default=True, envvar="ECMEM_STATE_DIR")
@click.option(
    "--keep-data",
    is_flag=True,
    help="keep the cluster for a later 'ecmem up': ZooKeeper's metadata (regions, nodes) "
    "and the nodes' fragments mirrored under STATE_DIR/nodes. A cluster started with "
    "'up --no-persist' keeps fragments in RAM only: those are lost (down warns).",
)
@json_option
@handle_errors
def down(state_dir: str, keep_data: bool, as_json: bool) -> None:
    """Stop the local cluster's processes (only those 'ecmem up' started); without
    --keep-data, also delete its state (every region)."""
    from ecmem.localcluster import LocalCluster

    result = LocalCluster(state_dir).down(keep_data=keep_data)
    lost = result["lost_node_data"]
    if lost:
        result["warning"] = (
            f"node memory is not kept: {', '.join(lost)} ran with --no-persist (RAM only), "
            "so the fragments they held are gone and regions stored on them will be reported "
            "lost (DataLostError, REGION_DATA_LOST) after 'ecmem up'; only ZooKeeper's "
            "metadata is kept. Start clusters "
            "with persistence (the default of 'ecmem up') to keep data across a down"
        )

    def text() -> None:
        click.echo(f"stopped: {', '.join(result['stopped']) or 'nothing was running'}")
        if keep_data and not lost:
            click.echo(f"kept: metadata and node fragments in {result['state_dir']}")
        if lost:
            click.secho(f"warning: {result['warning']}", fg="yellow", err=True)

    emit(as_json, result, text)
    sys.exit(EXIT_WARN if lost else EXIT_OK)


# -- health and nodes -----------------------------------------------------------


@cli.command()
@cluster_options
@click.option("--detail", is_flag=True, help="list what each check found")
@json_option
@handle_errors
def status(
    zk: str | None, cluster: str | None, state_dir: str, detail: bool, as_json: bool
) -> None:
    """Cluster health: HEALTH_OK, HEALTH_WARN or HEALTH_ERR, with check codes."""
    _status(zk, cluster, state_dir, detail, as_json)


@cli.group()
def health() -> None:
    """Cluster health, as 'ecmem status' shows it."""


@health.command("detail")
@cluster_options
@json_option
@handle_errors
def health_detail(zk: str | None, cluster: str | None, state_dir: str, as_json: bool) -> None:
    """Health with what each check found: the nodes, regions and fragments concerned."""
    _status(zk, cluster, state_dir, True, as_json)


def _status(
    zk: str | None, cluster: str | None, state_dir: str, detail: bool, as_json: bool
) -> None:
    from ecmem.health import HEALTH_ERR, HEALTH_OK, summarize
    from ecmem.meta.records import Records

    from .regionside import region_side

    with connect_cli(zk, cluster, state_dir) as cl:
        md = cl.async_client.meta
        records = Records(md.zk, md.paths)
        coordinators = records.coordinators()
        scrub = records.scrub()
        nodes = md.all_nodes()
        totals, source = region_side(md, records, nodes, coordinators)
        report = summarize(nodes, totals, records.progress(), records.drains(), scrub, coordinators)
    data = {
        **report.to_dict(),
        "coordinators": coordinators,
        "scrub": scrub,
        "regions_from": source,
    }

    def text() -> None:
        color = {"HEALTH_OK": "green", "HEALTH_WARN": "yellow"}.get(report.status, "red")
        click.secho(report.status, fg=color, bold=True)
        for c in report.checks:
            click.echo(f"  {c.code}: {c.summary}")
            if detail:
                for line in c.detail:
                    click.echo(f"      {line}")
        outs = f" ({len(report.out)} out: {', '.join(report.out)})" if report.out else ""
        click.echo(f"  nodes: {report.nodes_up} up of {report.nodes_total}{outs}")
        if coordinators:
            click.echo(
                "  coordinators: "
                + ", ".join(
                    c["id"]
                    + (" (leader)" if c.get("leader") else "")
                    + (f" metrics {c['metrics']}" if detail and c.get("metrics") else "")
                    for c in coordinators
                )
            )
        rb = report.rebuild
        if rb.get("state") == "running":
            click.echo(
                f"  rebuild: {format_size(rb.get('bytes_done', 0))} of "
                f"{format_size(rb.get('bytes_total', 0))}, {rb.get('slots_done', 0)}/"
                f"{rb.get('slots_total', 0)} fragment slots"
            )
        for node, left in sorted(rb.get("grace", {}).items()):
            click.echo(f"  rebuild: {node} is rebuilt elsewhere in {left:.0f}s unless it returns")
        for what, why in sorted(rb.get("waiting", {}).items()):
            click.echo(f"  rebuild waits: {what}: {why}")
        click.echo(
            f"  regions: {report.regions}, stripes: {report.stripes} "
            f"({report.degraded_stripes} degraded, {report.unavailable_stripes} unavailable, "
            f"{report.lost_stripes} lost)"
            + (f", as the leader counted {source['age']:.0f}s ago" if "age" in source else "")
        )
        click.echo(f"  capacity: {format_size(report.used)} used of {format_size(report.capacity)}")
        if scrub.get("finished"):
            ago = max(0.0, time.time() - float(scrub["finished"]))
            click.echo(
                f"  last full scrub: {_ago(ago)} ago, {scrub.get('regions', 0)} regions, "
                f"{scrub.get('found', 0)} damaged fragments found"
            )

    emit(as_json, data, text)
    sys.exit(
        EXIT_OK
        if report.status == HEALTH_OK
        else EXIT_ERR
        if report.status == HEALTH_ERR
        else EXIT_WARN
    )


def _ago(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


@cli.command()
@cluster_options
@json_option
@handle_errors
def nodes(zk: str | None, cluster: str | None, state_dir: str, as_json: bool) -> None:
    """Storage nodes: up, down (holding fragments: exit code 1), or out (down and holding
    nothing any more, as 'ecmem status' counts them)."""
    from ecmem.health import node_state
    from ecmem.meta.records import Records

    from .regionside import region_side

    with connect_cli(zk, cluster, state_dir) as cl:
        md = cl.async_client.meta
        records = Records(md.zk, md.paths)
        all_nodes = md.all_nodes()
        totals, _ = region_side(md, records, all_nodes, records.coordinators())
        holding = set(totals.holding)
    pids = _local_pids(state_dir) if not zk else {}
    rows = []
    for n in sorted(all_nodes.values(), key=lambda n: n.id):
        pid = pids.get(n.id) if n.state == "up" else None
        rows.append(
            {
                "id": n.id,
                "address": n.address,
                "state": node_state(n, holding),
                "failure_domain": n.failure_domain,
                "capacity": n.capacity,
                "used": n.used if n.state == "up" else None,
                "pid": pid,
                "metrics": f"http://{n.metrics}/metrics" if n.metrics and n.state == "up" else "",
            }
        )

    def text() -> None:
        click.echo(
            table(
                [
                    (
                        r["id"],
                        r["address"],
                        r["state"],
                        r["failure_domain"],
                        format_size(r["capacity"]),
                        format_size(r["used"]) if r["used"] is not None else "-",
                        r["pid"] or "-",
                    )
                    for r in rows
                ],
                ["ID", "ADDRESS", "STATE", "DOMAIN", "CAPACITY", "USED", "PID"],
            )
        )

    emit(as_json, {"nodes": rows}, text)
    sys.exit(EXIT_WARN if any(r["state"] == "down" for r in rows) else EXIT_OK)


def _add_ops() -> None:
    from . import data, mount, ops, regions

    for command in (
        regions.region,
        data.put,
        data.get,
        ops.rebuild,
        ops.drain,
        ops.scrub,
        ops.node,
        mount.mount,
        mount.umount,
    ):
        cli.add_command(command)


_add_ops()


def main() -> None:
    import logging

    # A command prints its own output on stdout and its errors on stderr; the library's
    # log lines go to stderr, WARNING and up (ECMEM_LOG_LEVEL=INFO shows more).
    level = os.environ.get("ECMEM_LOG_LEVEL", "WARNING").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.WARNING),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # ZooKeeper connection hiccups are retried by kazoo, and a node slow to answer its
    # heartbeats is read around: neither is news to a CLI user (errors still show).
    logging.getLogger("kazoo").setLevel(logging.CRITICAL)
    if "ECMEM_LOG_LEVEL" not in os.environ:
        for chatty in ("ecmem.conn", "ecmem.heartbeat"):
            logging.getLogger(chatty).setLevel(logging.ERROR)
    try:
        cli(prog_name="ecmem")
    except BrokenPipeError:
        if not stdout_broken():
            raise
        quit_on_broken_pipe()


if __name__ == "__main__":
    main()
