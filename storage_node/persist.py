"""Optional mirror of a node's fragments in a local directory.

With ``--data-dir`` a node restarted with the same id comes back with its
fragments (committed and staged), its fencing epochs and commit points, and its
incarnation, so clients keep trusting what it serves. Writes go to the page
cache (no fsync): the mirror survives a process crash, which is what it is for;
redundancy across nodes covers the rest.
"""

from __future__ import annotations

import logging
import os
import struct
import uuid
from pathlib import Path

from crc32c import crc32c

from ecmem import checksum, wirebase

from .errors import StoreError
from .patches import Patch
from .records import Fragment
from .store import FragmentStore

log = logging.getLogger(__name__)
# version, fragment length, bytes of page sums, write's first and last stripe, write's end
_HEAD = struct.Struct("!QQIqqQ")
# a page patch: its write's first and last stripe, its write's end, crc32c of its bytes
_PATCH = struct.Struct("!qqQI")


class DataDir:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.root = Path(path)
        self.frags = self.root / "fragments"
        # Other processes' memory lives here: only this user may read it (the node runs
        # with umask 077, so what it writes from now on is 0600 too).
        self.frags.mkdir(parents=True, exist_ok=True, mode=0o700)
        for d in (self.root, self.frags):
            try:
                d.chmod(0o700)
            except PermissionError:
                log.warning("cannot make %s private (chmod 700): it is another user's", d)
        self.store: FragmentStore | None = None
        self._files: dict[tuple[str, str], set[str]] = {}  # (region, "stripe.index") -> names

    def incarnation(self) -> str:
        marker = self.root / "incarnation"
        try:
            return marker.read_text().strip()
        except FileNotFoundError:
            value = uuid.uuid4().hex[:16]
            marker.write_text(value + "\n")
            return value

    def attach(self, store: FragmentStore) -> int:
        """Load what the directory holds into ``store``, then mirror its changes."""
        loaded = self._load(store)
        self.store = store
        store.listeners.append(self.on_change)
        store.state_listeners.append(self.on_state)
        store.patch_listeners.append(self.on_patch)
        return loaded

    def _load(self, store: FragmentStore) -> int:
        loaded = 0
        for region_dir in sorted(self.frags.iterdir()):
            region = region_dir.name
            if not wirebase.REGION_ID.fullmatch(region) or not region_dir.is_dir():
                log.error(
                    "skipping %s: not a region's folder; move it out of the data dir", region_dir
                )
                continue
            region_dir.chmod(0o700)
            state = region_dir / "state"
            if state.exists():
                try:
                    epoch, lac, base = (int(x) for x in state.read_text().split())
                    st = store.region(region, loading=True)
                    st.epoch, st.lac, st.base = epoch, lac, base
                except ValueError as exc:
                    log.error("damaged state file %s: %s", state, exc)
            for f in sorted(region_dir.iterdir()):
                f.chmod(0o600)  # written by an older version, perhaps world-readable
                if f.name == "state":
                    continue
                if f.name.endswith(".tmp"):
                    f.unlink(missing_ok=True)
                    continue
                if f.name.startswith("p."):
                    loaded += self._load_patch(store, region, f)
                    continue
                try:
                    parts = f.name.split(".")
                    staged = parts[-1] == "staged"
                    raw = f.read_bytes()
                    version, length, ncrc, first, last, end = _HEAD.unpack_from(raw)
                    crcs = raw[_HEAD.size : _HEAD.size + ncrc]
                    data = bytearray(raw[_HEAD.size + ncrc :])
                    if checksum.page_crcs_padded(data, length, store.page) != crcs:
                        raise ValueError("checksum mismatch")
                    frag = Fragment(data, version, crcs, length, (first, last, end))
                    store.restore(
                        region, int(parts[0]), int(parts[1]), frag, staged=staged, loading=True
                    )
                    self._files.setdefault((region, f"{parts[0]}.{parts[1]}"), set()).add(f.name)
                    loaded += 1
                except (ValueError, IndexError, struct.error, StoreError) as exc:
                    log.error("skipping damaged fragment file %s: %s", f, exc)
        return loaded

    @staticmethod
    def _load_patch(store: FragmentStore, region: str, f: Path) -> int:
        try:
            stripe, index, version, at = (int(x) for x in f.name.split(".")[1:5])
            raw = f.read_bytes()
            first, last, end, crc = _PATCH.unpack_from(raw)
            data = raw[_PATCH.size :]
            if crc32c(data) != crc:
                raise ValueError("checksum mismatch")
            st = store.region(region, loading=True)
            st.patches.add(stripe, Patch(version, index, at, data, (first, last, end)))
            store.used += len(data)
            return 1
        except (ValueError, struct.error) as exc:
            log.error("skipping damaged patch file %s: %s", f, exc)
            return 0

    def on_patch(self, event: str, region: str, stripe: int, patch: Patch) -> None:
        path = self._dir(region) / f"p.{stripe}.{patch.index}.{patch.version}.{patch.at}"
        if event == "drop":
            path.unlink(missing_ok=True)
            return
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(_PATCH.pack(*patch.write, crc32c(patch.data)))
            fh.write(patch.data)
        os.replace(tmp, path)

    def _dir(self, region: str) -> Path:
        d = self.frags / region
        d.mkdir(exist_ok=True)
        return d

    @staticmethod
    def _write(path: Path, frag: Fragment) -> None:
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(_HEAD.pack(frag.version, frag.length, len(frag.crcs), *frag.write))
            fh.write(frag.crcs)
            fh.write(frag.data)
        os.replace(tmp, path)

    def on_state(self, region: str, epoch: int, lac: int, base: int) -> None:
        d = self._dir(region)
        tmp = d / "state.tmp"
        tmp.write_text(f"{epoch} {lac} {base}\n")
        os.replace(tmp, d / "state")

    def on_change(
        self, event: str, region: str, stripe: int, index: int, frag: Fragment | None, staged: bool
    ) -> None:
        d = self._dir(region)
        base = f"{stripe}.{index}"
        files = self._files.setdefault((region, base), set())
        if event == "put" and frag is not None:
            name = f"{base}.{frag.version}.staged" if staged else base
            self._write(d / name, frag)
            files.add(name)
            return
        if event == "promote" and frag is not None:
            src = f"{base}.{frag.version}.staged"
            if src in files:
                os.replace(d / src, d / base)
                files.discard(src)
            else:
                self._write(d / base, frag)
            files.add(base)
        # After a promote or a drop, keep exactly the versions the store still has.
        assert self.store is not None
        st = self.store.region(region)
        keep = {f"{base}.{f.version}.staged" for f in st.staged.get((stripe, index), ())}
        if (stripe, index) in st.committed:
            keep.add(base)
        for name in files - keep:
            (d / name).unlink(missing_ok=True)
        files &= keep
