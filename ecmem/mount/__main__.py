"""python -m ecmem.mount MOUNTPOINT: serve a FUSE mount of a cluster's regions until
unmounted (``ecmem umount MOUNTPOINT``, ``fusermount3 -u``) or signalled."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

import pyfuse3
import pyfuse3.asyncio

from ecmem.aio import connect
from ecmem.errors import EcmemError
from ecmem.logs import add_log_options, setup_logging
from ecmem.policy import parse_policy

from .fs import RegionFS

log = logging.getLogger("ecmem.mount")


async def serve(args: argparse.Namespace) -> int:
    client = await connect(args.zk, cluster=args.cluster, state_dir=args.state_dir)
    fs = RegionFS(client, args.prefix, args.policy)
    options = set(pyfuse3.default_options)
    options |= {"fsname=ecmem", "subtype=ecmem"}
    if args.no_permissions:
        options.discard("default_permissions")
    pyfuse3.init(fs, args.mountpoint, options)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, pyfuse3.terminate)
    log.info(
        "serving regions%s of cluster %s at %s (new files: %s)",
        f" under {args.prefix}/" if args.prefix else "",
        client.meta.paths.cluster,
        args.mountpoint,
        fs.policy,
    )
    try:
        await pyfuse3.main()
    finally:
        # Close every file still open: writes committed, leases given back.
        for of in list(fs.opens.values()):
            if of.file is not None:
                try:
                    await of.file.close()
                except EcmemError as exc:
                    log.error("file %s: last writes may be lost: %s", of.name, exc)
        pyfuse3.close(unmount=True)
        await client.close()
        log.info("unmounted %s", args.mountpoint)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ecmem.mount", description=__doc__)
    p.add_argument("mountpoint")
    p.add_argument("--zk", default=os.environ.get("ECMEM_ZK"))
    p.add_argument("--cluster", default=os.environ.get("ECMEM_CLUSTER"))
    p.add_argument("--state-dir", default=os.environ.get("ECMEM_STATE_DIR", ".ecmem"))
    p.add_argument("--prefix", default="", help="show only regions under this name")
    p.add_argument("--policy", default="ec:4+2", help="policy of files created on the mount")
    p.add_argument(
        "--no-permissions",
        action="store_true",
        help="let the kernel skip permission checks (default: checked on mode, uid, gid)",
    )
    add_log_options(p)
    args = p.parse_args(argv)
    try:
        parse_policy(args.policy)
    except EcmemError as exc:
        p.error(str(exc))
    if not os.path.isdir(args.mountpoint):
        p.error(f"mount point {args.mountpoint} is not a directory: create it first (mkdir -p)")
    setup_logging(args.log_level, f"mount {args.mountpoint}", args.log_format)
    pyfuse3.asyncio.enable()
    try:
        return asyncio.run(serve(args))
    except EcmemError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # pyfuse3.init: no /dev/fuse, busy mount point...
        print(f"error: cannot mount {args.mountpoint}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
