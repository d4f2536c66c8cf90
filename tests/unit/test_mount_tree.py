"""The mount's pure parts: names to paths, directory listings, inode renames, errnos."""

from __future__ import annotations

import asyncio
import errno

import pyfuse3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecmem.errors import ClusterFullError, DataUnavailableError, RegionBusy, RegionNotFound
from ecmem.mount.errno_map import errno_of, fuse_errors
from ecmem.mount.tree import Inodes, children, mount_path, region_name

part = st.sampled_from(["a", "b", "c", "dd"])
paths = st.lists(part, min_size=1, max_size=4).map("/".join)


def test_prefix_maps_both_ways() -> None:
    assert region_name("ckpt", "job/r0") == "ckpt/job/r0"
    assert region_name("", "job/r0") == "job/r0"
    assert mount_path("ckpt", "ckpt/job/r0") == "job/r0"
    assert mount_path("ckpt", "ckptx/r0") is None
    assert mount_path("", ".ecmem-trash/abc") is None  # unlinked-while-open stays hidden


@given(st.lists(paths, max_size=12), st.sampled_from(["", "a", "a/b"]))
def test_children_are_the_next_parts(names: list[str], top: str) -> None:
    direct, implied = children(top, names)
    lead = top + "/" if top else ""
    want = {n[len(lead) :].split("/")[0] for n in names if n.startswith(lead) and n != top}
    assert direct | implied == want
    assert not direct & implied
    for d in direct:
        assert lead + d in names


@given(st.lists(paths, min_size=2, max_size=10, unique=True), st.data())
def test_inode_numbers_follow_renames(names: list[str], data: st.DataObject) -> None:
    ino = Inodes()
    numbers = {n: ino.ino(n) for n in names}
    old = data.draw(st.sampled_from(names))
    new = data.draw(st.sampled_from(["x", "x/y", "b/z"]))
    ino.move(old, new)
    for n, number in numbers.items():
        if n == old or n.startswith(old + "/"):
            assert ino.path(number) == new + n[len(old) :]
        elif n == new or n.startswith(new + "/"):
            assert ino.path(number) is None  # replaced
        else:
            assert ino.path(number) == n


def test_errors_map_to_errnos() -> None:
    assert errno_of(RegionNotFound("x")) == errno.ENOENT
    assert errno_of(RegionBusy("x", holder="h")) == errno.EBUSY
    assert errno_of(ClusterFullError("x")) == errno.ENOSPC
    assert errno_of(DataUnavailableError("r", 0, 1, {0: "gone"}, 4)) == errno.EIO


def test_unexpected_exceptions_become_eio() -> None:
    @fuse_errors
    async def broken(_self: object, x: int) -> int:
        return {}[x]  # type: ignore[no-any-return]

    with pytest.raises(pyfuse3.FUSEError) as err:
        asyncio.run(broken(None, 3))
    assert err.value.errno == errno.EIO
