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


def setup_logging(level: str, who: str, fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
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
