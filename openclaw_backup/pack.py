"""Packs: new blobs written into pack files, and blobs read back out of them.

Words: a **pack** (``data/<xx>/<pack id>``) is a run of sealed blobs followed by its own sealed
header (byte format in :mod:`.codec`), so it describes itself. The :class:`PackWriter` collects new
blobs into packs of about ``pack_size`` and uploads each pack whole; :attr:`PackWriter.packs` then
lists what it wrote, ready for an index file. A **read batch** (:class:`ReadBatch`) is one ranged
read of a pack covering several wanted blobs (:func:`plan_reads`: neighbours up to 1 MiB apart
are read together within a budget of unwanted bytes, at most 8 MiB and 128 blobs at once);
:func:`decode_views` authenticates each blob and checks it against its id straight from a view of
the bytes read (:func:`fetch_batch`), without copying them.

Nothing here knows what the blobs mean: :class:`~openclaw_backup.repository.Repository` hands
these parts its store, its cipher and its index, and is the only way in for everyone else.
"""

from __future__ import annotations

import mmap
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

from . import codec
from .backends.base import Backend
from .codec import BlobRef
from .crypto import OVERHEAD, Cipher
from .errors import IntegrityError, NotFoundError
from .index import PackEntries

if TYPE_CHECKING:
    from .batches import Relay

T = TypeVar("T")

MERGE_GAP = 1024 * 1024  # read through a gap at most this large rather than start another read …
MERGE_WASTE = 0.2  # … and all the gaps read through add up to at most this much per wanted byte …
MERGE_FLOOR = 256 * 1024  # … or this much in all, for a plan that wants little (a level of trees)
MAX_RANGE = 8 * 1024 * 1024  # one ranged read at most (bounds the memory of whoever reads it)
MAX_BATCH = 128  # blobs per read at most: each costs its user more than its bytes (a file to write)


def pack_name(pack: str) -> str:
    """The object name of the pack with hex id ``pack`` (256 folders by its first two digits)."""
    return f"data/{pack[:2]}/{pack}"


# ---------------------------------------------------------------------------- reading


def read_range(backend: Backend, pack: str, offset: int, length: int) -> bytes:
    """``length`` bytes of pack ``pack`` from ``offset``; ``IntegrityError`` when it is shorter."""
    data = backend.get(pack_name(pack), offset=offset, length=length)
    if len(data) != length:
        raise IntegrityError(f"pack {pack[:16]} is truncated")
    return data


@dataclass(slots=True)
class ReadBatch(Generic[T]):
    """One ranged read of ``pack`` (``start`` to ``end``) and the blobs wanted from it, by offset:
    ``(blob id, where it is, what the caller wants it for)``. A blob wanted twice is listed twice,
    side by side, and decoded once."""

    pack: str
    start: int
    end: int
    wants: list[tuple[bytes, BlobRef, T]]


def plan_reads(
    wants: Iterable[tuple[bytes, BlobRef, T]], *, waste: float | None = MERGE_WASTE, max_range: int = MAX_RANGE
) -> list[ReadBatch[T]]:
    """Group wanted blobs into merged ranged reads, pack by pack, each at most ``max_range`` long
    (unless one blob is longer). ``waste=None``: read through every gap up to :data:`MERGE_GAP`
    (a store on this machine, where a read costs more than bytes).

    The gap read through is adaptive: the largest gap ``g`` (at most :data:`MERGE_GAP`) such that
    all the gaps of the plan no larger than ``g`` add up to at most ``waste`` of the wanted bytes,
    or to :data:`MERGE_FLOOR` when that is more (a plan that wants little — a level of small trees
    scattered through a pack — is read in one request per pack, not one per tree). The smallest
    gaps are merged first, so a plan spends its budget of unwanted bytes where it saves the most
    requests, and downloads at most ``1 + waste`` times what it wants (plus the floor), however the
    wanted blobs are scattered among other snapshots' data."""
    by_pack: dict[str, list[tuple[bytes, BlobRef, T]]] = {}
    for w in wants:
        by_pack.setdefault(w[1].pack, []).append(w)
    gaps: list[int] = []
    wanted = 0
    for items in by_pack.values():
        items.sort(key=lambda w: w[1].offset)
        end = None
        for w in items:
            ref = w[1]
            if end is not None and ref.offset > end:
                gaps.append(ref.offset - end)
            wanted += max(0, ref.offset + ref.length - max(end or 0, ref.offset))
            end = max(end or 0, ref.offset + ref.length)
    by_size: dict[int, int] = {}
    for gap in gaps:
        by_size[gap] = by_size.get(gap, 0) + gap
    limit, spent = 0, 0
    for size in sorted(by_size):  # every gap of a size is merged, or none of them
        if size > MERGE_GAP or (waste is not None and spent + by_size[size] > max(waste * wanted, MERGE_FLOOR)):
            break
        spent += by_size[size]
        limit = size
    out: list[ReadBatch[T]] = []
    for pack, items in by_pack.items():
        group: list[tuple[bytes, BlobRef, T]] = []
        start = end = 0
        for w in items:
            ref = w[1]
            if (
                group
                and ref.offset <= end + limit
                and ref.offset + ref.length - start <= max_range
                and len(group) < MAX_BATCH
            ):
                group.append(w)
                end = max(end, ref.offset + ref.length)
            else:
                if group:
                    out.append(ReadBatch(pack, start, end, group))
                group, start, end = [w], ref.offset, ref.offset + ref.length
        if group:
            out.append(ReadBatch(pack, start, end, group))
    return out


def fetch_batch(backend: Backend, batch: ReadBatch[T]) -> memoryview:
    """The bytes of ``batch``'s one ranged read, unverified (see :func:`decode_views`)."""
    return memoryview(read_range(backend, batch.pack, batch.start, batch.end - batch.start))


def decode_views(cipher: Cipher, batch: ReadBatch[T], view: memoryview) -> Iterator[tuple[T, bytes | memoryview]]:
    """``(want, plaintext)`` for each want of ``batch``, in order, from the bytes :func:`fetch_batch`
    read: every blob verified (authenticated, decompressed within its declared size, checked
    against its id); one stored raw comes as a view of its opened payload, not a copy
    (:func:`.codec.decode_blob_view`)."""
    last_id: bytes = b""
    plain: bytes | memoryview = b""
    for bid, ref, want in batch.wants:
        if bid != last_id:
            lo = ref.offset - batch.start
            plain = codec.decode_blob_view(cipher, ref.btype, bid, view[lo : lo + ref.length], ref.raw_len)
            last_id = bid
        yield want, plain


def read_header(backend: Backend, cipher: Cipher, pack: str) -> dict[bytes, BlobRef]:
    """What a pack's own header says it holds, reading only its tail."""
    name = pack_name(pack)
    size = backend.size(name)
    tail = backend.get(name, offset=max(0, size - 4))
    hlen = int.from_bytes(tail[-4:], "little")
    if hlen + 4 > size:
        raise IntegrityError(f"pack {pack[:16]}: bad header length")
    head = backend.get(name, offset=size - 4 - hlen, length=hlen + 4)
    return codec.parse_pack_header(cipher, pack, bytes(size - 4 - hlen) + head)


@dataclass
class PackCheck:
    """What reading one whole pack found. ``error``: it could not be read, and every blob the
    index places in it is in ``bad``; else ``bad`` holds the blobs that failed, with why."""

    pack: str
    size: int = 0
    error: str | None = None
    name_ok: bool = True
    blobs_ok: int = 0
    bad: list[tuple[bytes, str]] = field(default_factory=list)


def check_pack(backend: Backend, cipher: Cipher, pack: str, blobs: list[tuple[bytes, BlobRef]]) -> PackCheck:
    """Read pack ``pack`` whole, check its name against its bytes and verify ``blobs`` in it.
    Damage and absence are reported; other store trouble propagates (it is not damage)."""
    try:
        data = backend.get(pack_name(pack))
    except (IntegrityError, NotFoundError) as e:
        return PackCheck(pack, error=e.message, bad=[(bid, e.message) for bid, _ in blobs])
    return verify_pack(cipher, pack, data, blobs)


def verify_pack(cipher: Cipher, pack: str, data: bytes, blobs: list[tuple[bytes, BlobRef]]) -> PackCheck:
    """Check the bytes of pack ``pack`` against its name and verify ``blobs`` in them."""
    out = PackCheck(pack, size=len(data), name_ok=codec.storage_id(data) == pack)
    view = memoryview(data)  # each blob decoded from a view, not a copy
    for bid, ref in blobs:
        try:
            codec.decode_blob(cipher, ref.btype, bid, view[ref.offset : ref.offset + ref.length], ref.raw_len)
            out.blobs_ok += 1
        except (IntegrityError, NotFoundError) as e:
            out.bad.append((bid, e.message))
    return out


# ---------------------------------------------------------------------------- writing

_PACK_SLACK = 1 << 20  # room beyond pack_size for the blob that fills a pack
_HEADER_ROOM = 256 << 10  # for the header: ~6000 entries (a pack of smaller blobs closes early)
_Entry = tuple[bytes, bytes, int, int]  # type, id, stored length, raw length
_Full = tuple[mmap.mmap, int, list[_Entry]]


class PackWriter:
    """Collects new blobs into packs of about ``pack_size`` and uploads them. Thread-safe.

    A blob is stored once: :meth:`claim` refuses one that ``indexed`` says is stored already, or
    that this writer stores (dedup across threads). After :meth:`flush`, :attr:`packs` describes
    every pack written, ready for an index file. Blobs are compressed outside the lock, then
    sealed straight into the current pack's buffer, an anonymous mapping of ``pack_size`` plus
    room for the last blob and the header: no copy per blob, no reallocation, and only the pages
    written are resident. ``keep`` is handed each pack once uploaded (its id and sealed bytes).
    Backends keep no reference to what ``put`` was given, so the mapping is
    released as soon as the pack is uploaded.

    A writer can be filled by a forked worker too (:mod:`.batches`), which must not touch the
    store: while :meth:`shared`, this writer and the worker's copy each close packs at half the
    size (the two packs in the making hold the memory of one); the copy, told to :meth:`relay`,
    seals its packs into buffers the relay hands over whole, and this writer stores each
    (:meth:`absorb`) — so every pack is stored, and counted, here.
    """

    def __init__(
        self,
        backend: Backend,
        cipher: Cipher,
        *,
        pack_size: int,
        indexed: Callable[[bytes], bool],
        keep: Callable[[str, memoryview], None] | None = None,
    ) -> None:
        self.backend = backend
        self.cipher = cipher
        self._indexed = indexed
        self._keep = keep  # handed each pack uploaded (id, sealed bytes), to keep a copy
        self.pack_size = pack_size
        self._fill = pack_size  # where the next pack will be closed
        self._close_at = pack_size  # where the pack in the making is closed (its buffer has room for it)
        self._relay: Relay | None = None
        self._lock = threading.Lock()
        self._claimed: set[bytes] = set()
        self._buf: mmap.mmap | None = None
        self._pos = 0
        self._header = 0  # bytes the pack header will take
        self._entries: list[_Entry] = []
        self.packs: PackEntries = {}
        self.bytes_written = 0
        self.blobs_written = 0

    def claim(self, bid: bytes) -> bool:
        """Reserve ``bid`` for storing; False when it is stored already (or someone else stores it)."""
        with self._lock:
            if self._indexed(bid) or bid in self._claimed:
                return False
            self._claimed.add(bid)
            return True

    def add(self, btype: bytes, bid: bytes, data: bytes | memoryview) -> None:
        """Compress, seal and queue a claimed blob; uploads a pack when it is full."""
        flag, body = codec.blob_body(data)  # outside the lock: the costly part
        cipher, ad = self.cipher, codec.blob_ad(btype, bid)
        self._queue(btype, bid, cipher.sealed_size(1 + len(body)), len(data),
                    lambda view: cipher.seal_flagged_into(flag, body, ad, view))  # fmt: skip

    def add_stored(self, btype: bytes, bid: bytes, stored: bytes | bytearray, raw_len: int) -> None:
        """Queue an already sealed blob."""

        def fill(view: memoryview) -> None:
            view[:] = stored

        self._queue(btype, bid, len(stored), raw_len, fill)

    def store(self, btype: bytes, data: bytes | memoryview) -> bytes:
        """Id of ``data``, storing it when new."""
        bid = self.cipher.blob_id(data)
        if self.claim(bid):
            self.add(btype, bid, data)
        return bid

    def repack(self, pack: str, blobs: list[tuple[bytes, BlobRef]]) -> None:
        """Copy ``blobs`` of an existing pack into new packs, authenticating each (damage is
        never copied: ``IntegrityError``)."""
        data = self.backend.get(pack_name(pack))
        for bid, ref in blobs:
            stored = data[ref.offset : ref.offset + ref.length]
            codec.decode_blob(self.cipher, ref.btype, bid, stored, ref.raw_len)
            self.add_stored(ref.btype, bid, stored, ref.raw_len)

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
            self._close_at = self._fill
            room = max(self._fill, n) + _PACK_SLACK + _HEADER_ROOM
            if self._relay is not None:
                self._buf = self._relay.buffer(room)
            else:  # private: cheaper page faults than a shared mapping, and never shared with a fork
                self._buf = mmap.mmap(-1, room, flags=mmap.MAP_PRIVATE)
        return closed, memoryview(self._buf)[self._pos : self._pos + n]

    def _append(self, btype: bytes, bid: bytes, n: int, raw_len: int) -> _Full | None:
        """Account for the blob just written at the end (lock held); the full pack, if it now is."""
        self._claimed.add(bid)
        self._entries.append((btype, bid, n, raw_len))
        self._pos += n
        self._header += codec.PACK_ENTRY_SIZE
        if self._pos < self._close_at:
            return None
        return self._take()

    def _take(self) -> _Full | None:
        full = (self._buf, self._pos, self._entries) if self._buf is not None and self._entries else None
        self._buf, self._pos, self._header, self._entries = None, 0, 0, []
        return full

    def _upload(self, buf: mmap.mmap, end: int, entries: list[_Entry]) -> None:
        try:
            refs, total = codec.finish_pack(self.cipher, buf, entries, end)
            pack = next(iter(refs.values())).pack
            if self._relay is not None:
                self._relay.ship((pack, list(refs.items()), total), buf, total)  # stored when it returns
                return
            self.backend.put(pack_name(pack), memoryview(buf)[:total])  # type: ignore[arg-type]  # bytes-like
            if self._keep is not None:
                self._keep(pack, memoryview(buf)[:total])
        finally:
            _unmap(buf)
        self._count(pack, list(refs.items()), total)

    def _count(self, pack: str, blobs: list[tuple[bytes, BlobRef]], total: int) -> None:
        with self._lock:
            self.packs[pack] = blobs
            self._claimed.update(bid for bid, _ in blobs)
            self.bytes_written += total
            self.blobs_written += len(blobs)

    def flush(self) -> None:
        """Upload the pack being filled, if any."""
        with self._lock:
            full = self._take()
        if full:
            self._upload(*full)

    def flush_quietly(self) -> None:
        """Drop the pack being filled without uploading it (after a failure)."""
        with self._lock:
            full = self._take()
        if full:
            _unmap(full[0])

    @contextmanager
    def shared(self) -> Iterator[None]:
        """While filled by two processes at once (this one and a relaying copy forked inside):
        each closes its packs at half the size, so that the two packs in the making hold the
        memory of one (a pack begun meanwhile is closed at half the size even after)."""
        with self._lock:
            full = self._fill
            self._fill = full // 2 if full >= 2 << 20 else full
            self._close_at = min(self._close_at, self._fill)
        try:
            yield
        finally:
            with self._lock:
                self._fill = full

    def relay(self, relay: Relay) -> None:
        """From now on seal packs into ``relay``'s buffers and ship them instead of storing them
        (in a forked worker, on its copy of the writer: the pack its parent was filling is not
        this process's to finish)."""
        with self._lock:
            self._buf, self._pos, self._header, self._entries = None, 0, 0, []
            self._relay = relay

    def absorb(self, meta: tuple[str, list[tuple[bytes, BlobRef]], int], fd: int, length: int) -> None:
        """Store a pack a relaying copy of this writer shipped (the first ``length`` bytes of the
        file ``fd``: :meth:`.Backend.put_file`, never mapped here by a store on this machine), and
        count it as written here."""
        pack, blobs, total = meta
        if total != length:
            raise IntegrityError(f"pack {pack[:16]}: {length} bytes handed over for {total}")
        self.backend.put_file(pack_name(pack), fd, total)
        if self._keep is not None:  # (a store far away: a copy is kept, so it is read here anyway)
            with mmap.mmap(fd, total, prot=mmap.PROT_READ) as mapping:
                view = memoryview(mapping)
                try:
                    self._keep(pack, view)
                finally:
                    view.release()
        self._count(pack, blobs, total)

    def unstored(self, ids: Iterable[bytes]) -> list[bytes]:
        """Those of ``ids`` neither indexed (now) nor in a pack this writer wrote."""
        new = {bid for blobs in self.packs.values() for bid, _ in blobs}
        return [b for b in ids if not self._indexed(b) and b not in new]

    def vanished_packs(self) -> list[str]:
        """Packs this writer wrote that the store no longer has (a prune may take an unindexed
        pack for a crashed writer's leftover). None where uploads become visible only with their
        publication (a Hub commit): nothing can take them."""
        if self.backend.capabilities.atomic_batch:
            return []
        gone = []
        for pack in list(self.packs):
            try:
                self.backend.size(pack_name(pack))
            except NotFoundError:
                gone.append(pack)
        return gone


def _unmap(buf: mmap.mmap) -> None:
    try:
        buf.close()  # unmapped now, not whenever the collector gets to it
    except BufferError:
        pass  # a view of it is still alive (held by a failed put's traceback): unmapped with it
