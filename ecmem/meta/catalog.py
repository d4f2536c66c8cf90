"""Cluster metadata in ZooKeeper, through kazoo: nodes and regions.

Every update of a region record is a versioned set (compare-and-swap), so
two clients racing on one region never lose each other's change.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator

from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError, NotEmptyError
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.retry import KazooRetry

from ..errors import (
    ConcurrentUpdateError,
    CoordinationError,
    ProtocolError,
    RegionExists,
    RegionNotFound,
)
from ..names import decode_name
from .model import DirMeta, NodeInfo, RegionMeta
from .paths import Paths

log = logging.getLogger(__name__)

CAS_RETRIES = 50
# A region record read or update rides out a ZooKeeper server's failover (the session
# moves to another server): tried again on a lost connection for this many seconds.
FAILOVER_DEADLINE = 10.0


def through_failover() -> KazooRetry:
    return KazooRetry(
        max_tries=-1, delay=0.1, max_delay=1.0, ignore_expire=False, deadline=FAILOVER_DEADLINE
    )


TRASH = ".ecmem-trash"  # regions renamed over or unlinked while open, awaiting deletion


def trash_name(region_id: str) -> str:
    return f"{TRASH}/{region_id}"


def connect_zk(hosts: str, timeout: float = 10.0, session_timeout: float = 10.0) -> KazooClient:
    """Start a kazoo client, or raise CoordinationError saying what to check."""
    zk = KazooClient(hosts=hosts, timeout=session_timeout, connection_retry={"max_tries": -1})
    try:
        zk.start(timeout=timeout)
    except (KazooTimeoutError, Exception) as exc:
        zk.stop()
        zk.close()
        raise CoordinationError(
            f"cannot reach ZooKeeper at {hosts} within {timeout:.0f}s ({exc}); is the cluster "
            "running? Start a local one with 'ecmem up', or pass --zk / set ECMEM_ZK"
        ) from exc
    return zk


class MetadataStore:
    def __init__(self, zk: KazooClient, cluster: str) -> None:
        self.zk = zk
        self.paths = Paths(cluster)
        # Records found damaged by the listings so far: what -> why (for status to show).
        self.damaged: dict[str, str] = {}

    def ensure(self) -> None:
        """The folders every client expects (buckets are made as records go in)."""
        retry = through_failover()
        for path in (self.paths.nodes, self.paths.registry, self.paths.regions):
            retry(self.zk.ensure_path, path)

    def migrate_legacy(self) -> int:
        """Move region records from the flat folder of earlier versions into their
        buckets, each in one transaction (a record changed meanwhile is read again)."""
        legacy = self.paths.legacy_regions
        try:
            children = self.zk.get_children(legacy)
        except NoNodeError:
            return 0
        moved = 0
        for child in children:
            old = f"{legacy}/{child}"
            self._bucket_ready(decode_name(child))
            for _ in range(CAS_RETRIES):
                try:
                    raw, stat = self.zk.get(old)
                except NoNodeError:
                    break
                tx = self.zk.transaction()
                tx.delete(old, version=stat.version)
                tx.create(self.paths.region(decode_name(child)), raw)
                results = tx.commit()
                if not any(isinstance(r, Exception) for r in results):
                    moved += 1
                    break
                if any(isinstance(r, NodeExistsError) for r in results):
                    log.error(
                        "region %s has a record in both %s and %s: the newer layout's is "
                        "used; compare them and delete the old one by hand",
                        decode_name(child),
                        legacy,
                        self.paths.regions,
                    )
                    break
        with contextlib.suppress(NoNodeError, NotEmptyError):
            self.zk.delete(legacy)
        if moved:
            log.info("moved %d region records into the bucketed layout", moved)
        return moved

    # -- nodes ------------------------------------------------------------------

    def _node_records(self, folder: str) -> dict[str, NodeInfo]:
        out: dict[str, NodeInfo] = {}
        try:
            children = self.zk.get_children(folder)
        except NoNodeError:
            return out
        where = f"node record {folder.rsplit('/', 1)[-1]}/"
        for what in [w for w in self.damaged if w.startswith(where)]:
            del self.damaged[what]  # read again below, if still there
        for child in children:
            try:
                raw, _ = self.zk.get(f"{folder}/{child}")
            except NoNodeError:  # gone between the listing and the read
                continue
            try:
                out[child] = NodeInfo.from_json(raw)
            except ProtocolError as exc:
                self.damaged[f"{where}{child}"] = str(exc)
                log.warning("node %s left out: %s", child, exc)
        return out

    def live_nodes(self) -> dict[str, NodeInfo]:
        nodes: dict[str, NodeInfo] = through_failover()(self._node_records, self.paths.nodes)
        return nodes

    def registered_nodes(self) -> dict[str, NodeInfo]:
        nodes = self._node_records(self.paths.registry)
        for info in nodes.values():
            info.state = "down"
        return nodes

    def all_nodes(self) -> dict[str, NodeInfo]:
        """Every known node: live ones as registered now, the rest marked down."""
        nodes = self.registered_nodes()
        nodes.update(self.live_nodes())
        return nodes

    def forget_node(self, node_id: str) -> None:
        self.zk.delete(self.paths.registered(node_id))
        try:
            self.zk.delete(self.paths.drain(node_id))
        except NoNodeError:
            pass

    def draining(self) -> list[str]:
        """Nodes being drained (or drained): no new fragments go to them."""
        try:
            return sorted(through_failover()(self.zk.get_children, self.paths.drains))
        except NoNodeError:
            return []

    # -- regions ----------------------------------------------------------------

    def _bucket_ready(self, name: str) -> None:
        """A transaction's create needs the record's folder to exist already."""
        self.zk.ensure_path(self.paths.region(name).rsplit("/", 1)[0])

    def create_region(self, meta: RegionMeta) -> None:
        try:
            self.zk.create(self.paths.region(meta.name), meta.to_json(), makepath=True)
        except NodeExistsError as exc:
            raise RegionExists(
                f"region {meta.name!r} exists already: open it, or remove it first "
                "(ecmem region rm)"
            ) from exc

    def get_region(self, name: str) -> tuple[RegionMeta, int]:
        try:
            raw, stat = through_failover()(self.zk.get, self.paths.region(name))
        except NoNodeError as exc:
            raise RegionNotFound(
                f"no region named {name!r}: list regions with 'ecmem region ls'"
            ) from exc
        return RegionMeta.from_json(raw), stat.version

    def sync_region(self, name: str) -> None:
        """Bring this session's ZooKeeper server up to date with the leader, so that
        the next read of the region's record sees every update made before this call."""
        through_failover()(self.zk.sync, self.paths.region(name))

    def update_region(
        self, name: str, change: Callable[[RegionMeta], RegionMeta | None]
    ) -> RegionMeta:
        """Apply ``change`` with compare-and-swap; returning None from it means no update."""
        return self.update_region_from(name, change, None)[0]

    def update_region_from(
        self,
        name: str,
        change: Callable[[RegionMeta], RegionMeta | None],
        start: tuple[RegionMeta, int] | None,
    ) -> tuple[RegionMeta, int]:
        """``update_region`` starting from a copy the caller holds (record, ZooKeeper
        version), so that the usual case is one round trip, the set; a stale copy
        costs a failed set and a fresh read. A "no change" is trusted only of a fresh
        read. Returns the record now stored and its version.

        A set whose answer was lost with the connection may have been applied: the
        retry finds a newer version, reads it and applies ``change`` to it again. So
        changes look before they change; a takeover's epoch bump may count twice, which
        only skips an epoch."""
        done: tuple[RegionMeta, int] = through_failover()(
            self._update_region_from, name, change, start
        )
        return done

    def _update_region_from(
        self,
        name: str,
        change: Callable[[RegionMeta], RegionMeta | None],
        start: tuple[RegionMeta, int] | None,
    ) -> tuple[RegionMeta, int]:
        for _ in range(CAS_RETRIES):
            if start is not None:
                (meta, version), start = start, None
                fresh = False
            else:
                meta, version = self.get_region(name)
                fresh = True
            new = change(meta)
            if new is None:
                if fresh:
                    return meta, version
                continue
            try:
                stat = self.zk.set(self.paths.region(name), new.to_json(), version=version)
                return new, stat.version
            except BadVersionError:
                continue
            except NoNodeError as exc:
                raise RegionNotFound(f"region {name!r} was removed while being updated") from exc
        raise ConcurrentUpdateError(
            f"region {name!r} changed {CAS_RETRIES} times while we tried to update it; retry"
        )

    def delete_region(self, name: str) -> RegionMeta:
        """Remove a region's record; returns it as removed (its placement is where its
        data is to delete: a record that changed meanwhile, say by a rebuild, is read
        again)."""
        for _ in range(CAS_RETRIES):
            meta, version = self.get_region(name)
            try:
                self.zk.delete(self.paths.region(name), version=version)
            except BadVersionError:
                continue
            except NoNodeError as exc:
                raise RegionNotFound(f"no region named {name!r}") from exc
            return meta
        raise ConcurrentUpdateError(
            f"region {name!r} changed {CAS_RETRIES} times while we tried to remove it; retry"
        )

    def rename_region(self, old: str, new: str, replace: bool = False) -> RegionMeta | None:
        """Give region ``old`` the name ``new`` in one ZooKeeper transaction; with
        ``replace``, a region already named ``new`` is moved to ``trash`` in the same
        transaction and returned (its data is the caller's to delete)."""
        for _ in range(CAS_RETRIES):
            meta, version = self.get_region(old)
            displaced: tuple[RegionMeta, int] | None = None
            trashed: RegionMeta | None = None
            try:
                displaced = self.get_region(new)
            except RegionNotFound:
                pass
            if displaced is not None and not replace:
                raise RegionExists(f"region {new!r} exists already: remove it first")
            self._bucket_ready(new)
            if displaced is not None:
                self._bucket_ready(trash_name(displaced[0].id))
            tx = self.zk.transaction()
            now = time.time()  # a rename changes the file: its ctime
            if displaced is not None:
                gone, gone_version = displaced
                trashed = RegionMeta.from_json(gone.to_json())
                trashed.name = trash_name(gone.id)
                trashed.ctime = now
                tx.delete(self.paths.region(new), version=gone_version)
                tx.create(self.paths.region(trashed.name), trashed.to_json())
            moved = RegionMeta.from_json(meta.to_json())
            moved.name = new
            moved.ctime = now
            tx.delete(self.paths.region(old), version=version)
            tx.create(self.paths.region(new), moved.to_json())
            results = tx.commit()
            if not any(isinstance(r, Exception) for r in results):
                return trashed
            if any(isinstance(r, NodeExistsError) for r in results) and displaced is None:
                continue  # someone created ``new`` meanwhile: look again
        raise ConcurrentUpdateError(
            f"regions {old!r} and {new!r} kept changing while being renamed; retry"
        )

    # -- directories (made on a mount) -------------------------------------------

    def dirs(self) -> dict[str, DirMeta]:
        out: dict[str, DirMeta] = {}
        try:
            children = self.zk.get_children(self.paths.dirs)
        except NoNodeError:
            return out
        for c in children:
            name = decode_name(c)
            try:
                raw, _ = self.zk.get(self.paths.dir(name))
            except NoNodeError:
                continue
            out[name] = DirMeta.from_json(raw)
        return out

    def get_dir(self, name: str) -> DirMeta | None:
        try:
            raw, _ = self.zk.get(self.paths.dir(name))
        except NoNodeError:
            return None
        return DirMeta.from_json(raw)

    def put_dir(self, meta: DirMeta, create: bool = False) -> None:
        """Record a directory; with ``create``, RegionExists if it is there already."""
        try:
            self.zk.create(self.paths.dir(meta.name), meta.to_json(), makepath=True)
        except NodeExistsError as exc:
            if create:
                raise RegionExists(f"directory {meta.name!r} exists already") from exc
            self.zk.set(self.paths.dir(meta.name), meta.to_json())

    def delete_dir(self, name: str) -> None:
        try:
            self.zk.delete(self.paths.dir(name))
        except NoNodeError:
            pass

    def region_names(self, prefix: str = "") -> list[str]:
        """Every region name starting with ``prefix``, sorted: one listing per bucket,
        all sent at once."""
        pending = [self.zk.get_children_async(b) for b in self.paths.buckets]
        names: list[str] = []
        for answer in pending:
            try:
                children = answer.get(timeout=FAILOVER_DEADLINE)
            except NoNodeError:
                continue
            names.extend(n for n in map(decode_name, children) if n.startswith(prefix))
        return sorted(names)

    def regions(self, prefix: str = "") -> list[RegionMeta]:
        return [meta for _, meta in self.iter_regions(prefix)]

    def iter_regions(
        self, prefix: str = "", window: int = 2000, names: list[str] | None = None
    ) -> Iterator[tuple[str, RegionMeta]]:
        """(name, record) of every region starting with ``prefix`` (or of ``names``), in
        name order; the reads are pipelined, ``window`` in flight. A region removed
        meanwhile is left out."""
        if names is None:
            names = self.region_names(prefix)
            for name in [
                n for n in self.damaged if n.startswith(prefix) and not n.startswith("node record ")
            ]:
                del self.damaged[name]  # read again below, if still there
        for start in range(0, len(names), window):
            batch = names[start : start + window]
            pending = [self.zk.get_async(self.paths.region(n)) for n in batch]
            for name, answer in zip(batch, pending, strict=True):
                try:
                    raw, _ = answer.get(timeout=FAILOVER_DEADLINE)
                except NoNodeError:
                    continue
                try:
                    meta = RegionMeta.from_json(raw)
                except ProtocolError as exc:  # anyone could have written it: skip, say so
                    self.damaged[name] = str(exc)
                    log.info("region %s left out: %s; remove or rewrite its record", name, exc)
                    continue
                yield name, meta
