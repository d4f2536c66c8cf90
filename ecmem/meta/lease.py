"""Region write leases: an ephemeral znode per region, held by one client session.

The lease goes away by itself when its holder's ZooKeeper session does (crash,
pause past the session timeout, partition), which is what lets a new writer in;
the epoch bump and node fencing that follow keep the old one out.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError, NoNodeError

from ..errors import RegionBusy
from .catalog import through_failover
from .paths import Paths

log = logging.getLogger(__name__)

REBUILD_WAIT = 60.0  # seconds a writer waits, unasked, for a rebuilder's lease


def describe(info: dict[str, Any]) -> str:
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info.get("since", 0))))
    return f"{info.get('holder', '?')} (pid {info.get('pid', '?')}, since {since})"


def acquire(
    zk: KazooClient, paths: Paths, name: str, holder: dict[str, Any], timeout: float | None
) -> None:
    """Take the write lease of region ``name``, waiting up to ``timeout`` seconds for it
    (None: do not wait). Taking a lease this session already holds is a no-op."""
    path = paths.lease(name)
    data = json.dumps({**holder, "since": time.time()}).encode()
    deadline = None if timeout is None else time.monotonic() + timeout
    # Each call rides out a ZooKeeper server's failover; a create whose answer was lost
    # finds its own lease on the retry (same session), which counts as taken.
    retry = through_failover()
    while True:
        try:
            retry(zk.create, path, data, ephemeral=True, makepath=True)
            return
        except NodeExistsError:
            pass
        try:
            raw, stat = retry(zk.get, path)
        except NoNodeError:
            continue
        if stat.ephemeralOwner == zk.client_id[0]:
            return
        if not stat.ephemeralOwner:
            # No session holds it: not a lease (one dies with its holder), so nothing
            # keeps a writer out. Removed, as any lease is once its holder is gone.
            log.warning(
                "region %s: its lease znode is not ephemeral, so no writer holds it; "
                "removing it (who made it? check ZooKeeper's access rules)",
                name,
            )
            with contextlib.suppress(NoNodeError):
                retry(zk.delete, path, version=stat.version)
            continue
        try:
            info = json.loads(raw)
        except ValueError:
            info = {}
        if deadline is None and info.get("rebuild"):
            # A rebuilder holds a lease for a few seconds at a time: wait for it.
            deadline = time.monotonic() + REBUILD_WAIT
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is None or remaining <= 0:
            waited = "" if timeout is None else f" (waited {timeout:.0f}s)"
            raise RegionBusy(
                f"region {name!r} is open for writing by {describe(info)}{waited}: close it "
                "there, or open with timeout= to wait; a holder that dies loses the lease "
                "when its ZooKeeper session expires",
                holder=str(info.get("holder", "")),
            )
        gone = threading.Event()
        if retry(zk.exists, path, watch=lambda _event, gone=gone: gone.set()) is None:
            continue
        gone.wait(min(remaining, 1.0))


def release(zk: KazooClient, paths: Paths, name: str) -> None:
    path = paths.lease(name)
    retry = through_failover()
    try:
        _, stat = retry(zk.get, path)
        if stat.ephemeralOwner == zk.client_id[0]:
            retry(zk.delete, path, version=stat.version)
    except NoNodeError:
        pass
