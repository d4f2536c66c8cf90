"""ecmem errors as the errno a program expects from a file system call.

Every handler runs under ``fuse_errors``: an unexpected exception is logged with
its traceback and becomes EIO, instead of vanishing inside the event loop.
"""

from __future__ import annotations

import errno
import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import pyfuse3

from ecmem.errors import (
    ClusterError,
    ConfigError,
    DataUnavailableError,
    EcmemError,
    Fenced,
    InvalidNameError,
    NodeUnavailable,
    NoSpaceError,
    RegionBusy,
    RegionExists,
    RegionNotFound,
)

log = logging.getLogger("ecmem.mount")

P = ParamSpec("P")
T = TypeVar("T")

# Most specific first: subclasses before their bases.
ERRNO: list[tuple[type[BaseException], int]] = [
    (RegionNotFound, errno.ENOENT),
    (RegionExists, errno.EEXIST),
    (RegionBusy, errno.EBUSY),
    (NoSpaceError, errno.ENOSPC),
    (InvalidNameError, errno.EINVAL),
    (ConfigError, errno.EINVAL),
    (Fenced, errno.EIO),
    (DataUnavailableError, errno.EIO),
    (NodeUnavailable, errno.EIO),
    (ClusterError, errno.EIO),
    (EcmemError, errno.EIO),
]


def errno_of(exc: BaseException) -> int:
    for kind, code in ERRNO:
        if isinstance(exc, kind):
            return code
    return errno.EIO


def fuse_errors(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except EcmemError as exc:
            code = errno_of(exc)
            level = logging.WARNING if code == errno.EIO else logging.INFO
            log.log(level, "%s%s: %s (%s)", fn.__name__, _args(args), exc, errno.errorcode[code])
            raise pyfuse3.FUSEError(code) from exc
        except Exception:
            log.exception("%s%s failed unexpectedly; answering EIO", fn.__name__, _args(args))
            raise pyfuse3.FUSEError(errno.EIO) from None

    return wrapper


def _args(args: tuple[Any, ...]) -> str:
    shown = [a if not isinstance(a, bytes | memoryview) or len(a) < 64 else "…" for a in args[1:]]
    return "(" + ", ".join(repr(a) for a in shown) + ")"
