"""A smoke run of the chaos suite: scenario 1 on namespaced hosts, and nothing left after."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chaos.net import leftovers

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_kill_during_write_smoke(tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("the chaos suite needs root and iproute2 for network namespaces")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "chaos.run",
            "--scenario",
            "kill-during-write",
            "--seed",
            "5",
            "--mib",
            "48",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    report = json.loads((tmp_path / "kill-during-write-seed5.json").read_text())
    assert report["passed"] and report["numbers"]["acknowledged"] == report["numbers"]["blocks"]
    assert [f["kind"] for f in report["faults"]] == ["kill"] * 4
    assert (tmp_path / "kill-during-write-seed5.png").stat().st_size > 0
    assert leftovers() == []
    procs = subprocess.run(["pgrep", "-f", "--cluster chaos"], capture_output=True, text=True)
    assert procs.stdout.strip() == "", procs.stdout


def test_stale_writer_smoke(tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("the chaos suite needs root and iproute2 for network namespaces")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "chaos.run",
            "--scenario",
            "stale-writer",
            "--seed",
            "9",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    report = json.loads((tmp_path / "stale-writer-seed9.json").read_text())
    assert report["passed"] and report["numbers"]["writes_after_resume"] >= 1
    assert report["numbers"]["accepted_after_resume"] == 0
    assert leftovers() == []


def test_corruption_smoke(tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("the chaos suite needs root and iproute2 for network namespaces")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "chaos.run",
            "--scenario",
            "corruption",
            "--seed",
            "4",
            "--mib",
            "64",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    numbers = json.loads((tmp_path / "corruption-seed4.json").read_text())["numbers"]
    assert numbers["scrub_found"] == numbers["corrupted_fragments"] > 0
    assert leftovers() == []
