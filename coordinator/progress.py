"""What a rebuild pass did and has left, as kept in ZooKeeper for ``ecmem status``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ecmem.damage import Slot


@dataclass
class Progress:
    """What a rebuild pass did and has left, as kept in ZooKeeper."""

    state: str = "idle"  # idle, waiting (grace or leases), running
    started: float = 0.0
    updated: float = 0.0
    bytes_done: int = 0
    bytes_total: int = 0
    slots_done: int = 0
    slots_total: int = 0
    waiting: dict[str, str] = field(default_factory=dict)  # what holds work back, and why
    grace: dict[str, float] = field(default_factory=dict)  # node -> seconds before rebuild
    unrecoverable: list[str] = field(default_factory=list)
    grace_delay: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def tasks_of(slots: list[Slot]) -> dict[str, list[list[Any]]]:
    out: dict[str, list[list[Any]]] = {}
    for s in slots:
        out.setdefault(s.region, []).append([s.slab, s.index, list(s.holder), s.reason])
    return out
