"""ecmem region create | ls | info | rm | mark-lost-ok."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from ecmem import extents
from ecmem.errors import ConfigError
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
    table,
    warn_if_no_redundancy,
)

COPY_BLOCK = 16 * 1024 * 1024


# -- regions --------------------------------------------------------------------


@click.group()
def region() -> None:
    """Create, list, inspect and remove regions."""


@region.command("create")
@click.argument("name")
@click.option("--size", default="0", show_default=True, help="initial size, e.g. 1GiB")
@click.option("--policy", default="ec:4+2", show_default=True, help="ec:K+M[:BACKEND] or rep:N")
@click.option("--mode", default="644", show_default=True, help="permission bits, octal")
@cluster_options
@json_option
@handle_errors
def region_create(
    name: str,
    size: str,
    policy: str,
    mode: str,
    zk: str | None,
    cluster: str | None,
    state_dir: str,
    as_json: bool,
) -> None:
    """Create region NAME."""
    try:
        mode_bits = int(mode, 8)
    except ValueError:
        raise ConfigError(f"--mode {mode!r} is not an octal permission such as 644") from None
    nbytes = parse_size(size)
    warn_if_no_redundancy(policy)
    with connect_cli(zk, cluster, state_dir) as cl:
        st = cl.create_region(name, nbytes, policy, mode=mode_bits)
    emit(
        as_json,
        st.to_dict(),
        f"created region {st.name}: {format_size(st.size)}, policy {st.policy}",
    )


@region.command("ls")
@click.argument("prefix", default="")
@cluster_options
@json_option
@handle_errors
def region_ls(
    prefix: str, zk: str | None, cluster: str | None, state_dir: str, as_json: bool
) -> None:
    """List regions whose names start with PREFIX."""
    with connect_cli(zk, cluster, state_dir) as cl:
        stats = cl.list_regions(prefix)
        damaged = [n for n in cl.async_client.meta.damaged if n.startswith(prefix)]
    if damaged:
        click.echo(
            f"warning: {len(damaged)} region records cannot be read and are not listed "
            f"({', '.join(sorted(damaged)[:3])}{', ...' if len(damaged) > 3 else ''}); "
            "'ecmem health detail' says why",
            err=True,
        )

    def text() -> None:
        click.echo(
            table(
                [
                    (
                        s.name,
                        s.policy,
                        format_size(s.size),
                        f"{s.mode:o}",
                        s.owner,
                        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s.mtime)),
                    )
                    for s in stats
                ],
                ["NAME", "POLICY", "SIZE", "MODE", "OWNER", "MODIFIED"],
            )
        )

    emit(as_json, {"regions": [s.to_dict() for s in stats]} if as_json else {}, text)


@region.command("info")
@click.argument("name")
@cluster_options
@json_option
@handle_errors
def region_info(
    name: str, zk: str | None, cluster: str | None, state_dir: str, as_json: bool
) -> None:
    """Policy, size, placements and health of region NAME."""
    from ecmem.health import region_health
    from ecmem.stat import RegionStat

    with connect_cli(zk, cluster, state_dir) as cl:
        ac = cl.async_client
        meta = cl.run(ac.region_meta(name))
        nodes = ac.meta.all_nodes()
    live = {k: v for k, v in nodes.items() if v.state == "up"}
    health = region_health(meta, live)
    placements: list[dict[str, Any]] = []
    for slab, placement in sorted(meta.slabs.items()):
        frags = []
        for idx, (node_id, inc) in enumerate(placement):
            node = nodes.get(node_id)
            ok = node is not None and node.state == "up" and node.incarnation == inc
            if not node_id:
                state = "vacant"
            elif ok:
                state = "partial" if (slab, idx) in meta.partial else "ok"
            elif node is not None and node.state == "up":
                state = "restarted-empty"
            else:
                state = "down"
            frags.append({"index": idx, "node": node_id, "state": state})
        placements.append({"slab": slab, "fragments": frags})
    data = {
        **RegionStat.of(meta).to_dict(),
        "epoch": meta.epoch,
        "health": health.state,
        "stripes": health.stripes,
        "degraded_stripes": health.degraded_stripes,
        "unavailable_stripes": health.unavailable_stripes,
        "lost_stripes": extents.count(meta.lost),
        "lost": [list(r) for r in meta.lost],
        "written": [list(r) for r in meta.written],
        "placements": placements,
    }

    def text() -> None:
        click.echo(f"region {meta.name}  (id {meta.id})")
        click.echo(f"  policy  {meta.policy}   size {format_size(meta.size)} ({meta.size} bytes)")
        click.echo(
            f"  stripe  {format_size(data['stripe_size'])}   slab "
            f"{format_size(data['slab_size'])}   epoch {meta.epoch}"
        )
        click.echo(
            f"  owner   {meta.owner}   mode {meta.mode:o}   modified "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(meta.mtime))}"
        )
        click.echo(
            f"  health  {health.state}: {health.stripes} stripes, "
            f"{health.degraded_stripes} degraded, {health.unavailable_stripes} unavailable, "
            f"{data['lost_stripes']} lost"
        )
        if meta.lost:
            click.echo(
                f"  LOST    stripes {extents.describe(meta.lost, 16)}: written, and too few "
                "fragments are left on any node. Restore the region from a copy, or accept "
                f"the loss with 'ecmem region mark-lost-ok {meta.name}' (they then read as "
                "zeros)"
            )
        for p in placements:
            frags = " ".join(
                (f["node"] or "-") + ("" if f["state"] == "ok" else f"({f['state']})")
                for f in p["fragments"]
            )
            click.echo(f"  slab {p['slab']:>4}: {frags}")

    emit(as_json, data, text)
    sys.exit({"ok": EXIT_OK, "degraded": EXIT_WARN}.get(health.state, EXIT_ERR))


@region.command("rm")
@click.argument("name")
@cluster_options
@json_option
@handle_errors
def region_rm(
    name: str, zk: str | None, cluster: str | None, state_dir: str, as_json: bool
) -> None:
    """Remove region NAME and free its memory."""
    with connect_cli(zk, cluster, state_dir) as cl:
        cl.delete_region(name)
    emit(as_json, {"removed": name}, f"removed region {name}")


@region.command("mark-lost-ok")
@click.argument("name")
@cluster_options
@json_option
@handle_errors
def region_mark_lost_ok(
    name: str, zk: str | None, cluster: str | None, state_dir: str, as_json: bool
) -> None:
    """Accept that the lost stripes of region NAME are gone: they read as zeros from now
    on and REGION_DATA_LOST clears. Only when the data is restored from elsewhere or not
    needed; nothing brings it back afterwards."""
    with connect_cli(zk, cluster, state_dir) as cl:
        accepted = cl.run(cl.async_client.accept_loss(name))
    emit(
        as_json,
        {"region": name, "accepted": [list(r) for r in accepted]},
        f"region {name}: accepted the loss of stripes {extents.describe(accepted)}; they "
        "read as zeros"
        if accepted
        else f"region {name} has no lost stripes",
    )
