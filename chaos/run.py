"""python -m chaos.run: run chaos scenarios on a cluster of namespaced hosts.

    python -m chaos.run [--scenario NAME ...] [--seed N] [--mib N] [--out DIR]
    python -m chaos.run --target mycluster.toml [--scenario NAME ...]

Each scenario gets a fresh cluster (3 ZooKeeper servers, storage nodes and a
coordinator, each in its own network namespace), a report (JSON and PNG) in
--out, and a verdict; a failure prints the seed that replays it. Needs root
(network namespaces). Leaves no namespace, link or process behind. With
--target, the scenarios that need no namespaces run against a deployment of
yours instead (chaos/remote.py), which is left as it was found.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

from .catalog import ANY_TARGET, IN_MEMORY, SCENARIOS
from .cluster import ChaosCluster
from .net import free_subnet, run_id, sweep
from .remote import RemoteCluster, TargetFileError
from .report import RunReport

OUT = Path(__file__).resolve().parent / "out"


# Deliberately broken builds, each switched on in this process and in the clients it
# starts by an environment variable: the scenario that guards the property must fail.
BREAKS = {
    "no-fencing": ("ECMEM_UNSAFE_NO_FENCING", "fencing off in nodes and clients: stale-writer"),
    "no-checksums": ("ECMEM_UNSAFE_NO_CHECKSUMS", "clients trust fragments unchecked: corruption"),
    "not-found-is-hole": (
        "ECMEM_UNSAFE_NOT_FOUND_IS_HOLE",
        "clients read a written stripe no node holds as zeros: restart-empty",
    ),
    "slice-stale-parity": (
        "ECMEM_UNSAFE_SLICE_STALE_PARITY",
        "small overwrites go as slices (no page patches) that leave parity as it was: page-writes",
    ),
    "early-ack": (
        "ECMEM_UNSAFE_EARLY_ACK",
        "a page patch is acknowledged held by its fragment's node alone: page-log",
    ),
}


def _break(name: str) -> None:
    import ecmem.stripes
    import ecmem.writepath
    import ecmem.writer

    os.environ[BREAKS[name][0]] = "1"  # for the client processes a scenario starts
    ecmem.writer.UNSAFE_NO_FENCING = name == "no-fencing"
    ecmem.stripes.UNSAFE_NO_CHECKSUMS = name == "no-checksums"
    ecmem.stripes.UNSAFE_NOT_FOUND_IS_HOLE = name == "not-found-is-hole"
    ecmem.writepath.UNSAFE_STALE_PARITY = name == "slice-stale-parity"
    ecmem.writepath.UNSAFE_EARLY_ACK = name == "early-ack"
    if name == "slice-stale-parity":  # small writes would go as patches, not slices
        os.environ["ECMEM_PAGE_PATCHES"] = "0"
        ecmem.writepath.PAGE_PATCHES = False


@contextlib.contextmanager
def _workdir(name: str, seed: int, out: Path, keep: bool) -> Iterator[str]:
    """Where a scenario's histories and logs go: kept in ``out`` with --keep."""
    if not keep:
        with tempfile.TemporaryDirectory(prefix=f"ecmem-chaos-{name}-") as tmp:
            yield tmp
        return
    where = out / f"{name}-seed{seed}-files"
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    yield str(where)


def run_one(
    name: str,
    seed: int,
    mib: int,
    out: Path,
    broken: str = "",
    target: Path | None = None,
    keep: bool = False,
) -> RunReport:
    report = RunReport(name, seed)
    scenario, nodes, grace = SCENARIOS[name]
    with _workdir(name, seed, out, keep) as tmp:
        c: ChaosCluster | RemoteCluster
        if target is not None:
            c = RemoteCluster.load(target, Path(tmp), f"{seed}-{name}")
        else:
            c = ChaosCluster(
                Path(tmp),
                run_id(),
                free_subnet(),
                nodes=nodes,
                grace=grace,
                persist=name not in IN_MEMORY,
                broken=broken,
            )
        try:
            if isinstance(c, ChaosCluster):
                c.up()
                scenario(c, seed, mib, report)
            else:
                # A deployment just started may not have every node registered yet.
                c.wait_nodes(c.node_hosts, timeout=60)
                ANY_TARGET[name][0](c, seed, mib, report)
        except Exception as exc:  # a crash of the scenario is a failure with its traceback
            report.fail(f"scenario crashed: {exc!r}\n{traceback.format_exc()}")
            report.passed = False
            logs = Path(tmp) / "logs"
            for log in sorted(logs.glob("*.log")):
                tail = log.read_text(errors="replace").splitlines()[-5:]
                print(f"==== {log.name}\n" + "\n".join(tail), file=sys.stderr)
        finally:
            try:
                c.close()
            except Exception as exc:  # a deployment left damaged is a failure too
                report.fail(str(exc))
                report.passed = False
    report.write(out)
    return report


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m chaos.run", description=__doc__)
    ap.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    ap.add_argument("--seed", type=int, default=None, help="default: from the clock")
    ap.add_argument("--mib", type=int, default=256, help="data each scenario writes")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument(
        "--keep", action="store_true", help="keep each run's histories and logs in --out"
    )
    ap.add_argument(
        "--target",
        type=Path,
        help="a TOML file describing a deployment of your own to run against (docs/chaos.md)",
    )
    ap.add_argument(
        "--break",
        dest="broken",
        default="",
        choices=sorted(BREAKS),
        help="run a deliberately broken build; the scenario that guards it must fail ("
        + "; ".join(f"{k}: {v[1]}" for k, v in BREAKS.items())
        + ")",
    )
    args = ap.parse_args(argv)
    if args.broken:
        _break(args.broken)
    names = args.scenario or sorted(SCENARIOS)
    if args.target is not None:
        if args.broken:
            print("error: --break runs this machine's own build; drop --target", file=sys.stderr)
            return 2
        try:
            with tempfile.TemporaryDirectory() as tmp:
                RemoteCluster.load(args.target, Path(tmp), "check")
        except TargetFileError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        skipped = [n for n in names if n not in ANY_TARGET]
        for n in skipped:
            print(
                f"SKIP {n}: it cuts links between namespaced hosts, "
                "which needs the suite's own cluster"
            )
        names = [n for n in names if n in ANY_TARGET]
    elif os.geteuid() != 0:
        print("error: the chaos suite needs root for network namespaces", file=sys.stderr)
        return 2
    # SIGTERM (a CI timeout, kill) unwinds like ^C: every cluster's finally cleans up.
    signal.signal(signal.SIGTERM, _interrupted)
    logging.basicConfig(
        level=logging.WARNING, format="%(relativeCreated)9.0fms %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("kazoo").setLevel(logging.ERROR)
    left = sweep()
    if left:
        print(f"removed leftovers of an earlier run: {', '.join(left)}")
    seed = args.seed if args.seed is not None else int(time.time()) % 100_000
    failed = 0
    for name in names:
        t = time.monotonic()
        report = run_one(name, seed, args.mib, args.out, args.broken, args.target, args.keep)
        verdict = "PASS" if report.passed else "FAIL"
        print(f"{verdict} {name} seed {seed} in {time.monotonic() - t:.0f}s: {report.numbers}")
        for p in report.problems[:10]:
            print(f"    {p}")
        if len(report.problems) > 10:
            print(f"    ... and {len(report.problems) - 10} more in the report")
        if not report.passed:
            failed += 1
            where = f" --target {args.target}" if args.target else ""
            print(f"    replay: python -m chaos.run --scenario {name} --seed {seed}{where}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
