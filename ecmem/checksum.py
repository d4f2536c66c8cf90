"""crc32c checksums of fragments, one per page.

Per-page sums let a node serve a small range with only the pages it touches,
and let the client verify those bytes end to end against the sums the writer
computed, without the node hashing anything on the read path.
"""

from __future__ import annotations

from array import array

from crc32c import crc32c

PAGE = 4096


def page_crcs(data: bytes | bytearray | memoryview, page: int = PAGE) -> bytes:
    """crc32c of each page of ``data`` (the last may be short), packed little-endian."""
    view = memoryview(data)
    sums = array("I", (crc32c(view[i : i + page]) for i in range(0, len(view), page)))
    return sums.tobytes()


def unpack(crcs: bytes) -> array[int]:
    out = array("I")
    out.frombytes(crcs)
    return out


def bad_pages(
    data: bytes | bytearray | memoryview, crcs: bytes, first_page: int = 0, page: int = PAGE
) -> list[int]:
    """Page numbers (counted from ``first_page``) whose bytes do not match ``crcs``."""
    view = memoryview(data)
    sums = unpack(crcs)
    npages = (len(view) + page - 1) // page
    if npages != len(sums):
        return list(range(first_page, first_page + max(npages, len(sums))))
    return [
        first_page + n
        for n, i in enumerate(range(0, len(view), page))
        if crc32c(view[i : i + page]) != sums[n]
    ]
