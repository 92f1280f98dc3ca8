"""Part of :class:`.repository.Repository`: damage — the store's damage records (listed once per
head and kept in the local cache; every record written or removed publishes a new head) and the
packs the index names that the store lacks. The index never vouches for what either names, so a
backup stores it again. Mixed into ``Repository``; the records themselves are :mod:`.damage`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from . import damage
from .backends.base import Backend, Head
from .backends.wrappers import Read
from .crypto import Cipher
from .head import HeadState
from .index import Index


class Damage:
    """Damage records and lost packs (see the module docstring)."""

    backend: Backend
    cipher: Cipher
    state: HeadState
    trust_cache: bool
    missing_packs: set[str]
    _records: tuple[int, dict[str, set[tuple[bytes, str]]]] | None
    _base_index: Index
    _warn: Callable[[str], None]
    _warned: set[str]
    head: Head | None

    if TYPE_CHECKING:  # what the repository provides

        def cache_read(self, name: str) -> bytes | None: ...
        def cache_write(self, name: str, data: bytes) -> None: ...
        def publish(self) -> None: ...
        def load_index(self, *, reload: bool = False) -> Index: ...
        def list_packs(self) -> set[str]: ...
        def refresh(self, *, max_age: float = 0.0) -> HeadState: ...
        def head_id(self) -> tuple[int, str | None]: ...

    def distrust_missing_packs(self, *, every: float = 0.0) -> list[str]:
        """Packs the index names that the store lacks (one listing): from now on the index does
        not vouch for their blobs, so a backup stores them again. Returns them. Packs found missing
        are first checked against the head as it is now: a prune that published and deleted since
        the index was loaded leaves nothing missing.

        ``every``: skip the listing when this machine listed the packs less than that many seconds
        ago under the same version of the head and found none missing. On a Hub repo the version
        is the repository's commit, so any change to it — a prune, or a file deleted by hand —
        lists again; the listing is what finds packs lost without a change of the head's content."""
        last = self.cache_read("packs-listed")
        if every > 0 and last is not None and self.trust_cache and not self.missing_packs:
            mark, _, when = last.decode(errors="replace").partition("\t")
            if mark == self._head_mark() and when.isdigit() and time.time() - float(when) < every:
                return []
        # the index files' packs only: our own staged, uncommitted packs are not listed anywhere yet
        missing = self.confirm_missing(set(self._base_index.by_pack()) - self.list_packs())
        if missing and self._head_moved():
            # A prune deletes packs only after publishing a head whose index leaves them out: packs
            # gone since this index was loaded, which the head read now no longer names, are not
            # lost. Its index is the one to deduplicate against from now on.
            self.load_index()
            missing &= set(self._base_index.by_pack())
        if not missing:
            self.cache_write("packs-listed", f"{self._head_mark()}\t{time.time():.0f}".encode())
        if missing - self.missing_packs:
            self.missing_packs |= missing
            self.load_index()
        return sorted(missing)

    def _head_moved(self) -> bool:
        """Read the head again; whether it changed since the one this object last read or published."""
        before = self.head_id()
        self.refresh()
        return self.head_id() != before

    def damage_records(self) -> dict[str, set[tuple[bytes, str]]]:
        """The store's damage records: name -> the ``(blob id, pack)`` places each distrusts.

        Listed once per head: writing or removing a record publishes a new head, so a listing made
        under the same head sequence (kept in the local cache) is still the store's; ``check``
        (``trust_cache`` off) always lists."""
        seq = self.state.seq
        if self._records is not None and self._records[0] == seq and self.trust_cache:
            return self._records[1]
        names = self._kept_listing()
        if names is None:
            names = self.backend.list(damage.PREFIX)
        records = damage.read_records(self.backend, self.cipher, warn=self._warn_once, names=names)
        self._keep_records(seq, records)
        return records

    def _damage_reads(self) -> list[Read]:
        """What :meth:`damage_records` would read first: the store's listing, unless one made under
        this head is kept (for a :meth:`.Repository.reading_ahead`)."""
        kept = self._records is not None and self._records[0] == self.state.seq and self.trust_cache
        return [] if kept or self._kept_listing() is not None else [Read("list", damage.PREFIX)]

    def _kept_listing(self) -> list[str] | None:
        """The names of the damage records as listed under this head, kept in the local cache."""
        listed = self.cache_read("damage-listing") if self.trust_cache else None
        if listed is None:
            return None
        first, *rest = listed.decode(errors="replace").split("\n")
        return rest if first == str(self.state.seq) else None

    def _keep_records(self, seq: int, records: dict[str, set[tuple[bytes, str]]]) -> None:
        """Remember the damage records as listed under head sequence ``seq`` (here and in the cache)."""
        self._records = (seq, records)
        self.cache_write("damage-listing", "\n".join([str(seq), *records]).encode())

    def _head_mark(self) -> str:
        """The version of the head as read or published (a Hub repo's commit), else its sequence."""
        return self.head.version if self.head is not None and self.head.version else f"seq {self.state.seq}"

    def _carry_listings(self, base: int, seq: int, base_mark: str) -> None:
        """Our own publication moved the head from ``base`` (version ``base_mark``) to ``seq`` with
        nothing in between: what was listed under it (damage records; packs, ours added to them)
        still holds."""
        if self._records is not None and self._records[0] == base:
            self._keep_records(seq, self._records[1])
        listed = self.cache_read("packs-listed")
        mark, _, when = (listed or b"").decode(errors="replace").partition("\t")
        if listed is not None and mark == base_mark:
            self.cache_write("packs-listed", f"{self._head_mark()}\t{when}".encode())

    def _forget_record_listing(self) -> None:
        self._records = None
        self.cache_write("damage-listing", b"")

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self._warn(message)

    def record_damage(self, places: Iterable[tuple[bytes, str]], *, found_by: str) -> str | None:
        """Write a damage record (:func:`.damage.write_record`); the index stops vouching for its
        places at once. Its name (None, writing nothing, when there is nothing to record)."""
        name = damage.write_record(self.backend, self.cipher, places, found_by=found_by)
        if name is None:
            return None
        self._forget_record_listing()  # not carried over to the head published next
        self.publish()  # a new head: readers list the records again (and staged uploads appear)
        self.load_index(reload=True)
        return name

    def clear_damage(self, names: Iterable[str]) -> None:
        """Delete damage records (``repair packs`` consumed them, or ``check`` found every place
        they name authentic after all)."""
        names = list(names)
        if names:
            self.backend.delete_unpublished(names)
            self._forget_record_listing()  # not carried over to the head published next
            self.publish()  # a new head: readers list the records again
            self.load_index(reload=True)

    def confirm_missing(self, packs: Iterable[str]) -> set[str]:
        """Those of ``packs`` the store really lacks (:func:`.damage.confirm_missing`)."""
        return damage.confirm_missing(self.backend, packs)
