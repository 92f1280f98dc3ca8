"""Part of :class:`.repository.Repository`: creating and opening a repository (the config, the
key files that unlock it, a config remembered locally while the head vouches for it, a damaged
head left for ``repair head``) and managing its passwords. Mixed into ``Repository``."""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import codec, damage, keys, memtune
from .backends.base import Backend, Head
from .backends.wrappers import Read, ReadAhead, read_ahead
from .crypto import Cipher, KdfParams, PlainCipher
from .errors import (
    DamagedRepositoryError,
    IntegrityError,
    NotFoundError,
    RepositoryNotFoundError,
    UsageError,
    WrongPasswordError,
)
from .head import HeadState
from .repo_config import DEFAULT_PACK_SIZE, RepoConfig

if TYPE_CHECKING:
    from typing import Self


class Access:
    """Creating, opening, passwords (see the module docstring)."""

    backend: Backend
    cipher: Cipher
    warnings: list[str]
    head: Head | None
    _head_read_at: float | None
    _read_next: tuple[ReadAhead, Head] | None  # reads the open started for the next block (see open)

    if TYPE_CHECKING:  # what the repository provides

        def __init__(self, backend: Backend, cipher: Cipher, config: RepoConfig, *, cache_dir: Path | None) -> None: ...
        def refresh(self, *, max_age: float = 0.0) -> HeadState: ...
        def publish(self) -> None: ...
        def _publish_state(self, state: HeadState, *, expect: str | None, deletes: Any = ()) -> None: ...
        def _publish(self, add_s: list[str], add_i: list[str], rm_s: set[str], rm_i: set[str],
                     deletes: list[str]) -> None: ...  # fmt: skip

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
    ) -> Self:
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
            keys.add(backend, master, password, kdf=kdf, hostname=hostname, username=username)
        backend.put("config", config.to_bytes())
        repo = cls(backend, cipher, config, cache_dir=cache_dir)
        repo._publish_state(HeadState(seq=1), expect=None)
        return repo


    @classmethod
    def open(
        cls,
        backend: Backend,
        *,
        password: str | None,
        cache_dir: Path | None = None,
        need_head: bool = True,
        snapshot: str | None = None,
        index: bool = False,
    ) -> Self:
        """Open an existing repository; ``WrongPasswordError`` when no key file accepts the password.
        Without ``need_head``, a lost head leaves the state empty (``repair head`` rebuilds it).

        The config of an encrypted repository is remembered in ``cache_dir`` by the store's location
        (``locations/<sha256>.config``) and not read again while the head vouches for it (its config
        MAC); any doubt reads it from the store.

        The reads that do not depend on one another — the config (unless remembered), the listing
        of the key files, the head — are made together (:func:`.wrappers.reading_ahead`), and so are
        the key files (:func:`.keys.unlock`): two round trips from a store far away before the
        password is tried. Each is checked, and fails, where it is used, as if made there.

        ``snapshot`` and ``index``: the caller's next block will be a :meth:`.Repository.reading_ahead`
        with these (a command that reads snapshots and the index right after opening). Then the
        open also lists ``snapshots/`` (or ``index/``) in its first round and reads what they list
        — content-named files, the same bytes under a name for ever — while the key file is read
        and the password derived; the head, read in the first round, starts the damage records'
        listing as soon as it arrives (see :func:`_read_next`). That block takes the answers of
        the files the head names; the others are dropped unseen.
        """
        remembered = _config_memo(cache_dir, backend.location)
        known: RepoConfig | None = None
        if remembered is not None:
            try:
                config = RepoConfig.from_bytes(remembered.read_bytes())
                known = config if config.encrypted and password else None
            except (OSError, IntegrityError, UsageError, DamagedRepositoryError):
                pass  # not a config (any more): read it from the store
        reads = [Read("list", keys.PREFIX), Read("head")] + ([] if known else [Read("get", "config")])
        listings = ([Read("list", "snapshots/")] if snapshot else []) + ([Read("list", "index/")] if index else [])
        asked = time.monotonic()
        ahead = read_ahead(backend, reads + listings)
        if ahead is not None and password:  # a password to derive, and a wait for round 1 to do this in
            memtune.ready_heap(KdfParams().memory_kib * 1024)  # while round 1 is out
        try:
            if ahead is not None and listings:
                _read_next(ahead, known, cache_dir, snapshot=snapshot, index=index)
            store = ahead or backend
            repo = cls._open_known(store, known, password, cache_dir) if known else None
            if repo is None:
                if remembered is not None:
                    remembered.unlink(missing_ok=True)
                repo = cls._open_stored(store, password, cache_dir, need_head=need_head, remember=remembered)
        except BaseException:
            if ahead is not None:
                ahead.close()
            raise
        repo.backend = backend  # the open's reads made ahead are over
        if ahead is not None:
            ahead.drop(reads + listings)  # what the open did not take answers no later call
            if listings and repo.head is not None:
                repo._read_next = (ahead, repo.head)  # the snapshots and index files, still coming
            else:
                ahead.close()
        if repo._head_read_at is not None:  # the head is as old as its read, made ahead: from ``asked`` on
            repo._head_read_at = min(repo._head_read_at, asked)
        return repo

    @classmethod
    def _open_known(
        cls, backend: Backend, config: RepoConfig, password: str | None, cache_dir: Path | None
    ) -> Self | None:
        """Open with a remembered config; None when the repository does not confirm it."""
        try:
            return cls._open(backend, config, password, cache_dir, need_head=True)
        except (OSError, IntegrityError, WrongPasswordError, UsageError, DamagedRepositoryError):
            return None  # not this repository's config (any more): read it from the store

    @classmethod
    def _open_stored(
        cls, backend: Backend, password: str | None, cache_dir: Path | None, *, need_head: bool, remember: Path | None
    ) -> Self:
        """Open with the config read from the store (and remembered at ``remember`` when encrypted)."""
        try:
            data = backend.get("config")
            config = RepoConfig.from_bytes(data)
        except NotFoundError:
            if backend.read_head() is not None or backend.list(keys.PREFIX) or backend.list("snapshots/"):
                raise DamagedRepositoryError(
                    f"{backend.location} holds a repository whose config file is lost",
                    hint="put its `config` file back from a copy of the repository (`init` refuses: "
                    "the repository's data is still there)",
                ) from None
            raise RepositoryNotFoundError(
                f"no repository at {backend.location}", hint="create one with `openclaw-backup init`"
            ) from None
        repo = cls._open(backend, config, password, cache_dir, need_head=need_head)
        if config.encrypted and remember is not None:
            write_atomic(remember, data)
        return repo

    @classmethod
    def _open(
        cls, backend: Backend, config: RepoConfig, password: str | None, cache_dir: Path | None, *, need_head: bool
    ) -> Self:
        cipher = keys.cipher_for(backend, config.encrypted, config.plain_seed, password)
        repo = cls(backend, cipher, config, cache_dir=cache_dir)
        try:
            repo.refresh()
        except DamagedRepositoryError:
            if need_head:
                raise
        except IntegrityError as e:
            head = backend.read_head()
            if need_head or head is None or _decodes(cipher, head.data):
                raise  # only an undecodable head is left for ``repair head``, never a disowned config
            repo.warnings.append(f"the head is damaged ({e.message})")
        return repo


    # ------------------------------------------------------------------ keys

    def key_names(self) -> list[str]:
        return keys.names(self.backend)

    def describe_keys(self) -> list[dict[str, Any]]:
        return keys.describe(self.backend)

    def add_key(self, password: str, *, kdf: KdfParams | None = None, hostname: str = "", username: str = "") -> str:
        """Add a password; returns the new key's id. Publishes (the head is re-signed, unchanged)."""
        if not self.cipher.encrypted:
            raise UsageError("this repository is not encrypted; it has no passwords")
        if not password:
            raise UsageError("the password is empty")
        sid = keys.add(self.backend, self.cipher.master, password, kdf=kdf, hostname=hostname, username=username)
        self.publish()
        return sid

    def remove_keys(self, names: list[str]) -> None:
        if len(self.key_names()) <= len(names):
            raise UsageError("refusing to remove the last key: the repository would become unreadable")
        self._publish([], [], set(), set(), list(names))

    def current_key_names(self, password: str) -> list[str]:
        """Key files that open with ``password``."""
        return keys.opening_with(self.backend, password)


#: A listing of ``snapshots/`` (or ``index/``) names at most this many files the local cache lacks
#: for the open to read them ahead (see :func:`_read_next`); with more, none is read before the
#: head says which are wanted.
READ_NEXT_AT_MOST = 64


def _read_next(
    ahead: ReadAhead, known: RepoConfig | None, cache_dir: Path | None, *, snapshot: str | None, index: bool
) -> None:
    """Follow the open's first round with the reads of the block after it (:meth:`Access.open`'s
    ``snapshot`` and ``index``): once ``snapshots/`` is listed (and the config known, which names
    the local cache), each listed snapshot that ``snapshot`` would resolve through — all for
    ``latest``, those its prefix matches else — and, with ``index``, each listed index file, that
    the local cache lacks; none of a kind when they are more than :data:`READ_NEXT_AT_MOST` (a
    repository of thousands of snapshots is not read whole before the head says which it needs).
    With ``index``, the damage records' listing once the head has arrived: made after that read
    of the head, it is a listing made under it (:class:`.wrappers.ReadAhead` drops it at any
    later read of the head).

    These two listings answer no call after the open (within it, only the check for a lost
    config may take them, as it takes the key listing): only the names in them are used. The
    files are content named, so a read made before the head names one is its bytes (the reader
    checks them against the name as ever); one a prune deleted meanwhile fails unseen, and its
    caller reads again."""
    config = [] if known else [Read("get", "config")]

    def wanted(prefix: str, matches: Callable[[str], bool]) -> Callable[[list[Any]], list[Read]]:
        def reads(answers: list[Any]) -> list[Read]:
            listed, *got = answers
            config_id = (known or RepoConfig.from_bytes(got[0])).id
            cache = cache_dir / config_id if cache_dir is not None else None
            names = [n for n in listed if n.startswith(prefix) and matches(n[len(prefix):])]
            names = [n for n in names if cache is None or not (cache / n).exists()]
            return [] if len(names) > READ_NEXT_AT_MOST else [Read("get", n) for n in names]

        return reads

    if snapshot:
        ahead.then([Read("list", "snapshots/"), *config], wanted("snapshots/", lambda sid: read_to_find(snapshot, sid)))
    if index:
        ahead.then([Read("list", "index/"), *config], wanted("index/", lambda _: True))
        ahead.then([Read("head")], lambda got: [Read("list", damage.PREFIX)] if got[0] is not None else [])


def read_to_find(ref: str | None, sid: str) -> bool:
    """Whether finding snapshot ``ref`` (``latest``, or an id prefix) reads snapshot ``sid``: every
    one for ``latest`` (the newest is known only once all are read), those the prefix matches else."""
    return ref == "latest" or (ref is not None and ref != "" and sid.startswith(ref))


def _config_memo(cache_dir: Path | None, location: str) -> Path | None:
    """Where the config of the repository at ``location`` is remembered (None without a cache)."""
    if cache_dir is None:
        return None
    return cache_dir / "locations" / (hashlib.sha256(location.encode()).hexdigest()[:32] + ".config")


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file of the local cache whole or not at all (the cache is an optimisation only)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{secrets.token_hex(6)}")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError:
        pass  # the cache is an optimisation only


def _decodes(cipher: Cipher, head: bytes) -> bool:
    try:
        codec.decode_document(cipher, b"head", head, what="head")
        return True
    except IntegrityError:
        return False
