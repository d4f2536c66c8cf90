"""Scenario 8: 'ecmem rebuild --wait' killed mid-way and run again: it completes,
redundancy is full, and the data is identical (also with M more hosts gone).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time

from ecmem.health import HEALTH_OK

from ..report import RunReport
from ..schedule import KILL, Fault
from ..target import Target
from .common import BLOCK, MiB, health_now, kill_hosts, reads_back, region_with_data


def rebuild_cli_killed(c: Target, seed: int, mib: int, report: RunReport) -> None:
    """Scenario 8: 'ecmem rebuild --wait' killed mid-way and run again: it completes,
    redundancy is full, and the data is identical (also with M more hosts gone)."""
    rng = random.Random(seed)
    blocks = max(8, min(64, mib * MiB // BLOCK))
    data = region_with_data(c, c.region("s8"), seed, blocks)
    victim = rng.choice(c.node_hosts)
    c.kill(victim)
    t0 = time.monotonic()
    report.faults.append(Fault(0.0, KILL, victim, 0.0))
    c.wait_gone([victim])
    env = {**os.environ, "ECMEM_ZK": c.zk, "ECMEM_CLUSTER": c.cluster}
    cli = [sys.executable, "-m", "ecmem.cli.main", "rebuild", "--node", victim, "--wait"]
    first = subprocess.Popen(cli, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(rng.uniform(0.5, 2.0))
    first.kill()
    first.wait()
    report.faults.append(Fault(time.monotonic() - t0, KILL, "ecmem rebuild", 0.0))
    again = subprocess.run(
        [*cli, "--json", "--timeout", "240"], env=env, capture_output=True, text=True
    )
    report.numbers["rerun_exit"] = again.returncode
    if again.returncode != 0:
        report.fail(f"the rerun of ecmem rebuild did not finish: {again.stdout[-500:]}")
    if health_now(c) != HEALTH_OK:
        report.fail(f"health is {health_now(c)} after the rebuild, not HEALTH_OK")
    kill_hosts(c, report, t0, rng.sample([h for h in c.node_hosts if h != victim], 2))
    if not reads_back(c, c.region("s8"), data):
        report.fail("the region reads differently after the rebuild and 2 more deaths")
    report.numbers["seconds"] = time.monotonic() - t0
    report.passed = not report.problems
