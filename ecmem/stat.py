"""The public record of a region, as ``stat`` and ``list_regions`` return it."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ecmem.meta.model import RegionMeta

from .layout import Layout


@dataclass(frozen=True)
class RegionStat:
    name: str
    size: int
    policy: str
    mode: int
    owner: str
    mtime: float
    ctime: float
    id: str
    stripe_size: int
    slab_size: int
    slabs: int

    @classmethod
    def of(cls, meta: RegionMeta) -> RegionStat:
        layout = Layout.of(meta.policy, meta.chunk, meta.slab_stripes)
        return cls(
            name=meta.name,
            size=meta.size,
            policy=meta.policy,
            mode=meta.mode,
            owner=meta.owner,
            mtime=meta.mtime,
            ctime=meta.ctime,
            id=meta.id,
            stripe_size=layout.stripe_data,
            slab_size=layout.slab_size,
            slabs=len(meta.slabs),
        )

    def to_dict(self) -> dict[str, Any]:
        # By hand: dataclasses.asdict deep-copies, which costs seconds for a listing of
        # a hundred thousand regions.
        return {f: getattr(self, f) for f in _FIELDS}


_FIELDS = [f.name for f in fields(RegionStat)]
