"""Random writes and reads against a real cluster, checked against a local model."""

from __future__ import annotations

import itertools
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.harness import TestCluster

pytestmark = pytest.mark.integration

# Small geometry so stripe and slab boundaries come often: 4 KiB chunks, 4-stripe slabs.
CHUNK = 4096
SPAN = 6 * 64 * 1024
_ids = itertools.count()

ops = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(0, SPAN), st.integers(1, 70_000)),
        st.tuples(st.just("read"), st.integers(0, SPAN), st.integers(0, 70_000)),
        st.tuples(st.just("truncate"), st.integers(0, SPAN), st.just(0)),
    ),
    min_size=1,
    max_size=8,
)


@pytest.fixture(scope="module")
def client(cluster: TestCluster):  # type: ignore[no-untyped-def]
    cl = cluster.client()
    yield cl
    cl.close()


@pytest.mark.parametrize("policy", ["ec:4+2", "ec:2+1", "rep:3"])
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=ops)
def test_random_io_matches_model(client, policy: str, steps) -> None:  # type: ignore[no-untyped-def]
    k = {"ec:4+2": 4, "ec:2+1": 2, "rep:3": 1}[policy]
    name = f"rt/{policy.replace(':', '_')}/{next(_ids)}"
    client.create_region(name, 0, policy, chunk=CHUNK, slab_size=4 * k * CHUNK)
    model = bytearray()
    try:
        for op, offset, length in steps:
            if op == "write":
                data = os.urandom(length)
                client.pwrite(name, offset, data)
                if offset > len(model):
                    model.extend(bytes(offset - len(model)))
                model[offset : offset + length] = data
            elif op == "read":
                got = client.pread(name, offset, length)
                assert got == bytes(model[offset : offset + length])
            else:
                client.truncate(name, offset)
                if offset < len(model):
                    del model[offset:]
                else:
                    model.extend(bytes(offset - len(model)))
            assert client.stat(name).size == len(model)
        assert client.pread(name, 0, len(model) + 10) == bytes(model)
    finally:
        client.delete_region(name)


def test_file_object(client) -> None:  # type: ignore[no-untyped-def]
    name = "rt/file"
    data = os.urandom(3 * 1024 * 1024 + 123)
    with client.open(name, "wb", policy="ec:4+2") as f:
        assert f.writable() and not f.readable()
        for i in range(0, len(data), 100_000):
            f.write(data[i : i + 100_000])
        assert f.tell() == len(data)
    assert client.stat(name).size == len(data)
    with client.open(name, "rb") as f:
        assert f.read(10) == data[:10]
        f.seek(-5, os.SEEK_END)
        assert f.read() == data[-5:]
        f.seek(1000)
        buf = bytearray(5000)
        assert f.readinto(buf) == 5000 and buf == data[1000:6000]
    with client.open(name, "r+b") as f:
        f.seek(10)
        f.write(b"HELLO")
        f.seek(0)
        assert f.read(20) == data[:10] + b"HELLO" + data[15:20]
        f.truncate(100)
    with client.open(name, "ab") as f:
        f.write(b"tail")
    expect = data[:10] + b"HELLO" + data[15:100] + b"tail"
    assert client.pread(name, 0, 10**6) == expect
    with client.open(name, "wb") as f:  # wb truncates
        f.write(b"x")
    assert client.pread(name, 0, 100) == b"x"
    client.delete_region(name)


def test_stripe_sized_and_large_writes(client) -> None:  # type: ignore[no-untyped-def]
    name = "rt/large"
    client.create_region(name, 0, "ec:4+2")
    data = os.urandom(70 * 1024 * 1024)  # crosses the 64 MiB slab
    client.pwrite(name, 0, data)
    st = client.stat(name)
    assert st.size == len(data) and st.slabs == 2
    assert client.pread(name, 0, len(data)) == data
    assert client.pread(name, 64 * 1024 * 1024 - 7, 14) == data[64 * 1024 * 1024 - 7 :][:14]
    client.delete_region(name)


def test_list_stat_delete(client) -> None:  # type: ignore[no-untyped-def]
    for n in ("ls/a", "ls/b/c", "other"):
        client.create_region(n, 1000, "rep:3", mode=0o600)
    assert [s.name for s in client.list_regions("ls/")] == ["ls/a", "ls/b/c"]
    st = client.stat("ls/a")
    assert (st.size, st.policy, st.mode) == (1000, "rep:3", 0o600)
    assert st.owner and st.mtime >= st.ctime > 0
    assert client.pread("ls/a", 0, 2000) == bytes(1000)
    for n in ("ls/a", "ls/b/c", "other"):
        client.delete_region(n)
    assert client.list_regions("ls/") == []


def test_small_reads_take_the_blocking_fast_path(client) -> None:  # type: ignore[no-untyped-def]
    name = "rt/fast"
    client.create_region(name, 0, "ec:4+2")
    data = os.urandom(2 * client.stat(name).stripe_size)
    client.pwrite(name, 0, data)
    chunk = client.stat(name).stripe_size // 4
    assert client._fast_read(name, 5, 4096, None) == data[5:4101]
    assert client._fast_read(name, len(data) - 10, 100, None) == data[-10:]  # short at the end
    assert client._fast_read(name, chunk - 10, 20, None) is None  # spans two fragments
    assert client._fast_read("rt/unknown", 0, 10, None) is None
    with client.open(name, "rb") as f:
        f.seek(chunk + 3)
        assert f.read(4096) == data[chunk + 3 : chunk + 4099]
        assert f.tell() == chunk + 4099
    client.delete_region(name)


def test_file_writes_whole_stripes_uncopied(client) -> None:  # type: ignore[no-untyped-def]
    name = "rt/direct"
    with client.open(name, "wb", policy="ec:2+1") as f:
        sd = client.stat(name).stripe_size
        first = os.urandom(2 * sd + 5)  # bytes: two stripes go straight out, 5 bytes wait
        second = bytearray(os.urandom(sd))  # mutable: copied into the buffer
        kept = bytes(second)
        f.write(first)
        f.write(second)
        second[:] = bytes(len(second))  # changing it after write() must not matter
        f.write(memoryview(first)[:sd])
    got = client.pread(name, 0, 10 * sd)
    assert got == first + kept + first[:sd]
    client.delete_region(name)
