"""The repository: config, keys, the head, the blob index, packs being written, snapshots.

Words: the **head** is the one mutable object; its sealed JSON names the live snapshots and index
files and carries a sequence number that only grows. A **publication** replaces the head by
compare-and-swap (see :mod:`openclaw_backup.backends.base`). Write order — packs, then the index
that describes them, then the snapshot, then the head — means a crash leaves only unreferenced
objects. Readers go the other way: head → snapshots/indexes → trees → packs.

Concurrency: two writers that start from the same head race at the publication; the loser
re-reads the head, checks that every blob its snapshot needs is still indexed (a concurrent prune
may have dropped some), merges its additions into the new head and tries again.

Objects that never change (index files, snapshots, key files) are cached under ``cache_dir`` by
name; a cached copy is used only when its BLAKE3 still matches its name.
"""

from __future__ import annotations

import json
import mmap
import os
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import codec
from .backends.base import Backend, Head
from .chunker import DEFAULT_PROFILE, SQLITE_PROFILE, Chunker, ChunkerProfile
from .codec import BLOB_TREE, BlobRef, storage_id
from .crypto import OVERHEAD, Cipher, KdfParams, PlainCipher, make_key_file, open_key_file, parse_key_file
from .errors import (
    BackupError,
    ConflictError,
    IntegrityError,
    NotFoundError,
    RepositoryNotFoundError,
    UsageError,
    WrongPasswordError,
)
from .tree import Node, decode_tree

REPO_VERSION = 1
DEFAULT_PACK_SIZE = 16 * 1024 * 1024
PUBLISH_ATTEMPTS = 6


@dataclass(frozen=True)
class RepoConfig:
    id: str
    encrypted: bool
    chunker: ChunkerProfile = DEFAULT_PROFILE
    chunker_sqlite: ChunkerProfile = SQLITE_PROFILE
    pack_size: int = DEFAULT_PACK_SIZE
    created: str = ""
    plain_seed: str = ""  # only for unencrypted repositories: the chunker's (public) seed

    def to_bytes(self) -> bytes:
        doc: dict[str, Any] = {
            "version": REPO_VERSION,
            "id": self.id,
            "encryption": "aes-256-gcm" if self.encrypted else "none",
            "chunker": self.chunker.to_json(),
            "chunker_sqlite": self.chunker_sqlite.to_json(),
            "pack_size": self.pack_size,
            "created": self.created,
        }
        if not self.encrypted:
            doc["plain_seed"] = self.plain_seed
        return json.dumps(doc, indent=1, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> RepoConfig:
        try:
            doc = json.loads(data)
            if doc["version"] != REPO_VERSION:
                raise UsageError(
                    f"repository format version {doc['version']} is not supported by this version",
                    hint="upgrade openclaw-backup",
                )
            enc = doc["encryption"]
            if enc not in ("aes-256-gcm", "none"):
                raise IntegrityError(f"unknown encryption {enc!r}")
            cfg = cls(
                id=str(doc["id"]),
                encrypted=enc != "none",
                chunker=ChunkerProfile.from_json(doc["chunker"]),
                chunker_sqlite=ChunkerProfile.from_json(doc["chunker_sqlite"]),
                pack_size=int(doc["pack_size"]),
                created=str(doc.get("created", "")),
                plain_seed=str(doc.get("plain_seed", "")),
            )
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError, OverflowError) as e:
            raise IntegrityError(f"malformed repository config: {e}") from None
        if not 1024 <= cfg.pack_size <= 1 << 30:
            raise IntegrityError("repository config has an absurd pack size")
        return cfg


@dataclass
class HeadState:
    """What the head says: the sequence number and the live snapshots and index files."""

    seq: int = 0
    snapshots: list[str] = field(default_factory=list)
    indexes: list[str] = field(default_factory=list)
    deleted_since_squash: int = 0  # bytes deleted on a store that frees them only when history is squashed

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "seq": self.seq,
            "snapshots": self.snapshots,
            "indexes": self.indexes,
            "deleted_since_squash": self.deleted_since_squash,
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> HeadState:
        try:
            st = cls(
                int(doc["seq"]),
                [str(s) for s in doc["snapshots"]],
                [str(i) for i in doc["indexes"]],
                int(doc.get("deleted_since_squash", 0)),
            )
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise IntegrityError(f"malformed head: {e}") from None
        for name in st.snapshots + st.indexes:
            if len(name) != 64 or not all(c in "0123456789abcdef" for c in name):
                raise IntegrityError("head names an invalid object")
        return st


def check_snapshot(doc: dict[str, Any], *, what: str) -> None:
    """The fields every reader relies on, with the right types (``IntegrityError`` otherwise)."""
    tree, roots = doc.get("tree"), doc.get("roots")
    ok = (
        isinstance(tree, str)
        and len(tree) == 64
        and all(c in "0123456789abcdef" for c in tree)
        and isinstance(roots, dict)
        and all(
            isinstance(k, str) and isinstance(v, dict) and isinstance(v.get("path", ""), str) for k, v in roots.items()
        )
        and isinstance(doc.get("time", ""), str)
        and isinstance(doc.get("host", ""), str)
        and isinstance(doc.get("tags", []), list)
        and all(isinstance(t, str) for t in doc.get("tags", []))
        and isinstance(doc.get("summary", {}), dict)
    )
    if not ok:
        raise IntegrityError(f"{what}: malformed snapshot document")


def pack_name(pack: str) -> str:
    return f"data/{pack[:2]}/{pack}"


class Repository:
    """An opened repository. Use :meth:`init` or :meth:`open`; not thread-safe except where noted."""

    def __init__(self, backend: Backend, cipher: Cipher, config: RepoConfig, *, cache_dir: Path | None) -> None:
        self.backend = backend
        self.cipher = cipher
        self.config = config
        self.cache_dir = cache_dir / config.id if cache_dir else None
        seed = int.from_bytes(cipher.derive(b"chunker seed", 8), "little") & ((1 << 63) - 1)
        self.chunker = Chunker(config.chunker, seed)
        self.sqlite_chunker = Chunker(config.chunker_sqlite, seed)
        self.head: Head | None = None
        self.state = HeadState()
        self.index: dict[bytes, BlobRef] = {}
        self._index_loaded_for: list[str] | None = None
        self.warnings: list[str] = []

    # ------------------------------------------------------------------ opening

    @classmethod
    def init(
        cls,
        backend: Backend,
        *,
        password: str | None,
        kdf: KdfParams | None = None,
        pack_size: int = DEFAULT_PACK_SIZE,
        cache_dir: Path | None = None,
        hostname: str = "",
        username: str = "",
    ) -> Repository:
        """Create a repository. ``password=None`` makes an explicitly unencrypted one."""
        if backend.read_head() is not None or backend.list("config"):
            raise UsageError(f"a repository already exists at {backend.location}")
        now = datetime.now(UTC).isoformat(timespec="seconds")
        if password is None:
            seed = secrets.token_hex(32)
            config = RepoConfig(secrets.token_hex(16), False, pack_size=pack_size, created=now, plain_seed=seed)
            cipher: Cipher = PlainCipher(bytes.fromhex(seed))
        else:
            if not password:
                raise UsageError("the password is empty")
            config = RepoConfig(secrets.token_hex(16), True, pack_size=pack_size, created=now)
            master = secrets.token_bytes(64)
            cipher = Cipher(master)
            key = make_key_file(master, password, params=kdf or KdfParams(), hostname=hostname, username=username)
            backend.put(f"keys/{storage_id(key)}", key)
        backend.put("config", config.to_bytes())
        repo = cls(backend, cipher, config, cache_dir=cache_dir)
        repo._publish_state(HeadState(seq=1), expect=None)
        return repo

    @classmethod
    def open(cls, backend: Backend, *, password: str | None, cache_dir: Path | None = None) -> Repository:
        """Open an existing repository; ``WrongPasswordError`` when no key file accepts the password."""
        try:
            config = RepoConfig.from_bytes(backend.get("config"))
        except NotFoundError:
            raise RepositoryNotFoundError(
                f"no repository at {backend.location}", hint="create one with `openclaw-backup init`"
            ) from None
        if not config.encrypted:
            if password:
                # The user expects encryption. Either this is the wrong repository, or someone who can
                # write the store replaced the config (and perhaps deleted the keys) to make us write
                # in the clear. Never silently downgrade.
                raise IntegrityError(
                    f"{backend.location} is an UNENCRYPTED repository, but a password is configured",
                    hint="if you created it with --insecure-no-encryption, unset the password; "
                    "otherwise its config was tampered with",
                )
            if backend.list("keys/"):
                # An unencrypted repository has no key files: someone rewrote the config to make
                # us write in the clear (or read forged plaintext). Refuse.
                raise IntegrityError(
                    f"{backend.location}: the config says 'unencrypted' but the repository has key files",
                    hint="the config was tampered with; restore it from a copy or ask who can write the store",
                )
            try:
                cipher: Cipher = PlainCipher(bytes.fromhex(config.plain_seed))
            except ValueError:
                raise IntegrityError("malformed repository config: bad seed") from None
        else:
            if not password:
                raise WrongPasswordError(
                    "this repository is encrypted and no password was given",
                    hint="set OPENCLAW_BACKUP_PASSWORD or pass --password-file",
                )
            master = None
            damaged: list[IntegrityError] = []
            names = backend.list("keys/")
            for name in names:
                try:
                    master = open_key_file(backend.get(name), password)
                    break
                except WrongPasswordError:
                    continue
                except IntegrityError as e:  # one damaged key file must not hide a good one
                    damaged.append(e)
            if master is None and damaged and len(damaged) == len(names):
                raise damaged[0]
            if master is None:
                raise WrongPasswordError(
                    "wrong password: no key of this repository opens with it"
                    + (f" ({len(damaged)} damaged key file(s): {damaged[0].message})" if damaged else "")
                )
            cipher = Cipher(master)
        repo = cls(backend, cipher, config, cache_dir=cache_dir)
        repo.refresh()
        return repo

    # ------------------------------------------------------------------ head

    def refresh(self) -> HeadState:
        """Re-read the head (and note a rollback, which only an attacker or a restore of the store causes)."""
        head = self.backend.read_head()
        if head is None:
            raise RepositoryNotFoundError(f"{self.backend.location} has a config but no head; it is damaged")
        self.head = head
        doc = codec.decode_document(self.cipher, b"head", head.data, what="head")
        self.state = HeadState.from_json(doc)
        if self.cipher.encrypted and doc.get("config", self._config_mac()) != self._config_mac():
            raise IntegrityError(
                f"{self.backend.location}: the repository config does not match what its head vouches for",
                hint="someone changed the config file; restore the original",
            )
        self._check_rollback()
        return self.state

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

    def _publish_state(self, state: HeadState, *, expect: str | None, deletes: Iterable[str] = ()) -> None:
        data = codec.encode_document(self.cipher, b"head", {**state.to_json(), "config": self._config_mac()})
        version = self.backend.publish(head=data, expect=expect, deletes=list(deletes))
        self.head = Head(version, data)
        self.state = state
        self.cache_write("head-seq", str(state.seq).encode())

    def publish(
        self,
        *,
        add_snapshots: Iterable[str] = (),
        add_indexes: Iterable[str] = (),
        remove_snapshots: Iterable[str] = (),
        remove_indexes: Iterable[str] = (),
        deletes: Iterable[str] = (),
        needs: Callable[[], None] | None = None,
        attempts: int = PUBLISH_ATTEMPTS,
        merge: bool = True,
    ) -> None:
        """Publish a change of the head, merging with concurrent writers.

        On a conflict the head is re-read; ``remove_*`` must still be present (else the change is
        abandoned: another process did the same maintenance) and ``needs`` is called to check that
        what we reference still exists, raising when it does not. With ``merge=False`` (prune,
        whose plan is only valid for the head it read) a conflict is raised at once.
        """
        add_s, add_i = list(add_snapshots), list(add_indexes)
        rm_s, rm_i = set(remove_snapshots), set(remove_indexes)
        dels = list(deletes)
        for attempt in range(attempts):
            base = self.state
            if not rm_s <= set(base.snapshots) or not rm_i <= set(base.indexes):
                raise ConflictError("another process changed the same snapshots or indexes; nothing was changed")
            new = HeadState(
                base.seq + 1,
                [s for s in base.snapshots if s not in rm_s] + [s for s in add_s if s not in base.snapshots],
                [i for i in base.indexes if i not in rm_i] + [i for i in add_i if i not in base.indexes],
                base.deleted_since_squash,
            )
            try:
                self._publish_state(new, expect=self.head.version if self.head else None, deletes=dels)
                return
            except ConflictError:
                if not merge:
                    raise
                if attempt == attempts - 1:
                    raise ConflictError(
                        f"the repository kept changing under us ({attempts} attempts)",
                        hint="another writer is very busy; try again",
                    ) from None
                self.refresh()
                if needs is not None:
                    self.load_index()
                    needs()

    # ------------------------------------------------------------------ immutable objects

    def cache_write(self, name: str, data: bytes) -> None:
        if self.cache_dir is None:
            return
        path = self.cache_dir / name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".tmp-{secrets.token_hex(6)}")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError:
            pass  # the cache is an optimisation only

    def get_immutable(self, name: str) -> bytes:
        """Read a content-named object (``index/…``, ``snapshots/…``), through the local cache."""
        expected = name.rsplit("/", 1)[-1]
        if self.cache_dir is not None:
            try:
                data = (self.cache_dir / name).read_bytes()
                if storage_id(data) == expected:
                    return data
            except OSError:
                pass
        data = self.backend.get(name)
        if storage_id(data) != expected:
            raise IntegrityError(f"{name}: content does not match its name (damaged or swapped)")
        self.cache_write(name, data)
        return data

    def put_immutable(self, prefix: str, data: bytes) -> str:
        sid = storage_id(data)
        self.backend.put(f"{prefix}/{sid}", data)
        self.cache_write(f"{prefix}/{sid}", data)
        return sid

    # ------------------------------------------------------------------ index and blobs

    def load_index(self) -> dict[bytes, BlobRef]:
        """Load every index file the head names (cached ones are not fetched again)."""
        if self._index_loaded_for == self.state.indexes:
            return self.index
        for attempt in range(3):
            index: dict[bytes, BlobRef] = {}
            try:
                for name in self.state.indexes:
                    index.update(codec.decode_index(self.cipher, name, self.get_immutable(f"index/{name}")))
                break
            except NotFoundError:
                if attempt == 2:
                    raise
                self.refresh()  # a prune replaced the index files after we read the head
        self.index = index
        self._index_loaded_for = list(self.state.indexes)
        return index

    def blob_ref(self, bid: bytes, btype: bytes) -> BlobRef:
        """Where blob ``bid`` (of type ``btype``) is stored; ``IntegrityError`` when not indexed."""
        ref = self.index.get(bid)
        if ref is None or ref.btype != btype:
            raise IntegrityError(f"blob {bid.hex()[:16]} is not in the index (missing data)")
        return ref

    def read_pack_range(self, pack: str, offset: int, length: int) -> bytes:
        """``length`` bytes of pack ``pack`` from ``offset``; ``IntegrityError`` when it is shorter."""
        data = self.backend.get(pack_name(pack), offset=offset, length=length)
        if len(data) != length:
            raise IntegrityError(f"pack {pack[:16]} is truncated")
        return data

    def read_blob(self, bid: bytes, btype: bytes) -> bytes:
        ref = self.blob_ref(bid, btype)
        stored = self.read_pack_range(ref.pack, ref.offset, ref.length)
        return codec.decode_blob(self.cipher, btype, bid, stored, ref.raw_len)

    def read_tree(self, tree_id: str) -> list[Node]:
        return decode_tree(self.read_blob(bytes.fromhex(tree_id), BLOB_TREE))

    # ------------------------------------------------------------------ snapshots

    def load_snapshot(self, sid: str) -> dict[str, Any]:
        doc = codec.decode_document(
            self.cipher, b"snapshot", self.get_immutable(f"snapshots/{sid}"), what=f"snapshot {sid[:8]}"
        )
        check_snapshot(doc, what=f"snapshot {sid[:8]}")
        doc["id"] = sid
        return doc

    def snapshots(self) -> list[dict[str, Any]]:
        """Every live snapshot, oldest first (re-reading the head if a forget raced us)."""
        for attempt in range(3):
            try:
                snaps = [self.load_snapshot(s) for s in self.state.snapshots]
                break
            except NotFoundError:
                if attempt == 2:
                    raise
                self.refresh()
        return sorted(snaps, key=lambda d: (str(d.get("time", "")), d["id"]))

    def find_snapshot(self, ref: str) -> dict[str, Any]:
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

    # ------------------------------------------------------------------ keys

    def key_names(self) -> list[str]:
        return self.backend.list("keys/")

    def describe_keys(self) -> list[dict[str, Any]]:
        out = []
        for name in self.key_names():
            try:
                doc = parse_key_file(self.backend.get(name))
                out.append(
                    {
                        "id": name.split("/")[-1][:12],
                        "created": doc.get("created"),
                        "hostname": doc.get("hostname"),
                        "username": doc.get("username"),
                        "kdf": doc["kdf"]["algorithm"],
                    }
                )
            except BackupError as e:
                out.append({"id": name.split("/")[-1][:12], "error": e.message})
        return out

    def add_key(self, password: str, *, kdf: KdfParams | None = None, hostname: str = "", username: str = "") -> str:
        """Add a password; returns the new key's id. Publishes (the head is re-signed, unchanged)."""
        if not self.cipher.encrypted:
            raise UsageError("this repository is not encrypted; it has no passwords")
        if not password:
            raise UsageError("the password is empty")
        key = make_key_file(
            self.cipher.master, password, params=kdf or KdfParams(), hostname=hostname, username=username
        )
        sid = storage_id(key)
        self.backend.put(f"keys/{sid}", key)
        self.publish()
        return sid

    def remove_keys(self, names: list[str]) -> None:
        if len(self.key_names()) <= len(names):
            raise UsageError("refusing to remove the last key: the repository would become unreadable")
        self.publish(deletes=names)

    def current_key_names(self, password: str) -> list[str]:
        """Key files that open with ``password``."""
        out = []
        for name in self.key_names():
            try:
                open_key_file(self.backend.get(name), password)
                out.append(name)
            except (WrongPasswordError, IntegrityError):
                continue
        return out


_PACK_SLACK = 1 << 20  # room beyond pack_size for the blob that fills a pack
_HEADER_ROOM = 256 << 10  # for the header: ~6000 entries (a pack of smaller blobs closes early)
_Full = tuple[mmap.mmap, int, list[tuple[bytes, bytes, int, int]]]


class PackWriter:
    """Collects new blobs into packs of about ``pack_size`` and uploads them. Thread-safe.

    ``add`` returns False when the blob is already stored or being stored (dedup across threads).
    After :meth:`flush`, :attr:`packs` describes every pack written, ready for an index file.
    Blobs are compressed outside the lock, then sealed straight into the current pack's buffer,
    an anonymous mapping of ``pack_size`` plus room for the last blob and the header: no copy per
    blob, no reallocation, and only the pages written are resident. Backends keep no reference to
    what ``put`` was given, so the mapping is released as soon as the pack is uploaded.
    """

    def __init__(self, repo: Repository, *, pack_size: int | None = None) -> None:
        self.repo = repo
        #: where a pack is closed: the repository's, or less (two processes writing at once
        #: keep the memory of one pack between them)
        self.pack_size = pack_size or repo.config.pack_size
        self._lock = threading.Lock()
        self._claimed: set[bytes] = set()
        self._buf: mmap.mmap | None = None
        self._pos = 0
        self._header = 0  # bytes the pack header will take
        self._entries: list[tuple[bytes, bytes, int, int]] = []
        self.packs: dict[str, list[tuple[bytes, BlobRef]]] = {}
        self.bytes_written = 0
        self.blobs_written = 0

    def known(self, bid: bytes) -> bool:
        return bid in self.repo.index or bid in self._claimed

    def claim(self, bid: bytes) -> bool:
        """Reserve ``bid`` for storing; False when it is stored already (or someone else stores it)."""
        with self._lock:
            if bid in self.repo.index or bid in self._claimed:
                return False
            self._claimed.add(bid)
            return True

    def add(self, btype: bytes, bid: bytes, data: bytes | memoryview) -> None:
        """Compress, seal and queue a claimed blob; uploads a pack when it is full."""
        flag, body = codec.blob_body(data)  # outside the lock: the costly part
        cipher, ad = self.repo.cipher, codec.blob_ad(btype, bid)
        self._queue(btype, bid, cipher.sealed_size(1 + len(body)), len(data),
                    lambda view: cipher.seal_flagged_into(flag, body, ad, view))  # fmt: skip

    def add_stored(self, btype: bytes, bid: bytes, stored: bytes | bytearray, raw_len: int) -> None:
        """Queue an already sealed blob (also used by prune to copy blobs between packs)."""

        def fill(view: memoryview) -> None:
            view[:] = stored

        self._queue(btype, bid, len(stored), raw_len, fill)

    def _queue(self, btype: bytes, bid: bytes, n: int, raw_len: int, fill: Callable[[memoryview], None]) -> None:
        """Let ``fill`` write the ``n`` stored bytes of a blob at the end of the current pack."""
        with self._lock:
            closed, view = self._room(n)
            fill(view)
            view.release()
            full = self._append(btype, bid, n, raw_len)
        for pack in (closed, full):
            if pack:
                self._upload(*pack)

    def _room(self, n: int) -> tuple[_Full | None, memoryview]:
        """A view of the next ``n`` bytes of the current pack (lock held). A blob that does not
        fit closes the current pack (returned, to upload) and starts the next one."""
        closed = None
        need = self._pos + n + self._header + codec.PACK_ENTRY_SIZE + OVERHEAD + 4
        if self._buf is None or need > len(self._buf):
            closed = self._take()
            room = max(self.pack_size, n) + _PACK_SLACK
            self._buf = mmap.mmap(-1, room + _HEADER_ROOM)
        return closed, memoryview(self._buf)[self._pos : self._pos + n]

    def _append(self, btype: bytes, bid: bytes, n: int, raw_len: int) -> _Full | None:
        """Account for the blob just written at the end (lock held); the full pack, if it now is."""
        self._claimed.add(bid)
        self._entries.append((btype, bid, n, raw_len))
        self._pos += n
        self._header += codec.PACK_ENTRY_SIZE
        if self._pos < self.pack_size:
            return None
        return self._take()

    def _take(self) -> _Full | None:
        full = (self._buf, self._pos, self._entries) if self._buf is not None and self._entries else None
        self._buf, self._pos, self._header, self._entries = None, 0, 0, []
        return full

    def store(self, btype: bytes, data: bytes | memoryview) -> bytes:
        """Id of ``data``, storing it when new."""
        bid = self.repo.cipher.blob_id(data)
        if self.claim(bid):
            self.add(btype, bid, data)
        return bid

    def _upload(self, buf: mmap.mmap, end: int, entries: list[tuple[bytes, bytes, int, int]]) -> None:
        try:
            refs, total = codec.finish_pack(self.repo.cipher, buf, entries, end)
            pack = next(iter(refs.values())).pack
            self.repo.backend.put(pack_name(pack), memoryview(buf)[:total])  # type: ignore[arg-type]  # bytes-like
        finally:
            try:
                buf.close()  # unmapped now, not whenever the collector gets to it
            except BufferError:
                pass  # a view of it is still alive (held by a failed put's traceback): unmapped with it
        with self._lock:
            self.packs[pack] = list(refs.items())
            self.bytes_written += total
            self.blobs_written += len(refs)

    def flush(self) -> None:
        with self._lock:
            full = self._take()
        if full:
            self._upload(*full)

    def adopt(self, packs: dict[str, list[tuple[bytes, BlobRef]]], bytes_written: int) -> None:
        """Count packs another writer uploaded (a forked reader's) as ours, for the index."""
        with self._lock:
            for pack, blobs in packs.items():
                self.packs[pack] = blobs
                self._claimed.update(bid for bid, _ in blobs)
                self.blobs_written += len(blobs)
            self.bytes_written += bytes_written

    def write_index(self) -> str | None:
        """Write one index file for every pack written; returns its name (None when nothing new)."""
        self.flush()
        if not self.packs:
            return None
        return self.repo.put_immutable("index", codec.encode_index(self.repo.cipher, self.packs))

    def new_refs(self) -> dict[bytes, BlobRef]:
        return {bid: ref for blobs in self.packs.values() for bid, ref in blobs}


def walk(repo: Repository, tree_id: str, prefix: str = "") -> Iterator[tuple[str, Node]]:
    """Yield ``(path, node)`` for every node under a tree, depth first, parents before children."""
    for node in repo.read_tree(tree_id):
        path = f"{prefix}/{node.name}" if prefix else node.name
        yield path, node
        if node.type == "dir" and node.subtree:
            yield from walk(repo, node.subtree, path)
