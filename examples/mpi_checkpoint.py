"""Checkpoint/restart of an MPI job through an ecmem mount.

Each rank writes its state with the safe pattern: temporary file, fsync, rename
over the final name; rank 0 then writes a manifest of every rank's checksum the
same way. A restart reads the manifest, loads each rank's state and checks it
against both the manifest and the state recomputed from the step and rank.

    mpiexec -n 4 python examples/mpi_checkpoint.py checkpoint --dir /mnt/ecmem/job1
    mpiexec -n 4 python examples/mpi_checkpoint.py restart --dir /mnt/ecmem/job1
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

import numpy as np


def _relaunch_with_venv_libmpi() -> None:
    """Run this script again with the virtualenv's lib directory on LD_LIBRARY_PATH.

    The mpi4py wheel's extension needs MPICH by its ABI name, libmpi.so.12, which
    Debian calls libmpich.so.12; 'make setup' links one to the other in .venv/lib.
    The dynamic linker reads LD_LIBRARY_PATH only when a process starts, and mpi4py's
    own library search (MPI4PY_LIBMPI, its rpath list) only picks the ABI, so the
    extension cannot find that link from inside this process: start over once with it.
    """
    libdir = os.path.join(sys.prefix, "lib")
    search = os.environ.get("LD_LIBRARY_PATH", "")
    if not os.path.exists(os.path.join(libdir, "libmpi.so.12")) or libdir in search.split(":"):
        return
    os.environ["LD_LIBRARY_PATH"] = f"{libdir}:{search}" if search else libdir
    os.execv(sys.executable, [sys.executable, *sys.argv])


try:
    from mpi4py import MPI
except ImportError as exc:
    if "libmpi.so" not in str(exc):
        raise
    _relaunch_with_venv_libmpi()
    raise SystemExit(
        f"mpi4py cannot load the MPI library ({exc}): run 'make setup', which links "
        "Debian's libmpich.so.12 as .venv/lib/libmpi.so.12, and run this with .venv's python"
    ) from exc


def state(step: int, rank: int, mib: int) -> np.ndarray:
    """A rank's state at a step: reproducible, so a restart can check every byte."""
    rng = np.random.default_rng([step, rank])
    return rng.random(mib * 1024 * 1024 // 8)


def write_durably(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def checkpoint(comm: MPI.Comm, where: str, step: int, mib: int) -> int:
    rank = comm.Get_rank()
    if rank == 0:
        os.makedirs(where, exist_ok=True)
    comm.Barrier()
    data = state(step, rank, mib).tobytes()
    write_durably(os.path.join(where, f"rank-{rank}.bin"), data)
    digests = comm.gather(hashlib.sha256(data).hexdigest(), root=0)
    if rank == 0:
        manifest = {"step": step, "ranks": comm.Get_size(), "mib": mib, "sha256": digests}
        write_durably(os.path.join(where, "manifest.json"), json.dumps(manifest).encode())
        print(f"checkpoint of step {step}: {comm.Get_size()} ranks x {mib} MiB in {where}")
    comm.Barrier()
    return 0


def restart(comm: MPI.Comm, where: str) -> int:
    rank = comm.Get_rank()
    with open(os.path.join(where, "manifest.json"), "rb") as f:
        manifest = json.loads(f.read())
    if manifest["ranks"] != comm.Get_size():
        if rank == 0:
            print(f"checkpoint has {manifest['ranks']} ranks; run with -n {manifest['ranks']}")
        return 2
    with open(os.path.join(where, f"rank-{rank}.bin"), "rb") as f:
        data = f.read()
    ok = hashlib.sha256(data).hexdigest() == manifest["sha256"][rank]
    ok = ok and data == state(manifest["step"], rank, manifest["mib"]).tobytes()
    if not ok:
        print(f"rank {rank}: checkpoint of step {manifest['step']} does not verify", flush=True)
    good = comm.allreduce(1 if ok else 0, op=MPI.SUM)
    if rank == 0:
        print(f"restart from step {manifest['step']}: {good}/{comm.Get_size()} ranks verified")
    return 0 if good == comm.Get_size() else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("phase", choices=("checkpoint", "restart"))
    ap.add_argument("--dir", required=True, help="checkpoint directory (on an ecmem mount)")
    ap.add_argument("--step", type=int, default=1)
    ap.add_argument("--mib", type=int, default=16, help="state per rank, MiB")
    args = ap.parse_args()
    comm = MPI.COMM_WORLD
    if args.phase == "checkpoint":
        return checkpoint(comm, args.dir, args.step, args.mib)
    return restart(comm, args.dir)


if __name__ == "__main__":
    sys.exit(main())
