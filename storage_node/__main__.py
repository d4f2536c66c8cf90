"""python -m storage_node --zk HOSTS --listen 127.0.0.1:0 --id ID --capacity 4GiB"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import resource
import signal
import socket
import sys
import time
import uuid

from ecmem import heartbeat
from ecmem.errors import EcmemError
from ecmem.logs import add_log_options, setup_logging
from ecmem.memtune import tune_malloc
from ecmem.meta.catalog import connect_zk
from ecmem.meta.model import NodeInfo
from ecmem.units import parse_size

from . import server as server_mod
from .metrics import NodeMetrics
from .persist import DataDir
from .registration import NodeIdInUse, Registration
from .server import NodeServer
from .store import FragmentStore

log = logging.getLogger("storage_node")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m storage_node", description=__doc__)
    p.add_argument("--zk", default=os.environ.get("ECMEM_ZK"), help="ZooKeeper hosts")
    p.add_argument("--cluster", default=os.environ.get("ECMEM_CLUSTER", "default"))
    p.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT to serve on (0: any port)")
    p.add_argument(
        "--advertise",
        default=None,
        help="host clients should connect to (default: the --listen host, or this "
        "host's address when listening on all interfaces)",
    )
    p.add_argument("--id", required=True, help="node id, stable across restarts")
    p.add_argument("--capacity", default="4GiB", help="RAM to offer, e.g. 4GiB")
    p.add_argument("--failure-domain", default=None, help="host, rack... (default: hostname)")
    p.add_argument("--data-dir", default=None, help="mirror fragments here to survive restarts")
    p.add_argument("--allow-debug", action="store_true", help="accept debug (corrupt) requests")
    p.add_argument("--session-timeout", type=float, default=6.0, help="ZooKeeper session, s")
    p.add_argument(
        "--metrics-port",
        type=int,
        default=-1,
        help="serve Prometheus metrics over HTTP on this port (0: any free port, -1: off)",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=server_mod.MAX_CONNECTIONS,
        help="connections served at once; more are refused (default %(default)s)",
    )
    p.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="address to serve metrics on (default loopback: give a scraper's interface)",
    )
    p.add_argument("--unsafe-no-fencing", action="store_true", help=argparse.SUPPRESS)
    add_log_options(p)
    args = p.parse_args(argv)
    if not args.zk:
        p.error("--zk is required (or set ECMEM_ZK), e.g. --zk 127.0.0.1:2181")
    host, sep, port = args.listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        p.error(f"--listen {args.listen!r} must be HOST:PORT, e.g. 127.0.0.1:7000 (port 0: any)")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", args.id):
        p.error(f"--id {args.id!r}: use letters, digits, '.', '_' or '-' (up to 64 characters)")
    return args


def advertised_host(advertise: str | None, bound: str) -> str:
    """The host others reach us at: a wildcard bind address is no address at all."""
    if advertise:
        return advertise
    if bound in ("0.0.0.0", "::", ""):
        return socket.gethostbyname(socket.gethostname())
    return bound


def check_capacity(capacity: int) -> None:
    try:
        import psutil

        total = psutil.virtual_memory().total
    except (ImportError, OSError):
        return
    if capacity > total:
        log.warning(
            "--capacity %d bytes is more than this machine's %d bytes of RAM: the node will "
            "be killed for lack of memory before it is full; lower --capacity",
            capacity,
            total,
        )


async def serve(args: argparse.Namespace) -> int:
    host, _, port_s = args.listen.rpartition(":")
    capacity = parse_size(args.capacity)
    check_capacity(capacity)
    store = FragmentStore(capacity)
    if args.unsafe_no_fencing:
        if not args.allow_debug:
            log.error("--unsafe-no-fencing is for the chaos suite's broken build only")
            return 2
        store.fencing = False
        log.warning("FENCING IS OFF: stale writers are accepted (a deliberately broken build)")
    server = NodeServer(store, args.id, allow_debug=args.allow_debug)
    server.max_connections = _file_limit(args.max_connections)
    if args.data_dir:
        os.umask(0o077)  # fragments are other processes' memory: 0600 files, 0700 folders
        data_dir = DataDir(args.data_dir)
        server.incarnation = data_dir.incarnation()
        n = data_dir.attach(store)
        log.info("loaded %d fragments (%d bytes) from %s", n, store.used, args.data_dir)
    else:
        server.incarnation = uuid.uuid4().hex[:16]
    tcp = await server.listen(host or "127.0.0.1", int(port_s or 0))
    metrics_at = ""
    if args.metrics_port >= 0:
        server.metrics = NodeMetrics(store, args.id)
        mhost = args.metrics_host
        try:
            mport = server.metrics.serve(mhost, args.metrics_port)
        except OSError as exc:
            log.error("cannot serve metrics on %s:%d: %s", mhost, args.metrics_port, exc)
            return 2
        metrics_at = f"{mhost}:{mport}"
        log.info("metrics at http://%s/metrics", metrics_at)
    bound = tcp.sockets[0].getsockname()
    try:
        beats = heartbeat.serve(bound[0], bound[1])
    except OSError as exc:
        log.warning(
            "cannot answer heartbeats on UDP %s:%d (%s); clients will notice this node's "
            "failures only by timeouts",
            bound[0],
            bound[1],
            exc,
        )
        beats = None
    address = f"{advertised_host(args.advertise, bound[0])}:{bound[1]}"
    info = NodeInfo(
        id=args.id,
        address=address,
        capacity=capacity,
        used=store.used,
        failure_domain=args.failure_domain or socket.gethostname(),
        incarnation=server.incarnation,
        hostname=socket.gethostname(),
        pid=os.getpid(),
        started=time.time(),
        metrics=metrics_at,
        session_timeout=args.session_timeout,
    )
    zk = await asyncio.to_thread(connect_zk, args.zk, 10.0, args.session_timeout)
    reg = Registration(zk, args.cluster, info)
    try:
        await asyncio.to_thread(reg.register)
    except NodeIdInUse as exc:
        log.error("%s", exc)
        return 2
    log.info("node %s serving on %s (pid %d)", args.id, address, os.getpid())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    refresher = asyncio.create_task(reg.run(lambda: store.used))
    await stop.wait()
    log.info("node %s stopping", args.id)
    refresher.cancel()
    if beats is not None:
        beats.close()
    tcp.close()
    await asyncio.to_thread(reg.deregister)
    zk.stop()
    zk.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level, f"node {args.id}", args.log_format)
    tune_malloc(keep_freed=True)
    try:
        import uvloop

        return uvloop.run(serve(args))
    except EcmemError as exc:
        log.error("%s", exc)
        return 2


def _file_limit(connections: int) -> int:
    """Raise the open-file limit to fit ``connections`` (and the node's own files);
    the connections the limit allows if it cannot be raised."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = connections + 256
    if soft < want:
        soft = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        except (ValueError, OSError):
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < want:
        log.warning(
            "open files are limited to %d: serving at most %d connections, not %d "
            "(raise the hard limit, ulimit -Hn, to serve more)",
            soft,
            soft - 256,
            connections,
        )
        return max(1, soft - 256)
    return connections


if __name__ == "__main__":
    sys.exit(main())
