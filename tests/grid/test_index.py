"""The leader's region index: every record in memory, kept current by watches, and the
health summary it lets the leader keep in ZooKeeper."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from kazoo.client import KazooClient

from coordinator.daemon import Monitor
from coordinator.index import RegionIndex
from ecmem.meta.catalog import MetadataStore
from ecmem.meta.model import NodeInfo, RegionMeta
from ecmem.meta.records import Records


@pytest.fixture()
def store(zk_hosts: str) -> Iterator[MetadataStore]:
    zk = KazooClient(hosts=zk_hosts)
    zk.start(timeout=10)
    md = MetadataStore(zk, f"idx-{uuid.uuid4().hex[:8]}")
    md.ensure()
    yield md
    zk.delete(md.paths.root, recursive=True)
    zk.stop()
    zk.close()


def record(name: str, size: int = 0) -> RegionMeta:
    return RegionMeta(name, uuid.uuid4().hex[:16], "ec:2+1", size, 4096, 4)


def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.01)


def test_the_index_follows_creates_changes_and_removals(store: MetadataStore) -> None:
    for i in range(50):
        store.create_region(record(f"a/{i}"))
    index = RegionIndex(store.zk, store.paths)
    assert index.start(timeout=10)
    try:
        assert set(index.snapshot()) == {f"a/{i}" for i in range(50)}
        assert len(index.take_changes("x")) == 50  # everything, the first time
        assert index.take_changes("x") == set()
        store.create_region(record("b"))
        store.update_region("a/3", lambda m: m.__class__(**{**m.__dict__, "size": 7}))
        store.delete_region("a/4")
        seen: set[str] = set()
        until(lambda: seen.update(index.take_changes("x")) or seen == {"b", "a/3", "a/4"})
        snap = index.snapshot()
        assert "b" in snap and "a/4" not in snap and snap["a/3"].size == 7
        assert len(index.take_changes("y")) == 50  # another consumer starts from all
    finally:
        index.close()


def test_a_damaged_record_is_left_out_and_reported(
    store: MetadataStore, caplog: pytest.LogCaptureFixture
) -> None:
    store.create_region(record("good"))
    store.zk.create(store.paths.region("bad"), b"{not json", makepath=True)
    index = RegionIndex(store.zk, store.paths)
    caplog.set_level(logging.WARNING, logger="coordinator")
    assert index.start(timeout=10)
    try:
        assert set(index.snapshot()) == {"good"}
        assert any("region bad" in r.getMessage() for r in caplog.records)
    finally:
        index.close()


def test_the_leader_keeps_the_region_side_of_health(store: MetadataStore) -> None:
    info = NodeInfo("n1", "127.0.0.1:1", 1 << 30, incarnation="a")
    store.zk.create(store.paths.node("n1"), info.to_json(), ephemeral=True, makepath=True)
    store.zk.create(store.paths.registered("n1"), info.to_json(), makepath=True)
    meta = record("r", 1 << 16)
    meta.slabs = {0: [("n1", "a"), ("gone", "a"), ("n1", "a")]}
    store.create_region(meta)
    store.create_region(record("empty"))
    index = RegionIndex(store.zk, store.paths)
    assert index.start(timeout=10)
    records = Records(store.zk, store.paths)
    try:
        monitor = Monitor(store, index=index, identifier="c1")
        assert monitor.run_once() == "HEALTH_WARN"
        summary = records.health()
        assert summary["regions"] == 2 and summary["degraded"] == summary["stripes"] == 4
        assert summary["by"] == "c1" and time.time() - summary["updated"] < 5
        assert [c["code"] for c in summary["checks"]] == ["REGION_DEGRADED"]
        first = summary["updated"]
        monitor.run_once()  # nothing changed, summary fresh: not rewritten
        assert records.health()["updated"] == first
        store.delete_region("r")
        until(lambda: monitor.run_once() == "HEALTH_OK")
        assert records.health()["regions"] == 1 and records.health()["checks"] == []
    finally:
        index.close()


def test_listings_at_scale_come_from_the_leaders_pages(
    store: MetadataStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from coordinator.listing import Pages
    from ecmem.meta import listing

    monkeypatch.setattr(listing, "EXACT_UPTO", 0)  # as with many regions
    for i in range(20):
        store.create_region(record(f"p/{i:02d}", i))
    assert [s.size for s in listing.list_stats(store, "p/")] == list(range(20))  # no pages yet
    pages = Pages(store)
    pages.update({m.name: m for m in store.regions()}, store.region_names())
    assert pages.publish() == 64  # every page, the first time
    store.update_region("p/05", lambda m: m.__class__(**{**m.__dict__, "size": 500}))
    store.create_region(record("p/new", 9))
    store.delete_region("p/07")
    got = {s.name: s.size for s in listing.list_stats(store, "p/")}
    assert "p/07" not in got and got["p/new"] == 9  # names are the buckets' own
    assert got["p/05"] == 5  # as the leader last wrote it: the page was read
    assert pages.publish() == 0  # nothing changed since
    pages.update({m.name: m for m in store.regions()}, ["p/05", "p/new", "p/07"])
    assert pages.publish() == 3
    assert {s.name: s.size for s in listing.list_stats(store, "p/")}["p/05"] == 500
    monkeypatch.setattr(listing, "FRESH", 0.0)  # a leader gone: read every record
    store.update_region("p/06", lambda m: m.__class__(**{**m.__dict__, "size": 66}))
    assert {s.name: s.size for s in listing.list_stats(store, "p/")}["p/06"] == 66


def test_status_at_scale_reads_the_leaders_summary_while_it_is_fresh(
    store: MetadataStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ecmem.cli.regionside import region_side
    from ecmem.meta import listing

    meta = record("r", 1 << 16)
    meta.slabs = {0: [("n1", "a"), ("gone", "a"), ("n1", "a")]}
    store.create_region(meta)
    records = Records(store.zk, store.paths)
    nodes = {"n1": NodeInfo("n1", "h:1", 1 << 30, incarnation="a")}
    leader = [{"id": "c1", "leader": True}]
    monkeypatch.setattr(listing, "EXACT_UPTO", 0)  # as with many regions
    assert region_side(store, records, nodes, leader)[1] == {"from": "records"}  # none yet
    index = RegionIndex(store.zk, store.paths)
    assert index.start(timeout=10)
    try:
        Monitor(store, index=index, identifier="c1").run_once()
    finally:
        index.close()
    store.create_region(record("later"))  # not counted until the leader's next pass
    totals, source = region_side(store, records, nodes, leader)
    assert source["from"] == "leader" and totals.regions == 1 and totals.unavailable == 4
    assert totals.holding == ["gone", "n1"]
    assert region_side(store, records, nodes, [])[1] == {"from": "records"}  # no leader
    monkeypatch.setattr(listing, "FRESH", 0.0)  # the stamp is too old
    totals, source = region_side(store, records, nodes, leader)
    assert source == {"from": "records"} and totals.regions == 2
