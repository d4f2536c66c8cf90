"""make bench, part 3: sequential throughput through the FUSE mount against the Python API.

fio writes 1 GiB in 1 MiB blocks to a file on an ``ecmem mount`` (fsync at the end)
and reads it back, on the same 6-node ec:4+2 cluster where the Python API writes
and reads 1 GiB; prints MB/s and mount/API ratios (the target is at least 0.5)
and writes bench/out/mount.json. Runs alternate and the best of each is kept.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ecmem  # noqa: E402
from bench.run import ecmem_seq  # noqa: E402
from ecmem.localcluster import LocalCluster  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
MiB = 1 << 20


def fio(path: Path, rw: str, size_mib: int) -> float:
    """MB/s of one fio job (psync, 1 MiB blocks)."""
    out = subprocess.run(
        [
            "fio",
            "--name=seq",
            f"--filename={path}",
            f"--rw={rw}",
            "--bs=1M",
            f"--size={size_mib}M",
            "--ioengine=psync",
            "--end_fsync=1",
            "--output-format=json",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=path.parent,  # fio leaves its state files where it runs
    )
    job = json.loads(out.stdout)["jobs"][0]
    side = job["write" if "write" in rw else "read"]
    return float(side["bw_bytes"]) / 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("kazoo").setLevel(logging.ERROR)
    OUT.mkdir(parents=True, exist_ok=True)
    lc = LocalCluster(OUT / "mount-cluster")
    lc.down()
    state = lc.up(6, "4GiB", cluster="mbench")
    where = Path(tempfile.mkdtemp(prefix="ecmem-bench-mnt-"))
    env = {**os.environ, "ECMEM_ZK": state.zk, "ECMEM_CLUSTER": "mbench"}
    ecmem_cli = [sys.executable, "-m", "ecmem.cli.main"]
    subprocess.run([*ecmem_cli, "mount", str(where)], env=env, check=True)
    mount_runs: list[dict[str, float]] = []
    api_runs: list[dict[str, float]] = []
    try:
        data = os.urandom(args.mib * MiB)
        with ecmem.connect(state.zk, cluster="mbench") as cl:
            for i in range(args.repeat):
                print(f"run {i + 1}/{args.repeat}: fio through the mount ...", flush=True)
                target = where / "fio.bin"
                w = fio(target, "write", args.mib)
                r = fio(target, "read", args.mib)
                target.unlink()
                mount_runs.append({"seq_write_MBps": w, "seq_read_MBps": r})
                print(f"run {i + 1}/{args.repeat}: the Python API ...", flush=True)
                api_runs.append(ecmem_seq(cl, data, "bench/api"))
                cl.delete_region("bench/api")
    finally:
        subprocess.run([*ecmem_cli, "umount", str(where)], env=env)
        if not os.path.ismount(where):
            where.rmdir()
        lc.down()
    best_mount = {k: max(r[k] for r in mount_runs) for k in mount_runs[0]}
    best_api = {k: max(r[k] for r in api_runs) for k in ("seq_write_MBps", "seq_read_MBps")}
    ratios = {k: best_mount[k] / best_api[k] for k in best_mount}
    result = {"mount": best_mount, "api": best_api, "ratios": ratios, "mib": args.mib}
    (OUT / "mount.json").write_text(json.dumps(result, indent=2))
    print(f"\n{'1 MiB blocks, MB/s':28}{'mount':>12}{'API':>12}{'ratio':>10}")
    for k, label in (("seq_write_MBps", "sequential write"), ("seq_read_MBps", "sequential read")):
        print(f"{label:28}{best_mount[k]:12.0f}{best_api[k]:12.0f}{ratios[k]:10.2f}")
    print(f"\nwrote {OUT / 'mount.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
