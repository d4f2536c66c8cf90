"""The background scrub: every region scrubbed once per interval, one region per step.

The leader steps it between rebuild passes, so a long scrub never holds a
rebuild back by more than one region. The time of the last full scrub (by the
background cycle or by ``ecmem scrub``) lives in ZooKeeper, so a new leader
carries on the schedule instead of starting over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from ecmem.aio import AsyncClient
from ecmem.errors import EcmemError
from ecmem.meta.records import Records
from ecmem.scrub import Scrubber, ScrubReport

log = logging.getLogger(__name__)


class ScrubCycle:
    def __init__(
        self,
        client: AsyncClient,
        interval: float,
        repair: bool = True,
        clock: Callable[[], float] = time.time,
        log_: logging.Logger = log,
    ) -> None:
        self.client = client
        self.records = Records(client.zk, client.meta.paths)
        self.interval = interval
        self.repair = repair
        self.clock = clock
        self.log = log_
        self.scrubber = Scrubber(client, clock=clock, log_=log_)
        self.queue: list[str] = []
        self.report = ScrubReport()
        self.started = 0.0
        self.first = clock()  # with no scrub on record, the first is one interval away
        self.on_report: Callable[[ScrubReport], None] = lambda _r: None
        self.on_summary: Callable[[dict[str, Any]], None] = lambda _s: None

    def due(self) -> bool:
        if self.interval <= 0:
            return False
        last = float(self.records.scrub().get("finished", 0) or self.first)
        return self.clock() - last >= self.interval

    async def checks(self) -> int:
        """Scrub, repairing, each region a reader found data lost in: what is lost is
        recorded in the region (REGION_DATA_LOST), what can be is repaired."""
        pending = await asyncio.to_thread(self.records.checks)
        for key, check in sorted(pending.items()):
            name = str(check.get("region", ""))
            if name:
                self.log.warning(
                    "region %s: a reader found data lost (%s); scrubbing it",
                    name,
                    check.get("why", "?"),
                )
                try:
                    report = await self.scrubber.run_once([name], repair=True)
                except EcmemError as exc:  # e.g. too many nodes down to take it over
                    self.log.warning("region %s: check waits: %s", name, exc)
                    continue
                if name in report.skipped:
                    continue  # open for writing: the next pass tries again
            await asyncio.to_thread(self.records.done_check, key)
        return len(pending)

    async def run_once(self) -> dict[str, Any] | None:
        """Scrub the next region of the cycle (starting one if due); returns the
        cycle's summary when this step finished it."""
        await self.checks()
        if not self.queue:
            if not await asyncio.to_thread(self.due):
                return None
            self.queue = sorted(await asyncio.to_thread(self.client.meta.region_names))
            self.report, self.started = ScrubReport(), self.clock()
            self.log.info(
                "background scrub of %d regions starting (every %.0fs, repair %s)",
                len(self.queue),
                self.interval,
                "on" if self.repair else "off",
            )
            if not self.queue:
                return await asyncio.to_thread(self._finish)
        name = self.queue.pop(0)
        part = await self.scrubber.run_once([name], self.repair)
        self.on_report(part)
        r = self.report
        r.regions += part.regions
        r.stripes += part.stripes
        r.fragments += part.fragments
        r.bytes += part.bytes
        r.findings += part.findings
        r.skipped.update(part.skipped)
        for region, why in part.skipped.items():
            self.log.warning("background scrub: region %s %s", region, why)
        return None if self.queue else await asyncio.to_thread(self._finish)

    def _finish(self) -> dict[str, Any]:
        r = self.report
        r.seconds = self.clock() - self.started
        summary = r.summary(self.clock())
        self.records.set_scrub(summary)
        self.on_summary(summary)
        self.log.log(
            logging.WARNING if r.unrepaired else logging.INFO,
            "background scrub done: %d regions, %d stripes in %.0fs; %d damaged fragments, "
            "%d repaired",
            r.regions,
            r.stripes,
            r.seconds,
            len(r.findings),
            len(r.findings) - len(r.unrepaired),
        )
        return summary
