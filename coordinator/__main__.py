"""python -m coordinator --zk HOSTS [--cluster NAME]"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading

from ecmem.errors import EcmemError
from ecmem.logs import setup_logging

from .daemon import Coordinator
from .metadata import connect_zk


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
    p.add_argument("--log-level", default=os.environ.get("ECMEM_LOG_LEVEL", "INFO"))
    args = p.parse_args(argv)
    if not args.zk:
        p.error("--zk is required (or set ECMEM_ZK)")
    if args.rebuild_grace < 0 or args.interval <= 0:
        p.error("--rebuild-grace must be 0 or more seconds and --interval more than 0")
    setup_logging(args.log_level, f"coordinator {args.id}")
    try:
        zk = connect_zk(args.zk)
    except EcmemError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    coord = Coordinator(zk, args.cluster, args.id, args.interval, args.rebuild_grace)
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
