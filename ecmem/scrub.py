"""The scrubber: reads every fragment of a region and checks it.

Each fragment must be present on its holder, the right length, and match the
page checksums its writer computed; and a stripe's fragments must agree with
each other (parity re-encoded from the data equals the stored parity; replicas
are identical). A finding names the region, slab, stripe, fragment and node.
With repair, the damaged fragments are rebuilt from the good ones and stored
back, under the region's write lease, as the rebuilder does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ecmem import extents
from ecmem.aio import AsyncClient
from ecmem.errors import EcmemError, Fenced, RegionBusy, RegionNotFound
from ecmem.logs import where
from ecmem.meta.model import RegionMeta
from ecmem.policy import ECPolicy
from ecmem.stripes import Failed, Got, RegionView

from .repair import Committed, committed_versions, fetch_raw, store_fragment

log = logging.getLogger(__name__)

WINDOW = 4


@dataclass
class Finding:
    region: str
    slab: int
    stripe: int
    index: int
    node: str
    problem: str
    repaired: bool = False


@dataclass
class ScrubReport:
    regions: int = 0
    stripes: int = 0
    fragments: int = 0
    bytes: int = 0
    seconds: float = 0.0
    findings: list[Finding] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # region -> why not scrubbed

    @property
    def unrepaired(self) -> list[Finding]:
        return [f for f in self.findings if not f.repaired]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["unrepaired"] = len(self.unrepaired)
        return out

    def summary(self, when: float) -> dict[str, Any]:
        """What ``ecmem status`` shows of the last scrub."""
        return {
            "finished": when,
            "regions": self.regions,
            "bytes": self.bytes,
            "found": len(self.findings),
            "unrepaired": [
                f"{f.region} slab {f.slab} stripe {f.stripe} fragment {f.index} on "
                f"{f.node or 'no node'}: {f.problem}"
                for f in self.unrepaired[:20]
            ],
        }


class Scrubber:
    def __init__(
        self,
        client: AsyncClient,
        clock: Callable[[], float] = time.monotonic,
        log_: logging.Logger = log,
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        self.client = client
        self.clock = clock
        self.log = log_
        self.on_bytes = on_bytes

    async def run_once(self, regions: list[str] | None = None, repair: bool = False) -> ScrubReport:
        """Scrub the named regions (default: all), repairing what it finds if asked."""
        start = self.clock()
        names = (
            regions
            if regions is not None
            else await asyncio.to_thread(self.client.meta.region_names)
        )
        report = ScrubReport()
        for name in names:
            try:
                await self._region(name, repair, report)
            except RegionNotFound:
                continue
        report.seconds = self.clock() - start
        if report.findings:
            self.log.warning(
                "scrub: %d damaged fragments in %d regions (%d repaired)",
                len(report.findings),
                len({f.region for f in report.findings}),
                len(report.findings) - len(report.unrepaired),
            )
        return report

    async def _region(self, name: str, repair: bool, report: ScrubReport) -> None:
        meta = await self.client.region_meta(name)
        report.regions += 1
        found = await self._scan(meta, report, count=True)
        if not found or not repair:
            report.findings += found
            return
        try:
            await self.client.writer(name, None)
        except RegionBusy as exc:
            report.skipped[name] = f"not repaired: open for writing by {exc.holder}"
            report.findings += found
            return
        try:
            # Look again under the lease: a write in flight may have explained a finding.
            meta = await self.client.region_meta(name)
            stripes = {(f.slab, f.stripe) for f in found}
            again = await self._scan(meta, report, only=stripes)
            await self._repair(meta, again)
            report.findings += again
        finally:
            await self.client.release(name)

    async def _scan(
        self,
        meta: RegionMeta,
        report: ScrubReport,
        count: bool = False,
        only: set[tuple[int, int]] | None = None,
    ) -> list[Finding]:
        view = self.client.make_view(meta)
        found: list[Finding] = []
        sem = asyncio.Semaphore(WINDOW)
        for slab in sorted(meta.slabs):
            if only is not None and not any(s == slab for s, _ in only):
                continue
            partial = {i for s, i in meta.partial if s == slab}
            committed = await committed_versions(self.client, meta, view, slab, set())

            async def check(
                stripe: int, entry: Any, slab: int = slab, partial: set[int] = partial
            ) -> None:
                async with sem:
                    found.extend(await self._stripe(meta, view, slab, stripe, entry, partial))

            first = slab * meta.slab_stripes
            span = extents.within(meta.written, first, first + meta.slab_stripes)
            # A written stripe no node has a copy of: every fragment is a finding.
            gone = {s: None for s in extents.stripes(span) if s not in committed}
            items: list[tuple[int, Any]] = [
                (stripe, entry)
                for stripe, entry in sorted({**committed, **gone}.items())
                if only is None or (slab, stripe) in only
            ]
            await asyncio.gather(*(check(s, e) for s, e in items))
            if count:
                size = view.layout.fragment_size
                report.stripes += len(items)
                report.fragments += sum(len(meta.slabs[slab]) for _ in items)
                report.bytes += size * len(meta.slabs[slab]) * len(items)
                if self.on_bytes is not None:
                    self.on_bytes(size * len(meta.slabs[slab]) * len(items))
        return found

    async def _stripe(
        self,
        meta: RegionMeta,
        view: RegionView,
        slab: int,
        stripe: int,
        entry: tuple[int, tuple[int, int, int], set[int]] | None,
        partial: set[int],
    ) -> list[Finding]:
        placement = meta.slabs[slab]
        if entry is None:
            return [
                Finding(meta.name, slab, stripe, i, n, "no copy of this written stripe anywhere")
                for i, (n, _) in enumerate(placement)
            ]
        version, _, _ = entry
        layout = view.layout
        out: list[Finding] = []
        frags: dict[int, bytes] = {}

        def finding(i: int, problem: str) -> None:
            out.append(Finding(meta.name, slab, stripe, i, placement[i][0], problem))

        indexes = [i for i, (n, _) in enumerate(placement) if n and i not in partial]
        outcomes = await asyncio.gather(
            *(fetch_raw(self.client, view, stripe, i, version) for i in indexes)
        )
        for i, o in zip(indexes, outcomes, strict=True):
            if isinstance(o, Got):
                frags[i] = bytes(o.data)
            else:
                finding(i, getattr(o, "why", "missing"))
        policy = layout.policy
        if len(frags) < policy.k:  # vacant slots matter too once the stripe is short
            for i, (n, _) in enumerate(placement):
                if not n:
                    finding(i, "no node holds this fragment, and too few are left elsewhere")
        if len(frags) == policy.width:
            for i in _disagreeing(policy, frags, layout.chunk):
                finding(i, "does not agree with the stripe's other fragments")
        return out

    async def _repair(self, meta: RegionMeta, found: list[Finding]) -> None:
        view = self.client.make_view(meta)
        w = self.client.writer_of(meta.name)
        policy = view.layout.policy
        by_stripe: dict[tuple[int, int], list[Finding]] = {}
        for f in found:
            by_stripe.setdefault((f.slab, f.stripe), []).append(f)
        cache: dict[int, Committed] = {}
        lost: list[int] = []
        for (slab, stripe), items in sorted(by_stripe.items()):
            if slab not in cache:
                cache[slab] = await committed_versions(self.client, meta, view, slab, set())
            entry = cache[slab].get(stripe)
            if entry is None:
                if view.is_written(stripe):
                    lost.append(stripe)
                continue
            version, write, _ = entry
            bad = {f.index for f in items}
            good: dict[int, bytes] = {}
            size = view.layout.fragment_size
            maybe = 0  # holders that did not answer: they may hold it still
            for i, (n, _) in enumerate(meta.slabs[slab]):
                if i in bad or not n or len(good) >= policy.k:
                    continue
                o = await fetch_raw(self.client, view, stripe, i, version)
                if isinstance(o, Got):
                    good[i] = bytes(o.data)
                elif isinstance(o, Failed) and not o.gone:
                    maybe += 1
            if len(good) < policy.k and len(good) + maybe >= policy.k:
                self.log.warning(
                    "scrub: region %s stripe %d: holders did not answer; not repaired now",
                    meta.name,
                    stripe,
                    extra=where(meta.name, slab),
                )
                continue
            if len(good) < policy.k:
                self.log.error(
                    "scrub: region %s stripe %d: only %d good fragments, cannot repair",
                    meta.name,
                    stripe,
                    len(good),
                    extra=where(meta.name, slab),
                )
                lost.append(stripe)
                continue
            if isinstance(policy, ECPolicy):
                rebuilt = policy.reconstruct(good, sorted(bad))
            else:
                rebuilt = {i: next(iter(good.values())) for i in bad}
            for f in items:
                try:
                    await store_fragment(
                        self.client,
                        meta,
                        stripe,
                        f.index,
                        version,
                        write,
                        rebuilt[f.index],
                        size,
                        meta.slabs[slab][f.index],
                        w.epoch,
                    )
                except EcmemError as exc:
                    self.log.error(
                        "scrub: could not repair %s: %s",
                        f,
                        exc,
                        extra=where(f.region, f.slab, f.index, f.node),
                    )
                    continue
                f.repaired = True
                self.log.warning(
                    "scrub: region %s slab %d stripe %d fragment %d on %s repaired (%s)",
                    f.region,
                    f.slab,
                    f.stripe,
                    f.index,
                    f.node,
                    f.problem,
                    extra=where(f.region, f.slab, f.index, f.node),
                )

        if lost:
            await self._record_lost(meta, w.epoch, extents.of(lost))

    async def _record_lost(self, meta: RegionMeta, epoch: int, lost: extents.Ranges) -> None:
        def change(m: RegionMeta) -> RegionMeta | None:
            if m.epoch != epoch:
                raise Fenced(f"region {m.name}: a writer took over during the scrub")
            new = extents.union(m.lost, extents.intersect(lost, m.written))
            if new == m.lost:
                return None
            m.lost = new
            return m

        await asyncio.to_thread(self.client.meta.update_region, meta.name, change)
        self.log.error(
            "scrub: region %s: stripes %s are lost (too few fragments left on any node); "
            "recorded (REGION_DATA_LOST). Restore the region from a copy, or accept the loss "
            "with 'ecmem region mark-lost-ok %s'",
            meta.name,
            extents.describe(lost),
            meta.name,
            extra=where(meta.name),
        )


def _disagreeing(policy: Any, frags: dict[int, bytes], chunk: int) -> list[int]:
    """Fragments that differ from what the others say they should be."""
    if not isinstance(policy, ECPolicy):
        counts: dict[bytes, int] = {}
        for f in frags.values():
            counts[f] = counts.get(f, 0) + 1
        majority = max(counts, key=lambda f: counts[f])
        return [i for i, f in frags.items() if f != majority]
    data = policy.decode({i: frags[i] for i in range(policy.k) if i in frags}, chunk)
    expected = policy.encode(data)
    return [i for i, f in frags.items() if f != expected[i]]
