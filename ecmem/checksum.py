"""crc32c checksums of fragments, one per page.

Per-page sums let a node serve a small range with only the pages it touches,
and let the client verify those bytes end to end against the sums the writer
computed, without the node hashing anything on the read path.
"""

from __future__ import annotations

from array import array

from crc32c import crc32c

PAGE = 16384


def page_crcs(data: bytes | bytearray | memoryview, page: int = PAGE) -> bytes:
    """crc32c of each page of ``data`` (the last may be short), packed little-endian."""
    view = memoryview(data)
    sums = array("I", (crc32c(view[i : i + page]) for i in range(0, len(view), page)))
    return sums.tobytes()


_ZEROS = bytes(PAGE)


def page_crcs_padded(data: bytes | bytearray | memoryview, length: int, page: int = PAGE) -> bytes:
    """Page sums of ``data`` followed by zeros up to ``length`` bytes."""
    view = memoryview(data)
    stored = len(view)
    whole = stored // page * page
    sums = array("I", (crc32c(view[i : i + page]) for i in range(0, whole, page)))
    zeros = _ZEROS if page == PAGE else bytes(page)
    pos = whole
    if pos < stored:  # the page where the stored bytes end
        end = min(pos + page, length)
        sums.append(crc32c(zeros[: end - stored], crc32c(view[pos:])))
        pos = end
    if pos < length:
        full = crc32c(zeros)
        while pos + page <= length:
            sums.append(full)
            pos += page
        if pos < length:
            sums.append(crc32c(zeros[: length - pos]))
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


def bad_pages_in(
    segments: tuple[memoryview, ...] | list[memoryview],
    crcs: bytes,
    first_page: int = 0,
    page: int = PAGE,
) -> list[int]:
    """Like bad_pages, for bytes that arrived scattered over several buffers."""
    if len(segments) == 1:
        return bad_pages(segments[0], crcs, first_page, page)
    if len(segments) == 3 and len(segments[0]) < page and len(segments[2]) < page:
        return _bad_pages_window(segments[0], segments[1], segments[2], crcs, first_page, page)
    sums = unpack(crcs)
    total = sum(len(s) for s in segments)
    if (total + page - 1) // page != len(sums):
        return list(range(first_page, first_page + max((total + page - 1) // page, len(sums))))
    bad: list[int] = []
    n = fill = crc = 0
    for seg in segments:
        pos, size = 0, len(seg)
        while pos < size:
            take = min(page - fill, size - pos)
            crc = crc32c(seg[pos : pos + take], crc)
            fill += take
            pos += take
            if fill == page:
                if crc != sums[n]:
                    bad.append(first_page + n)
                n += 1
                fill = crc = 0
    if fill and crc != sums[n]:
        bad.append(first_page + n)
    return bad


def _bad_pages_window(
    head: memoryview, body: memoryview, tail: memoryview, crcs: bytes, first_page: int, page: int
) -> list[int]:
    """The common case: a range read into place, with the partial pages around it."""
    sums = unpack(crcs)
    total = len(head) + len(body) + len(tail)
    npages = (total + page - 1) // page
    if npages != len(sums):
        return list(range(first_page, first_page + max(npages, len(sums))))
    bad: list[int] = []
    # Page 0 starts in head (possibly empty) and runs into body.
    lead = min(page - len(head), len(body)) if head else 0
    pos = lead
    n = 0
    if head:
        crc = crc32c(body[:lead], crc32c(head))
        if lead == len(body) and len(head) + lead < page:
            crc = crc32c(tail, crc)
            return [first_page] if crc != sums[0] else []
        if crc != sums[0]:
            bad.append(first_page)
        n = 1
    whole = (len(body) - pos) // page
    for _ in range(whole):
        if crc32c(body[pos : pos + page]) != sums[n]:
            bad.append(first_page + n)
        pos += page
        n += 1
    if n < npages:
        crc = crc32c(tail, crc32c(body[pos:]))
        if crc != sums[n]:
            bad.append(first_page + n)
    return bad
