"""A smoke run of the chaos suite: scenario 1 on namespaced hosts, and nothing left after."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chaos.net import leftovers, run_id

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def run(
    tmp_path: Path, scenario: str, seed: int, mib: int, *extra: str, passes: bool = True
) -> dict:  # type: ignore[type-arg]
    """Run one scenario as a user would; its report, after checking nothing is left."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("the chaos suite needs root and iproute2 for network namespaces")
    args = ["--scenario", scenario, "--seed", str(seed), "--mib", str(mib), "--out", str(tmp_path)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "chaos.run", *args, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:  # a hung run: SIGTERM makes it clean up after itself
            proc.terminate()
            proc.communicate(timeout=60)
    assert proc.returncode == (0 if passes else 1), stdout[-3000:] + stderr[-3000:]
    run_ = run_id(proc.pid)  # this run's own namespaces, links and processes
    assert leftovers(run_) == []
    procs = subprocess.run(
        ["pgrep", "-f", f"--cluster chaos-{run_}"], capture_output=True, text=True
    )
    assert procs.stdout.strip() == "", procs.stdout
    assert (tmp_path / f"{scenario}-seed{seed}.png").stat().st_size > 0
    report = json.loads((tmp_path / f"{scenario}-seed{seed}.json").read_text())
    assert report["passed"] == passes, report["problems"][:5]
    return report  # type: ignore[no-any-return]


def test_kill_during_write_smoke(tmp_path: Path) -> None:
    report = run(tmp_path, "kill-during-write", 5, 48)
    assert report["numbers"]["acknowledged"] == report["numbers"]["blocks"]
    assert [f["kind"] for f in report["faults"]] == ["kill"] * 4


def test_stale_writer_smoke(tmp_path: Path) -> None:
    numbers = run(tmp_path, "stale-writer", 9, 16)["numbers"]
    assert numbers["writes_after_resume"] >= 1 and numbers["accepted_after_resume"] == 0


def test_corruption_smoke(tmp_path: Path) -> None:
    numbers = run(tmp_path, "corruption", 4, 64)["numbers"]
    assert numbers["scrub_found"] == numbers["corrupted_fragments"] > 0


def test_stale_writer_fails_on_a_build_without_fencing(tmp_path: Path) -> None:
    """The scenario can fail: with fencing switched off, the stale writer's writes are
    acknowledged and the checker says so."""
    report = run(tmp_path, "stale-writer", 9, 16, "--break", "no-fencing", passes=False)
    assert report["numbers"]["accepted_after_resume"] > 0
    assert any("stale-epoch write" in p for p in report["problems"]), report["problems"][:5]


def test_corruption_fails_on_a_build_without_checksums(tmp_path: Path) -> None:
    report = run(tmp_path, "corruption", 4, 64, "--break", "no-checksums", passes=False)
    assert any("WRONG BYTES" in p for p in report["problems"]), report["problems"][:5]


def test_restart_empty_smoke(tmp_path: Path) -> None:
    numbers = run(tmp_path, "restart-empty", 3, 16)["numbers"]
    assert numbers["rounds"] == 3 and numbers["wrong_blocks"] == 0


def test_restart_empty_fails_on_a_build_that_reads_not_found_as_holes(tmp_path: Path) -> None:
    report = run(tmp_path, "restart-empty", 3, 16, "--break", "not-found-is-hole", passes=False)
    assert any("zeros where data was written" in p for p in report["problems"]), report["problems"][
        :5
    ]


def test_page_log_smoke(tmp_path: Path) -> None:
    numbers = run(tmp_path, "page-log", 14, 64)["numbers"]
    assert numbers["pages_written"] > 8 and numbers["pages_lost"] == 0


def test_page_log_fails_on_a_build_that_acknowledges_patches_early(tmp_path: Path) -> None:
    """With patches acknowledged once the fragment's node alone holds them, killing that
    node loses acknowledged page writes, and the scenario names them."""
    report = run(tmp_path, "page-log", 14, 64, "--break", "early-ack", passes=False)
    assert report["numbers"]["pages_lost"] > 0
    assert any("acknowledged page write" in p for p in report["problems"]), report["problems"][:5]
