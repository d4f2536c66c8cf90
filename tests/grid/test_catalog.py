"""Region records in ZooKeeper: spread over hashed buckets, listed across them, and moved
there from the flat folder of earlier versions."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kazoo.client import KazooClient

from ecmem.meta.catalog import MetadataStore
from ecmem.meta.model import RegionMeta
from ecmem.meta.paths import BUCKETS, Paths, bucket_of
from ecmem.names import encode_name


@pytest.fixture()
def store(zk_hosts: str) -> Iterator[MetadataStore]:
    zk = KazooClient(hosts=zk_hosts)
    zk.start(timeout=10)
    md = MetadataStore(zk, f"cat-{uuid.uuid4().hex[:8]}")
    yield md
    zk.delete(md.paths.root, recursive=True)
    zk.stop()
    zk.close()


def record(name: str) -> RegionMeta:
    return RegionMeta(name, uuid.uuid4().hex[:16], "ec:4+2", 0, 4096, 4)


def test_a_region_path_is_bucketed_by_a_hash_of_its_name() -> None:
    p = Paths("c")
    names = [f"job/{i}" for i in range(2000)]
    used = {bucket_of(encode_name(n)) for n in names}
    assert len(used) == BUCKETS  # 2000 names reach every bucket
    path = p.region("ckpt/job42/rank0")
    assert path == f"/ecmem/c/catalog/{bucket_of('ckpt%2Fjob42%2Frank0')}/ckpt%2Fjob42%2Frank0"
    assert p.region("a") != p.region("b")


def test_listing_spans_every_bucket_in_name_order(store: MetadataStore) -> None:
    names = [f"d/{i:03d}" for i in range(150)] + ["e", "d"]
    for n in names:
        store.create_region(record(n))
    assert store.region_names() == sorted(names)
    assert store.region_names("d/") == sorted(n for n in names if n.startswith("d/"))
    assert [m.name for m in store.regions("d/01")] == [f"d/{i:03d}" for i in range(10, 20)]
    got = [name for name, _ in store.iter_regions(window=7)]
    assert got == sorted(names)


def test_a_rename_into_a_bucket_not_made_yet_works(store: MetadataStore) -> None:
    store.create_region(record("old"))
    new = next(f"new{i}" for i in range(1000) if bucket_of(f"new{i}") != bucket_of("old"))
    assert not store.zk.exists(store.paths.region(new).rsplit("/", 1)[0])
    store.rename_region("old", new)
    assert store.region_names() == [new]
    assert store.get_region(new)[0].name == new


def test_records_of_the_flat_layout_move_into_buckets(store: MetadataStore) -> None:
    zk, legacy = store.zk, store.paths.legacy_regions
    olds = [record(n) for n in ("ckpt/a", "ckpt/b", "x y", ".ecmem-trash/0011")]
    for meta in olds:
        zk.create(f"{legacy}/{encode_name(meta.name)}", meta.to_json(), makepath=True)
    assert store.migrate_legacy() == len(olds)
    assert store.region_names() == sorted(m.name for m in olds)
    for meta in olds:
        assert store.get_region(meta.name)[0].id == meta.id
    assert not zk.exists(legacy)
    assert store.migrate_legacy() == 0  # nothing left to move
