"""The ecmem demo: a local cluster survives losing two storage nodes.

Runs the ecmem CLI as a user would, printing each command and its output:
start ZooKeeper and 6 storage nodes, store a 256 MiB file in an ec:4+2
region with 'ecmem put' and copy it into a checkpoint directory on an
'ecmem mount', SIGKILL 2 of the nodes holding it, read both back
byte-identical, show the cluster health, and stop the cluster.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ECMEM = [str(Path(sys.executable).parent / "ecmem")]
STATE = ROOT / ".ecmem-demo"
ENV = {**os.environ, "ECMEM_STATE_DIR": str(STATE)}
ENV.pop("ECMEM_ZK", None)
SIZE = 256 * 1024 * 1024


def run(*args: str, check: bool = True, show: bool = True) -> subprocess.CompletedProcess[str]:
    if show:
        print(f"\n$ ecmem {shlex.join(args)}", flush=True)
    r = subprocess.run(ECMEM + list(args), env=ENV, text=True, capture_output=True)
    if show:
        sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    if check and r.returncode != 0:
        raise SystemExit(f"demo failed: 'ecmem {shlex.join(args)}' exited with {r.returncode}")
    return r


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def main() -> int:
    print(f"ecmem demo: local cluster state in {STATE}")
    mounted: list[Path] = []
    try:
        run("up", "--nodes", "6", "--capacity", "2GiB")
        with tempfile.TemporaryDirectory(prefix="ecmem-demo-") as tmp:
            src, dst = Path(tmp) / "checkpoint.bin", Path(tmp) / "restored.bin"
            with open(src, "wb") as f:
                for _ in range(SIZE // (1 << 24)):
                    f.write(os.urandom(1 << 24))
            print(f"\nwrote {SIZE >> 20} MiB of random data to {src}")
            run("put", str(src), "demo/checkpoint", "--policy", "ec:4+2", "--force")
            run("region", "info", "demo/checkpoint")
            mnt = Path(tmp) / "mnt"
            mnt.mkdir()
            run("mount", str(mnt), "--prefix", "demo")
            mounted.append(mnt)
            (mnt / "job1").mkdir(exist_ok=True)
            print(f"\n$ cp {src} {mnt}/job1/ && sync    # through the mount")
            subprocess.run(["cp", str(src), str(mnt / "job1" / "checkpoint.bin")], check=True)
            subprocess.run(["sync", "-f", str(mnt / "job1" / "checkpoint.bin")], check=True)
            print(
                subprocess.run(
                    ["ls", "-l", str(mnt / "job1")], text=True, capture_output=True
                ).stdout
            )
            info = json.loads(run("region", "info", "demo/checkpoint", "--json", show=False).stdout)
            nodes = json.loads(run("nodes", "--json", show=False).stdout)["nodes"]
            pids = {n["id"]: n["pid"] for n in nodes}
            victims = [f["node"] for f in info["placements"][0]["fragments"][:2]]
            for v in victims:
                print(f"\n$ kill -9 {pids[v]}    # storage node {v}")
                os.kill(pids[v], signal.SIGKILL)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                status = json.loads(run("status", "--json", check=False, show=False).stdout)
                if "NODE_DOWN" in status.get("checks", {}):
                    break
                time.sleep(0.5)
            run("get", "demo/checkpoint", str(dst))
            a, b = sha256(src), sha256(dst)
            c = sha256(mnt / "job1" / "checkpoint.bin")
            run("umount", str(mnt))
            print(f"\nsha256 written:            {a}\nsha256 read back (get):    {b}")
            print(f"sha256 read back (mount):  {c}")
            if not a == b == c:
                print("MISMATCH: the data read back differs from what was written")
                return 1
            print("byte-identical, with 2 of the 6 storage nodes killed")
            print(
                f"\nthe ecmem command is in {ECMEM[0]}: run '. .venv/bin/activate' to put it "
                "on your PATH, then 'ecmem up' starts a cluster of your own"
            )
            st = run("status", "--detail", check=False)
            if st.returncode != 1 or "HEALTH_WARN" not in st.stdout:
                print("expected HEALTH_WARN from ecmem status")
                return 1
            missing = [v for v in victims if v not in st.stdout]
            if missing:
                print(f"expected ecmem status to name the lost nodes {missing}")
                return 1
        return 0
    finally:
        for m in mounted:
            if os.path.ismount(m):
                run("umount", str(m), check=False, show=False)
        run("down", check=False)


if __name__ == "__main__":
    sys.exit(main())
