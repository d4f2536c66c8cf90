"""Optional mirror of a node's fragments in a local directory.

With ``--data-dir`` a node restarted with the same id comes back with its
fragments and its incarnation, so clients keep trusting what it serves.
Writes go to the page cache (no fsync): the mirror survives a process
crash, which is what it is for; redundancy across nodes covers the rest.
"""

from __future__ import annotations

import logging
import os
import struct
import uuid
from pathlib import Path

from ecmem import checksum

from .store import Fragment, FragmentStore, StoreError

log = logging.getLogger(__name__)
_HEAD = struct.Struct("!QQI")  # version, fragment length, bytes of page sums


class DataDir:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.root = Path(path)
        self.frags = self.root / "fragments"
        self.frags.mkdir(parents=True, exist_ok=True)

    def incarnation(self) -> str:
        marker = self.root / "incarnation"
        try:
            return marker.read_text().strip()
        except FileNotFoundError:
            value = uuid.uuid4().hex[:16]
            marker.write_text(value + "\n")
            return value

    def _path(self, region: str, stripe: int, index: int) -> Path:
        return self.frags / region / f"{stripe}.{index}"

    def load(self, store: FragmentStore) -> int:
        loaded = 0
        for region_dir in sorted(self.frags.iterdir()):
            for f in region_dir.iterdir():
                if f.name.endswith(".tmp"):
                    f.unlink(missing_ok=True)
                    continue
                if f.name == "epoch":
                    store.epochs[region_dir.name] = int(f.read_text())
                    continue
                try:
                    stripe_s, index_s = f.name.split(".")
                    raw = f.read_bytes()
                    version, length, ncrc = _HEAD.unpack_from(raw)
                    crcs = raw[_HEAD.size : _HEAD.size + ncrc]
                    data = raw[_HEAD.size + ncrc :]
                    if checksum.page_crcs_padded(data, length, store.page) != crcs:
                        raise ValueError("checksum mismatch")
                    store.restore(
                        region_dir.name,
                        int(stripe_s),
                        int(index_s),
                        version,
                        crcs,
                        bytearray(data),
                        length,
                    )
                    loaded += 1
                except (ValueError, struct.error, StoreError) as exc:
                    log.error("skipping damaged fragment file %s: %s", f, exc)
        return loaded

    def on_fence(self, region: str, epoch: int) -> None:
        folder = self.frags / region
        folder.mkdir(exist_ok=True)
        tmp = folder / "epoch.tmp"
        tmp.write_text(f"{epoch}\n")
        os.replace(tmp, folder / "epoch")

    def on_change(
        self, op: str, region: str, stripe: int, index: int, frag: Fragment | None
    ) -> None:
        path = self._path(region, stripe, index)
        if op == "delete" or frag is None:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(_HEAD.pack(frag.version, frag.length, len(frag.crcs)))
            fh.write(frag.crcs)
            fh.write(frag.data)
        os.replace(tmp, path)
