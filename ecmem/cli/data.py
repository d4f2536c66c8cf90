"""ecmem put and get: files (or pipes) into regions and back."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO

import click

from ecmem.errors import ConfigError, RegionExists
from ecmem.units import format_size

from .output import (
    Progress,
    cluster_options,
    connect_cli,
    emit,
    handle_errors,
    json_option,
    show_progress,
    warn_if_no_redundancy,
)

COPY_BLOCK = 16 * 1024 * 1024


# -- data -----------------------------------------------------------------------


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.argument("name")
@click.option("--policy", default="ec:4+2", show_default=True, help="ec:K+M[:BACKEND] or rep:N")
@click.option("--force", is_flag=True, help="replace the region if it exists")
@cluster_options
@json_option
@handle_errors
def put(
    file: str,
    name: str,
    policy: str,
    force: bool,
    zk: str | None,
    cluster: str | None,
    state_dir: str,
    as_json: bool,
) -> None:
    """Copy FILE (or - for stdin) into region NAME."""
    src: BinaryIO
    warn_if_no_redundancy(policy)
    if file == "-":
        src, total = sys.stdin.buffer, 0
    else:
        path = Path(file)
        if not path.exists():
            raise ConfigError(f"{file}: no such file")
        if path.is_dir():
            raise ConfigError(f"{file} is a directory: give a file (or - for stdin)")
        # Pipes, FIFOs, /dev/null and <(...) are read to their end like stdin.
        src = open(path, "rb")
        total = path.stat().st_size if path.is_file() else 0
    started = time.monotonic()
    copied = 0
    with src, connect_cli(zk, cluster, state_dir) as cl:
        if cl.exists(name) and not force:
            raise RegionExists(f"region {name!r} exists already: pass --force to replace it")
        # Not cleaned up if the open fails: a region opened by another writer is theirs.
        dst = cl.open(name, "wb", policy=policy)
        try:
            with (
                dst,
                Progress(show_progress(as_json) and total > 0, total, f"put {name}") as bar,
            ):
                while True:
                    block = src.read(COPY_BLOCK)
                    if not block:
                        break
                    dst.write(block)
                    copied += len(block)
                    bar.update(len(block))
        except BaseException:
            # The region now holds part of FILE (a replaced one lost its old contents when
            # opened with "wb"), and its staged writes take room on the nodes: remove it.
            _remove_partial(cl, name, file)
            raise
        st = cl.stat(name)
    secs = max(time.monotonic() - started, 1e-9)
    emit(
        as_json,
        {"region": name, "bytes": copied, "seconds": secs, "policy": st.policy},
        f"stored {format_size(copied)} in region {name} ({st.policy}) in {secs:.2f}s, "
        f"{copied / secs / 1e6:.0f} MB/s",
    )


def _remove_partial(cl: Any, name: str, file: str) -> None:
    from ecmem.errors import EcmemError, RegionNotFound

    try:
        cl.delete_region(name)
    except RegionNotFound:
        pass
    except EcmemError as exc:
        click.echo(
            f"put failed, and region {name}, which holds only part of {file}, could not be "
            f"removed ({exc}): remove it with 'ecmem region rm {name}'",
            err=True,
        )
    else:
        click.echo(f"put failed: removed region {name}, which held only part of {file}", err=True)


@click.command()
@click.argument("name")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, writable=True))
@cluster_options
@json_option
@handle_errors
def get(
    name: str, file: str, zk: str | None, cluster: str | None, state_dir: str, as_json: bool
) -> None:
    """Copy region NAME into FILE (or - for stdout)."""
    if file == "-" and as_json:
        raise ConfigError("--json and output to stdout (-) do not mix: give a file name")
    if file != "-":
        parent = os.path.dirname(os.path.abspath(file))
        if not os.path.isdir(parent):
            raise ConfigError(
                f"directory {parent} does not exist: create it (mkdir -p {parent}) or give "
                "FILE in an existing directory"
            )
    started = time.monotonic()
    copied = 0
    with connect_cli(zk, cluster, state_dir) as cl:
        src = cl.open(name, "rb")
        total = src.size
        dst: BinaryIO = sys.stdout.buffer if file == "-" else _open_part(file)
        try:
            buf = bytearray(COPY_BLOCK)
            view = memoryview(buf)
            with Progress(show_progress(as_json) and file != "-", total, f"get {name}") as bar:
                while True:
                    n = src.readinto(buf)
                    if not n:
                        break
                    _write_all(dst, view[:n])
                    copied += n
                    bar.update(n)
        except BaseException:
            if file != "-":
                dst.close()
                os.unlink(file + ".part")
            raise
        src.close()
        if file != "-":
            dst.close()
            os.replace(file + ".part", file)
        else:
            dst.flush()
    secs = max(time.monotonic() - started, 1e-9)
    if file != "-":
        emit(
            as_json,
            {"region": name, "bytes": copied, "seconds": secs, "file": file},
            f"read {format_size(copied)} from region {name} into {file} in {secs:.2f}s, "
            f"{copied / secs / 1e6:.0f} MB/s",
        )


def _write_all(dst: BinaryIO, data: memoryview) -> None:
    """Write all of ``data``: a buffered write to a pipe or a full disk can store only
    part and return the count (the next write then raises the error)."""
    while data:
        n = dst.write(data)
        data = data[n or 0 :]


def _open_part(file: str) -> BinaryIO:
    """FILE.part, which becomes FILE once the whole region is in it."""
    try:
        return open(file + ".part", "wb")
    except OSError as exc:
        raise ConfigError(
            f"cannot write {file}: {exc.strerror or exc} (writing it as {file}.part first)"
        ) from None
