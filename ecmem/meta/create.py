"""A new region's record, from what its creator asked for, checked."""

from __future__ import annotations

import getpass
import os
import time
import uuid

from ..errors import ConfigError
from ..layout import DEFAULT_SLAB, check_chunk, default_geometry
from ..names import validate_name
from ..policy import parse_policy
from ..units import parse_size
from .model import RegionMeta


def new_region(
    name: str,
    size: int | str,
    policy: str,
    *,
    mode: int,
    owner: str | None,
    chunk: int | None,
    slab_size: int | str | None,
    min_durable: int | None,
    uid: int,
    gid: int,
) -> RegionMeta:
    """The record of a region about to be created (no placements yet). ``chunk`` (bytes
    per fragment per stripe) and ``slab_size`` override the measured defaults."""
    validate_name(name)
    nbytes = parse_size(size)
    pol = parse_policy(policy)
    if min_durable is not None and not pol.k <= min_durable <= pol.width:
        raise ConfigError(
            f"min_durable {min_durable} must be between {pol.k} (readable at all) and "
            f"{pol.width} (every fragment) for policy {pol.name}"
        )
    chunk0, _ = default_geometry(pol)
    if chunk is not None:
        chunk0 = check_chunk(chunk)
    stripe = pol.stripe_data(chunk0)
    slab_stripes = max(1, DEFAULT_SLAB // stripe)
    if slab_size is not None:
        slab = parse_size(slab_size)
        if slab < stripe or slab % stripe:
            raise ConfigError(
                f"slab size {slab} must be a positive multiple of the stripe size {stripe}"
            )
        slab_stripes = slab // stripe
    if not 0 <= mode <= 0o7777:
        raise ConfigError(f"mode {mode:o} is not a permission mode (0 to 7777 octal)")
    now = time.time()
    meta = RegionMeta(
        name=name,
        id=uuid.uuid4().hex[:16],
        policy=pol.name,
        size=nbytes,
        chunk=chunk0,
        slab_stripes=slab_stripes,
        owner=owner if owner is not None else whoami(),
        mode=mode,
        uid=uid,
        gid=gid,
        ctime=now,
        mtime=now,
        min_durable=min_durable or 0,
        paged=False,
    )
    return meta


def whoami() -> str:
    """The user creating a region, its owner unless one is given."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
