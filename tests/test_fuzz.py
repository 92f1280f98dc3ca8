"""Property tests over every parser of stored data: hostile bytes give a typed error, nothing else.

Parsers: the config (:meth:`RepoConfig.from_bytes`, and a :class:`Repository` built on what it
accepts), key files (:func:`parse_key_file`, :func:`open_key_file`), pack headers
(:func:`codec.parse_pack_header`), index files (:func:`codec.decode_index`), blobs
(:func:`codec.decode_blob`), trees (:func:`tree.decode_tree`), snapshot and head documents
(:func:`codec.decode_document`, :meth:`HeadState.from_json`) and the legacy script's metadata
(:func:`legacy_meta.parse_meta`, :func:`legacy_meta.find_latest`).

Inputs are arbitrary bytes, and valid objects mutated (bit flips, truncations, insertions). Sealed
objects go through the plain cipher (no MAC: the parser behind it sees the bytes) and through a
real :class:`Cipher` — mutated (the MAC must refuse them) and freshly sealed around hostile
plaintext (what a key holder, or a bug, could write: the parser behind the MAC must still hold).

"Never another exception, a hang, or unbounded allocation": every example must end in a
:class:`BackupError` (or a valid result), within Hypothesis' deadline, and the inputs that declare
a huge size are run under :mod:`tracemalloc` with a 64 MiB bound. Inputs that once broke a parser
are pinned in tests named after the bug.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import tracemalloc
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
import zstandard
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from openclaw_backup import codec
from openclaw_backup.backends.memory import MemoryBackend
from openclaw_backup.codec import BLOB_DATA, BLOB_TREE
from openclaw_backup.crypto import Cipher, PlainCipher, make_key_file, open_key_file, parse_key_file
from openclaw_backup.errors import BackupError, IntegrityError
from openclaw_backup.legacy_meta import find_latest, parse_meta
from openclaw_backup.repo_config import RepoConfig
from openclaw_backup.repository import HeadState, Repository
from openclaw_backup.tree import Node, decode_tree, encode_tree
from tests.support.repos import PASSWORD, WEAK, build_pack, encode_blob

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")),
    deadline=2000,  # ms per example: a parser that hangs fails here
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MEMORY_BOUND = 64 * 1024 * 1024
MASTER = bytes(range(64))
CIPHERS: dict[str, Cipher] = {"plain": PlainCipher(b"seed"), "aead": Cipher(MASTER)}


def typed(fn: Callable[[], Any]) -> Any:
    """Run a parser: a result or a BackupError are fine; any other exception fails the test."""
    try:
        return fn()
    except BackupError as e:
        assert e.message, "a typed error carries a message"
        return e


def bounded(fn: Callable[[], Any]) -> tuple[Any, int]:
    """Run ``fn`` under tracemalloc; return (outcome, peak bytes)."""
    tracemalloc.start()
    try:
        out = typed(fn)
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# ---------------------------------------------------------------------------- valid objects to mutate


def _valid_objects() -> dict[str, Any]:
    """One of each stored object, for both ciphers: made by a real repository in memory."""
    out: dict[str, Any] = {}
    for name, cipher in CIPHERS.items():
        blob = b"some file content " * 20
        bid = cipher.blob_id(blob)
        stored = encode_blob(cipher, BLOB_DATA, blob, bid)
        nodes = [
            Node("a.txt", "file", 0o644, 1, size=len(blob), content=[bid.hex()]),
            Node("d", "dir", 0o755, 2, subtree="ab" * 32),
            Node("l", "symlink", 0o777, 3, target="a.txt"),
        ]
        tree = encode_tree(nodes)
        tid = cipher.blob_id(tree)
        stored_tree = encode_blob(cipher, BLOB_TREE, tree, tid)
        pack, refs = build_pack(
            cipher, [(BLOB_DATA, bid, stored, len(blob)), (BLOB_TREE, tid, stored_tree, len(tree))]
        )
        index = codec.encode_index(cipher, {codec.storage_id(pack): list(refs.items())})
        head = codec.encode_document(cipher, b"head", HeadState(3, ["ab" * 32], ["cd" * 32]).to_json())
        snap = codec.encode_document(cipher, b"snapshot", {"version": 1, "tree": tid.hex(), "roots": {}})
        out[name] = {
            "blob": (bid, stored, len(blob)),
            "tree": tree,
            "pack": pack,
            "index": index,
            "head": head,
            "snapshot": snap,
        }
    out["config"] = RepoConfig("0" * 32, True, pack_size=65536, created="2026-01-01").to_bytes()
    out["key"] = make_key_file(MASTER, PASSWORD, params=WEAK)
    out["meta"] = json.dumps(
        {
            "backup_type": "incremental",
            "parent": "backups/openclaw-backup-20260101-000000.tar.gz",
            "encrypted": False,
            "checksum": "sha256:" + "a" * 64,
            "volumes": ["openclaw-backup-20260102-000000.tar.gz"],
            "created_at_utc": "2026-01-02T00:00:00Z",
            "chain_id": "c1",
        }
    ).encode()
    return out


VALID = _valid_objects()

# A mutation: ("flip", position, bit) | ("cut", position) | ("insert", position, bytes) | ("delete", position, n)
mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(0, 7)),
    st.tuples(st.just("cut"), st.integers(0, 10**6)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 16)),
)


def mutate(data: bytes, muts: list[tuple[Any, ...]]) -> bytes:
    out = bytearray(data)
    for m in muts:
        pos = m[1] % (len(out) + 1)
        if m[0] == "flip" and out:
            out[pos % len(out)] ^= 1 << m[2]
        elif m[0] == "cut":
            del out[pos:]
        elif m[0] == "insert":
            out[pos:pos] = m[2]
        elif m[0] == "delete":
            del out[pos : pos + m[2]]
    return bytes(out)


mutations = st.lists(mutation, min_size=1, max_size=4)
cipher_names = st.sampled_from(sorted(CIPHERS))

# JSON values without the inputs pinned by the dedicated tests below (infinities, deep nesting).
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=20,
)


def json_with(base: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """``base`` with some fields replaced by arbitrary JSON values, some dropped, some added."""

    @st.composite
    def build(draw: Any) -> bytes:
        doc = json.loads(json.dumps(base))
        for key in draw(st.lists(st.sampled_from(sorted(base)), max_size=3)):
            if draw(st.booleans()):
                doc[key] = draw(json_values)
            else:
                doc.pop(key, None)
        if isinstance(doc.get("kdf"), dict) and draw(st.booleans()):
            k = draw(st.sampled_from(["algorithm", "memory_kib", "iterations", "lanes", "salt"]))
            doc["kdf"][k] = draw(json_values)
        if isinstance(doc.get("chunker"), dict) and draw(st.booleans()):
            doc["chunker"][draw(st.sampled_from(["min", "avg", "max"]))] = draw(st.integers(-10, 2**25))
        return json.dumps(doc).encode()

    return build()


# ---------------------------------------------------------------------------- config


def _config_then_repository(data: bytes) -> Any:
    cfg = RepoConfig.from_bytes(data)
    # What Repository.open does with an accepted config (the chunkers are built from it):
    return Repository(MemoryBackend(), CIPHERS["plain"], cfg, cache_dir=None)


@FUZZ
@given(st.binary(max_size=400))
def test_config_arbitrary_bytes(data: bytes) -> None:
    typed(lambda: _config_then_repository(data))


@FUZZ
@given(mutations)
def test_config_mutated(muts: list[tuple[Any, ...]]) -> None:
    typed(lambda: RepoConfig.from_bytes(mutate(VALID["config"], muts)))


@FUZZ
@given(json_with(json.loads(VALID["config"])))
def test_config_fields(data: bytes) -> None:
    typed(lambda: RepoConfig.from_bytes(data))


# ---------------------------------------------------------------------------- key files


@FUZZ
@given(st.binary(max_size=400))
def test_key_file_arbitrary_bytes(data: bytes) -> None:
    typed(lambda: open_key_file(data, PASSWORD))


def _short_salt_or_nonce(data: bytes) -> bool:
    """The inputs pinned by test_key_file_with_a_short_salt_or_nonce_is_a_typed_error (a known bug)."""
    try:
        doc = json.loads(data)
        salt = base64.b64decode(doc["kdf"]["salt"], validate=True)
        nonce = base64.b64decode(doc["nonce"], validate=True)
    except Exception:
        return False
    return len(salt) < 8 or not 8 <= len(nonce) <= 128


@FUZZ
@given(mutations)
def test_key_file_mutated(muts: list[tuple[Any, ...]]) -> None:
    data = mutate(VALID["key"], muts)
    assume(not _short_salt_or_nonce(data))
    out = typed(lambda: open_key_file(data, PASSWORD))
    assert isinstance(out, BackupError) or out == MASTER, "a damaged key file never yields another key"


@FUZZ
@given(json_with(json.loads(VALID["key"])))
def test_key_file_fields(data: bytes) -> None:
    # Allowed-but-expensive costs are made cheap (the fuzzer must stay fast); absurd ones stay and
    # must be refused (see also test_key_file_costs_are_bounded).
    doc = json.loads(data)
    kdf = doc.get("kdf")
    if isinstance(kdf, dict):
        for k, cheap, limit in (("memory_kib", 64, 4 * 1024 * 1024), ("iterations", 1, 100), ("lanes", 1, 64)):
            try:
                v = float(kdf.get(k))  # type: ignore[arg-type]
            except (TypeError, ValueError, OverflowError):
                continue
            if cheap < v <= limit:
                kdf[k] = cheap
        data = json.dumps(doc).encode()
    assume(not _short_salt_or_nonce(data))
    typed(lambda: parse_key_file(data))
    typed(lambda: open_key_file(data, PASSWORD))


@pytest.mark.parametrize("field", ["salt", "nonce"])
def test_key_file_with_a_short_salt_or_nonce_is_a_typed_error(field: str) -> None:
    doc = json.loads(VALID["key"])
    if field == "salt":
        doc["kdf"]["salt"] = base64.b64encode(b"1234").decode()
    else:
        doc["nonce"] = base64.b64encode(b"1234").decode()
    with pytest.raises(BackupError):
        open_key_file(json.dumps(doc).encode(), PASSWORD)


@pytest.mark.parametrize(
    ("field", "value"),
    [("memory_kib", 4 * 1024 * 1024 + 1), ("iterations", 101), ("lanes", 65), ("memory_kib", 0), ("memory_kib", -5)],
)
def test_key_file_costs_are_bounded(field: str, value: int) -> None:
    doc = json.loads(VALID["key"])
    doc["kdf"][field] = value
    with pytest.raises(IntegrityError):
        open_key_file(json.dumps(doc).encode(), PASSWORD)


# ---------------------------------------------------------------------------- packs, indexes, blobs


@FUZZ
@given(cipher_names, st.binary(max_size=600))
def test_pack_header_arbitrary_bytes(cname: str, data: bytes) -> None:
    typed(lambda: codec.parse_pack_header(CIPHERS[cname], "ff" * 32, data))


@FUZZ
@given(cipher_names, mutations)
def test_pack_header_mutated(cname: str, muts: list[tuple[Any, ...]]) -> None:
    data = mutate(VALID[cname]["pack"], muts)
    valid = VALID[cname]["pack"]
    out = typed(lambda: codec.parse_pack_header(CIPHERS[cname], "ff" * 32, data))
    if cname == "aead" and not isinstance(out, BackupError):
        tail = 4 + int.from_bytes(valid[-4:], "little")
        assert data[-tail:] == valid[-tail:], "a pack header that changed was accepted"


@FUZZ
@given(st.binary(max_size=400), st.integers(0, 2**32 - 1))
def test_pack_header_behind_the_mac(header: bytes, hlen_delta: int) -> None:
    """A header sealed by a key holder but malformed (bad lengths, types, sizes) is still refused cleanly."""
    cipher = CIPHERS["aead"]
    sealed = cipher.seal(header, b"packheader")
    data = b"\0" * (hlen_delta % 300) + sealed + struct.pack("<I", len(sealed))
    typed(lambda: codec.parse_pack_header(cipher, "ff" * 32, data))


@FUZZ
@given(cipher_names, st.binary(max_size=600))
def test_index_arbitrary_bytes(cname: str, data: bytes) -> None:
    typed(lambda: codec.decode_index(CIPHERS[cname], "ff" * 32, data))


@FUZZ
@given(cipher_names, mutations)
def test_index_mutated(cname: str, muts: list[tuple[Any, ...]]) -> None:
    data = mutate(VALID[cname]["index"], muts)
    out = typed(lambda: codec.decode_index(CIPHERS[cname], "ff" * 32, data))
    if cname == "aead" and data != VALID[cname]["index"]:
        assert isinstance(out, IntegrityError), "a changed sealed index must fail authentication"


@FUZZ
@given(cipher_names, st.binary(max_size=800))
def test_index_records_behind_the_mac(cname: str, records: bytes) -> None:
    cipher = CIPHERS[cname]
    sealed = cipher.seal(zstandard.ZstdCompressor().compress(records), b"index")
    typed(lambda: codec.decode_index(cipher, "ff" * 32, sealed))


@FUZZ
@given(
    cipher_names,
    st.binary(max_size=600),
    st.integers(-5, codec.MAX_BLOB_SIZE + 5),
    st.sampled_from([BLOB_DATA, BLOB_TREE]),
)
def test_blob_arbitrary_bytes(cname: str, data: bytes, raw_len: int, btype: bytes) -> None:
    cipher = CIPHERS[cname]
    typed(lambda: codec.decode_blob(cipher, btype, b"\1" * 32, data, raw_len))
    # the same bytes behind a valid MAC (what a key holder could write)
    sealed = cipher.seal(data, b"blob" + btype + b"\1" * 32)
    typed(lambda: codec.decode_blob(cipher, btype, b"\1" * 32, sealed, raw_len))


@FUZZ
@given(cipher_names, mutations)
def test_blob_mutated(cname: str, muts: list[tuple[Any, ...]]) -> None:
    bid, stored, raw_len = VALID[cname]["blob"]
    data = mutate(stored, muts)
    out = typed(lambda: codec.decode_blob(CIPHERS[cname], BLOB_DATA, bid, data, raw_len))
    if not isinstance(out, BackupError):  # only the original content comes out (the id is checked)
        assert out == b"some file content " * 20
    if cname == "aead" and data != stored:
        assert isinstance(out, IntegrityError), "a changed sealed blob must fail authentication"


# ---------------------------------------------------------------------------- trees and documents


@FUZZ
@given(st.binary(max_size=600))
def test_tree_arbitrary_bytes(data: bytes) -> None:
    typed(lambda: decode_tree(data))


@FUZZ
@given(mutations)
def test_tree_mutated(muts: list[tuple[Any, ...]]) -> None:
    typed(lambda: decode_tree(mutate(VALID["plain"]["tree"], muts)))


node_fields = st.fixed_dictionaries(
    {
        "name": st.one_of(st.text(max_size=8), json_values),
        "type": st.one_of(st.sampled_from(["file", "dir", "symlink", "fifo", "device"]), json_values),
    },
    optional={k: json_values for k in ("mode", "mtime_ns", "size", "content", "subtree", "target", "sqlite")},
)


@FUZZ
@given(st.lists(node_fields, max_size=5))
def test_tree_nodes(nodes: list[dict[str, Any]]) -> None:
    out = typed(lambda: decode_tree(json.dumps({"nodes": nodes}).encode()))
    if not isinstance(out, BackupError):  # accepted: then every name is safe to create
        for n in out:
            assert n.name not in ("", ".", "..") and "/" not in n.name and "\0" not in n.name
            assert n.type in ("file", "dir", "symlink")


@FUZZ
@given(cipher_names, st.binary(max_size=600), st.sampled_from([b"head", b"snapshot"]))
def test_document_arbitrary_bytes(cname: str, data: bytes, kind: bytes) -> None:
    cipher = CIPHERS[cname]
    for sealed in (data, cipher.seal(data, kind), cipher.seal(zstandard.ZstdCompressor().compress(data), kind)):
        doc = typed(partial(codec.decode_document, cipher, kind, sealed, what="doc"))
        if kind == b"head" and isinstance(doc, dict):
            typed(partial(HeadState.from_json, doc))


@FUZZ
@given(cipher_names, mutations, st.sampled_from(["head", "snapshot"]))
def test_document_mutated(cname: str, muts: list[tuple[Any, ...]], kind: str) -> None:
    valid = VALID[cname][kind]
    data = mutate(valid, muts)
    doc = typed(lambda: codec.decode_document(CIPHERS[cname], kind.encode(), data, what=kind))
    if cname == "aead" and data != valid:
        assert isinstance(doc, IntegrityError)
    if kind == "head" and isinstance(doc, dict):
        typed(lambda: HeadState.from_json(doc))


@FUZZ
@given(json_with({"version": 1, "seq": 3, "snapshots": ["ab" * 32], "indexes": ["cd" * 32], "time": "t"}))
def test_head_fields(data: bytes) -> None:
    typed(lambda: HeadState.from_json(json.loads(data)))


# ---------------------------------------------------------------------------- legacy metadata


class _Store:
    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def get(self, name: str) -> bytes:
        from openclaw_backup.errors import NotFoundError

        if name not in self.files:
            raise NotFoundError(name)
        return self.files[name]

    def list(self, prefix: str) -> list[str]:
        return sorted(n for n in self.files if n.startswith(prefix))


META = "backups/openclaw-backup-20260102-000000.tar.gz.meta.json"


@FUZZ
@given(st.binary(max_size=500))
def test_legacy_meta_arbitrary_bytes(data: bytes) -> None:
    typed(lambda: parse_meta(data, META, store=_Store({})))
    typed(lambda: find_latest(_Store({"latest-backup.json": data, META: data})))


@FUZZ
@given(mutations)
def test_legacy_meta_mutated(muts: list[tuple[Any, ...]]) -> None:
    typed(lambda: parse_meta(mutate(VALID["meta"], muts), META, store=_Store({})))


@FUZZ
@given(json_with(json.loads(VALID["meta"])))
def test_legacy_meta_fields(data: bytes) -> None:
    typed(lambda: parse_meta(data, META, store=_Store({})))
    latest = json.dumps({"latest": json.loads(data).get("parent")}).encode()
    typed(lambda: find_latest(_Store({"latest-backup.json": latest, META: data})))


# ---------------------------------------------------------------------------- declared-huge sizes


def zstd_frame(declared: int) -> bytes:
    """A 17-byte zstd frame whose header claims ``declared`` bytes of content (and holds none)."""
    magic = struct.pack("<I", 0xFD2FB528)
    header = bytes([(3 << 6) | 0x20]) + struct.pack("<Q", declared)  # 8-byte content size, single segment
    last_empty_raw_block = (1).to_bytes(3, "little")
    return magic + header + last_empty_raw_block


def _huge_cases(declared: int, label: str, kinds: tuple[str, ...]) -> list[Any]:
    cases = []
    frame = zstd_frame(declared)
    for cname in ("plain", "aead"):
        cipher = CIPHERS[cname]
        blob = cipher.seal(b"\1" + frame, b"blob" + BLOB_DATA + b"\1" * 32)
        fns = {
            "blob": lambda c=cipher, b=blob: codec.decode_blob(c, BLOB_DATA, b"\1" * 32, b, 1000),
            "index": lambda c=cipher: codec.decode_index(c, "ff" * 32, c.seal(frame, b"index")),
            "document": lambda c=cipher: codec.decode_document(c, b"head", c.seal(frame, b"head"), what="head"),
        }
        cases += [pytest.param(fns[k], id=f"{k}-{cname}-{label}") for k in kinds]
    return cases


@pytest.mark.parametrize(
    "decode",
    _huge_cases(2**40, "1TiB", ("blob", "index", "document")) + _huge_cases(200 * 2**20, "200MiB", ("blob",)),
)
def test_declared_huge_size_is_refused_without_allocating_it(decode: Callable[[], Any]) -> None:
    """A 17-byte zstd frame that claims more than the reader allows: refused before any allocation."""
    out, peak = bounded(decode)
    assert isinstance(out, IntegrityError)
    assert peak < MEMORY_BOUND, f"peak {peak / 2**20:.0f} MiB"


@pytest.mark.parametrize("decode", _huge_cases(200 * 2**20, "200MiB", ("index", "document")))
def test_declared_size_within_the_document_limit_is_bounded_by_it(decode: Callable[[], Any]) -> None:
    """Index files and documents may legitimately be large (``MAX_DOCUMENT_SIZE``, 256 MiB): a frame
    claiming 200 MiB is refused once its content runs out, after reserving at most that limit.
    (Observed: the reader reserves the declared size up front — an amplification from 17 bytes to
    200 MiB of address space, bounded by the limit; see docs/reliability.md.)"""
    out, peak = bounded(decode)
    assert isinstance(out, IntegrityError)
    assert peak <= codec.MAX_DOCUMENT_SIZE + MEMORY_BOUND


@pytest.mark.parametrize(
    "decode",
    [
        pytest.param(
            lambda: codec.decode_index(
                CIPHERS["plain"], "ff" * 32, zstandard.ZstdCompressor().compress(b"\0" * 32 + b"\xff\xff\xff\xff")
            ),
            id="index-count-2**32",
        ),
        pytest.param(
            lambda: codec.parse_pack_header(CIPHERS["plain"], "ff" * 32, b"\0" * 40 + b"\xff\xff\xff\x7f"),
            id="pack-header-length-2**31",
        ),
        pytest.param(
            lambda: codec.decode_blob(CIPHERS["plain"], BLOB_DATA, b"\1" * 32, b"\0abc", 2**40),
            id="blob-raw-length-2**40",
        ),
        pytest.param(
            lambda: decode_tree(
                json.dumps(
                    {"nodes": [{"name": "x", "type": "file", "mode": 0, "mtime_ns": 0, "size": 2**60, "content": []}]}
                ).encode()
            ),
            id="tree-file-size-2**60",
        ),
    ],
)
def test_declared_huge_counts_and_lengths_are_refused_cheaply(decode: Callable[[], Any]) -> None:
    out, peak = bounded(decode)
    assert isinstance(out, BackupError)
    assert peak < MEMORY_BOUND


# ---------------------------------------------------------------------------- pinned failures


@pytest.mark.parametrize("parser", ["config", "key", "tree", "document"])
def test_deeply_nested_json_is_a_typed_error(parser: str) -> None:
    deep = b"[" * 200_000
    fns: dict[str, Callable[[], Any]] = {
        "config": lambda: RepoConfig.from_bytes(deep),
        "key": lambda: parse_key_file(deep),
        "tree": lambda: decode_tree(b'{"nodes":' + deep),
        "document": lambda: codec.decode_document(
            CIPHERS["plain"], b"head", zstandard.ZstdCompressor().compress(deep), what="head"
        ),
    }
    with pytest.raises(BackupError):
        fns[parser]()


@pytest.mark.parametrize("parser", ["config", "key", "head"])
def test_json_infinity_is_a_typed_error(parser: str) -> None:
    if parser == "config":
        doc = json.loads(VALID["config"])
        doc["pack_size"] = 1e999
        fn: Callable[[], Any] = lambda: RepoConfig.from_bytes(json.dumps(doc).encode())  # noqa: E731
    elif parser == "key":
        doc = json.loads(VALID["key"])
        doc["kdf"]["memory_kib"] = 1e999
        fn = lambda: open_key_file(json.dumps(doc).encode(), PASSWORD)  # noqa: E731
    else:
        fn = lambda: HeadState.from_json(json.loads('{"seq": 1e999, "snapshots": [], "indexes": []}'))  # noqa: E731
    with pytest.raises(BackupError):
        fn()


def test_config_chunker_profile_accepted_means_usable() -> None:
    doc = json.loads(VALID["config"])
    doc["chunker"] = {"min": 1000, "avg": 1000, "max": 1000}
    with pytest.raises(BackupError):
        _config_then_repository(json.dumps(doc).encode())


@pytest.mark.parametrize("tree", [None, "zz", 5])
def test_malformed_snapshot_document_is_a_typed_error(tree: Any) -> None:
    from openclaw_backup.maintenance import check
    from openclaw_backup.reporter import Reporter

    repo = Repository.init(MemoryBackend(), password=None)
    doc: dict[str, Any] = {"version": 1, "time": "2026-01-01T00:00:00", "roots": {}, "host": ""}
    if tree is not None:
        doc["tree"] = tree
    sid = repo.put_immutable("snapshots", codec.encode_document(repo.cipher, b"snapshot", doc))
    repo.publish(add_snapshots=[sid])
    check(Repository.open(repo.backend, password=None), reporter=Reporter())
