"""README's snippets run as written, against a local cluster of their own.

Every fenced ```sh and ```python block in README.md runs, in order, with a local
cluster started by 'ecmem up' in a temporary state directory (ECMEM_STATE_DIR), so
the README cannot drift from the product. A block that cannot run in a test says so
with an HTML comment on the line before it:

    <!-- readme-test: skip (the reason) -->

and is skipped with that reason; any other block that fails fails the test.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SKIP = re.compile(r"<!--\s*readme-test:\s*skip\s*\((.+)\)\s*-->")


@dataclass(frozen=True)
class Block:
    line: int  # where its fence opens, 1-based
    lang: str
    code: str
    skip: str  # the reason given in a skip marker, or ""


def blocks(text: str) -> list[Block]:
    out = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = re.fullmatch(r"```(\w+)\s*", lines[i])
        if m is None:
            i += 1
            continue
        start = i
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        marker = SKIP.search(lines[start - 1]) if start > 0 else None
        if m.group(1) in ("sh", "python"):
            code = "\n".join(lines[start + 1 : end]) + "\n"
            out.append(Block(start + 1, m.group(1), code, marker.group(1) if marker else ""))
        i = end + 1
    return out


README = blocks((ROOT / "README.md").read_text())


def test_readme_has_snippets_to_run() -> None:
    assert sum(1 for b in README if not b.skip) >= 4, "README's runnable snippets went missing"
    assert all(b.lang in ("sh", "python") for b in README)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment a README reader has: ecmem and the venv's python on PATH, a local
    cluster in the state directory, no ECMEM_ZK."""
    work = tmp_path_factory.mktemp("readme")
    e = {k: v for k, v in os.environ.items() if not k.startswith("ECMEM_")}
    e["ECMEM_STATE_DIR"] = str(work / ".ecmem")
    e["PATH"] = f"{Path(sys.executable).parent}:{e.get('PATH', '')}"
    e["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), e.get("PYTHONPATH", "")) if p)
    e["README_WORK"] = str(work)
    (work / ".venv").symlink_to(ROOT / ".venv")  # the reader's checkout: '. .venv/bin/activate'
    up = subprocess.run(
        [sys.executable, "-m", "ecmem.cli.main", "up", "--nodes", "6", "--capacity", "1GiB"],
        env=e,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert up.returncode == 0, up.stderr
    try:
        yield e
    finally:
        subprocess.run([sys.executable, "-m", "ecmem.cli.main", "down"], env=e, capture_output=True)


@pytest.mark.parametrize("block", README, ids=[f"{b.lang}-line{b.line}" for b in README])
def test_readme_snippet(block: Block, env: dict[str, str]) -> None:
    if block.skip:
        print(f"README line {block.line}: skipped: {block.skip}")
        pytest.skip(f"README line {block.line}: {block.skip}")
    work = Path(env["README_WORK"])
    if block.lang == "sh":
        cmd = ["bash", "-c", "set -euo pipefail\n" + block.code]
    else:
        cmd = [sys.executable, "-c", block.code]
    out = subprocess.run(cmd, env=env, cwd=work, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, (
        f"README line {block.line} ({block.lang}) failed with exit code {out.returncode}:\n"
        f"{block.code}\n--- stdout\n{out.stdout}\n--- stderr\n{out.stderr}"
    )
