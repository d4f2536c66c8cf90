"""A writer for the crash-consistency test: streams seeded writes, prints each ack.

    python crash_writer.py ZK CLUSTER REGION SEED MODE [FOLD_AFTER]

MODE "pwrite": every pwrite is acknowledged when it returns. MODE "pwritev": batches of
1 to 8 writes, each batch acknowledged when its pwritev returns. MODE "file": writes go
through a region file (stored in the background) and are acknowledged, all those
before it, by each flush. Prints "ready" once connected, starts on a line on stdin,
and prints "ack SEQ" after each acknowledgement. A write that
fails with a retriable error (nodes killed under it: in doubt, or unavailable for a
moment) is tried again, as an application would: the same bytes at the same offset.
A region file's flush that fails stops the writer (its stores are not retried).
FOLD_AFTER (default: the library's rule) folds a stripe after that many patches, so
that a kill often lands while a stripe is folded.
"""

from __future__ import annotations

import random
import struct
import sys
import time
from collections.abc import Callable, Iterator

from crc32c import crc32c

SPAN = 1_500_000
MAX_WRITE = 150_000


def writes(seed: int) -> Iterator[tuple[int, bytes]]:
    """The seeded stream of writes: (offset, data), data led by its seq and checksum."""
    rng = random.Random(seed)
    seq = 0
    while True:
        offset = rng.randrange(0, SPAN)
        # Half of them a few pages or less: overwrites of those go as slices.
        body = rng.randbytes(rng.randrange(1, MAX_WRITE if rng.random() < 0.5 else 9000))
        yield offset, struct.pack("<II", seq, crc32c(body)) + body
        seq += 1


def apply(model: bytearray, offset: int, data: bytes) -> None:
    if offset > len(model):
        model.extend(bytes(offset - len(model)))
    model[offset : offset + len(data)] = data


def retried(call: Callable[[], object]) -> None:
    import ecmem

    for attempt in range(40):
        try:
            call()
            return
        except ecmem.EcmemError as exc:
            if not exc.retriable or attempt == 39:
                raise
            time.sleep(0.25)


def main() -> None:
    import ecmem
    from ecmem import pagelog

    zk, cluster, region, seed, mode = sys.argv[1:6]
    if len(sys.argv) > 6:
        after = int(sys.argv[6])
        pagelog.FOLD = pagelog.FoldRule(after=after, most=after)
    cl = ecmem.connect(zk, cluster=cluster, session_timeout=1.0)
    print("ready", flush=True)
    sys.stdin.readline()  # "go": the test starts its clock
    stream = writes(int(seed))
    if mode == "pwrite":
        for seq, (offset, data) in enumerate(stream):
            retried(lambda: cl.pwrite(region, offset, data))  # noqa: B023 (called at once)
            print(f"ack {seq}", flush=True)
    elif mode == "pwritev":
        sizes = random.Random(int(seed) + 1)
        done = 0
        while True:
            batch = [next(stream) for _ in range(sizes.randint(1, 8))]
            retried(lambda: cl.pwritev(region, batch))  # noqa: B023 (called at once)
            done += len(batch)
            print(f"ack {done - 1}", flush=True)
    else:
        with cl.open(region, "r+b") as f:
            for seq, (offset, data) in enumerate(stream):
                f.seek(offset)
                f.write(data)
                if seq % 4 == 3:
                    try:
                        f.flush()
                    except ecmem.EcmemError as exc:
                        # A region file's failed store stays failed (it is not retried):
                        # wait for the kill with what was acknowledged.
                        print(f"stopped {exc.code}", flush=True)
                        time.sleep(3600)
                    print(f"ack {seq}", flush=True)


if __name__ == "__main__":
    main()
