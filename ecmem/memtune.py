"""glibc malloc settings for moving large buffers.

Fragments and stripes are hundreds of KiB to MiB. glibc serves such sizes
with mmap and hands them back with munmap, so every buffer costs fresh page
faults: measured, that doubled the client's system time on writes. Raising
the mmap and trim thresholds keeps freed buffers for reuse. Set
ECMEM_MALLOC_TUNING=0 to leave malloc alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 64 * 1024 * 1024
TRIM_THRESHOLD = 256 * 1024 * 1024
_done = False


def tune_malloc(keep_freed: bool = False) -> bool:
    """Apply the thresholds; ``keep_freed`` never returns freed memory to the kernel,
    which suits a storage node: it holds up to its capacity anyway, and on virtual
    machines faulting fresh pages in costs microseconds each."""
    global _done
    if _done or os.environ.get("ECMEM_MALLOC_TUNING", "1") == "0":
        return False
    _done = True
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        trim = -1 if keep_freed else TRIM_THRESHOLD  # -1: glibc reads it as "never"
        ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and libc.mallopt(M_TRIM_THRESHOLD, trim)
    except (OSError, AttributeError):  # not glibc
        return False
    return bool(ok)
