"""Part of :class:`.repository.Repository`: creating and opening a repository (the config, the
key files that unlock it, a config remembered locally while the head vouches for it, a damaged
head left for ``repair head``) and managing its passwords. Mixed into ``Repository``."""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import codec, keys
from .backends.base import Backend
from .backends.wrappers import Read, reading_ahead
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
    _head_read_at: float | None

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
        cls, backend: Backend, *, password: str | None, cache_dir: Path | None = None, need_head: bool = True
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
        asked = time.monotonic()
        with reading_ahead(backend, reads) as store:
            repo = cls._open_known(store, known, password, cache_dir) if known else None
            if repo is None:
                if remembered is not None:
                    remembered.unlink(missing_ok=True)
                repo = cls._open_stored(store, password, cache_dir, need_head=need_head, remember=remembered)
        repo.backend = backend  # the reads made ahead are over
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
