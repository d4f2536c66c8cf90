"""Every chaos scenario by name: what ``python -m chaos.run --scenario`` accepts.

The one registry: each entry is (scenario, storage hosts it needs, the coordinator's
rebuild grace in seconds). Those in ANY_TARGET also run against a deployment of the
user's (chaos/remote.py); partitions and memory-losing restarts need this machine's
namespaced hosts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .report import RunReport
from .scenarios.beyond_m import beyond_m
from .scenarios.corruption import corruption
from .scenarios.kill_during_write import kill_during_write
from .scenarios.mount_under_failure import mount_under_failure
from .scenarios.page_log import page_log
from .scenarios.partitions import partition, partition_host, partition_ring
from .scenarios.rebuild_cli_killed import rebuild_cli_killed
from .scenarios.restart_empty import restart_empty
from .scenarios.slow_host import slow_host
from .scenarios.stale_writer import stale_writer
from .scenarios.thrash import page_writes, thrash

Entry = tuple[Callable[[Any, int, int, RunReport], None], int, float]

ANY_TARGET: dict[str, Entry] = {
    # K+M hosts must survive the first M deaths for redundancy to come back: 8 for ec:4+2.
    "kill-during-write": (kill_during_write, 8, 2.0),
    "stale-writer": (stale_writer, 7, 2.0),
    "corruption": (corruption, 6, 2.0),
    "slow-host": (slow_host, 7, 2.0),
    # A grace delay longer than the run: only the operator's request drives this rebuild.
    "rebuild-cli-killed": (rebuild_cli_killed, 7, 600.0),
    "beyond-m": (beyond_m, 6, 600.0),
    "mount-under-failure": (mount_under_failure, 8, 2.0),
    "thrash": (thrash, 7, 2.0),
    "page-writes": (page_writes, 7, 2.0),
    # A grace delay longer than the run: the reads must find the patches, not a rebuild.
    "page-log": (page_log, 6, 600.0),
}

SCENARIOS: dict[str, Entry] = {
    **ANY_TARGET,
    "partition": (partition, 6, 2.0),
    "partition-host": (partition_host, 7, 2.0),
    "partition-ring": (partition_ring, 6, 2.0),
    "restart-empty": (restart_empty, 8, 2.0),
}

# Scenarios whose storage hosts keep fragments in RAM only, so that a restart loses them.
IN_MEMORY = {"restart-empty"}

__all__ = ["ANY_TARGET", "IN_MEMORY", "SCENARIOS"]
