from __future__ import annotations

import os

import pytest
from crc32c import crc32c

from ecmem import checksum, wire
from storage_node.store import FragmentStore, StoreError


def put(
    store: FragmentStore,
    stripe: int,
    index: int,
    data: bytes,
    version: int = 1,
    region: str = "r",
    length: int | None = None,
) -> None:
    n = len(data) if length is None else length
    store.put(region, stripe, index, version, n, crc32c(data), bytearray(data))


def test_put_get_range() -> None:
    s = FragmentStore(1 << 20)
    data = os.urandom(3 * checksum.PAGE + 100)
    put(s, 0, 1, data)
    r = s.get("r", 0, 1, checksum.PAGE + 10, 50)
    assert r.first_page == 1 and r.fragment_len == len(data) and r.version == 1
    assert bytes(r.data) == data[checksum.PAGE : 2 * checksum.PAGE]
    assert checksum.bad_pages(r.data, r.crcs, r.first_page) == []
    tail = s.get("r", 0, 1, len(data) - 5, 100)
    assert bytes(tail.data) == data[3 * checksum.PAGE :]


def test_damaged_upload_refused() -> None:
    s = FragmentStore(1 << 20)
    with pytest.raises(StoreError) as err:
        s.put("r", 0, 0, 1, 3, 12345, bytearray(b"abc"))
    assert err.value.code == wire.E_CORRUPT
    assert s.used == 0


def test_capacity_and_replace() -> None:
    s = FragmentStore(1000)
    put(s, 0, 0, b"x" * 600)
    put(s, 0, 0, b"y" * 900, version=2)  # replacing only charges the growth
    assert s.used == 900
    with pytest.raises(StoreError) as err:
        put(s, 1, 0, b"z" * 200)
    assert err.value.code == wire.E_NO_SPACE and "full" in str(err.value)
    assert s.used == 900


def test_older_version_refused() -> None:
    s = FragmentStore(1000)
    put(s, 0, 0, b"new", version=5)
    with pytest.raises(StoreError):
        put(s, 0, 0, b"old", version=4)
    assert bytes(s.get("r", 0, 0, 0, 3).data) == b"new"


def test_delete_from_stripe() -> None:
    s = FragmentStore(1 << 20)
    for stripe in range(5):
        put(s, stripe, 0, b"abcd")
    assert s.delete("r", 3) == 2
    assert [e[1] for e in s.entries("r")] == [0, 1, 2]
    assert s.used == 12
    with pytest.raises(StoreError) as err:
        s.get("r", 4, 0, 0, 1)
    assert err.value.code == wire.E_NOT_FOUND


def test_corrupt_is_detected_by_page_sums() -> None:
    s = FragmentStore(1 << 20)
    data = os.urandom(2 * checksum.PAGE)
    put(s, 0, 0, data)
    s.corrupt("r", 0, 0, "flip", checksum.PAGE + 3)
    r = s.get("r", 0, 0, 0, len(data))
    assert checksum.bad_pages(r.data, r.crcs, r.first_page) == [1]
    s.corrupt("r", 0, 0, "truncate", 100)
    r = s.get("r", 0, 0, 0, len(data))
    assert r.fragment_len == 100
    assert s.used == 100


def test_zero_tail_is_not_stored() -> None:
    s = FragmentStore(1 << 20)
    size = 3 * checksum.PAGE
    put(s, 0, 0, b"abc", length=size)
    assert s.used == 3
    whole = s.get("r", 0, 0, 0, size)
    assert whole.fragment_len == size
    parts = whole.data if isinstance(whole.data, tuple) else (whole.data,)
    got = b"".join(bytes(p) for p in parts)
    assert got == b"abc" + bytes(size - 3)
    assert checksum.bad_pages_in(list(parts), whole.crcs, 0) == []
    tail = s.get("r", 0, 0, 2 * checksum.PAGE + 5, 10)
    assert bytes(tail.data) == bytes(checksum.PAGE)  # type: ignore[arg-type]
    s.corrupt("r", 0, 0, "flip", size - 1)  # damage inside the zero tail
    r = s.get("r", 0, 0, 0, size)
    parts = r.data if isinstance(r.data, tuple) else (r.data,)
    assert checksum.bad_pages_in(list(parts), r.crcs, 0) == [2]
