"""python -m chaos.run: run chaos scenarios on a cluster of namespaced hosts.

    python -m chaos.run [--scenario NAME ...] [--seed N] [--mib N] [--out DIR]

Each scenario gets a fresh cluster (3 ZooKeeper servers, storage nodes and a
coordinator, each in its own network namespace), a report (JSON and PNG) in
--out, and a verdict; a failure prints the seed that replays it. Needs root
(network namespaces). Leaves no namespace, link or process behind.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path

from .cluster import ChaosCluster
from .net import sweep
from .report import RunReport
from .scenarios import SCENARIOS

OUT = Path(__file__).resolve().parent / "out"


def run_one(name: str, seed: int, mib: int, out: Path, broken: bool = False) -> RunReport:
    report = RunReport(name, seed)
    scenario, nodes, grace = SCENARIOS[name]
    run = f"{os.getpid() % 1000}{random.Random(seed).randrange(10)}"[:5]
    with tempfile.TemporaryDirectory(prefix=f"ecmem-chaos-{name}-") as tmp:
        c = ChaosCluster(
            Path(tmp),
            run,
            64 + os.getpid() % 150,
            nodes=nodes,
            grace=grace,
            persist=True,
            broken=broken,
        )
        try:
            c.up()
            scenario(c, seed, mib, report)
        except Exception as exc:  # a crash of the scenario is a failure with its traceback
            report.fail(f"scenario crashed: {exc!r}\n{traceback.format_exc()}")
            report.passed = False
            logs = Path(tmp) / "logs"
            for log in sorted(logs.glob("*.log")):
                tail = log.read_text(errors="replace").splitlines()[-5:]
                print(f"==== {log.name}\n" + "\n".join(tail), file=sys.stderr)
        finally:
            c.close()
    report.write(out)
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m chaos.run", description=__doc__)
    ap.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    ap.add_argument("--seed", type=int, default=None, help="default: from the clock")
    ap.add_argument("--mib", type=int, default=256, help="data each scenario writes")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument(
        "--break",
        dest="broken",
        choices=["no-fencing"],
        help="run a deliberately broken build (fencing off in nodes and clients): the "
        "scenarios that depend on it must fail",
    )
    args = ap.parse_args(argv)
    if args.broken:
        os.environ["ECMEM_UNSAFE_NO_FENCING"] = "1"  # for the writer processes started
        import ecmem.aio

        ecmem.aio.UNSAFE_NO_FENCING = True
    if os.geteuid() != 0:
        print("error: the chaos suite needs root for network namespaces", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("kazoo").setLevel(logging.ERROR)
    left = sweep()
    if left:
        print(f"removed leftovers of an earlier run: {', '.join(left)}")
    seed = args.seed if args.seed is not None else int(time.time()) % 100_000
    failed = 0
    for name in args.scenario or sorted(SCENARIOS):
        t = time.monotonic()
        report = run_one(name, seed, args.mib, args.out, broken=bool(args.broken))
        verdict = "PASS" if report.passed else "FAIL"
        print(f"{verdict} {name} seed {seed} in {time.monotonic() - t:.0f}s: {report.numbers}")
        for p in report.problems[:10]:
            print(f"    {p}")
        if len(report.problems) > 10:
            print(f"    ... and {len(report.problems) - 10} more in the report")
        if not report.passed:
            failed += 1
            print(f"    replay: python -m chaos.run --scenario {name} --seed {seed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
