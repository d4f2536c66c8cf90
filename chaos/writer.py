"""python -m chaos.writer: a writer process the nemesis can pause and kill.

Takes a region's write lease and writes blocks 0, 1, 2, ... (each a pwrite,
acknowledged once committed), recording every write as one JSON line
in --history: its epoch, block, digest, start and end (Unix time) and outcome.
With --hold N it gives the lease up after N writes and takes it again (a new
epoch), so that writers on different hosts take turns.
The history file is flushed and fsynced per line, so it survives a SIGKILL.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import time

import ecmem


def block(seed: int, i: int, size: int) -> bytes:
    return random.Random(seed * 1_000_003 + i).randbytes(size)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m chaos.writer", description=__doc__)
    ap.add_argument("--zk", required=True)
    ap.add_argument("--cluster", required=True)
    ap.add_argument("--region", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--block", type=int, default=65536)
    ap.add_argument("--blocks", type=int, default=1 << 30, help="stop after this many")
    ap.add_argument("--hold", type=int, default=0, help="writes per lease (0: keep it)")
    ap.add_argument("--session-timeout", type=float, default=3.0)
    ap.add_argument("--history", required=True)
    args = ap.parse_args(argv)
    with (
        open(args.history, "a") as log,
        ecmem.connect(args.zk, cluster=args.cluster, session_timeout=args.session_timeout) as cl,
    ):

        def record(**fields: object) -> None:
            log.write(json.dumps(fields) + "\n")
            log.flush()
            os.fsync(log.fileno())

        # Each write is its own pwrite (committed when it returns), so that one refused
        # write does not spoil the next as a file's background error would.
        def take() -> int:
            epoch: int = cl.run(cl.async_client.writer(args.region, 30)).epoch
            record(kind="open", epoch=epoch, time=time.time())
            return epoch

        epoch = take()

        def retake() -> bool:
            """Release and take the lease again; False once that kept failing."""
            nonlocal epoch
            for _ in range(5):
                try:
                    cl.run(cl.async_client.release(args.region))
                    epoch = take()
                    return True
                except Exception as exc:  # busy past the wait, ZooKeeper unreachable
                    record(kind="gave-up", time=time.time(), why=repr(exc)[:400])
                    time.sleep(1)
            return False

        failures = 0
        for i in range(args.blocks):
            data = block(args.seed, i, args.block)
            digest = hashlib.sha256(data).hexdigest()[:16]
            start = time.time()
            # Recorded before the write: a crash mid-write leaves an operation of unknown
            # outcome in the history, never one missing from it.
            record(kind="invoke", epoch=epoch, block=i, digest=digest, start=start)
            try:
                cl.pwrite(args.region, i * args.block, data)
                outcome = "ok"
                why = ""
            except ecmem.Fenced as exc:
                # Unknown, not failed: a write in flight when the new writer took over may
                # have been recovered by it. The checker holds writes begun after the
                # takeover to the stricter rule.
                outcome, why = "info", str(exc)
            except ecmem.EcmemError as exc:
                outcome, why = ("info" if exc.retriable else "fail"), str(exc)
            except Exception as exc:  # lost ZooKeeper connection and the like: unknown
                outcome, why = "info", repr(exc)
            record(
                kind="write",
                epoch=epoch,
                block=i,
                digest=digest,
                start=start,
                end=time.time(),
                outcome=outcome,
                why=why[:400],
            )
            failures = 0 if outcome == "ok" else failures + 1
            if failures >= 3 and not args.hold:
                break  # fenced, or the cluster is gone: this writer is done
            # Taking turns: give the lease up after --hold writes, or after a failure (a
            # writer fenced or cut off starts over with a new epoch).
            turn = args.hold and ((i + 1) % args.hold == 0 or outcome != "ok")
            if turn and i + 1 < args.blocks and not retake():
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())
