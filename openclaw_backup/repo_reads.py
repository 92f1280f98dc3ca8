"""Part of :class:`.repository.Repository`: reading blobs — one, a level of trees, or many in merged
ranged reads (:func:`.pack.plan_reads`) — and, from a remote store, reading them in flight together.

A remote store hides its latency behind concurrency: up to :attr:`Reads.read_parallelism` ranged
reads at once (the store's ``max_connections``), each at most ``READ_MEMORY / read_parallelism``
long, so what they hold together stays bounded; the blobs of a read that arrived are decoded by at
most as many threads at once as there are CPUs (:meth:`Reads.read_batch`). A cold restore reads
every tree of the repository in one burst when they are few (:meth:`Reads.prefetch_trees`), so its
walk down the folders waits for no round trip per level. Mixed into ``Repository``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from .backends.base import Backend
from .codec import BLOB_TREE, BlobRef
from .crypto import Cipher
from .errors import IntegrityError, NotFoundError
from .index import Index
from .pack import MAX_RANGE, MERGE_WASTE, ReadBatch, decode_views, fetch_batch, plan_reads
from .tree import Node, decode_tree

T = TypeVar("T")

READ_MEMORY = 64 << 20  # bytes the ranged reads in flight together from a remote store hold at most …
MIN_RANGE = 1 << 20  # … but no read is cut shorter than this (more requests cost round trips)
TREE_PREFETCH = 8 << 20  # a restore from a remote store reads every tree at once up to this much


class Reads:
    """Reading blobs (see the module docstring). Thread-safe, except :meth:`prefetch_trees` and
    :meth:`forget_trees`."""

    backend: Backend
    cipher: Cipher
    index: Index
    _trees: dict[bytes, bytes]  # tree id -> plaintext, verified (see prefetch_trees)
    _decoding: threading.BoundedSemaphore  # one slot per CPU (see read_batch)

    @property
    def nearby(self) -> bool:
        """The store is on this machine: it declares no failures that a retry may cure (a network's).
        Its reads are planned through every small gap, one at a time; a forked worker
        (:mod:`.batches`) may read it as it is (there is no connection to share), where one reading
        a store far away first reopens it (:meth:`.Repository.reopen_store`)."""
        return not self.backend.capabilities.transient_failures

    def blob_ref(self, bid: bytes, btype: bytes) -> BlobRef:
        """Where blob ``bid`` (of type ``btype``) is stored; ``IntegrityError`` when not indexed."""
        ref = self.index.locate(bid, btype)
        if ref is None:
            raise IntegrityError(f"blob {bid.hex()[:16]} is not in the index (missing data)")
        return ref

    def read_blob(self, bid: bytes, btype: bytes) -> bytes:
        """One blob, verified."""
        ((_, data),) = self.read_blobs([(bid, self.blob_ref(bid, btype), None)])
        return data

    def read_tree(self, tree_id: str) -> list[Node]:
        bid = bytes.fromhex(tree_id)
        held = self._trees.get(bid)
        return decode_tree(held if held is not None else self.read_blob(bid, BLOB_TREE))

    def read_trees(self, tree_ids: Iterable[str]) -> dict[str, list[Node]]:
        """Many trees with merged ranged reads (a level of a restore at a time), each verified."""
        out: dict[str, list[Node]] = {}
        wants = []
        for tid in tree_ids:
            bid = bytes.fromhex(tid)
            held = self._trees.get(bid)
            if held is not None:
                out[tid] = decode_tree(held)
            else:
                wants.append((bid, self.blob_ref(bid, BLOB_TREE), tid))
        out.update((tid, decode_tree(data)) for tid, data in self.read_blobs(wants))
        return out

    def prefetch_trees(self, *, budget: int = TREE_PREFETCH) -> int:
        """From a remote store, read every indexed tree at once — merged ranged reads, in flight
        together — when they hold at most ``budget`` stored bytes, and keep them (verified) for
        :meth:`read_tree` and :meth:`read_trees` until :meth:`forget_trees`: a walk down a
        snapshot's folders then waits for no round trip per level. How many trees were read: 0 on
        a store on this machine, over the budget, or when any cannot be read (each is then read
        when asked, which reports the damage where it matters)."""
        if self.nearby:
            return 0
        wants = [(bid, ref, bid) for bid, ref in self.index.items() if ref.btype == BLOB_TREE]
        if not wants or sum(ref.length for _, ref, _ in wants) > budget:
            return 0
        try:
            self._trees = dict(self.read_blobs(wants))
        except (IntegrityError, NotFoundError):
            self._trees = {}
        return len(self._trees)

    def forget_trees(self) -> None:
        """Drop the trees :meth:`prefetch_trees` kept."""
        self._trees = {}

    def plan_reads(self, wants: Iterable[tuple[bytes, BlobRef, T]]) -> list[ReadBatch[T]]:
        """Group wanted blobs ``(id, where, what for)`` into merged ranged reads (units of work):
        from a remote store with a budget for unwanted bytes, from this machine's disk through
        every small gap (fewer reads cost less than the bytes skipped)."""
        if self.nearby:
            return plan_reads(wants, waste=None)
        # Many reads in flight, each shorter: what they hold at once stays about READ_MEMORY.
        max_range = max(MIN_RANGE, min(MAX_RANGE, READ_MEMORY // self.read_parallelism))
        return plan_reads(wants, waste=MERGE_WASTE, max_range=max_range)

    def read_batch(self, batch: ReadBatch[T]) -> Iterator[tuple[T, bytes]]:
        """``(what for, plaintext)`` for each want of one read batch, each blob verified; the blobs
        are decoded from views of the one read, never copied. Thread-safe.

        From a remote store, where many reads are in flight together (each thread waiting with the
        GIL released), the blobs of a batch are decoded as soon as it arrives, by at most as many
        threads at once as there are CPUs: the others keep their reads going instead of taking
        turns at the GIL. A damaged blob is raised where the iteration reaches it, as locally."""
        views = self.read_views(batch)
        return ((want, plain if isinstance(plain, bytes) else bytes(plain)) for want, plain in views)

    def read_views(self, batch: ReadBatch[T]) -> Iterator[tuple[T, bytes | memoryview]]:
        """:meth:`read_batch`, but a blob stored raw comes as a view of its opened payload, not a
        copy (:func:`.pack.decode_views`): for a caller that only writes or hashes the plaintext."""
        view = fetch_batch(self.backend, batch)
        if self.read_parallelism <= 1:
            return decode_views(self.cipher, batch, view)
        with self._decoding:
            done: list[tuple[T, bytes | memoryview]] = []
            try:
                for got in decode_views(self.cipher, batch, view):
                    done.append(got)
            except (IntegrityError, NotFoundError) as e:
                return _then_raise(done, e)
        return iter(done)

    @property
    def read_parallelism(self) -> int:
        """Ranged reads worth having in flight together: a remote store's connection limit (its
        latency hides behind concurrency), 1 for a store on this machine."""
        return 1 if self.nearby else max(1, self.backend.capabilities.max_connections)

    def read_blobs(self, wants: Iterable[tuple[bytes, BlobRef, T]]) -> Iterator[tuple[T, bytes]]:
        """``(what for, plaintext)`` for wanted blobs ``(id, where, what for)``, read in merged
        ranged reads (up to :attr:`read_parallelism` in flight, a window at a time) and verified."""
        batches = self.plan_reads(wants)
        width = self.read_parallelism
        if width <= 1 or len(batches) <= 1:
            for batch in batches:
                yield from self.read_batch(batch)
            return
        with ThreadPoolExecutor(max_workers=width) as pool:
            for i in range(0, len(batches), 2 * width):  # a window: memory stays bounded
                window = batches[i : i + 2 * width]
                for out in pool.map(lambda b: list(self.read_batch(b)), window):
                    yield from out


def _then_raise(items: list[T], error: BaseException) -> Iterator[T]:
    yield from items
    raise error
