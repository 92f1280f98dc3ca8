"""Byte formats of stored objects: blobs, packs, index files, and sealed JSON documents.

See ``docs/format.md`` for the normative description; this module is its implementation. Every
decoder here treats its input as hostile: lengths are bounded before anything is allocated,
decompression never produces more than the declared size, and every failure is an
:class:`~openclaw_backup.errors.IntegrityError` naming what was being decoded.

* **blob** — one chunk of file content (type ``D``) or one tree (type ``T``). Its id is the keyed
  BLAKE3 of its plaintext. Stored as ``seal(flag ‖ body, ad = b"blob" ‖ type ‖ id)`` where ``flag``
  is 0 (raw) or 1 (zstd); zstd is used only when it saves at least 1/32 of the size.
* **pack** — ``blob ‖ blob ‖ … ‖ seal(header, ad = b"packheader") ‖ u32le(len(sealed header))``;
  the header lists ``(type, id, stored length, raw length)`` per blob in order, so a pack describes
  itself and a lost index can be rebuilt. A pack's name is the BLAKE3 of its bytes.
* **index file** — which blobs each pack holds: ``seal(zstd(records), ad = b"index")``.
* **document** — snapshots, the head: ``seal(zstd(canonical JSON), ad = kind)``.
"""

from __future__ import annotations

import json
import mmap
import struct
import threading
from dataclasses import dataclass
from typing import Any

import blake3
import zstandard

from .crypto import OVERHEAD, Cipher
from .errors import IntegrityError

BLOB_DATA = b"D"
BLOB_TREE = b"T"
BLOB_TYPES = (BLOB_DATA, BLOB_TREE)
ID_SIZE = 32
MAX_BLOB_SIZE = 16 * 1024 * 1024  # no chunk or tree may claim more (decompression-bomb bound)
MAX_DOCUMENT_SIZE = 256 * 1024 * 1024
_FLAG_RAW, _FLAG_ZSTD = 0, 1
_HEADER_ENTRY = struct.Struct("<c32sII")  # type, id, stored length, raw length
PACK_ENTRY_SIZE = _HEADER_ENTRY.size
_INDEX_PACK = struct.Struct("<32sI")  # pack id, number of entries
_ZSTD_LEVEL = 1  # ~1.5x the speed of level 3 on this data, ~10 % larger on text


def parse_json(data: bytes | str, *, what: str) -> Any:
    """``json.loads`` for stored data: any failure (bad syntax, absurd nesting, huge numbers) is an
    :class:`IntegrityError` naming ``what``."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError, OverflowError):
        raise IntegrityError(f"{what}: not valid JSON") from None


def storage_id(data: bytes | bytearray | memoryview) -> str:
    """The name of a stored file (pack, index, snapshot): BLAKE3 of its stored bytes, hex."""
    return blake3.blake3(data).hexdigest()


_local = threading.local()


def _compress(data: bytes | memoryview) -> bytes:
    """zstd with one reusable compressor per thread (making one costs more than a small chunk)."""
    c = getattr(_local, "zstd", None)
    if c is None:
        c = _local.zstd = zstandard.ZstdCompressor(level=_ZSTD_LEVEL)
    return c.compress(data)


def _decompress(data: bytes | memoryview, limit: int, *, what: str) -> bytes:
    """At most ``limit`` bytes out, whatever the frame claims (python-zstandard trusts a frame's
    declared content size over ``max_output_size``, so that size is checked first)."""
    try:
        declared = zstandard.get_frame_parameters(data).content_size
        if declared > limit:
            raise IntegrityError(f"{what}: claims {declared} bytes, more than the {limit} allowed")
        d = getattr(_local, "unzstd", None)
        if d is None:
            d = _local.unzstd = zstandard.ZstdDecompressor()
        out = d.decompress(data, max_output_size=limit)
    except zstandard.ZstdError as e:
        raise IntegrityError(f"{what}: cannot decompress ({e})") from None
    return out


def blob_body(data: bytes | memoryview) -> tuple[int, bytes | memoryview]:
    """``(flag, body)`` of a blob's stored form: zstd when it saves at least 1/32, else raw."""
    if len(data) >= 64:
        packed = _compress(data)
        if len(packed) + len(packed) // 32 < len(data):
            return _FLAG_ZSTD, packed
    return _FLAG_RAW, data


def blob_ad(btype: bytes, blob_id: bytes) -> bytes:
    return b"blob" + btype + blob_id


def decode_blob(cipher: Cipher, btype: bytes, blob_id: bytes, stored: bytes | memoryview, raw_len: int) -> bytes:
    """Open, decompress and verify one blob; the result's id and length are checked."""
    data = decode_blob_view(cipher, btype, blob_id, stored, raw_len)
    return data if isinstance(data, bytes) else bytes(data)


def decode_blob_view(
    cipher: Cipher, btype: bytes, blob_id: bytes, stored: bytes | memoryview, raw_len: int
) -> bytes | memoryview:
    """:func:`decode_blob`, but a blob stored raw comes back as a view of the opened payload past
    its flag byte, not a copy of it (for a caller that only writes or hashes it)."""
    what = f"blob {blob_id.hex()[:16]}"
    if not 0 <= raw_len <= MAX_BLOB_SIZE:
        raise IntegrityError(f"{what}: absurd declared size {raw_len}")
    plain = cipher.open(stored, b"blob" + btype + blob_id, what=what)
    if not plain:
        raise IntegrityError(f"{what}: empty payload")
    data: bytes | memoryview
    if plain[0] == _FLAG_RAW:
        data = memoryview(plain)[1:]
    elif plain[0] == _FLAG_ZSTD:
        data = _decompress(memoryview(plain)[1:], raw_len, what=what)
    else:
        raise IntegrityError(f"{what}: unknown compression flag {plain[0]}")
    if len(data) != raw_len or cipher.blob_id(data) != blob_id:
        raise IntegrityError(f"{what}: content does not match its id")
    return data


@dataclass(frozen=True, slots=True)
class BlobRef:
    """Where a blob lives: its pack (hex name), offset and stored length, and its raw length."""

    pack: str
    btype: bytes
    offset: int
    length: int
    raw_len: int


def finish_pack(
    cipher: Cipher, buf: bytearray | mmap.mmap, entries: list[tuple[bytes, bytes, int, int]], end: int | None = None
) -> tuple[dict[bytes, BlobRef], int]:
    """Write the sealed header into ``buf`` at ``end`` (default: its length), after the blobs
    already concatenated there; return the refs and the pack's length (``buf`` may be longer; a
    bytearray grows when needed, a mapping must have the room).

    ``entries`` are ``(type, id, stored length, raw length)`` in the order of the blobs in ``buf``.
    Building in place keeps one copy of a pack in memory, not two.
    """
    header = bytearray()
    positions: list[tuple[bytes, bytes, int, int, int]] = []
    offset = 0
    for btype, bid, length, raw_len in entries:
        header += _HEADER_ENTRY.pack(btype, bid, length, raw_len)
        positions.append((btype, bid, offset, length, raw_len))
        offset += length
    sealed_header = cipher.seal(bytes(header), b"packheader")
    tail = sealed_header + struct.pack("<I", len(sealed_header))
    start = len(buf) if end is None else end
    total = start + len(tail)
    if total > len(buf):
        if not isinstance(buf, bytearray):
            raise ValueError("no room for the pack header")
        buf.extend(bytes(total - len(buf)))
    buf[start:total] = tail
    with memoryview(buf) as view:
        name = storage_id(view[:total])
    return {bid: BlobRef(name, btype, off, ln, raw) for btype, bid, off, ln, raw in positions}, total


def parse_pack_header(cipher: Cipher, pack: str, data: bytes) -> dict[bytes, BlobRef]:
    """Read a whole pack's own header (used by repair and deep check)."""
    what = f"pack {pack[:16]}"
    if len(data) < 4 + OVERHEAD:
        raise IntegrityError(f"{what}: too short")
    (hlen,) = struct.unpack("<I", data[-4:])
    if hlen > len(data) - 4 or hlen < OVERHEAD - (OVERHEAD if not cipher.encrypted else 0):
        raise IntegrityError(f"{what}: bad header length")
    header = cipher.open(data[-4 - hlen : -4], b"packheader", what=what)
    if len(header) % _HEADER_ENTRY.size:
        raise IntegrityError(f"{what}: header of a bad size")
    refs: dict[bytes, BlobRef] = {}
    offset = 0
    for btype, bid, ln, raw in _HEADER_ENTRY.iter_unpack(header):
        if btype not in BLOB_TYPES or offset + ln > len(data) - 4 - hlen:
            raise IntegrityError(f"{what}: header names data outside the pack")
        refs[bid] = BlobRef(pack, btype, offset, ln, raw)
        offset += ln
    return refs


def encode_index(cipher: Cipher, packs: dict[str, list[tuple[bytes, BlobRef]]]) -> bytes:
    """Serialise ``{pack name: [(blob id, ref), …]}`` as a sealed index file."""
    out = bytearray()
    for pack, blobs in sorted(packs.items()):
        out += _INDEX_PACK.pack(bytes.fromhex(pack), len(blobs))
        for bid, ref in blobs:
            out += struct.pack("<c32sIII", ref.btype, bid, ref.offset, ref.length, ref.raw_len)
    return cipher.seal(_compress(bytes(out)), b"index")


_INDEX_ENTRY = struct.Struct("<c32sIII")


def decode_index(cipher: Cipher, name: str, sealed: bytes) -> dict[bytes, BlobRef]:
    """Parse a sealed index file into ``{blob id: ref}``."""
    what = f"index {name[:16]}"
    raw = _decompress(cipher.open(sealed, b"index", what=what), MAX_DOCUMENT_SIZE, what=what)
    refs: dict[bytes, BlobRef] = {}
    pos = 0
    try:
        while pos < len(raw):
            pack_id, count = _INDEX_PACK.unpack_from(raw, pos)
            pos += _INDEX_PACK.size
            if pos + count * _INDEX_ENTRY.size > len(raw):
                raise IntegrityError(f"{what}: truncated")
            pack = pack_id.hex()
            for btype, bid, off, ln, rl in _INDEX_ENTRY.iter_unpack(raw[pos : pos + count * _INDEX_ENTRY.size]):
                if btype not in BLOB_TYPES or rl > MAX_BLOB_SIZE:
                    raise IntegrityError(f"{what}: bad entry")
                refs[bid] = BlobRef(pack, btype, off, ln, rl)
            pos += count * _INDEX_ENTRY.size
    except struct.error:
        raise IntegrityError(f"{what}: truncated") from None
    return refs


def encode_document(cipher: Cipher, kind: bytes, doc: dict[str, Any]) -> bytes:
    """Seal a JSON document (snapshot, head) in canonical form."""
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    return cipher.seal(_compress(text), kind)


def decode_document(cipher: Cipher, kind: bytes, sealed: bytes, *, what: str) -> dict[str, Any]:
    raw = _decompress(cipher.open(sealed, kind, what=what), MAX_DOCUMENT_SIZE, what=what)
    doc = parse_json(raw, what=what)
    if not isinstance(doc, dict):
        raise IntegrityError(f"{what}: not a JSON object")
    return doc
