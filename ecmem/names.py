"""Region names: a tree of parts joined by ``/`` (``ckpt/job42/rank0``)."""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

from .errors import InvalidNameError

MAX_NAME_BYTES = 1024
MAX_PART_BYTES = 255
_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def validate_name(name: str) -> str:
    """Return the name unchanged if it is a valid region name, else raise."""
    if not isinstance(name, str):
        raise InvalidNameError(f"region name must be a string, not {type(name).__name__}")
    if not name:
        raise InvalidNameError("region name is empty: give a name such as 'ckpt/job42/rank0'")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise InvalidNameError(f"region name is longer than {MAX_NAME_BYTES} bytes: shorten it")
    if _BAD_CHARS.search(name):
        raise InvalidNameError(f"region name {name!r} holds control characters: remove them")
    for part in name.split("/"):
        if part == "":
            raise InvalidNameError(
                f"region name {name!r} has an empty part (leading, trailing or double '/'): "
                "write parts joined by single slashes, e.g. 'a/b/c'"
            )
        if part in (".", ".."):
            raise InvalidNameError(
                f"region name {name!r} contains {part!r}: names are plain paths without . or .."
            )
        if len(part.encode()) > MAX_PART_BYTES:
            raise InvalidNameError(
                f"region name part {part[:20]!r}... is longer than {MAX_PART_BYTES} bytes"
            )
    return name


def encode_name(name: str) -> str:
    """A region name as one ZooKeeper path component."""
    return quote(name, safe="")


def decode_name(component: str) -> str:
    return unquote(component)
