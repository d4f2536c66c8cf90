"""Rebuild and drain bookkeeping kept in ZooKeeper, so any coordinator (and the CLI)
sees the same state and work survives the death of whoever was doing it.

- ``coordinator/down/<node>``: when the leader first saw the node gone (the grace clock);
- ``drain/<node>``: an operator asked to empty the node;
- ``rebuild/requests/<seq>``: an operator asked to rebuild a node now (skipping the
  grace delay) or to check a region now;
- ``rebuild/tasks/<region>``: the slots of a region still to rebuild;
- ``rebuild/progress``: what the rebuilder is doing, for ``ecmem status`` and the CLI;
- ``rebuild/garbage/<seq>``: a slab's fragments on a node it moved away from;
- ``coordinator/members/<id>``: a running coordinator (ephemeral) and its metrics address;
- ``coordinator/health``: the region side of health, as the leader keeps it current.
"""

from __future__ import annotations

import json
import time
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError, NoNodeError

from ecmem.meta.paths import Paths
from ecmem.names import encode_name


def _load(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _dump(data: dict[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True).encode()


class Records:
    def __init__(self, zk: KazooClient, paths: Paths) -> None:
        self.zk = zk
        self.paths = paths

    def _children(self, folder: str) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        try:
            names = self.zk.get_children(folder)
        except NoNodeError:
            return out
        for name in names:
            try:
                raw, _ = self.zk.get(f"{folder}/{name}")
            except NoNodeError:
                continue
            out[name] = _load(raw)
        return out

    # -- running coordinators -------------------------------------------------------

    def announce(self, identifier: str, info: dict[str, Any]) -> None:
        path = f"{self.paths.coordinators}/{encode_name(identifier)}"
        try:
            self.zk.create(path, _dump(info), ephemeral=True, makepath=True)
        except NodeExistsError:
            self.zk.set(path, _dump(info))

    def coordinators(self) -> list[dict[str, Any]]:
        """The running coordinators, leader first (election order), each with its id."""
        members = {
            str(info.get("id", name)): info
            for name, info in self._children(self.paths.coordinators).items()
        }
        try:
            order = self.zk.Election(self.paths.election).contenders()
        except NoNodeError:
            order = []
        out = [
            {**members.get(str(who), {"id": str(who)}), "leader": i == 0}
            for i, who in enumerate(order)
        ]
        seen = {str(c["id"]) for c in out}
        return out + [{**m, "leader": False} for k, m in members.items() if k not in seen]

    # -- the grace clock ------------------------------------------------------------

    def down_since(self) -> dict[str, float]:
        return {n: float(d.get("since", 0.0)) for n, d in self._children(self.paths.down).items()}

    def track_down(self, registered: set[str], live: set[str], now: float) -> dict[str, float]:
        """Start the grace clock of nodes newly gone, stop it for nodes back; returns it."""
        since = self.down_since()
        for node in sorted(registered - live - set(since)):
            try:
                self.zk.create(f"{self.paths.down}/{node}", _dump({"since": now}), makepath=True)
            except NodeExistsError:
                continue
            since[node] = now
        for node in sorted(set(since) & live):
            self._delete(f"{self.paths.down}/{node}")
            del since[node]
        for node in sorted(set(since) - registered):  # forgotten with ecmem node rm
            self._delete(f"{self.paths.down}/{node}")
            del since[node]
        return since

    # -- drains -----------------------------------------------------------------------

    def drains(self) -> dict[str, dict[str, Any]]:
        return self._children(self.paths.drains)

    def start_drain(self, node: str) -> bool:
        try:
            self.zk.create(self.paths.drain(node), _dump({"since": time.time()}), makepath=True)
        except NodeExistsError:
            return False
        return True

    def stop_drain(self, node: str) -> bool:
        return self._delete(self.paths.drain(node))

    # -- requests -----------------------------------------------------------------------

    def request(self, node: str = "", region: str = "", listed_for: float = 0.0) -> str:
        """File a rebuild request; ``listed_for``: seconds the node, dead already, may
        stay listed as live (its session not yet expired) without the request lapsing."""
        now = time.time()
        record = {"node": node, "region": region, "since": now}
        if listed_for:
            record["listed_until"] = now + listed_for
        path: str = self.zk.create(
            f"{self.paths.rebuild_requests}/r-",
            _dump(record),
            sequence=True,
            makepath=True,
        )
        return path.rsplit("/", 1)[-1]

    def requests(self) -> dict[str, dict[str, Any]]:
        return self._children(self.paths.rebuild_requests)

    def done_request(self, name: str) -> None:
        self._delete(f"{self.paths.rebuild_requests}/{name}")

    # -- tasks and progress ---------------------------------------------------------------

    def set_tasks(self, tasks: dict[str, list[list[Any]]]) -> None:
        """Replace the task list: region name -> [[slab, index, holder, reason], ...]."""
        current = self._children(self.paths.rebuild_tasks)
        for region, slots in tasks.items():
            path = f"{self.paths.rebuild_tasks}/{encode_name(region)}"
            data = _dump({"region": region, "slots": slots})
            if current.get(encode_name(region)) == _load(data):
                continue  # unchanged since the last pass
            try:
                self.zk.create(path, data, makepath=True)
            except NodeExistsError:
                self.zk.set(path, data)
        wanted = {encode_name(r) for r in tasks}
        for name in current:
            if name not in wanted:
                self._delete(f"{self.paths.rebuild_tasks}/{name}")

    def tasks(self) -> dict[str, list[list[Any]]]:
        return {
            str(d.get("region", k)): list(d.get("slots", []))
            for k, d in self._children(self.paths.rebuild_tasks).items()
        }

    def set_progress(self, progress: dict[str, Any]) -> None:
        data = _dump(progress)
        try:
            self.zk.set(self.paths.rebuild_progress, data)
        except NoNodeError:
            try:
                self.zk.create(self.paths.rebuild_progress, data, makepath=True)
            except NodeExistsError:
                self.zk.set(self.paths.rebuild_progress, data)

    def progress(self) -> dict[str, Any]:
        try:
            raw, _ = self.zk.get(self.paths.rebuild_progress)
        except NoNodeError:
            return {}
        return _load(raw)

    # -- the leader's health summary -------------------------------------------------

    def set_health(self, summary: dict[str, Any]) -> None:
        self.put(f"{self.paths.root}/coordinator/health", _dump(summary))

    def health(self) -> dict[str, Any]:
        """The region side of health as the leader last worked it out ({} if none)."""
        try:
            raw, _ = self.zk.get(f"{self.paths.root}/coordinator/health")
        except NoNodeError:
            return {}
        return _load(raw)

    def put(self, path: str, data: bytes) -> None:
        """Set ``path`` to ``data``, creating it (and its folders) if need be."""
        try:
            self.zk.set(path, data)
        except NoNodeError:
            try:
                self.zk.create(path, data, makepath=True)
            except NodeExistsError:
                self.zk.set(path, data)

    # -- scrub results ------------------------------------------------------------------

    def set_scrub(self, summary: dict[str, Any]) -> None:
        path = f"{self.paths.rebuild}/scrub"
        data = _dump(summary)
        try:
            self.zk.set(path, data)
        except NoNodeError:
            self.zk.create(path, data, makepath=True)

    def scrub(self) -> dict[str, Any]:
        try:
            raw, _ = self.zk.get(f"{self.paths.rebuild}/scrub")
        except NoNodeError:
            return {}
        return _load(raw)

    # -- regions readers found data lost in --------------------------------------------

    def checks(self) -> dict[str, dict[str, Any]]:
        return self._children(self.paths.checks)

    def done_check(self, name: str) -> None:
        self._delete(f"{self.paths.checks}/{name}")

    # -- garbage ------------------------------------------------------------------------------

    def add_garbage(self, entry: dict[str, Any]) -> None:
        self.zk.create(f"{self.paths.garbage}/g-", _dump(entry), sequence=True, makepath=True)

    def garbage(self) -> dict[str, dict[str, Any]]:
        return self._children(self.paths.garbage)

    def done_garbage(self, name: str) -> None:
        self._delete(f"{self.paths.garbage}/{name}")

    def _delete(self, path: str) -> bool:
        try:
            self.zk.delete(path)
        except NoNodeError:
            return False
        return True
