"""Log set-up shared by the daemons: one line per event, with who said it.

``--log-format json`` writes one JSON object per line instead, for log
pipelines; events about data carry ``region``, ``slab``, ``fragment`` and
``node`` fields (passed as ``extra=where(...)``) so they can be filtered on.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from pythonjsonlogger.json import JsonFormatter

FORMATS = ("text", "json")


def where(
    region: str | None = None,
    slab: int | None = None,
    fragment: int | None = None,
    node: str | None = None,
) -> dict[str, Any]:
    """The ``extra`` of a log call about a place in the data."""
    out = {"region": region, "slab": slab, "fragment": fragment, "node": node}
    return {k: v for k, v in out.items() if v is not None}


def add_log_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log-level", default=os.environ.get("ECMEM_LOG_LEVEL", "INFO"))
    p.add_argument(
        "--log-format",
        choices=FORMATS,
        default=os.environ.get("ECMEM_LOG_FORMAT", "text"),
        help="text lines, or one JSON object per line (also ECMEM_LOG_FORMAT)",
    )


class Throttle(logging.Filter):
    """Lets one copy of a repeated line through per ``every`` seconds: a daemon that
    retries a failing step each second says so once a minute, with how many times."""

    def __init__(self, every: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.every = every
        self.clock = clock
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}  # line -> (shown at, held)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.getMessage())
        now = self.clock()
        shown, held = self._seen.get(key, (-self.every, 0))
        if now - shown < self.every:
            self._seen[key] = (shown, held + 1)
            return False
        if len(self._seen) > 10_000:  # many distinct lines: forget the old ones
            self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.every}
        self._seen[key] = (now, 0)
        if held:
            record.msg = (
                f"{record.getMessage()} (and {held} times more in the last {now - shown:.0f}s)"
            )
            record.args = None
        return True


def setup_logging(level: str, who: str, fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(Throttle())
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"levelname": "level", "asctime": "time", "name": "logger"},
                static_fields={"who": who},
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)s [{who}] %(name)s: %(message)s")
        )
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])
    logging.getLogger("kazoo").setLevel(logging.WARNING)


class Tally:
    """A condition that repeats (every stripe of a region written degraded) logged once
    per place and window, then counted: the next line for that place, or ``flush``,
    says how many were held and where (``at``: the slabs, say). ``place`` names where
    ("region r"), ``what`` the condition as counted ("stripes written degraded")."""

    def __init__(
        self,
        logger: logging.Logger,
        every: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.every = every
        self.clock = clock
        self._seen: dict[tuple[str, str], _Held] = {}
        self._lock = threading.Lock()  # shared by the clients of a process, each a thread

    def warn(self, place: str, what: str, at: int, msg: str, *args: Any, **kw: Any) -> None:
        key = (place, what)
        with self._lock:
            now = self.clock()
            held = self._seen.get(key)
            if held is not None and now - held.shown < self.every:
                held.count += 1
                held.at.add(at)
                return
            if len(self._seen) > 10_000:
                self._seen.clear()
            if held is not None and held.count:
                msg += f" ({held.say(what, now)} before this)"
            self._seen[key] = _Held(now)
        self.logger.warning(msg, *args, **kw)

    def flush(self, place: str | None = None) -> None:
        """Say what is held (for ``place``, or everywhere), and forget it."""
        with self._lock:
            now = self.clock()
            keys = sorted(k for k in self._seen if place is None or k[0] == place)
            gone = [(key, self._seen.pop(key)) for key in keys]
        for (where_, what), held in gone:
            if held.count:
                self.logger.warning("%s: %s", where_, held.say(what, now))


class _Held:
    def __init__(self, shown: float) -> None:
        self.shown = shown
        self.count = 0
        self.at: set[int] = set()

    def say(self, what: str, now: float) -> str:
        where = sorted(self.at)
        listed = ", ".join(map(str, where[:8])) + (", ..." if len(where) > 8 else "")
        return f"{self.count} more {what} in the last {now - self.shown:.0f}s (at {listed})"
