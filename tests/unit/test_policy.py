from __future__ import annotations

import os
import random

import pytest

from ecmem.errors import PolicyError
from ecmem.policy import ECPolicy, ReplicationPolicy, parse_policy


@pytest.mark.parametrize(
    "text,width,k,tolerates",
    [
        ("ec:4+2", 6, 4, 2),
        ("ec:2+1", 3, 2, 1),
        ("EC:10+4", 14, 10, 4),
        ("rep:3", 3, 1, 2),
        ("rep:1", 1, 1, 0),
        ("ec:4+2:liberasurecode_rs_vand", 6, 4, 2),
    ],
)
def test_parse_good(text: str, width: int, k: int, tolerates: int) -> None:
    p = parse_policy(text)
    assert (p.width, p.k, p.tolerates) == (width, k, tolerates)
    assert parse_policy(p.name) == p


@pytest.mark.parametrize(
    "text,needle",
    [
        ("ec:0+2", "K (data fragments) must be at least 1"),
        ("ec:4+-1", "must be at least 1"),
        ("rep:0", "at least 1"),
        ("ec:40+40", "at most 32"),
        ("foo", "cannot read policy"),
        ("ec:4+2:isa_l_rs_vand", "unknown erasure-code backend"),
        ("ec:4", "cannot read policy"),
        ("rep:99", "at most 16"),
        ("", "cannot read policy"),
    ],
)
def test_parse_bad(text: str, needle: str) -> None:
    with pytest.raises(PolicyError) as err:
        parse_policy(text)
    assert needle in str(err.value)


@pytest.mark.parametrize("backend", ["isa_l_rs_cauchy", "liberasurecode_rs_vand"])
@pytest.mark.parametrize("k,m", [(4, 2), (2, 1), (6, 3)])
def test_decode_from_any_k(backend: str, k: int, m: int) -> None:
    p = ECPolicy(k, m, backend)
    chunk = 4096
    data = os.urandom(p.stripe_data(chunk))
    frags = p.encode(data)
    assert len(frags) == k + m
    assert all(len(f) == p.header + chunk for f in frags)
    rng = random.Random(k * 100 + m)
    for _ in range(10):
        keep = rng.sample(range(k + m), k)
        assert p.decode({i: frags[i] for i in keep}, chunk) == data


def test_systematic_layout() -> None:
    p = ECPolicy(4, 2)
    chunk = 8192
    data = os.urandom(p.stripe_data(chunk))
    frags = p.encode(data)
    for offset in (0, 1, chunk - 1, chunk, 3 * chunk + 17):
        index, at = p.locate(offset, chunk)
        assert frags[index][at] == data[offset]


def test_reconstruct_missing() -> None:
    p = ECPolicy(4, 2)
    data = os.urandom(p.stripe_data(4096))
    frags = p.encode(data)
    rebuilt = p.reconstruct({i: frags[i] for i in (1, 2, 4, 5)}, [0, 3])
    assert rebuilt[0][p.header :] == frags[0][p.header :]
    assert rebuilt[3][p.header :] == frags[3][p.header :]


def test_replication() -> None:
    p = ReplicationPolicy(3)
    frags = p.encode(b"abc")
    assert frags == [b"abc"] * 3
    assert p.decode({2: b"abc"}, 3) == b"abc"
    assert p.locate(5, 100) == (0, 5)
