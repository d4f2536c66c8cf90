"""python -m coordinator --zk HOSTS [--cluster NAME]"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading

from ecmem.errors import EcmemError
from ecmem.logs import add_log_options, setup_logging
from ecmem.meta.catalog import connect_zk

from .daemon import Coordinator
from .metrics import CoordinatorMetrics


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m coordinator", description=__doc__)
    p.add_argument("--zk", default=os.environ.get("ECMEM_ZK"))
    p.add_argument("--cluster", default=os.environ.get("ECMEM_CLUSTER", "default"))
    p.add_argument("--id", default=f"{socket.gethostname()}-{os.getpid()}")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between health passes")
    p.add_argument(
        "--rebuild-grace",
        type=float,
        default=float(os.environ.get("ECMEM_REBUILD_GRACE", "30")),
        help="seconds a node may be gone before its fragments are rebuilt elsewhere",
    )
    p.add_argument(
        "--scrub-interval",
        type=float,
        default=float(os.environ.get("ECMEM_SCRUB_INTERVAL", str(7 * 86400))),
        help="seconds between background scrubs of every region (0: off; default a week)",
    )
    p.add_argument(
        "--no-scrub-repair",
        dest="scrub_repair",
        action="store_false",
        help="background scrubs report damage but leave its repair to 'ecmem scrub --repair'",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=-1,
        help="serve Prometheus metrics over HTTP on this port (0: any free port, -1: off)",
    )
    p.add_argument("--metrics-host", default="127.0.0.1", help="address to serve metrics on")
    add_log_options(p)
    args = p.parse_args(argv)
    if not args.zk:
        p.error("--zk is required (or set ECMEM_ZK)")
    if args.rebuild_grace < 0 or args.interval <= 0 or args.scrub_interval < 0:
        p.error(
            "--rebuild-grace and --scrub-interval must be 0 or more seconds, --interval more than 0"
        )
    setup_logging(args.log_level, f"coordinator {args.id}", args.log_format)
    metrics = None
    metrics_at = ""
    if args.metrics_port >= 0:
        metrics = CoordinatorMetrics()
        try:
            port = metrics.serve(args.metrics_host, args.metrics_port)
        except OSError as exc:
            print(
                f"error: cannot serve metrics on {args.metrics_host}:{args.metrics_port}: {exc}; "
                "pick another --metrics-port (0 for any free port)",
                file=sys.stderr,
            )
            return 2
        metrics_at = f"{args.metrics_host}:{port}"
        logging.getLogger("coordinator").info("metrics at http://%s/metrics", metrics_at)
    try:
        zk = connect_zk(args.zk)
    except EcmemError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    coord = Coordinator(
        zk,
        args.cluster,
        args.id,
        args.interval,
        args.rebuild_grace,
        scrub_interval=args.scrub_interval,
        scrub_repair=args.scrub_repair,
        metrics=metrics,
        announce={"id": args.id, "pid": os.getpid(), "metrics": metrics_at},
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: coord.stop())
    worker = threading.Thread(target=coord.run, name="coordinator", daemon=True)
    worker.start()
    while worker.is_alive() and not coord.stopping.is_set():
        coord.stopping.wait(0.5)
    zk.stop()
    zk.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
