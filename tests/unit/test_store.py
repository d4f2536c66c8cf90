from __future__ import annotations

import os

import pytest
from crc32c import crc32c

from ecmem import checksum, wire
from storage_node.store import REGION_COST, FragmentStore, StoreError


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
    store.commit(region, version)


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
    s = FragmentStore(2000 + REGION_COST)  # the region's state takes its share
    put(s, 0, 0, b"x" * 600)
    put(s, 0, 0, b"y" * 900, version=2)  # staged beside the old one, which goes at commit
    assert s.used == 900
    with pytest.raises(StoreError) as err:
        put(s, 1, 0, b"z" * 1200, version=3)
    assert err.value.code == wire.E_NO_SPACE and "full" in str(err.value)
    assert s.used == 900


def test_older_version_refused() -> None:
    s = FragmentStore(1000)
    put(s, 0, 0, b"new", version=5)
    with pytest.raises(StoreError):
        put(s, 0, 0, b"old", version=4)
    assert bytes(s.get("r", 0, 0, 0, 3).data) == b"new"  # type: ignore[arg-type]


def v(epoch: int, seq: int) -> int:
    return epoch << wire.SEQ_BITS | seq


def stage(
    s: FragmentStore, key: tuple[int, int], data: bytes, version: int, lac: int = 0, base: int = 0
) -> None:
    s.put(
        "r",
        key[0],
        key[1],
        version,
        len(data),
        crc32c(data),
        bytearray(data),
        (key[0], key[0], 0),
        lac,
        base,
    )


def read(s: FragmentStore, key: tuple[int, int], version: int = 0) -> bytes:
    return bytes(s.get("r", key[0], key[1], 0, 100, version).data)  # type: ignore[arg-type]


def test_staged_until_committed() -> None:
    s = FragmentStore(1 << 20)
    stage(s, (0, 0), b"one", v(1, 1))
    with pytest.raises(StoreError):
        read(s, (0, 0))  # nothing committed yet
    assert read(s, (0, 0), v(1, 1)) == b"one"  # but the exact version can be asked for
    stage(s, (0, 0), b"two", v(1, 2))  # two writes in flight on one key
    assert [e[3] for e in s.entries("r", staged=True)] == [v(1, 1), v(1, 2)]
    stage(s, (1, 0), b"xyz", v(1, 3), lac=v(1, 1))  # a later write brings the commit point
    assert read(s, (0, 0)) == b"one"
    s.commit("r", v(1, 3))
    assert read(s, (0, 0)) == b"two" and read(s, (1, 0)) == b"xyz"
    assert not list(s.entries("r", staged=True))
    assert s.used == 6  # staged copies were released


def test_recovery_keeps_a_prefix_of_older_epochs() -> None:
    s = FragmentStore(1 << 20)
    stage(s, (0, 0), b"a", v(1, 1))
    stage(s, (1, 0), b"b", v(1, 2))
    stage(s, (2, 0), b"c", v(1, 3))
    s.fence("r", 2)
    with pytest.raises(StoreError) as err:
        stage(s, (3, 0), b"late", v(1, 4))  # the old writer is fenced off
    assert err.value.code == wire.E_FENCED
    s.commit("r", v(2, 0), base=v(1, 2))  # the new writer kept writes 1 and 2
    assert read(s, (0, 0)) == b"a" and read(s, (1, 0)) == b"b"
    with pytest.raises(StoreError):
        read(s, (2, 0))
    assert not list(s.entries("r", staged=True))


def test_discard() -> None:
    s = FragmentStore(1 << 20)
    stage(s, (0, 0), b"a", v(1, 1))
    stage(s, (0, 1), b"b", v(1, 2))
    assert s.discard("r", v(1, 1)) == 1
    assert [e[3] for e in s.entries("r", staged=True)] == [v(1, 1)]


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


def test_repair_is_committed_at_once_and_fenced_like_a_write() -> None:
    s = FragmentStore(1 << 20)
    old = (1 << wire.SEQ_BITS) | 5
    s.fence("r", 3)
    data = b"rebuilt"
    assert s.repair("r", 0, 1, old, 64, crc32c(data), data, (0, 0, 7), 3)
    got = s.get("r", 0, 1, 0, 64)
    parts = got.data if isinstance(got.data, tuple) else (got.data,)
    assert got.version == old and b"".join(bytes(p) for p in parts)[:7] == data
    assert not s.repair("r", 0, 1, old - 1, 64, crc32c(data), data, (0, 0, 7), 3)  # stale
    with pytest.raises(StoreError) as exc:
        s.repair("r", 0, 2, old, 64, crc32c(data), data, (0, 0, 7), 2)
    assert exc.value.code == wire.E_FENCED
    with pytest.raises(StoreError) as exc:
        s.repair("r", 0, 2, old, 64, 0, data, (0, 0, 7), 3)
    assert exc.value.code == wire.E_CORRUPT


def test_ranged_delete_keeps_other_stripes_and_newer_versions() -> None:
    s = FragmentStore(1 << 20)
    v1 = 1 << wire.SEQ_BITS
    v2 = 2 << wire.SEQ_BITS
    for stripe in range(4):
        s.repair("r", stripe, 0, v1 + stripe, 8, crc32c(b"x"), b"x", (stripe, stripe, 1), 1)
    s.repair("r", 1, 0, v2, 8, crc32c(b"y"), b"y", (1, 1, 1), 2)
    assert s.delete("r", 1, 0, until=3, upto=v2 - 1) == 1  # stripe 2; stripe 1 is newer
    held = {(e[1], e[3]) for e in s.entries("r")}
    assert held == {(0, v1), (1, v2), (3, v1 + 3)}


def _whole(s: FragmentStore, key: tuple[int, int], version: int = 0) -> tuple[bytes, bytes]:
    r = s.get("r", key[0], key[1], 0, 1 << 30, version)
    parts = r.data if isinstance(r.data, tuple) else (r.data,)
    return b"".join(bytes(p) for p in parts), r.crcs


def test_slice_writes_a_new_version_from_a_named_one() -> None:
    s = FragmentStore(1 << 22)
    page = checksum.PAGE
    size = 8 * page
    base = os.urandom(5 * page + 17)  # the rest of the fragment is zeros
    put(s, 0, 2, base, v(1, 1), length=size)
    new = os.urandom(page)
    for at in (2 * page, 6 * page):  # inside the stored prefix, then past it
        s.put_slice("r", 0, 2, v(1, 2), size, v(1, 1), at, crc32c(new), new, (0, 0, 9))
        old = base + bytes(size - len(base))
        assert _whole(s, (0, 2))[0] == old  # a slice is staged like any write until committed
        s.commit("r", v(1, 2))
        data, crcs = _whole(s, (0, 2))
        want = bytearray(old)
        want[at : at + page] = new
        assert data == bytes(want)
        assert crcs == checksum.page_crcs_padded(data, size)  # sums of every page still right
        assert s.get("r", 0, 2, 0, 1).version == v(1, 2)
        s.delete("r")
        put(s, 0, 2, base, v(1, 1), length=size)


def test_slice_from_a_staged_version_and_refusals() -> None:
    s = FragmentStore(1 << 22)
    page = checksum.PAGE
    size = 4 * page
    stage(s, (3, 0), bytes(size), v(2, 5))
    piece = b"\x07" * 100
    crc = crc32c(piece)
    s.put_slice("r", 3, 0, v(2, 6), size, v(2, 5), 10, crc, piece)  # from our own staged write
    assert _whole(s, (3, 0), v(2, 6))[0][10:110] == piece
    with pytest.raises(StoreError) as err:  # no such source version: send the whole fragment
        s.put_slice("r", 3, 0, v(2, 7), size, v(2, 4), 0, crc, piece)
    assert err.value.code == wire.E_NOT_FOUND
    with pytest.raises(StoreError) as err:  # damaged on the way
        s.put_slice("r", 3, 0, v(2, 7), size, v(2, 6), 0, crc ^ 1, piece)
    assert err.value.code == wire.E_CORRUPT
    with pytest.raises(StoreError) as err:
        s.put_slice("r", 3, 0, v(2, 7), size, v(2, 6), size - 50, crc, piece)
    assert err.value.code == wire.E_BAD_REQUEST
    s.fence("r", 3)
    with pytest.raises(StoreError) as err:  # a stale writer is fenced off for slices too
        s.put_slice("r", 3, 0, v(2, 7), size, v(2, 6), 0, crc, piece)
    assert err.value.code == wire.E_FENCED


def test_unknown_regions_cost_state_counted_against_capacity() -> None:
    # Commits and discards for a region the node never held leave nothing behind; fences
    # for made-up regions are charged, and refused once the capacity is spent.
    s = FragmentStore(100 * REGION_COST)
    assert s.commit("0000000000000001", 5 << 32) == 0
    assert s.discard("0000000000000001", 0) == 0
    assert s.stats()["regions"] == 0 and s.stats()["used"] == 0
    for n in range(100):
        s.fence(f"{n:016x}", 1)
    assert s.stats()["regions"] == 100 and s.stats()["used"] == 100 * REGION_COST
    with pytest.raises(StoreError) as err:
        s.fence(f"{1000:016x}", 1)
    assert err.value.code == wire.E_NO_SPACE and "regions' state" in str(err.value)
    with pytest.raises(StoreError):  # the data bytes and the states share the capacity
        put(s, 0, 0, b"x", region=f"{0:016x}")
    s.delete(f"{0:016x}")  # a region removed gives its state back
    assert s.stats()["used"] == 99 * REGION_COST
    s.fence(f"{1000:016x}", 1)
