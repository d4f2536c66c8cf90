"""The cluster key and what is made of it, sans I/O (docs/security.md).

Every process of a cluster holds one secret key (32 random bytes in a 0600 file). Two
ends of a connection prove to each other that they hold it, without sending it, by a
challenge and response: each sends a fresh random nonce, each answers with an HMAC of
both nonces under the key, the server first. From the key and both nonces HKDF derives
one key per direction, so no frame can be sent back to its sender or replayed on
another connection. Each frame then carries a 16-byte tag: AES-GCM with nothing to
encrypt over the whole frame (GMAC), under its direction's key, with the frame's number
on the connection as the nonce, so a frame changed, dropped, replayed or reordered
fails its tag and the connection is closed. A nonce is never used twice under a key:
the keys are new for every connection and the counter only counts up.

The primitives are the ``cryptography`` package's; nothing here is cryptography of its
own making.
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import ConfigError, EcmemError

KEY_BYTES = 32
NONCE_BYTES = 16  # of a handshake's challenge
TAG_BYTES = 16
KEY_ENV = "ECMEM_KEY_FILE"
KEY_HEADER = "ecmem-cluster-key-v1"
# Frames up to this size are tagged in one call over their joined bytes (a copy, cheap
# at this size); larger ones piece by piece, their payload never joined.
JOIN_UPTO = 64 * 1024

Buffer = bytes | bytearray | memoryview


class AuthError(EcmemError):
    """A peer failed to prove it holds the cluster key, or a frame failed its tag."""

    code = "AUTH"


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def write_key(path: str | os.PathLike[str], key: bytes) -> None:
    """Write ``key`` to a new file readable by this user only."""
    p = Path(path)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{KEY_HEADER} {key.hex()}\n")


def read_key(path: str | os.PathLike[str]) -> bytes:
    """The key in ``path``; ConfigError naming the problem and what to do."""
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY)
    except OSError as exc:
        raise ConfigError(
            f"cannot read the cluster key file {p}: {exc.strerror}; give the right file "
            f"with --key-file or {KEY_ENV}"
        ) from exc
    with os.fdopen(fd) as fh:  # the file checked is the file read
        st = os.fstat(fh.fileno())
        text = fh.read(4096)
    if st.st_mode & 0o077:
        raise ConfigError(
            f"the cluster key file {p} may be read by other users "
            f"(mode {st.st_mode & 0o777:o}): chmod 600 {p}"
        )
    if st.st_uid != os.geteuid():
        raise ConfigError(
            f"the cluster key file {p} belongs to another user (uid {st.st_uid}): give this "
            "user a copy of its own (mode 600)"
        )
    head, _, value = text.strip().partition(" ")
    try:
        key = bytes.fromhex(value)
    except ValueError:
        key = b""
    if head != KEY_HEADER or len(key) != KEY_BYTES:
        raise ConfigError(
            f"{p} is not an ecmem cluster key file (one line: '{KEY_HEADER}' and "
            f"{KEY_BYTES * 2} hex digits); copy the cluster's key file here"
        )
    return key


def _mac(key: bytes, *parts: bytes) -> bytes:
    h = crypto_hmac.HMAC(key, hashes.SHA256())
    for part in parts:
        h.update(len(part).to_bytes(4, "big"))
        h.update(part)
    return h.finalize()


@dataclass(frozen=True)
class Keys:
    """A connection's two frame keys, from the cluster key and both nonces."""

    client_to_server: bytes
    server_to_client: bytes

    @classmethod
    def derive(cls, key: bytes, client_nonce: bytes, server_nonce: bytes) -> Keys:
        if len(client_nonce) != NONCE_BYTES or len(server_nonce) != NONCE_BYTES:
            raise AuthError(f"a handshake nonce must be {NONCE_BYTES} bytes")

        def one(label: bytes) -> bytes:
            hkdf = HKDF(hashes.SHA256(), KEY_BYTES, client_nonce + server_nonce, label)
            return hkdf.derive(key)

        return cls(
            one(b"ecmem frames client to server v1"), one(b"ecmem frames server to client v1")
        )


def server_proof(key: bytes, client_nonce: bytes, server_nonce: bytes) -> bytes:
    return _mac(key, b"ecmem server proof v1", client_nonce, server_nonce)


def client_proof(key: bytes, client_nonce: bytes, server_nonce: bytes) -> bytes:
    return _mac(key, b"ecmem client proof v1", client_nonce, server_nonce)


def check_proof(expected: bytes, got: bytes, who: str) -> None:
    if not hmac.compare_digest(expected, got):
        raise AuthError(
            f"the {who} does not hold this cluster's key: check that both use the same key "
            f"file (--key-file or {KEY_ENV})"
        )


def nonce() -> bytes:
    return secrets.token_bytes(NONCE_BYTES)


class FrameSeal:
    """Tags one direction's frames (``seal``) or checks them (``open``), numbering
    them from 0: the number is the nonce, so each is used once under this key."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._gcm = AESGCM(key)
        self.count = 0

    def _nonce(self) -> bytes:
        n = self.count
        self.count += 1
        return n.to_bytes(12, "big")

    def _tag(self, pieces: Sequence[Buffer], iv: bytes) -> bytes:
        size = sum(memoryview(p).nbytes for p in pieces)
        if size <= JOIN_UPTO:
            out = self._gcm.encrypt(iv, b"", b"".join(pieces))
            return out[-TAG_BYTES:]
        enc = Cipher(algorithms.AES(self._key), modes.GCM(iv)).encryptor()
        for p in pieces:
            enc.authenticate_additional_data(p)
        enc.finalize()
        return enc.tag

    def seal(self, pieces: Sequence[Buffer]) -> bytes:
        """The tag of the next frame sent, whose bytes are ``pieces`` in order."""
        return self._tag(pieces, self._nonce())

    def open(self, pieces: Sequence[Buffer], tag: Buffer) -> None:
        """Check the next frame received; AuthError if it is not the one sent next."""
        iv = self._nonce()
        if len(tag) != TAG_BYTES:
            raise AuthError(f"frame {self.count - 1} of the connection has no whole tag")
        try:
            if sum(memoryview(p).nbytes for p in pieces) <= JOIN_UPTO:
                self._gcm.decrypt(iv, bytes(tag), b"".join(pieces))
                return
            dec = Cipher(algorithms.AES(self._key), modes.GCM(iv, bytes(tag))).decryptor()
            for p in pieces:
                dec.authenticate_additional_data(p)
            dec.finalize()
        except (InvalidTag, ValueError) as exc:
            raise AuthError(
                f"frame {self.count - 1} of the connection failed its tag: changed, "
                "replayed or out of order on the way; the connection is closed"
            ) from exc
