"""A storage node starting while a ZooKeeper server fails over registers through the
lost connection instead of exiting with a traceback."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from kazoo.exceptions import ConnectionLoss, NodeExistsError, NoNodeError

from ecmem.meta.model import NodeInfo
from storage_node.registration import Registration


class FlakyZk:
    """Loses the connection on the first create of the ephemeral node, after applying
    it (the answer is lost, the node exists): the retry must find it its own."""

    def __init__(self) -> None:
        self.nodes: dict[str, bytes] = {}
        self.client_id = (42, b"")
        self.lost = False

    def add_listener(self, _: Any) -> None:
        pass

    def ensure_path(self, path: str) -> None:
        self.nodes.setdefault(path, b"")

    def create(self, path: str, data: bytes, ephemeral: bool = False) -> None:
        if path in self.nodes:
            raise NodeExistsError()
        self.nodes[path] = data
        if ephemeral and not self.lost:
            self.lost = True
            raise ConnectionLoss()

    def get(self, path: str) -> tuple[bytes, Any]:
        return self.nodes[path], SimpleNamespace(ephemeralOwner=42)

    def set(self, path: str, data: bytes) -> None:
        self.nodes[path] = data


def test_a_registration_whose_answer_was_lost_is_retried_and_found_ours() -> None:
    zk = FlakyZk()
    info = NodeInfo("n1", "127.0.0.1:7000", 1 << 30)
    Registration(zk, "c", info).register()  # type: ignore[arg-type]
    assert zk.lost
    live = [p for p in zk.nodes if p.endswith("/nodes/n1")]
    assert live and NodeInfo.from_json(zk.nodes[live[0]]).id == "n1"


class FlakyLeaseZk(FlakyZk):
    def create(
        self, path: str, data: bytes, ephemeral: bool = False, makepath: bool = False
    ) -> None:
        super().create(path, data, ephemeral)

    def get(self, path: str) -> tuple[bytes, Any]:
        return self.nodes[path], SimpleNamespace(ephemeralOwner=42, version=0)

    def delete(self, path: str, version: int = -1) -> None:
        if path not in self.nodes:
            raise NoNodeError()
        del self.nodes[path]
        raise ConnectionLoss()  # applied, the answer lost


def test_a_lease_taken_or_given_back_through_a_lost_connection_is_ours_or_gone() -> None:
    from ecmem.meta import lease
    from ecmem.meta.paths import Paths

    zk, paths = FlakyLeaseZk(), Paths("c")
    lease.acquire(zk, paths, "r", {"holder": "me"}, None)  # type: ignore[arg-type]
    assert zk.lost and paths.lease("r") in zk.nodes
    lease.release(zk, paths, "r")  # type: ignore[arg-type]
    assert paths.lease("r") not in zk.nodes
