"""A writer process for the fencing test, driven line by line over stdin/stdout.

Commands: "open", "write N" (write marker N at offset N*16 and flush), "page N" (pwrite
a 4 KiB page of marker N at offset N*4096: a page patch once the region is written
there), "patched" (answers "ok B": bytes of page patches the writer has not folded),
"quit".
Each answers one line: "ok", or "error <ErrorClass> <message>".
"""

from __future__ import annotations

import sys

import ecmem


def page(n: int) -> bytes:
    return f"A-page-{n:08d}\n".encode() * 256  # 4 KiB


def main() -> None:
    zk, cluster, region, session = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    cl = ecmem.connect(zk, cluster=cluster, session_timeout=session)
    f = None
    for line in sys.stdin:
        cmd = line.split()
        try:
            if cmd[0] == "open":
                f = cl.open(region, "r+b")
            elif cmd[0] == "write":
                assert f is not None
                n = int(cmd[1])
                f.seek(n * 16)
                f.write(f"A-{n:013d}\n".encode())
                f.flush()
            elif cmd[0] == "page":
                n = int(cmd[1])
                cl.pwrite(region, n * 4096, page(n))
            elif cmd[0] == "patched":
                print(f"ok {cl.async_client.writer_of(region).patched.total}", flush=True)
                continue
            elif cmd[0] == "quit":
                break
            print("ok", flush=True)
        except ecmem.EcmemError as exc:
            print(f"error {type(exc).__name__} {exc}", flush=True)
    try:
        cl.close()
    except ecmem.EcmemError:
        pass


if __name__ == "__main__":
    main()
