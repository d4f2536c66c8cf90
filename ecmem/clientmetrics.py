"""What a client saw go wrong, as Prometheus counters in a registry of its own.

A healthy cluster under load keeps every one of these at zero; ``make bench`` prints
them after its run. A program that serves its own metrics can add
``client.metrics.registry`` to what it exposes.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

NAMES = ("suspicions", "handoffs", "degraded_reads")


class ClientMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.suspicions = Counter(
            "ecmem_client_suspicions", "Times a node was judged silent by heartbeats", registry=r
        )
        self.handoffs = Counter(
            "ecmem_client_handoffs", "Fragment slots this client's writes handed off", registry=r
        )
        self.degraded_reads = Counter(
            "ecmem_client_degraded_reads", "Stripes read around a missing fragment", registry=r
        )

    def snapshot(self) -> dict[str, float]:
        """Every counter's value by its short name."""
        out = {}
        for name in NAMES:
            value = self.registry.get_sample_value(f"ecmem_client_{name}_total")
            out[name] = float(value or 0.0)
        return out
