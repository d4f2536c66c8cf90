"""Prometheus metrics of a coordinator, served on --metrics-port.

Every coordinator serves them; only the leader's rebuild and scrub figures
move (``ecmem_coordinator_leader`` says which one that is).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from ecmem.health import HEALTH_ERR, HEALTH_OK, HealthReport
from ecmem.scrub import ScrubReport

from .progress import Progress

HEALTH_CODES = {HEALTH_OK: 0, HEALTH_ERR: 2}  # anything else is a warning: 1


def problem_kind(problem: str) -> str:
    """A scrub finding's problem as a bounded label value."""
    for word, kind in (
        ("checksum", "checksum"),
        ("bytes, expected", "length"),
        ("agree", "parity"),
        ("lacks", "missing"),
        ("missing", "missing"),
        ("restarted", "missing"),
    ):
        if word in problem:
            return kind
    return "unreadable"


class CoordinatorMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.leader = Gauge("ecmem_coordinator_leader", "1 on the elected leader", registry=r)
        self.health = Gauge(
            "ecmem_cluster_health", "Cluster health: 0 OK, 1 WARN, 2 ERR", registry=r
        )
        self.nodes = Gauge("ecmem_cluster_nodes", "Storage nodes, by state", ["state"], registry=r)
        self.stripes = Gauge(
            "ecmem_cluster_stripes", "Stripes of all regions, by redundancy", ["state"], registry=r
        )
        self.checks = Gauge(
            "ecmem_cluster_check", "Failing health checks, by code", ["code"], registry=r
        )
        self.rebuild_bytes = Counter(
            "ecmem_rebuild_bytes", "Fragment bytes reconstructed and stored", registry=r
        )
        self.rebuild_slots = Counter(
            "ecmem_rebuild_slots", "Fragment slots rebuilt (placements switched)", registry=r
        )
        self.rebuild_passes = Counter("ecmem_rebuild_passes", "Rebuild passes run", registry=r)
        self.rebuild_pending_bytes = Gauge(
            "ecmem_rebuild_pending_bytes", "Fragment bytes the current pass has left", registry=r
        )
        self.rebuild_pending_slots = Gauge(
            "ecmem_rebuild_pending_slots", "Fragment slots the current pass has left", registry=r
        )
        self.rebuild_waiting = Gauge(
            "ecmem_rebuild_waiting_nodes", "Down nodes inside the rebuild grace delay", registry=r
        )
        self.scrub_bytes = Counter("ecmem_scrub_bytes", "Fragment bytes scrubbed", registry=r)
        self.scrub_findings = Counter(
            "ecmem_scrub_findings", "Damaged fragments found, by problem", ["problem"], registry=r
        )
        self.scrub_repaired = Counter(
            "ecmem_scrub_repaired", "Damaged fragments repaired", registry=r
        )
        self.scrub_unrepaired = Gauge(
            "ecmem_scrub_unrepaired",
            "Damaged fragments the last full scrub left unrepaired",
            registry=r,
        )
        self.scrub_finished = Gauge(
            "ecmem_scrub_last_finished_seconds",
            "Unix time the last full scrub finished",
            registry=r,
        )
        self._codes: set[str] = set()

    def observe_health(self, report: HealthReport) -> None:
        self.health.set(HEALTH_CODES.get(report.status, 1))
        self.nodes.labels("up").set(report.nodes_up)
        self.nodes.labels("down").set(report.nodes_total - report.nodes_up - len(report.out))
        self.nodes.labels("out").set(len(report.out))
        self.stripes.labels("total").set(report.stripes)
        self.stripes.labels("degraded").set(report.degraded_stripes)
        self.stripes.labels("unavailable").set(report.unavailable_stripes)
        failing = {c.code for c in report.checks if c.severity != "info"}
        for code in self._codes | failing:
            self.checks.labels(code).set(1 if code in failing else 0)
        self._codes |= failing

    def observe_rebuild(self, progress: Progress) -> None:
        self.rebuild_passes.inc()
        self.rebuild_pending_bytes.set(max(0, progress.bytes_total - progress.bytes_done))
        self.rebuild_pending_slots.set(max(0, progress.slots_total - progress.slots_done))
        self.rebuild_waiting.set(len(progress.grace))

    def observe_scrub(self, report: ScrubReport) -> None:
        self.scrub_bytes.inc(report.bytes)
        for f in report.findings:
            self.scrub_findings.labels(problem_kind(f.problem)).inc()
            if f.repaired:
                self.scrub_repaired.inc()

    def observe_scrub_summary(self, summary: dict[str, object]) -> None:
        unrepaired = summary.get("unrepaired") or []
        self.scrub_unrepaired.set(len(unrepaired) if isinstance(unrepaired, list) else 0)
        finished = summary.get("finished")
        if isinstance(finished, int | float):
            self.scrub_finished.set(finished)

    def serve(self, host: str, port: int) -> int:
        """Serve /metrics over HTTP on a thread; returns the port bound."""
        server, _ = start_http_server(port, host, registry=self.registry)
        return int(server.server_port)
