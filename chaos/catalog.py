"""Every chaos scenario by name: what ``python -m chaos.run --scenario`` accepts."""

from __future__ import annotations

from collections.abc import Callable

from .cluster import ChaosCluster
from .partitions import PARTITIONS
from .report import RunReport
from .restarts import RESTARTS
from .scenarios import SCENARIOS as ANY_TARGET

# name -> (scenario, storage hosts it needs, the coordinator's rebuild grace in seconds).
# Those in ANY_TARGET also run against a deployment of the user's (chaos/remote.py);
# partitions and memory-losing restarts need this machine's namespaced hosts.
SCENARIOS: dict[str, tuple[Callable[[ChaosCluster, int, int, RunReport], None], int, float]] = {
    **ANY_TARGET,
    **PARTITIONS,
    **RESTARTS,
}

# Scenarios whose storage hosts keep fragments in RAM only, so that a restart loses them.
IN_MEMORY = set(RESTARTS)

__all__ = ["ANY_TARGET", "IN_MEMORY", "SCENARIOS"]
