"""Prometheus metrics of a storage node, served on --metrics-port."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from .store import FragmentStore

# Seconds; requests are served from RAM, so most land in the first few buckets.
BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0)


class NodeMetrics:
    def __init__(self, store: FragmentStore, node_id: str) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        Gauge("ecmem_node_bytes_stored", "Fragment bytes held in RAM", registry=r).set_function(
            lambda: store.used
        )
        Gauge("ecmem_node_capacity_bytes", "RAM offered", registry=r).set_function(
            lambda: store.capacity
        )
        Gauge(
            "ecmem_node_fragments", "Fragments held, staged or committed", registry=r
        ).set_function(lambda: len(store))
        Gauge("ecmem_node_regions", "Regions with fragments here", registry=r).set_function(
            lambda: store.stats()["regions"]
        )
        self.requests = Counter(
            "ecmem_node_requests", "Requests served, by kind", ["kind"], registry=r
        )
        self.errors = Counter(
            "ecmem_node_errors", "Requests refused, by error code", ["code"], registry=r
        )
        self.latency = Histogram(
            "ecmem_node_request_seconds",
            "Time to serve a request, by kind",
            ["kind"],
            buckets=BUCKETS,
            registry=r,
        )
        self.received = Counter("ecmem_node_received_bytes", "Fragment bytes received", registry=r)
        self._by_kind: dict[str, tuple[Any, Any]] = {}

    def observe(self, kind: str, seconds: float, error: str = "", payload: int = 0) -> None:
        pair = self._by_kind.get(kind)
        if pair is None:  # label lookups are slow; keep each kind's children
            pair = self._by_kind[kind] = (self.requests.labels(kind), self.latency.labels(kind))
        pair[0].inc()
        pair[1].observe(seconds)
        if error:
            self.errors.labels(error).inc()
        if payload:
            self.received.inc(payload)

    def serve(self, host: str, port: int) -> int:
        """Serve /metrics over HTTP on a thread; returns the port bound."""
        server, _ = start_http_server(port, host, registry=self.registry)
        return int(server.server_port)
