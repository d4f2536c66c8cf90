"""Output conventions shared by every command.

Exit codes: 0 ok, 1 warning, 2 error. ``--json`` prints one JSON document on
stdout and nothing else there; errors then go to stdout as
``{"error": {"code", "message"}}`` too. Progress bars appear only on a
terminal and never with ``--json``.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from ecmem.errors import EcmemError
from ecmem.units import format_size

EXIT_OK, EXIT_WARN, EXIT_ERR = 0, 1, 2
F = TypeVar("F", bound=Callable[..., Any])


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="print JSON instead of text")(f)


def cluster_options(f: F) -> F:
    f = click.option(
        "--cluster",
        envvar="ECMEM_CLUSTER",
        default=None,
        help="cluster name under /ecmem (default: 'default' or the local one's)",
    )(f)
    f = click.option(
        "--zk",
        envvar="ECMEM_ZK",
        default=None,
        help="ZooKeeper hosts (default: ECMEM_ZK, else the local cluster)",
    )(f)
    f = click.option(
        "--state-dir",
        envvar="ECMEM_STATE_DIR",
        default=".ecmem",
        show_default=True,
        help="local cluster state directory",
    )(f)
    return f


def connect_cli(zk: str | None, cluster: str | None, state_dir: str) -> Any:
    """Connect as the command's options say; a ZooKeeper nobody listens at fails at once,
    naming where its address came from ($ECMEM_ZK, --zk or the local cluster)."""
    import ecmem
    from ecmem.errors import CoordinationError
    from ecmem.target import refused, resolve, unreachable

    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.get_parameter_source("zk") == ParameterSource.ENVIRONMENT:
        zk = None  # resolve() takes it from $ECMEM_ZK itself and says so in messages
    target = resolve(zk, cluster, state_dir)
    if refused(target.zk):
        raise CoordinationError(unreachable(target, state_dir, "connection refused"))
    return ecmem.connect(zk, cluster=cluster, state_dir=state_dir)


def emit(as_json: bool, data: Any, text: str | Callable[[], None] = "") -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
    elif callable(text):
        text()
    elif text:
        click.echo(text)


def handle_errors(f: F) -> F:
    """Turn EcmemError into a clear message and exit code 2."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = bool(kwargs.get("as_json"))
        try:
            return f(*args, **kwargs)
        except EcmemError as exc:
            if as_json:
                click.echo(
                    json.dumps(
                        {
                            "error": {
                                "code": exc.code,
                                "message": str(exc),
                                "retriable": exc.retriable,
                            }
                        }
                    )
                )
            else:
                click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(EXIT_ERR)
        except (OSError, ValueError) as exc:
            if isinstance(exc, BrokenPipeError) and stdout_broken():
                quit_on_broken_pipe()
            if as_json:
                click.echo(
                    json.dumps(
                        {
                            "error": {
                                "code": type(exc).__name__,
                                "message": str(exc),
                                "retriable": False,
                            }
                        }
                    )
                )
            else:
                click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(EXIT_ERR)

    return wrapper  # type: ignore[return-value]


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def show_progress(as_json: bool) -> bool:
    return not as_json and sys.stderr.isatty()


class Progress:
    """A byte-count progress bar with the rate on stderr, or nothing off a terminal."""

    def __init__(self, enabled: bool, total: int, label: str) -> None:
        self._done = 0
        self._start = time.monotonic()
        self._bar = (
            click.progressbar(
                length=total,
                label=label,
                file=sys.stderr,
                show_eta=True,
                show_percent=True,
                item_show_func=self._rate,
            )
            if enabled
            else None
        )

    def _rate(self, _: object) -> str:
        secs = max(time.monotonic() - self._start, 1e-6)
        return f"{format_size(self._done)} {self._done / secs / 1e6:.0f} MB/s"

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.__enter__()
        return self

    def update(self, n: int) -> None:
        self._done += n
        if self._bar is not None:
            self._bar.update(n, self._done)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


def chunks(total: int, size: int) -> Iterable[tuple[int, int]]:
    pos = 0
    while pos < total:
        n = min(size, total - pos)
        yield pos, n
        pos += n


def warn_if_no_redundancy(policy: str) -> None:
    """A policy that survives no lost node is allowed, but said to be so (on stderr)."""
    from ecmem.policy import parse_policy

    p = parse_policy(policy)
    if p.tolerates == 0:
        click.secho(
            f"warning: policy {p.name} has no redundancy: losing one node loses data; "
            "use rep:2 or more, or ec:K+M with M >= 1, to survive node loss",
            fg="yellow",
            err=True,
        )


def stdout_broken() -> bool:
    """True if stdout is a pipe whose reader has gone (``ecmem ... | head``)."""
    import select

    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLERR)
        return any(ev & select.POLLERR for _, ev in poller.poll(0))
    except (OSError, ValueError):
        return False


def quit_on_broken_pipe() -> None:
    """End as Unix tools do when the reader of their output goes away: quietly, by
    SIGPIPE (Python ignores SIGPIPE, so it would report a BrokenPipeError instead)."""
    import os
    import signal

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # nothing more to flush at exit
    except (OSError, ValueError):
        pass
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGPIPE)
    sys.exit(128 + signal.SIGPIPE)
