"""The blob index: which pack holds each blob, at what offset, how long stored and raw.

Words: an **index file** (``index/<name>``, byte format in :mod:`.codec`) lists, pack by pack, the
blobs a writer stored; the **index** is the union of the index files the head names, loaded by
:meth:`.Repository.load_index`. A blob that no loaded index file names does not exist for
readers, whatever the packs hold. A :class:`BlobRef` is where one blob lives.

:class:`Index` is a read-only mapping ``blob id → BlobRef`` with the questions its users ask:
where a blob of a given type is (:meth:`Index.locate`), whether a file's content is all there and
how large it is (:meth:`Index.has_all`, :meth:`Index.raw_size`), the blobs of each pack, and totals.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from .codec import BLOB_DATA, BLOB_TREE, BlobRef, decode_index
from .crypto import Cipher

__all__ = ["BLOB_DATA", "BLOB_TREE", "BlobRef", "Index", "IndexSummary", "PackEntries"]

#: ``{pack name: [(blob id, ref), …]}``: what an index file lists.
PackEntries = dict[str, list[tuple[bytes, BlobRef]]]


@dataclass(frozen=True)
class IndexSummary:
    files: int  # index files loaded
    packs: int
    blobs: int
    data_blobs: int
    stored_bytes: int
    raw_bytes: int


class Index(Mapping[bytes, BlobRef]):
    """The blobs named by a set of index files (``files``). Never changed once built."""

    def __init__(
        self, refs: dict[bytes, BlobRef] | None = None, *, files: Iterable[str] = (), distrusted: Iterable[bytes] = ()
    ) -> None:
        self._refs: dict[bytes, BlobRef] = refs if refs is not None else {}
        self.files = tuple(files)
        #: blobs whose only places are not vouched for (missing packs, damage records)
        self.distrusted = frozenset(distrusted)

    @classmethod
    def build(
        cls,
        files: Iterable[tuple[str, dict[bytes, BlobRef]]],
        *,
        distrusted: Iterable[tuple[bytes, str]] = (),
        lost_packs: Iterable[str] = (),
    ) -> Index:
        """From decoded index files ``(name, {blob id: ref})``. A place in a pack of ``lost_packs``,
        or a ``(blob id, pack)`` place that ``distrusted`` names (the store's damage records), is
        not vouched for: a blob with no other place can still be read from it (authentication
        decides), but :meth:`vouches` is False, so writers store it again. A vouched-for place
        always wins over a distrusted one; among equals the last file's wins (a blob stored again
        after damage was found is read from its new place)."""
        bad, lost = set(distrusted), set(lost_packs)
        refs: dict[bytes, BlobRef] = {}
        trusted: set[bytes] = set()
        names = []
        for name, file_refs in files:
            for bid, ref in file_refs.items():
                ok = ref.pack not in lost and (bid, ref.pack) not in bad
                if ok or bid not in trusted:
                    refs[bid] = ref
                    if ok:
                        trusted.add(bid)
            names.append(name)
        return cls(refs, files=names, distrusted=set(refs) - trusted)

    def with_packs(self, packs: PackEntries) -> Index:
        """This index plus the blobs of ``packs`` (not named by any index file yet: a failed
        publication's packs still staged); a vouched-for place already indexed keeps winning."""
        refs = dict(self._refs)
        distrusted = set(self.distrusted)
        for entries in packs.values():
            for bid, ref in entries:
                if bid not in refs or bid in distrusted:
                    refs[bid] = ref
                    distrusted.discard(bid)
        return Index(refs, files=self.files, distrusted=distrusted)

    @classmethod
    def decode(cls, cipher: Cipher, sealed_files: Iterable[tuple[str, bytes]]) -> Index:
        """Build from sealed index files ``(name, bytes)``; a blob listed twice keeps its last place."""
        refs: dict[bytes, BlobRef] = {}
        names = []
        for name, sealed in sealed_files:
            refs.update(decode_index(cipher, name, sealed))
            names.append(name)
        return cls(refs, files=names)

    # The mapping, without the generic ``Mapping`` detours (the archiver asks once per cached file).
    def __getitem__(self, bid: bytes) -> BlobRef:
        return self._refs[bid]

    def __contains__(self, bid: object) -> bool:
        return bid in self._refs

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._refs)

    def __len__(self) -> int:
        return len(self._refs)

    def get(self, bid: bytes, default: BlobRef | None = None) -> BlobRef | None:  # type: ignore[override]
        return self._refs.get(bid, default)

    def locate(self, bid: bytes, btype: bytes | None = None) -> BlobRef | None:
        """Where blob ``bid`` is; None when it is not indexed (or not of type ``btype``)."""
        ref = self._refs.get(bid)
        return None if ref is None or (btype is not None and ref.btype != btype) else ref

    def vouches(self, bid: bytes) -> bool:
        """Blob ``bid`` is indexed at a place nothing distrusts: a writer may reuse it."""
        return bid in self._refs and bid not in self.distrusted

    def has_all(self, hex_ids: Iterable[str]) -> bool:
        """Every blob of a file's content (hex ids) is indexed and vouched for (may be reused)."""
        refs, bad = self._refs, self.distrusted
        return all((b := bytes.fromhex(c)) in refs and b not in bad for c in hex_ids)

    def raw_size(self, hex_ids: Iterable[str]) -> int:
        """The bytes a file's content (hex ids, all indexed) holds."""
        refs = self._refs
        return sum(refs[bytes.fromhex(c)].raw_len for c in hex_ids)

    def by_pack(self) -> PackEntries:
        """The indexed blobs of each pack, in index order."""
        out: PackEntries = {}
        for bid, ref in self._refs.items():
            out.setdefault(ref.pack, []).append((bid, ref))
        return out

    def summary(self) -> IndexSummary:
        refs = self._refs.values()
        return IndexSummary(
            files=len(self.files),
            packs=len({r.pack for r in refs}),
            blobs=len(self._refs),
            data_blobs=sum(1 for r in refs if r.btype == BLOB_DATA),
            stored_bytes=sum(r.length for r in refs),
            raw_bytes=sum(r.raw_len for r in refs),
        )
