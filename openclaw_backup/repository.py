"""The repository: the one way into the format. Config, the head and its publication, the local
cache, the blob index, reading blobs, writing packs and index files, snapshots, keys.

Words: the **head** is the one mutable object; its sealed JSON names the live snapshots and index
files and carries a sequence number that only grows. A **publication** replaces the head by
compare-and-swap (see :mod:`openclaw_backup.backends.base`). Write order — packs, then the index
that describes them, then the snapshot, then the head — means a crash leaves only unreferenced
objects. Readers go the other way: head → snapshots/indexes → trees → packs.

Concurrency: two writers that start from the same head race at the publication; the loser
re-reads the head, checks that every blob its snapshot needs is still indexed (a concurrent prune
may have dropped some), merges its additions into the new head and tries again. The same check
runs whenever a writer publishes over a head other than the one its index was loaded under —
also when the head was re-read in between without a conflict (a snapshot or index file found
gone re-reads it): the compare-and-swap vouches only for the head it replaces, not for the index
the writer deduplicated against.

Objects that never change (index files, snapshots, key files) are cached under ``cache_dir`` by
name; a cached copy is used only when its BLAKE3 still matches its name, and never when
``trust_cache`` is off (``check`` reads everything it vouches for from the store).

Damage is contained: an index file or snapshot that the head names but that is missing or damaged
is left out, with a warning naming it (once per reading of the head), and recorded in
:attr:`Repository.unreadable`; what does not depend on it goes on. **Damage records**
(``damaged/<name>``, written by ``check``) name blobs found missing or damaged at a place in a
pack; the index never vouches for a blob at such a place, so a backup stores it again (a reader
still tries it when there is no other: authentication decides).

The class is assembled from parts: :mod:`.repo_access` (creating, opening, passwords),
:mod:`.repo_damage` (damage records, lost packs), :mod:`.repo_staging` (staged uploads, the
publication attempt, packs kept for the next process) and :mod:`.repo_reads` (reading blobs, reads
in flight together from a remote store) are mixed in. Parts of the format: :mod:`.index`
(the blob index), :mod:`.pack` (pack writing and reading), :mod:`.keys` (key files),
:mod:`.snapshot` (the snapshot document), :mod:`.codec` (byte formats). The archiver,
restorer and maintenance use the methods of :class:`Repository` only; only the repository and
its parts know byte formats and object names.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from . import codec
from .backends.base import Backend, Head
from .backends.wrappers import Read, ReadAhead, read_ahead
from .chunker import Chunker
from .codec import BlobRef, decode_index, storage_id
from .crypto import Cipher
from .errors import (
    BackupError,
    ConflictError,
    DamagedRepositoryError,
    IntegrityError,
    NotFoundError,
    UsageError,
)
from .head import HeadState
from .index import Index, IndexSummary, PackEntries
from .pack import (
    PackCheck,
    check_pack,
    pack_name,
    read_header,
)
from .repo_access import Access, read_to_find, write_atomic
from .repo_config import RepoConfig
from .repo_damage import Damage
from .repo_reads import Reads
from .repo_staging import PUBLISH_ATTEMPTS, Staging
from .snapshot import Snapshot
from .tree import Node

T = TypeVar("T")

HEAD_FRESH = 10.0  # seconds a head just read is good for the backup that follows (see refresh)


class Repository(Staging, Access, Damage, Reads):
    """An opened repository. Use :meth:`init` or :meth:`open`; not thread-safe except where noted
    (reading blobs and writing packs are thread-safe).

    ``backend``, ``cipher``, ``config``, ``state`` (the head as last read) and ``index`` are the
    repository's own: its parts use them, and tests look at them; everyone else asks its methods.
    """

    def __init__(self, backend: Backend, cipher: Cipher, config: RepoConfig, *, cache_dir: Path | None) -> None:
        self.backend = backend
        self.cipher = cipher
        self.config = config
        self.cache_dir = cache_dir / config.id if cache_dir else None
        seed = int.from_bytes(cipher.derive(b"chunker seed", 8), "little") & ((1 << 63) - 1)
        self.chunker = Chunker(config.chunker, seed)
        self.sqlite_chunker = Chunker(config.chunker_sqlite, seed)
        self.head: Head | None = None
        self._head_read_at: float | None = None  # time.monotonic() of the last head read
        self.state = HeadState()
        self.index = Index()
        # Packs uploaded but not yet published that a backup may use, and a backup's publication
        # attempt: see repo_staging.
        self._unpublished: PackEntries = {}
        self._attempt: PackEntries = {}
        self._index_key: tuple[Any, ...] | None = None
        self._index_head: tuple[int, str | None] | None = None  # the head the index was loaded under
        self._base_index = Index()
        self._records: tuple[int, dict[str, set[tuple[bytes, str]]]] | None = None
        self._index_files: list[tuple[str, dict[bytes, BlobRef]]] = []
        self.warnings: list[str] = []
        self._warn: Callable[[str], None] = self.warnings.append
        self._warned: set[str] = set()
        #: read every content-named object from the store, never from the local cache (``check``)
        self.trust_cache = True
        #: object name (``index/…``, ``snapshots/…``) -> why it could not be read
        self.unreadable: dict[str, str] = {}
        #: packs the index names that the store lacks (found by :meth:`distrust_missing_packs`)
        self.missing_packs: set[str] = set()
        self._trees: dict[bytes, bytes] = {}  # tree id -> plaintext, verified (see prefetch_trees)
        self._read_next: tuple[ReadAhead, Head] | None = None  # reads the open started (see reading_ahead)
        self._decoding = threading.BoundedSemaphore(max(1, os.cpu_count() or 1))  # see read_batch

    # ------------------------------------------------------------------ opening

    @staticmethod
    def peek_id(backend: Backend) -> str:
        """The id of the repository at ``backend`` (it names the local cache), read from its
        plaintext config without a password and without opening it; ``NotFoundError`` when the
        store has no repository."""
        return RepoConfig.from_bytes(backend.get("config")).id

    @property
    def id(self) -> str:
        """The repository's id (from its config): names its local cache."""
        return self.config.id

    @property
    def encrypted(self) -> bool:
        return self.cipher.encrypted

    def reopen_store(self) -> bool:
        """In a process forked from the one that opened this repository: read the store from now on
        through a handle of its own (:meth:`.Backend.reopen`), which shares no connection with that
        process. False when the store cannot be reopened (nothing changes; the caller does without
        reading it here). Only for reading: what is staged for a publication stays in the other."""
        fresh = self.backend.reopen()
        if fresh is None:
            return False
        self.backend = fresh
        return True

    # ------------------------------------------------------------------ head

    def refresh(self, *, max_age: float = 0.0) -> HeadState:
        """Re-read the head (and note a rollback, which only an attacker or a restore of the store causes).

        ``max_age``: a head this object read less than that many seconds ago, with no publication
        tried since, is used as it is (opening reads the head, and a backup right after need not
        read it again: a stale head only costs a conflict and a re-plan at publication).
        """
        if max_age > 0 and self._head_read_at is not None and time.monotonic() - self._head_read_at <= max_age:
            return self.state
        self._head_read_at = None
        head = self.backend.read_head()
        if head is None:
            raise DamagedRepositoryError(
                f"{self.backend.location}: the repository's head is lost (its config is there)",
                hint="rebuild it from the snapshot and index files: `openclaw-backup repair head`",
            )
        self.head = head
        self._warned.clear()  # a new reading of the head: damage is reported again
        doc = codec.decode_document(self.cipher, b"head", head.data, what="head")
        self.state = HeadState.from_json(doc)
        if self.cipher.encrypted and doc.get("config", self._config_mac()) != self._config_mac():
            raise IntegrityError(
                f"{self.backend.location}: the repository config does not match what its head vouches for",
                hint="someone changed the config file; restore the original",
            )
        self._check_rollback()
        self._head_read_at = time.monotonic()
        return self.state

    def report_to(self, warn: Callable[[str], None]) -> None:
        """Send the warnings so far, and every later one, to ``warn`` (a reporter's)."""
        for w in self.warnings:
            warn(w)
        self._warn = warn

    def _unreadable_now(self, name: str, why: str) -> None:
        """Note an object named by the head that cannot be read; warn once per reading of the head."""
        self.unreadable[name] = why
        if name not in self._warned:
            self._warned.add(name)
            kind, _, oid = name.partition("/")
            hint = (
                f"`openclaw-backup forget {oid[:8]}` removes it" if kind == "snapshots"
                else "`openclaw-backup repair index` rebuilds the index from the packs"
            )  # fmt: skip
            self._warn(f"{name[:len(kind) + 17]} is unreadable ({why}); left out ({hint})")

    def snapshot_ids(self) -> list[str]:
        """The live snapshots, as the head last read names them."""
        return list(self.state.snapshots)

    def index_names(self) -> list[str]:
        """The live index files, as the head last read names them."""
        return list(self.state.indexes)

    @property
    def deleted_since_squash(self) -> int:
        """Bytes deleted since the store's history was last squashed (the head last read counts them)."""
        return self.state.deleted_since_squash

    def _config_mac(self) -> str:
        """The config, as the head vouches for it (sealed heads cannot be forged without the key)."""
        return self.cipher.derive(b"config mac" + self.config.to_bytes(), 16).hex()

    def _check_rollback(self) -> None:
        if self.cache_dir is None:
            return
        marker = self.cache_dir / "head-seq"
        try:
            seen = int(marker.read_text())
        except (OSError, ValueError):
            seen = 0
        if self.state.seq < seen:
            self.warnings.append(
                f"the repository head went back in time (sequence {self.state.seq} < {seen} seen before): "
                "someone restored or rolled back the store"
            )
        else:
            self.cache_write("head-seq", str(self.state.seq).encode())

    def replace_head(self, state: HeadState, *, expect: str | None) -> None:
        """Publish ``state`` as the head whatever the head said (``repair head``); the head's
        version must still be ``expect`` (None: there is no head)."""
        self._publish_state(state, expect=expect)

    def _publish_state(self, state: HeadState, *, expect: str | None, deletes: Iterable[str] = ()) -> None:
        data = codec.encode_document(self.cipher, b"head", {**state.to_json(), "config": self._config_mac()})
        self._head_read_at = None  # whatever the outcome, the next refresh reads the head
        base_seq, base_mark = self.state.seq, self._head_mark()
        version = self.backend.publish(head=data, expect=expect, deletes=list(deletes))
        self.head = Head(version, data)
        self.state = state
        self._carry_listings(base_seq, state.seq, base_mark)
        self.cache_write("head-seq", str(state.seq).encode())

    def _publish(
        self,
        add_s: list[str],
        add_i: list[str],
        rm_s: set[str],
        rm_i: set[str],
        deletes: list[str],
        *,
        deleted_bytes: int = 0,
        squashed: bool = False,
        needs: Callable[[], None] | None = None,
        attempts: int = PUBLISH_ATTEMPTS,
        merge: bool = True,
    ) -> None:
        for attempt in range(attempts):
            if needs is not None and self._index_head != self.head_id():
                # The head moved since the index this writer deduplicated against was loaded (a
                # conflict, or a re-read of the head meanwhile: e.g. a snapshot found forgotten).
                # Publishing over the new head needs what we reuse to be in *its* index: a prune
                # in between may have deleted it, and the compare-and-swap cannot tell.
                self.load_index()
                needs()
            base = self.state
            if not rm_s <= set(base.snapshots) or not rm_i <= set(base.indexes):
                raise ConflictError("another process changed the same snapshots or indexes; nothing was changed")
            new = HeadState(
                base.seq + 1,
                [s for s in base.snapshots if s not in rm_s] + [s for s in add_s if s not in base.snapshots],
                [i for i in base.indexes if i not in rm_i] + [i for i in add_i if i not in base.indexes],
                0 if squashed else base.deleted_since_squash + deleted_bytes,
            )
            try:
                self._publish_state(new, expect=self.head.version if self.head else None, deletes=deletes)
                return
            except ConflictError:
                if not merge:
                    raise
                if attempt == attempts - 1:
                    raise ConflictError(
                        f"the repository kept changing under us ({attempts} attempts)",
                        hint="another writer is very busy; try again",
                    ) from None
                self.refresh()  # (the index is checked against it at the top of the loop)

    def squash_history(self) -> bool:
        """Free what deletions left behind on a store that keeps history (a Hub dataset repo):
        squash it and reset the head's count. False, doing nothing, on any other store."""
        if self.backend.capabilities.frees_space_on_delete or not self.backend.squash_history():
            return False
        self.refresh()
        self._publish([], [], set(), set(), [], squashed=True)
        return True

    def remove_stale_temporaries(self, *, older_than: float) -> int:
        """Remove what writes killed half-way left in the store; how many were removed."""
        return self.backend.remove_stale_temporaries(older_than=older_than)

    # ------------------------------------------------------------------ the local cache and immutable objects

    def cache_write(self, name: str, data: bytes) -> None:
        if self.cache_dir is not None:
            write_atomic(self.cache_dir / name, data)

    def cache_read(self, name: str) -> bytes | None:
        """A file of this repository's local cache; None when there is none (or no cache)."""
        if self.cache_dir is None:
            return None
        try:
            return (self.cache_dir / name).read_bytes()
        except OSError:
            return None

    def _cached(self, name: str) -> bool:
        """The local cache holds a copy of ``name`` that :meth:`get_immutable` may use (it checks it)."""
        return self.trust_cache and self.cache_dir is not None and (self.cache_dir / name).exists()

    def get_immutable(self, name: str) -> bytes:
        """Read a content-named object (``index/…``, ``snapshots/…``), through the local cache
        (unless ``trust_cache`` is off). One the head names but the store lacks is an
        ``IntegrityError``; ``NotFoundError`` only when a concurrent writer removed it from the head."""
        expected = name.rsplit("/", 1)[-1]
        data = self.cache_read(name) if self.trust_cache else None
        if data is not None and storage_id(data) == expected:
            return data
        try:
            data = self.backend.get(name)
        except NotFoundError:
            kind = name.partition("/")[0]
            self.refresh()
            if expected not in (self.state.snapshots if kind == "snapshots" else self.state.indexes):
                raise  # forgotten or replaced meanwhile (a forget or prune raced us)
            raise IntegrityError(f"{name[:len(kind) + 17]}: missing from the store") from None
        if storage_id(data) != expected:
            raise IntegrityError(f"{name}: content does not match its name (damaged or swapped)")
        self.cache_write(name, data)
        return data

    def _get_each(self, names: list[str]) -> list[bytes | BackupError]:
        """:meth:`get_immutable` of each name, up to :attr:`read_parallelism` in flight; a name
        that could not be read gives its error in its place."""

        def get(name: str) -> bytes | BackupError:
            try:
                return self.get_immutable(name)
            except (IntegrityError, NotFoundError) as e:
                return e

        width = self.read_parallelism
        if width <= 1 or len(names) <= 1:
            return [get(n) for n in names]
        with ThreadPoolExecutor(max_workers=width) as pool:
            return list(pool.map(get, names))

    def put_immutable(self, prefix: str, data: bytes) -> str:
        sid = storage_id(data)
        self.backend.put(f"{prefix}/{sid}", data)
        self.cache_write(f"{prefix}/{sid}", data)
        return sid

    # ------------------------------------------------------------------ the index

    def load_index(self, *, reload: bool = False, backup: bool = False) -> Index:
        """Load every index file the head names (cached ones are not fetched again), leaving out
        unreadable ones (with a warning) and what the damage records distrust, plus our unpublished
        packs (see :mod:`.repo_staging`). ``reload``: read them again even when the head names the
        same ones. ``backup``: the index a backup dedups against, which adopts kept packs first."""
        records = self.damage_records()
        key = (tuple(self.state.indexes), tuple(sorted(records)), tuple(sorted(self.missing_packs)))
        if self._index_key != key or reload:
            self._base_index = self._build_index(records)
            self._index_key = key
        self.index = self._with_unpublished(self._base_index, adopt=backup)
        self._index_head = self.head_id()
        return self.index

    def head_id(self) -> tuple[int, str | None]:
        """The head as last read or published: its sequence and version."""
        return self.state.seq, self.head.version if self.head is not None else None

    def _build_index(self, records: dict[str, set[tuple[bytes, str]]]) -> Index:
        for attempt in range(3):
            files = []
            try:
                names = list(self.state.indexes)
                for n, got in zip(names, self._get_each([f"index/{n}" for n in names]), strict=True):
                    try:
                        if isinstance(got, BackupError):
                            raise got
                        files.append((n, decode_index(self.cipher, n, got)))
                    except IntegrityError as e:
                        self._unreadable_now(f"index/{n}", e.message)
                break
            except NotFoundError:
                if attempt == 2:
                    raise
                # a prune replaced the index files after we read the head (get_immutable re-read it)
        distrusted = {place for places in records.values() for place in places}
        self._index_files = files
        return Index.build(files, distrusted=distrusted, lost_packs=self.missing_packs)

    def is_indexed(self, bid: bytes) -> bool:
        """Blob ``bid`` is stored at a place the index vouches for (a writer may reuse it)."""
        return self.index.vouches(bid)

    def locate(self, bid: bytes, btype: bytes | None = None) -> BlobRef | None:
        """Where blob ``bid`` is stored; None when it is not indexed (or not of type ``btype``)."""
        return self.index.locate(bid, btype)

    def has_blobs(self, hex_ids: Iterable[str]) -> bool:
        """Every blob of a file's content (hex ids) is indexed and vouched for."""
        return self.index.has_all(hex_ids)

    def content_size(self, hex_ids: Iterable[str]) -> int:
        """The bytes a file's content (hex ids, all indexed) holds."""
        return self.index.raw_size(hex_ids)

    def indexed_packs(self) -> PackEntries:
        """The indexed blobs of each pack."""
        return self.index.by_pack()

    def listed_places(self) -> PackEntries:
        """Every place every loaded index file lists, by pack (a blob stored again after damage has
        two: :meth:`indexed_packs` gives only the one readers use)."""
        out: dict[str, dict[bytes, BlobRef]] = {}
        for _, refs in self._index_files:
            for bid, ref in refs.items():
                out.setdefault(ref.pack, {})[bid] = ref
        return {pack: list(blobs.items()) for pack, blobs in out.items()}

    def index_summary(self) -> IndexSummary:
        return self.index.summary()

    # ------------------------------------------------------------------ packs and index files

    def list_packs(self) -> set[str]:
        """The ids of the packs in the store (where the format puts them), indexed or not."""
        names = self.backend.list("data/")
        return {pack for name in names if pack_name(pack := name.rsplit("/", 1)[-1]) == name}

    def pack_header(self, pack: str) -> dict[bytes, BlobRef]:
        """What a pack's own header says it holds (reads only its tail)."""
        return read_header(self.backend, self.cipher, pack)

    def verify_packs(self, packs: Iterable[str]) -> Iterator[PackCheck]:
        """Read each pack whole and verify every indexed blob in it (see :func:`.pack.check_pack`)."""
        by_pack = self.index.by_pack()
        for pack in packs:
            yield check_pack(self.backend, self.cipher, pack, by_pack.get(pack, []))

    # ------------------------------------------------------------------ snapshots

    def load_snapshot(self, sid: str) -> Snapshot:
        """One snapshot; ``IntegrityError`` when damaged or missing from the store, ``NotFoundError``
        when a concurrent forget removed it."""
        return self._decode_snapshot(sid, self.get_immutable(f"snapshots/{sid}"))

    def _decode_snapshot(self, sid: str, data: bytes) -> Snapshot:
        what = f"snapshot {sid[:8]}"
        return Snapshot.from_json(codec.decode_document(self.cipher, b"snapshot", data, what=what), id=sid, what=what)

    def save_snapshot(self, snapshot: Snapshot) -> str:
        """Store a snapshot document (not yet published: see :meth:`publish`); its id."""
        return self.put_immutable("snapshots", codec.encode_document(self.cipher, b"snapshot", snapshot.to_json()))

    def snapshots(self) -> list[Snapshot]:
        """Every readable live snapshot, oldest first. A damaged or missing one is left out with a
        warning (see :attr:`unreadable`); one a concurrent forget removed is skipped."""
        snaps = []
        ids = list(self.state.snapshots)
        for sid, got in zip(ids, self._get_each([f"snapshots/{s}" for s in ids]), strict=True):  # fetched together
            try:
                if isinstance(got, BackupError):
                    raise got
                snaps.append(self._decode_snapshot(sid, got))
            except NotFoundError:
                continue
            except IntegrityError as e:
                self._unreadable_now(f"snapshots/{sid}", e.message)
        return sorted(snaps, key=lambda s: (s.time, s.id))

    @contextmanager
    def reading_ahead(self, *, snapshot: str | None = None, index: bool = False) -> Iterator[None]:
        """A block that resolves ``snapshot`` (a ref as :meth:`find_snapshot` takes: ``latest``
        reads every live snapshot, a prefix those it matches) and, with ``index``, loads the index
        (:meth:`load_index`): what the block will ask the store for is asked for together, up front
        — each snapshot and index file the local cache lacks, and the damage records' listing when
        none is kept for this head: one round trip from a store far away, not one each
        (:func:`.wrappers.reading_ahead`). The block's readers check every answer as ever.
        Nothing is read ahead from a store on this machine.

        When the open was told of this block (:meth:`open`'s ``snapshot`` and ``index``), the
        reads it started are taken over: what they made answers the block, and only what they
        missed is asked for now. Their damage listing answers only while the head is the one
        the open read (it was listed after that read)."""
        started, self._read_next = self._read_next, None
        if self.nearby:
            yield
            return
        ids = [s for s in self.state.snapshots if read_to_find(snapshot, s)]
        names = [f"snapshots/{s}" for s in ids] + ([f"index/{i}" for i in self.state.indexes] if index else [])
        reads = [Read("get", n) for n in names if not self._cached(n)] + (self._damage_reads() if index else [])
        store = self.backend
        if started is None:
            ahead = read_ahead(store, reads)
        else:
            ahead, head = started
            if self.head is not head:
                ahead.head_read_elsewhere()  # the head was read again since the open: its listings are not news
            ahead.start(reads)
        if ahead is None:
            yield
            return
        self.backend = ahead
        try:
            yield
        finally:
            self.backend = store
            ahead.close()

    def find_snapshot(self, ref: str) -> Snapshot:
        """``latest`` or a unique prefix of a snapshot id."""
        if ref == "latest":
            snaps = self.snapshots()
            if not snaps:
                raise NotFoundError("the repository has no snapshots yet")
            return snaps[-1]
        matches = [s for s in self.state.snapshots if s.startswith(ref)] if ref else []
        if not matches:
            raise NotFoundError(f"no snapshot matches {ref!r}", hint="list them with `openclaw-backup snapshots`")
        if len(matches) > 1:
            raise UsageError(f"{ref!r} matches {len(matches)} snapshots; give more characters")
        return self.load_snapshot(matches[0])

    def forget_snapshots(self, ids: Iterable[str]) -> None:
        """Remove snapshots from the head and delete their documents (their data stays until prune)."""
        self.publish(remove_snapshots=ids)

def walk(repo: Repository, tree_id: str, prefix: str = "") -> Iterator[tuple[str, Node]]:
    """Yield ``(path, node)`` for every node under a tree, depth first, parents before children."""
    for node in repo.read_tree(tree_id):
        path = f"{prefix}/{node.name}" if prefix else node.name
        yield path, node
        if node.type == "dir" and node.subtree:
            yield from walk(repo, node.subtree, path)
