"""Page patches in a node's store: staged until committed, laid over their fragment's
committed bytes on read (page sums recomputed), kept for the other indexes' readers,
gone once a fragment of their stripe is committed at their version or later, fenced,
discarded and deleted like fragments."""

from __future__ import annotations

from pathlib import Path

import pytest
from crc32c import crc32c

from ecmem import checksum, wire
from storage_node.errors import StoreError
from storage_node.persist import DataDir
from storage_node.store import REGION_COST, FragmentStore

P = checksum.PAGE
R = "00000000000000a1"  # a region id as a record names one
E1, E2 = 1 << 32, 2 << 32
FRAG = 4 * P


def store_with_stripe(version: int = E1 + 1, index: int = 1) -> FragmentStore:
    s = FragmentStore(1 << 20)
    s.fence(R, wire.epoch_of(version))
    data = bytes([index]) * FRAG
    s.put(R, 0, index, version, FRAG, crc32c(data), bytearray(data))
    s.commit(R, version)
    return s


def patch(
    s: FragmentStore,
    version: int,
    at: int,
    data: bytes,
    index: int = 1,
    lac: int = 0,
    holder: int | None = None,  # the fragment the node holds (default: the one patched)
) -> None:
    held = index if holder is None else holder
    s.put_patch(R, 0, index, held, version, at, crc32c(data), data, (0, 0, 0), lac)


def read(s: FragmentStore, index: int = 1, **kw: object) -> tuple[bytes, int]:
    r = s.get(R, 0, index, 0, FRAG, **kw)  # type: ignore[arg-type]
    data = bytes(b"".join(r.data)) if isinstance(r.data, tuple) else bytes(r.data)
    assert checksum.bad_pages(data, r.crcs, r.first_page) == []
    return data, r.pending


def test_a_patch_is_invisible_until_committed_then_laid_over_its_fragment() -> None:
    s = store_with_stripe()
    patch(s, E1 + 2, P + 10, b"new!")
    before, _ = read(s)
    assert before == bytes([1]) * FRAG
    s.commit(R, E1 + 2)
    after, pending = read(s)
    assert after[P + 10 : P + 14] == b"new!" and after[:P] == before[:P] and pending == 0
    assert s.used == FRAG + 4


def test_later_patches_win_and_a_read_of_other_bytes_is_untouched() -> None:
    s = store_with_stripe()
    patch(s, E1 + 2, 0, b"a" * 8)
    patch(s, E1 + 3, 4, b"b" * 8, lac=E1 + 2)
    s.commit(R, E1 + 3)
    data, _ = read(s)
    assert data[:12] == b"aaaabbbbbbbb"
    r = s.get(R, 0, 1, 2 * P, P)
    assert bytes(r.data) == bytes([1]) * P


def test_a_parity_node_keeps_patches_of_other_fragments_for_degraded_readers() -> None:
    s = store_with_stripe(index=4)  # a parity fragment
    patch(s, E1 + 2, 0, b"x" * 16, index=1, holder=4)
    s.commit(R, E1 + 2)
    data, pending = read(s, index=4)
    assert data == bytes([4]) * FRAG and pending == 1
    [p] = s.patches_of(R, 0, 1, E1 + 1, 0)
    assert (p.version, p.at, p.data) == (E1 + 2, 0, b"x" * 16)


def test_raw_reads_leave_patches_out_and_count_them() -> None:
    s = store_with_stripe()
    patch(s, E1 + 2, 0, b"z" * 4)
    s.commit(R, E1 + 2)
    data, pending = read(s, raw=True)
    assert data == bytes([1]) * FRAG and pending == 1


def test_the_writer_reads_its_own_staged_patches_and_base() -> None:
    s = store_with_stripe()
    patch(s, E1 + 2, 0, b"own!")
    staged = bytes([7]) * FRAG
    s.put(R, 0, 1, E1 + 3, FRAG, crc32c(staged), bytearray(staged))
    patch(s, E1 + 4, 8, b"more")
    assert read(s, asof=E1 + 2)[0][:4] == b"own!"
    data, _ = read(s, asof=E1 + 4)
    assert data[:8] == bytes([7]) * 8 and data[8:12] == b"more"  # base E1+3 folded E1+2
    assert read(s)[0] == bytes([1]) * FRAG  # readers: nothing committed yet


def test_a_committed_fragment_at_or_past_a_patch_folds_it_away() -> None:
    s = store_with_stripe()
    patch(s, E1 + 2, 0, b"p" * 100)
    folded = bytes([9]) * FRAG
    s.put(R, 0, 1, E1 + 3, FRAG, crc32c(folded), bytearray(folded), lac=E1 + 2)
    assert s.patches_of(R, 0, None, 0, 0)  # the fold is staged only: still needed
    s.commit(R, E1 + 3)
    assert s.patches_of(R, 0, None, 0, 0) == [] and s.used == FRAG
    patch(s, E1 + 2, 0, b"late")  # arrives after its fold: nothing to keep
    assert s.used == FRAG and read(s)[0] == folded


def test_patches_are_fenced_checked_and_bounded() -> None:
    s = store_with_stripe(E2 + 1)
    with pytest.raises(StoreError) as err:
        patch(s, E1 + 9, 0, b"old writer")
    assert err.value.code == wire.E_FENCED
    with pytest.raises(StoreError) as err:
        s.put_patch(R, 0, 1, 1, E2 + 2, 0, 1234, b"damaged", (0, 0, 0))
    assert err.value.code == wire.E_CORRUPT
    small = FragmentStore(FRAG + 10 + REGION_COST)
    small.put(R, 0, 1, E1 + 1, FRAG, crc32c(bytes(FRAG)), bytearray(FRAG))
    with pytest.raises(StoreError) as err:
        patch(small, E1 + 2, 0, b"x" * 11)
    assert err.value.code == wire.E_NO_SPACE and small.used == FRAG


def test_recovery_discards_staged_patches_and_older_epochs_beyond_the_base() -> None:
    s = store_with_stripe()
    patch(s, E1 + 2, 0, b"kept")
    patch(s, E1 + 3, 0, b"gone")
    s.discard(R, E1 + 2)
    assert [p.version for p in s.patches_of(R, 0, None, 0, E1 + 9)] == [E1 + 2]
    s.fence(R, 2)
    s.commit(R, E2, base=E1 + 1)  # the new writer kept nothing past E1 + 1
    assert s.patches_of(R, 0, None, 0, E2) == [] and s.used == FRAG


def test_a_node_that_missed_the_fence_refuses_an_old_epoch_patch_after_a_newer_commit() -> None:
    s = store_with_stripe()
    s.commit(R, E2, base=E1 + 1)  # the new writer's commit point, its fence missed here
    assert s.region(R).epoch == 1
    with pytest.raises(StoreError) as err:
        patch(s, E1 + 5, 0, b"stale writer")
    assert err.value.code == wire.E_FENCED and s.patches_of(R, 0, None, 0, E2 + 9) == []
    patch(s, E2 + 1, 0, b"new writer")  # the same check lets the new epoch's patches in
    s.commit(R, E2 + 1)
    assert [p.data for p in s.patches_of(R, 0, None, 0, 0)] == [b"new writer"]


def test_deleting_stripes_drops_their_patches() -> None:
    s = store_with_stripe()
    patch(s, E1 + 2, 0, b"abc")
    s.put(
        R, 3, 1, E1 + 1, FRAG, crc32c(bytes(FRAG)), bytearray(FRAG)
    )  # a fragment of stripe 3 to patch
    s.put_patch(R, 3, 1, 1, E1 + 3, 0, crc32c(b"def"), b"def", (3, 3, 0))
    assert s.delete(R, from_stripe=1) == 2  # its fragment and its patch
    assert [p.data for p in s.patches_of(R, 0, None, 0, E1 + 9)] == [b"abc"]
    s.delete(R)
    assert s.used == 0


def test_a_node_without_the_stripe_refuses_a_patch() -> None:
    s = store_with_stripe()
    with pytest.raises(StoreError) as err:
        patch(s, E1 + 2, 0, b"nothing to lay it on", index=2)
    assert err.value.code == wire.E_NOT_FOUND and s.used == FRAG


def test_patches_outlive_a_restart_with_a_data_dir_and_their_files_go_with_them(
    tmp_path: Path,
) -> None:
    s = FragmentStore(1 << 20)
    DataDir(tmp_path).attach(s)
    data = bytes([1]) * FRAG
    s.put(R, 0, 1, E1 + 1, FRAG, crc32c(data), bytearray(data))
    patch(s, E1 + 2, 10, b"kept across", lac=E1 + 1)
    s.commit(R, E1 + 2)
    back = FragmentStore(1 << 20)
    assert DataDir(tmp_path).attach(back) == 2
    got, _ = read(back)
    assert got[10:21] == b"kept across" and back.used == s.used
    folded = bytes([2]) * FRAG
    back.put(R, 0, 1, E1 + 3, FRAG, crc32c(folded), bytearray(folded), lac=E1 + 3)
    assert not list((tmp_path / "fragments" / R).glob("p.*"))
