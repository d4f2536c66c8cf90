"""The mount's view of the region namespace, as pure functions and an inode table.

A mount shows the regions under a prefix: region ``ckpt/job1/rank0`` is the file
``job1/rank0`` of a mount with prefix ``ckpt``. Directories are the names'
parents, plus those made with mkdir (kept in ZooKeeper so they exist while empty).
"""

from __future__ import annotations

from collections.abc import Iterable

from ecmem.meta.catalog import TRASH

ROOT_INODE = 1


def region_name(prefix: str, path: str) -> str:
    """The region (or directory record) behind a mount path ('' is the mount's root)."""
    return "/".join(p for p in (prefix, path) if p)


def mount_path(prefix: str, name: str) -> str | None:
    """The mount path of a region name, or None if the mount does not show it."""
    if not prefix:
        return None if name == TRASH or name.startswith(TRASH + "/") else name
    if name.startswith(prefix + "/"):
        return name[len(prefix) + 1 :]
    return None


def join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def parent_of(path: str) -> str:
    return path.rpartition("/")[0]


def children(path: str, names: Iterable[str]) -> tuple[set[str], set[str]]:
    """Entries directly in directory ``path``, given every mount path of a region or
    directory record: (those that are themselves names, those that are only parents)."""
    lead = path + "/" if path else ""
    direct: set[str] = set()
    implied: set[str] = set()
    for n in names:
        if not n.startswith(lead) or n == path:
            continue
        rest = n[len(lead) :]
        head, sep, _ = rest.partition("/")
        if not head:
            continue
        (implied if sep else direct).add(head)
    return direct, implied - direct


def is_under(path: str, top: str) -> bool:
    return path == top or path.startswith(top + "/")


class Inodes:
    """Inode numbers for mount paths, stable for the life of the mount."""

    def __init__(self) -> None:
        self._by_path: dict[str, int] = {"": ROOT_INODE}
        self._by_ino: dict[int, str] = {ROOT_INODE: ""}
        self._next = ROOT_INODE + 1

    def ino(self, path: str) -> int:
        ino = self._by_path.get(path)
        if ino is None:
            ino = self._next
            self._next += 1
            self._by_path[path] = ino
            self._by_ino[ino] = path
        return ino

    def path(self, ino: int) -> str | None:
        return self._by_ino.get(ino)

    def known(self, path: str) -> int | None:
        return self._by_path.get(path)

    def move(self, old: str, new: str) -> None:
        """A rename: ``old`` and everything under it now live at ``new``; whatever was
        at ``new`` loses its number."""
        for path in [p for p in self._by_path if is_under(p, new)]:
            del self._by_ino[self._by_path.pop(path)]
        for path in [p for p in self._by_path if is_under(p, old)]:
            ino = self._by_path.pop(path)
            moved = new + path[len(old) :]
            self._by_path[moved] = ino
            self._by_ino[ino] = moved

    def drop(self, path: str) -> None:
        ino = self._by_path.pop(path, None)
        if ino is not None:
            del self._by_ino[ino]
