"""The storage contract every backend implements, and the capabilities it declares.

Words used here:

* **object** — an immutable named byte string (``config``, ``keys/…``, ``data/ab/…``,
  ``index/…``, ``snapshots/…``). Names are ``/``-separated relative paths of ASCII letters,
  digits, ``-``, ``_`` and ``.``; no component is empty, ``.`` or ``..``.
* **head** — the one mutable object of a repository. It is never written with ``put``; it changes
  only through :meth:`Backend.publish`, a compare-and-swap against its current **version** (an
  opaque token: a hash, an ETag, a commit id).
* **publication** — one call of :meth:`Backend.publish`. Objects ``put`` before it become part of
  the repository no later than the publication; names in ``deletes`` disappear no earlier than it.
  This is what lets a Hub dataset repo make a whole backup one commit while a local directory or
  S3 writes objects straight away and swaps only the head.

The write order of the repository (packs → index → snapshot → head) relies on two promises:
``put`` is durable when it returns (or, where the store batches, is carried by the next
publication, which then fails as a whole or lands as a whole), and ``publish`` never makes a head
visible whose objects are not.

Besides the contract, a backend may offer **optional operations** — maintenance that only some
stores need (:meth:`Backend.squash_history`, :meth:`Backend.remove_stale_temporaries`) — or that
only some can do (:meth:`Backend.reopen`). They are
declared here with defaults that do nothing and say so in their result, so callers and wrappers
call them on any backend instead of probing for them.

Backends are dumb: no retries, no rate limits, no logging. Those are wrappers composed in
:func:`openclaw_backup.backends.open_backend`.
"""

from __future__ import annotations

import mmap
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import UsageError

_NAME_RE = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")
HEAD_NAME = "head"


@dataclass(frozen=True)
class Capabilities:
    """What a store guarantees; declared, never guessed.

    ``compare_and_swap``: :meth:`Backend.publish` detects a concurrent publication and raises
    :class:`~openclaw_backup.errors.ConflictError`. Where False, the backend must hold a lease
    (single writer) and say so in its documentation.
    ``atomic_batch``: puts, deletes and the new head of one publication become visible together.
    ``frees_space_on_delete``: deleting an object gives its bytes back (False on a versioned Hub
    repo until its history is squashed).
    ``consistent_listing``: :meth:`Backend.list` sees every published object at once.
    ``ranged_reads``: ``get(offset=, length=)`` transfers only that range.
    ``max_connections``: how many calls may run at once.
    ``transient_failures``: calls can fail in ways a retry may cure (a network, a server under
    load), so :func:`~openclaw_backup.backends.open_backend` wraps the store in retries. False for
    stores on this machine, whose errors a retry would not cure.
    """

    compare_and_swap: bool = True
    atomic_batch: bool = False
    frees_space_on_delete: bool = True
    consistent_listing: bool = True
    ranged_reads: bool = True
    max_connections: int = 4
    transient_failures: bool = True


@dataclass(frozen=True)
class Head:
    """The current head: its opaque ``version`` token and its bytes."""

    version: str
    data: bytes


def check_name(name: str) -> str:
    """Return ``name`` when it is a valid object name, else raise ``UsageError``."""
    if name == HEAD_NAME or not _NAME_RE.match(name) or any(p in (".", "..") for p in name.split("/")):
        raise UsageError(f"invalid object name {name!r}")
    return name


class Backend(ABC):
    """A store of immutable objects plus one compare-and-swapped head.

    Every method may raise :class:`~openclaw_backup.errors.StoreError` (``transient=True`` when a
    retry may help) or :class:`~openclaw_backup.errors.QuotaError`; the contract below lists the
    other outcomes.
    """

    capabilities: Capabilities = Capabilities()

    #: Human-readable address, e.g. ``/srv/repo`` or ``hf://datasets/ns/name``. Never a secret.
    location: str = ""

    @abstractmethod
    def get(self, name: str, *, offset: int = 0, length: int | None = None) -> bytes:
        """Return the object's bytes, or ``length`` bytes from ``offset``.

        A missing object raises :class:`~openclaw_backup.errors.NotFoundError`. A range that runs
        past the end returns the bytes that exist (a short read); callers that know the expected
        length must check it. Objects ``put`` but not yet published may or may not be readable.
        """

    @abstractmethod
    def size(self, name: str) -> int:
        """Return the object's size in bytes; ``NotFoundError`` when missing."""

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Return the sorted names of published objects starting with ``prefix``.

        The head is not listed. Temporary files of interrupted writes are not listed. On a store
        without ``consistent_listing`` a fresh object may be missing for a while.
        """

    @abstractmethod
    def put(self, name: str, data: bytes) -> None:
        """Store an immutable object.

        Names are content-addressed or unique, so a repeated put of the same name with the same
        bytes is a harmless no-op (it must not fail). When it returns, the bytes are durable on the
        store, or staged for the next :meth:`publish` on a batching store, and no reference to
        ``data`` (any bytes-like object) is kept: the caller reuses that buffer. A crash before the
        publication leaves at most an unreferenced object, never a partly written one under
        ``name``.
        """

    def put_file(self, name: str, fd: int, length: int) -> None:
        """:meth:`put` the first ``length`` bytes of the open file ``fd`` (read at their offsets,
        whatever the file's position; the caller closes it). A store on this machine copies them
        from file to file, never holding them in memory; by default they are mapped and put."""
        if not length:
            self.put(name, b"")
            return
        with mmap.mmap(fd, length, prot=mmap.PROT_READ) as mapping:
            view = memoryview(mapping)
            try:
                self.put(name, view)  # type: ignore[arg-type]  # bytes-like
            finally:
                view.release()

    @abstractmethod
    def read_head(self) -> Head | None:
        """Return the current head, or None when the repository has none yet."""

    @abstractmethod
    def publish(self, *, head: bytes, expect: str | None, deletes: Sequence[str] = ()) -> str:
        """Atomically replace the head if its version is still ``expect`` and return the new version.

        ``expect=None`` means "there must be no head yet". When the head moved,
        :class:`~openclaw_backup.errors.ConflictError` is raised and nothing is deleted; staged
        objects stay staged so the caller can re-plan and publish again. ``deletes`` name objects
        that the new head no longer needs: they are removed in the same atomic batch
        (``atomic_batch``) or after the head was replaced; a name that no longer exists is ignored.
        If the call's outcome is unknown (a lost response), the implementation re-reads the head
        before reporting, so a publication that landed is reported as landed.
        """

    def delete_unpublished(self, names: Sequence[str]) -> None:
        """Remove objects that no head references (garbage of crashed writers).

        Default: a publication that keeps the current head. Backends with direct deletes override
        this. Missing names are ignored.
        """
        current = self.read_head()
        if current is None:
            return
        self.publish(head=current.data, expect=current.version, deletes=names)

    def close(self) -> None:
        """Release connections, leases and temporary files. Idempotent."""

    # -- optional operations (see the module docstring) ---------------------------------------

    def squash_history(self) -> bool:
        """Drop the store's history so deleted objects free their space; True when it did.

        Only stores without ``frees_space_on_delete`` keep a history (a versioned Hub repo). The
        squash changes the head version, so a concurrent publisher gets a conflict. Default: no
        history, nothing to do (False).
        """
        return False

    def remove_stale_temporaries(self, *, older_than: float) -> int:
        """Remove leftovers of writes killed mid-way older than ``older_than`` seconds; return how many.

        Only stores that write through temporary files have them (a local directory). A live
        writer's temporary file is younger than ``older_than``, so it is kept. Default: none (0).
        """
        return 0

    def reopen(self) -> Backend | None:
        """A new handle to the same store that uses no connection, session or pool this one holds,
        for a process forked from the one that opened this handle: called there, it lets that
        process read the store without sharing a socket with this one. It only reads (nothing
        staged here is carried over). Default: None, the store cannot (the caller then does
        without it)."""
        return None
