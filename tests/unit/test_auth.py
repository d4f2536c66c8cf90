"""The cluster key and the frame tags made of it (ecmem/auth.py)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from ecmem import auth, wire
from ecmem.errors import ConfigError

RID = "00000000000000a1"


def test_key_file_roundtrip_and_refusals(tmp_path: Path) -> None:
    key = auth.new_key()
    path = tmp_path / "cluster.key"
    auth.write_key(path, key)
    assert path.stat().st_mode & 0o777 == 0o600
    assert auth.read_key(path) == key
    with pytest.raises(FileExistsError):  # never overwritten: that would lock a cluster out
        auth.write_key(path, auth.new_key())
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        auth.read_key(path)
    bad = tmp_path / "bad.key"
    bad.write_text("hello\n")
    bad.chmod(0o600)
    with pytest.raises(ConfigError, match="not an ecmem cluster key file"):
        auth.read_key(bad)
    with pytest.raises(ConfigError, match="--key-file"):
        auth.read_key(tmp_path / "missing.key")


def test_proofs_need_the_same_key() -> None:
    key, other = auth.new_key(), auth.new_key()
    cn, sn = auth.nonce(), auth.nonce()
    auth.check_proof(auth.server_proof(key, cn, sn), auth.server_proof(key, cn, sn), "node")
    with pytest.raises(auth.AuthError, match="does not hold this cluster's key"):
        auth.check_proof(auth.server_proof(key, cn, sn), auth.server_proof(other, cn, sn), "node")
    # A server's proof is no client's proof, and nonces bind it to this handshake.
    assert auth.server_proof(key, cn, sn) != auth.client_proof(key, cn, sn)
    assert auth.server_proof(key, cn, sn) != auth.server_proof(key, cn, auth.nonce())


def test_each_connection_and_direction_has_its_own_keys() -> None:
    key = auth.new_key()
    cn, sn = auth.nonce(), auth.nonce()
    a = auth.Keys.derive(key, cn, sn)
    assert a == auth.Keys.derive(key, cn, sn)
    assert a.client_to_server != a.server_to_client
    assert a != auth.Keys.derive(key, cn, auth.nonce())


def frames() -> list[list[bytes]]:
    big = os.urandom(256 * 1024)
    return [
        [wire.encode_bytes(wire.Get(RID, 3, 2, 100, 4096, 0), 1)],
        [wire.encode_bytes(wire.Put(RID, 1, 0, 1, 100, 0, 1, 1, 0, 0, 0, b"x" * 100), 2)],
        [b"header-and-meta", big[:100_000], big[100_000:]],  # tagged piece by piece
    ]


def test_sealed_frames_open_in_order_and_only_so() -> None:
    k = auth.new_key()
    sender, receiver = auth.FrameSeal(k), auth.FrameSeal(k)
    sent = [(f, sender.seal(f)) for f in frames()]
    for pieces, tag in sent:
        assert len(tag) == auth.TAG_BYTES
        receiver.open(pieces, tag)
    # Joined or in pieces, a frame has one tag.
    a, b = auth.FrameSeal(k), auth.FrameSeal(k)
    big = frames()[2]
    assert a.seal(big) == b.seal([b"".join(big)])
    # Replayed: the receiver expects the next number.
    with pytest.raises(auth.AuthError, match="replayed or out of order"):
        receiver.open(*sent[0])
    # Reordered: the second frame where the first was due.
    s2, r2 = auth.FrameSeal(k), auth.FrameSeal(k)
    one, two = frames()[0], frames()[1]
    t1, t2 = s2.seal(one), s2.seal(two)
    with pytest.raises(auth.AuthError):
        r2.open(two, t2)
    # Under another key nothing opens.
    with pytest.raises(auth.AuthError):
        auth.FrameSeal(auth.new_key()).open(one, t1)


@pytest.mark.parametrize("which", range(3))
def test_single_bit_flips_are_all_refused(which: int) -> None:
    rng = random.Random(which)
    k = auth.new_key()
    pieces = frames()[which]
    tag = auth.FrameSeal(k).seal(pieces)
    joined = bytearray(b"".join(pieces))
    for _ in range(1000 if which < 2 else 50):
        flipped = bytearray(joined)
        flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        with pytest.raises(auth.AuthError):
            auth.FrameSeal(k).open([bytes(flipped)], tag)
    bad = bytearray(tag)
    bad[rng.randrange(len(bad))] ^= 1
    with pytest.raises(auth.AuthError):
        auth.FrameSeal(k).open(pieces, bytes(bad))
