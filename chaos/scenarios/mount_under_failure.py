"""Scenario 9: checkpoint files written through a mount (temporary file, fsync, rename)
while M hosts die survive byte-identical, through that mount and a fresh one.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time

from ..report import RunReport, Sample
from ..target import Target
from .common import BLOCK, MiB, block_data, digest_of, kill_hosts


def mount_under_failure(c: Target, seed: int, mib: int, report: RunReport) -> None:
    """Scenario 9: checkpoint files written through a mount (temporary file, fsync,
    rename) while M hosts die survive byte-identical, through that mount and a fresh one."""
    rng = random.Random(seed)
    files = max(6, min(48, mib * MiB // BLOCK))
    victims = rng.sample(c.node_hosts, 2)
    kill_at = sorted(rng.sample(range(1, files - 1), 2))
    where = c.root / "mnt"
    written: dict[str, str] = {}
    t0 = time.monotonic()

    def mount() -> subprocess.Popen[bytes]:
        where.mkdir(exist_ok=True)
        log = open(c.root / "logs" / "mount.log", "ab")
        p = subprocess.Popen(
            [sys.executable, "-m", "ecmem.mount", str(where), "--zk", c.zk, "--cluster", c.cluster],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while not os.path.ismount(where):
            if p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the mount did not come up; see mount.log")
            time.sleep(0.05)
        return p

    def umount(p: subprocess.Popen[bytes]) -> None:
        subprocess.run(["fusermount3", "-u", str(where)], capture_output=True)
        if os.path.ismount(where):
            subprocess.run(["fusermount3", "-u", "-z", str(where)], capture_output=True)
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def verify(label: str) -> None:
        for name, digest in written.items():
            try:
                got = digest_of((where / "job" / name).read_bytes())
            except OSError as exc:
                report.fail(f"{label}: {name} unreadable: {exc}")
                continue
            if got != digest:
                report.fail(f"{label}: {name} differs from what was fsynced")

    p = mount()
    try:
        (where / "job").mkdir()
        for i in range(files):
            if kill_at and i == kill_at[0]:
                kill_at.pop(0)
                kill_hosts(c, report, t0, [victims[len(report.faults)]])
            data = block_data(seed, i)
            name = f"rank-{i}.ckpt"
            start = time.monotonic()
            try:
                with open(where / "job" / f"{name}.tmp", "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.rename(where / "job" / f"{name}.tmp", where / "job" / name)
                written[name] = digest_of(data)
                ok = True
            except OSError as exc:
                ok = False
                report.fail(f"checkpoint {name} failed with {len(report.faults)} hosts down: {exc}")
            report.samples.append(Sample(start - t0, "write", time.monotonic() - start, BLOCK, ok))
        verify("same mount")
    finally:
        umount(p)
    p = mount()
    try:
        verify("fresh mount")
        leftover = [n for n in os.listdir(where / "job") if n.endswith(".tmp")]
        if leftover:
            report.fail(f"temporary files left behind: {leftover[:4]}")
    finally:
        umount(p)
    report.numbers.update(files=files, checkpoints=len(written))
    report.passed = not report.problems
