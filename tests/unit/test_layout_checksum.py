from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecmem import checksum
from ecmem.layout import Layout, default_geometry
from ecmem.policy import parse_policy


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["ec:4+2", "ec:2+1", "rep:3"]), st.integers(0, 10**7), st.integers(0, 5 * 10**6)
)
def test_pieces_tile_the_range(policy: str, offset: int, length: int) -> None:
    lay = Layout.of(policy, 4096, 8)
    pos = offset
    covered = 0
    for p in lay.pieces(offset, length):
        assert p.pos == covered
        assert p.stripe * lay.stripe_data + p.start == pos
        assert 0 < p.length <= lay.stripe_data - p.start
        pos += p.length
        covered += p.length
        # data ranges of a piece tile it too, inside whole fragments
        inner = 0
        for index, frag_off, n, at in lay.data_ranges(p.stripe, p.start, p.length):
            assert at == inner and 0 <= index < lay.policy.width
            assert lay.policy.header <= frag_off and frag_off + n <= lay.fragment_size
            inner += n
        assert inner == p.length
    assert covered == length


def test_default_geometry_near_four_mib() -> None:
    for text in ("ec:4+2", "ec:2+1", "ec:10+4", "rep:3"):
        pol = parse_policy(text)
        chunk, slab_stripes = default_geometry(pol)
        assert chunk % 4096 == 0
        assert 2 * 1024 * 1024 <= pol.stripe_data(chunk) <= 4 * 1024 * 1024
        assert pol.stripe_data(chunk) * slab_stripes <= 64 * 1024 * 1024


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 5 * checksum.PAGE), st.data())
def test_scattered_check_matches(size: int, data: st.DataObject) -> None:
    frag = bytearray(os.urandom(size))
    crcs = checksum.page_crcs(frag)
    off = data.draw(st.integers(0, size - 1))
    n = data.draw(st.integers(1, size - off))
    first, last = off // checksum.PAGE, -(-(off + n) // checksum.PAGE)
    window = memoryview(frag)[first * checksum.PAGE : min(last * checksum.PAGE, size)]
    head = off - first * checksum.PAGE
    segs = (window[:head], window[head : head + n], window[head + n :])
    sums = crcs[first * 4 : last * 4]
    assert checksum.bad_pages_in(segs, sums, first) == []
    flip = data.draw(st.integers(0, len(window) - 1))
    damaged = bytearray(window)
    damaged[flip] ^= 0x40
    mv = memoryview(damaged)
    segs = (mv[:head], mv[head : head + n], mv[head + n :])
    assert checksum.bad_pages_in(segs, sums, first) == [first + flip // checksum.PAGE]


@pytest.mark.parametrize(
    "policy", ["ec:4+2", "ec:2+1", "ec:4+2:liberasurecode_rs_vand", "ec:10+4", "rep:3"]
)
def test_fragments_are_zero_past_their_stored_length(policy: str) -> None:
    lay = Layout.of(policy, 8192, 4)
    for valid in (0, 1, 2, 63, 64, 65, 100, 8191, 8192, 9000, 3 * 8192 + 7, lay.stripe_data):
        if valid > lay.stripe_data:
            continue
        data = os.urandom(valid) + bytes(lay.stripe_data - valid)
        frags = lay.policy.encode(data)
        for frag, keep in zip(frags, lay.stored_lengths(valid), strict=True):
            assert lay.policy.header <= keep <= len(frag)
            assert frag[keep:] == bytes(len(frag) - keep), (valid, keep)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 4 * checksum.PAGE), st.data())
def test_padded_page_sums(length: int, data: st.DataObject) -> None:
    stored = data.draw(st.integers(0, length))
    prefix = os.urandom(stored)
    full = prefix + bytes(length - stored)
    assert checksum.page_crcs_padded(prefix, length) == checksum.page_crcs(full)
