"""Redundancy policies: erasure coding (``ec:K+M``) and replication (``rep:N``).

One policy object owns the codec. It validates its parameters when built and
turns library errors into :class:`PolicyError`, so a bad policy is refused at
region creation, never in the middle of a write.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

from .errors import DataUnavailableError, PolicyError

DEFAULT_BACKEND = "isa_l_rs_cauchy"
# isa_l_rs_vand is left out on purpose: it returns wrong data for m >= 5.
BACKENDS = ("isa_l_rs_cauchy", "liberasurecode_rs_vand")
MAX_WIDTH = 32  # liberasurecode's limit on k + m
MAX_REPLICAS = 16

_EC_RE = re.compile(r"^ec:(-?\d+)\+(-?\d+)(?::([a-z0-9_]+))?$")
_REP_RE = re.compile(r"^rep:(-?\d+)$")


class Policy(Protocol):
    """What the client needs from a redundancy policy."""

    name: str
    k: int  # fragments needed to read a stripe
    width: int  # fragments written per stripe
    header: int  # bytes of codec header before the data in each fragment

    @property
    def tolerates(self) -> int: ...

    def stripe_data(self, chunk: int) -> int: ...

    def encode(self, data: bytes | bytearray | memoryview) -> list[bytes]: ...

    def decode(self, fragments: dict[int, bytes], chunk: int) -> bytes: ...

    def locate(self, offset: int, chunk: int) -> tuple[int, int]: ...


@lru_cache(maxsize=64)
def _driver(k: int, m: int, backend: str) -> Any:
    from pyeclib.ec_iface import ECDriver, ECDriverError

    try:
        return ECDriver(k=k, m=m, ec_type=backend)
    except ECDriverError as exc:
        raise PolicyError(
            f"erasure code ec:{k}+{m} with backend {backend} is not available here: {exc}; "
            f"choose another backend ({', '.join(BACKENDS)})"
        ) from exc


@dataclass(frozen=True)
class ECPolicy:
    """Reed-Solomon erasure coding: k data and m parity fragments per stripe."""

    data: int
    parity: int
    backend: str = DEFAULT_BACKEND
    header: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.data < 1:
            raise PolicyError(
                f"ec:{self.data}+{self.parity}: K (data fragments) must be at least 1"
            )
        if self.parity < 1:
            raise PolicyError(
                f"ec:{self.data}+{self.parity}: M (parity fragments) must be at least 1; "
                "for no redundancy at all use rep:1"
            )
        if self.data + self.parity > MAX_WIDTH:
            raise PolicyError(
                f"ec:{self.data}+{self.parity}: K+M must be at most {MAX_WIDTH}; "
                "common choices are ec:4+2, ec:8+3, ec:10+4"
            )
        if self.backend not in BACKENDS:
            raise PolicyError(
                f"unknown erasure-code backend {self.backend!r}: use one of {', '.join(BACKENDS)}"
            )
        object.__setattr__(self, "header", _probe_header(self.data, self.parity, self.backend))

    @property
    def name(self) -> str:
        suffix = "" if self.backend == DEFAULT_BACKEND else f":{self.backend}"
        return f"ec:{self.data}+{self.parity}{suffix}"

    @property
    def k(self) -> int:
        return self.data

    @property
    def width(self) -> int:
        return self.data + self.parity

    @property
    def tolerates(self) -> int:
        return self.parity

    def stripe_data(self, chunk: int) -> int:
        return self.data * chunk

    def encode(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        frags: list[bytes] = _driver(self.data, self.parity, self.backend).encode(bytes(data))
        return frags

    def decode(self, fragments: dict[int, bytes], chunk: int) -> bytes:
        if len(fragments) < self.data:
            raise ValueError("decode needs k fragments")
        driver = _driver(self.data, self.parity, self.backend)
        data_idx = [i for i in range(self.data) if i in fragments]
        if len(data_idx) == self.data:  # systematic: just join the data
            return b"".join(fragments[i][self.header :] for i in range(self.data))
        chosen = [fragments[i] for i in sorted(fragments)[: self.data]]
        out: bytes = driver.decode(chosen)
        return out

    def column_headers(self, length: int) -> list[bytes]:
        """The codec's fragment headers for stripes of ``length`` bytes per fragment.
        A header does not depend on the data, so these make any column of a stripe (the
        same bytes of every fragment) decodable on its own."""
        return _column_headers(self.data, self.parity, self.backend, length, self.header)

    def reconstruct(self, fragments: dict[int, bytes], missing: list[int]) -> dict[int, bytes]:
        driver = _driver(self.data, self.parity, self.backend)
        chosen = [fragments[i] for i in sorted(fragments)[: self.data]]
        rebuilt = driver.reconstruct(chosen, missing)
        return dict(zip(missing, rebuilt, strict=True))

    def locate(self, offset: int, chunk: int) -> tuple[int, int]:
        index, within = divmod(offset, chunk)
        return index, self.header + within


@dataclass(frozen=True)
class ReplicationPolicy:
    """N full copies of every stripe."""

    copies: int
    header: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.copies < 1:
            raise PolicyError(f"rep:{self.copies}: the number of copies must be at least 1")
        if self.copies > MAX_REPLICAS:
            raise PolicyError(f"rep:{self.copies}: at most {MAX_REPLICAS} copies are supported")

    @property
    def name(self) -> str:
        return f"rep:{self.copies}"

    @property
    def k(self) -> int:
        return 1

    @property
    def width(self) -> int:
        return self.copies

    @property
    def tolerates(self) -> int:
        return self.copies - 1

    def stripe_data(self, chunk: int) -> int:
        return chunk

    def encode(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        frag = bytes(data)
        return [frag] * self.copies

    def decode(self, fragments: dict[int, bytes], chunk: int) -> bytes:
        for frag in fragments.values():
            return frag
        raise ValueError("decode needs one copy")

    def locate(self, offset: int, chunk: int) -> tuple[int, int]:
        return 0, offset


@lru_cache(maxsize=64)
def _column_headers(k: int, m: int, backend: str, length: int, header: int) -> list[bytes]:
    frags = _driver(k, m, backend).encode(bytes(k * length))
    return [bytes(f[:header]) for f in frags]


def _probe_header(k: int, m: int, backend: str) -> int:
    """Measure the codec's fragment header and check the code is systematic.

    Healthy reads take bytes straight out of data fragments, which is only
    right if data fragment i holds data[i*chunk:(i+1)*chunk] after the header.
    """
    chunk = 64
    sample = bytes((i * 7 + 3) % 251 for i in range(k * chunk))
    try:
        frags = _driver(k, m, backend).encode(sample)
    except PolicyError:
        raise
    except Exception as exc:  # the library raises several unrelated types
        raise PolicyError(f"ec:{k}+{m} with backend {backend} cannot encode: {exc}") from exc
    header = len(frags[0]) - chunk
    for i in range(k):
        if frags[i][header:] != sample[i * chunk : (i + 1) * chunk]:
            raise PolicyError(f"backend {backend} is not systematic for ec:{k}+{m}")
    return header


def parse_policy(text: str) -> ECPolicy | ReplicationPolicy:
    """Parse ``ec:K+M``, ``ec:K+M:BACKEND`` or ``rep:N``."""
    if not isinstance(text, str):
        raise PolicyError(f"policy must be a string such as 'ec:4+2' or 'rep:3', not {text!r}")
    return _parse_policy(text)


@lru_cache(maxsize=256)
def _parse_policy(text: str) -> ECPolicy | ReplicationPolicy:
    # Policies are immutable and building one probes the codec, so each text is parsed once.
    if not isinstance(text, str):
        raise PolicyError(f"policy must be a string such as 'ec:4+2' or 'rep:3', not {text!r}")
    spec = text.strip().lower()
    m = _EC_RE.match(spec)
    if m:
        return ECPolicy(int(m.group(1)), int(m.group(2)), m.group(3) or DEFAULT_BACKEND)
    m = _REP_RE.match(spec)
    if m:
        return ReplicationPolicy(int(m.group(1)))
    raise PolicyError(
        f"cannot read policy {text!r}: write ec:K+M (erasure coding, e.g. ec:4+2), "
        "ec:K+M:BACKEND, or rep:N (N copies, e.g. rep:3)"
    )


def check_decoded(
    region: str, slab: int, stripe: int, have: int, needed: int, missing: dict[int, str]
) -> None:
    """Raise the unavailable-data error when fewer than ``needed`` fragments survived."""
    if have < needed:
        raise DataUnavailableError(region, slab, stripe, missing, needed)
