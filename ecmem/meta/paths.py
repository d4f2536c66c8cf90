"""Where things live in ZooKeeper, under ``/ecmem/<cluster>/``."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from ..errors import ConfigError
from ..names import encode_name

_CLUSTER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Region records are spread over this many folders by a hash of the name: one folder of
# 100,000 names would pass ZooKeeper's 1 MiB packet limit when listed, and a watch on it
# would fetch them all again at every create. 64 folders hold ~10 million names.
BUCKETS = 64


def bucket_of(component: str) -> str:
    """The folder (two hex digits) of an encoded region name."""
    digest = hashlib.blake2b(component.encode(), digest_size=2).digest()
    return f"{int.from_bytes(digest, 'big') % BUCKETS:02x}"


@dataclass(frozen=True)
class Paths:
    cluster: str

    def __post_init__(self) -> None:
        if not _CLUSTER_RE.match(self.cluster):
            raise ConfigError(
                f"cluster name {self.cluster!r} is not valid: use letters, digits, '.', '_' "
                "or '-', up to 64 characters"
            )

    @property
    def root(self) -> str:
        return f"/ecmem/{self.cluster}"

    @property
    def nodes(self) -> str:
        """Ephemeral znodes of live storage nodes."""
        return f"{self.root}/nodes"

    @property
    def registry(self) -> str:
        """Persistent records of every node that ever joined, live or not."""
        return f"{self.root}/registry"

    @property
    def regions(self) -> str:
        """Region records, ``<bucket>/<encoded name>``."""
        return f"{self.root}/catalog"

    @property
    def buckets(self) -> list[str]:
        return [f"{self.regions}/{b:02x}" for b in range(BUCKETS)]

    @property
    def legacy_regions(self) -> str:
        """Where region records lived in one flat folder, before buckets (migrated)."""
        return f"{self.root}/regions"

    @property
    def dirs(self) -> str:
        """Directories made with mkdir on a mount (others exist by their regions' names)."""
        return f"{self.root}/dirs"

    def dir(self, name: str) -> str:
        return f"{self.dirs}/{encode_name(name)}"

    @property
    def leases(self) -> str:
        """Ephemeral write leases, one per region being written."""
        return f"{self.root}/leases"

    def lease(self, name: str) -> str:
        return f"{self.leases}/{encode_name(name)}"

    @property
    def election(self) -> str:
        return f"{self.root}/coordinator/election"

    @property
    def coordinators(self) -> str:
        """An ephemeral znode per running coordinator: where its metrics are served."""
        return f"{self.root}/coordinator/members"

    @property
    def drains(self) -> str:
        """A znode per node being drained (or drained), kept until the node is removed."""
        return f"{self.root}/drain"

    def drain(self, node_id: str) -> str:
        return f"{self.drains}/{node_id}"

    @property
    def down(self) -> str:
        """When the coordinator first saw each missing node gone (the grace clock)."""
        return f"{self.root}/coordinator/down"

    @property
    def rebuild(self) -> str:
        """Rebuild state: tasks per region, requests from the CLI, progress."""
        return f"{self.root}/rebuild"

    @property
    def rebuild_tasks(self) -> str:
        return f"{self.rebuild}/tasks"

    @property
    def rebuild_requests(self) -> str:
        return f"{self.rebuild}/requests"

    @property
    def rebuild_progress(self) -> str:
        return f"{self.rebuild}/progress"

    @property
    def garbage(self) -> str:
        """Fragments left on nodes a slab moved away from, to be deleted there."""
        return f"{self.rebuild}/garbage"

    @property
    def checks(self) -> str:
        """Regions a reader found data lost in, for the leader to confirm and record."""
        return f"{self.rebuild}/checks"

    def check(self, name: str) -> str:
        return f"{self.checks}/{encode_name(name)}"

    def node(self, node_id: str) -> str:
        return f"{self.nodes}/{node_id}"

    def registered(self, node_id: str) -> str:
        return f"{self.registry}/{node_id}"

    def region(self, name: str) -> str:
        component = encode_name(name)
        return f"{self.regions}/{bucket_of(component)}/{component}"
