"""The code's layers run one way, and modules keep to each other's public names.

ecmem (the client library) is the ground floor: it imports nothing of the storage
node, the coordinator or the chaos suite. The storage node and the coordinator
build on ecmem only. No module reaches into another's underscore names, and no
two modules import each other, even from inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ecmem", "coordinator", "storage_node", "chaos")
# Which top-level packages each package may import.
ALLOWED = {
    "ecmem": {"ecmem"},
    "storage_node": {"ecmem", "storage_node"},
    "coordinator": {"ecmem", "coordinator"},
    "chaos": {"ecmem", "coordinator", "storage_node", "chaos"},
}
# Underscore names of the standard library's own API.
STDLIB_PRIVATE = {"_exit", "_replace", "_asdict", "_fields", "_make", "_getframe"}


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def imports(name: str, path: Path) -> set[str]:
    """Project modules ``name`` imports, at any depth of its code."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m.split(".")[0] in PACKAGES}


def test_layers_run_one_way() -> None:
    bad = []
    for name, path in modules().items():
        top = name.split(".")[0]
        for imported in imports(name, path):
            if imported.split(".")[0] not in ALLOWED[top]:
                bad.append(f"{name} imports {imported}")
    assert not bad, "\n".join(sorted(bad))


def test_no_module_touches_anothers_private_names() -> None:
    bad = []
    for name, path in modules().items():
        if name == "ecmem.aio":  # the facade over its own helpers
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Attribute):
                continue
            attr = node.attr
            if not attr.startswith("_") or attr.startswith("__") or attr in STDLIB_PRIVATE:
                continue
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: .{attr}")
    assert not bad, "\n".join(bad)


def test_no_import_cycles() -> None:
    mods = modules()
    graph = {n: {m for m in imports(n, p) if m in mods and m != n} for n, p in mods.items()}
    # A package's __init__ re-exporting its modules is not a cycle of theirs.
    for n in graph:
        graph[n] = {m for m in graph[n] if not n.startswith(m + ".")}
    seen: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[str] = []

    def visit(n: str) -> None:
        seen[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if seen.get(m) == 1:
                cycles.append(" -> ".join(stack[stack.index(m) :] + [m]))
            elif m not in seen:
                visit(m)
        stack.pop()
        seen[n] = 2

    for n in sorted(graph):
        if n not in seen:
            visit(n)
    assert not cycles, "\n".join(cycles)


def test_modules_stay_small() -> None:
    """A module over 500 lines does more than one job: split it."""
    big = [
        f"{path.relative_to(ROOT)}: {n} lines"
        for name, path in modules().items()
        if name.split(".")[0] in ("ecmem", "coordinator", "storage_node")
        and (n := len(path.read_text().splitlines())) > 500
    ]
    assert not big, "\n".join(big)
