"""Engine parts one at a time: chunker, codec, excludes, file cache and racy timestamps, files that
change while read, SQLite capture, keys, unencrypted repositories."""

from __future__ import annotations

import hashlib
import io
import os
import random
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
import zstandard

from openclaw_backup import archiver, codec
from openclaw_backup.backends.local import LocalBackend
from openclaw_backup.chunker import DEFAULT_PROFILE, SQLITE_PROFILE, Chunker
from openclaw_backup.codec import BLOB_DATA, BLOB_TREE
from openclaw_backup.crypto import OVERHEAD, Cipher, PlainCipher
from openclaw_backup.errors import IntegrityError, UsageError, WrongPasswordError
from openclaw_backup.filecache import FileCache
from openclaw_backup.reporter import Reporter
from openclaw_backup.repository import Repository
from openclaw_backup.sources import Excluder
from tests.support.repos import (
    PASSWORD,
    WEAK,
    encode_blob,
    local_repo,
    new_repo,
    run_backup,
    run_restore,
    snapshot_nodes,
)
from tests.support.trees import fingerprint, past_ns, sample_state, set_mtimes, write

# ---------------------------------------------------------------------------- chunker

SEED = 0x1234_5678_9ABC_DEF
GOLDEN_DEFAULT = [606129, 2072867, 3204424, 4325237, 6128555, 6965697, 8674011, 10358912, 11335934, 12564881,
                  13828676, 15222157, 16463409, 17850908, 19328299, 20971520]  # fmt: skip
GOLDEN_SQLITE_COUNT = 967
GOLDEN_SQLITE_FIRST = [19012, 35487, 53189, 69941, 90285, 123042, 153150, 165277, 179062, 214578]
GOLDEN_SQLITE_SHA256 = "d5dffee9037c6a8edcfbd415191730218137d611dfbd4478a3e34a0cdc1e5256"


@pytest.fixture(scope="module")
def buf20() -> bytes:
    return random.Random(2024).randbytes(20 << 20)


def _cuts(chunks: object) -> list[int]:
    out, off = [], 0
    for c in chunks:  # type: ignore[attr-defined]
        off += len(c)
        out.append(off)
    return out


def test_chunker_golden_cut_points(buf20: bytes) -> None:
    assert _cuts(Chunker(DEFAULT_PROFILE, SEED).cut_bytes(buf20)) == GOLDEN_DEFAULT
    sq = _cuts(Chunker(SQLITE_PROFILE, SEED).cut_bytes(buf20))
    assert len(sq) == GOLDEN_SQLITE_COUNT and sq[:10] == GOLDEN_SQLITE_FIRST
    assert hashlib.sha256(",".join(map(str, sq)).encode()).hexdigest() == GOLDEN_SQLITE_SHA256
    for prof, cuts in ((DEFAULT_PROFILE, GOLDEN_DEFAULT), (SQLITE_PROFILE, sq)):
        sizes = [b - a for a, b in zip([0, *cuts], cuts, strict=False)]
        assert all(prof.min_size <= s <= prof.max_size for s in sizes[:-1])
        assert sizes[-1] <= prof.max_size


def test_chunker_seed_matters_and_stream_agrees(buf20: bytes) -> None:
    for prof in (DEFAULT_PROFILE, SQLITE_PROFILE):
        a = Chunker(prof, SEED)
        b = Chunker(prof, SEED + 1)
        ca, cb = _cuts(a.cut_bytes(buf20)), _cuts(b.cut_bytes(buf20))
        assert ca != cb
        assert _cuts(a.cut_stream(io.BytesIO(buf20))) == ca
        assert _cuts(b.cut_stream(io.BytesIO(buf20))) == cb
        assert b"".join(bytes(c) for c in a.cut_stream(io.BytesIO(buf20[:3_000_000]))) == buf20[:3_000_000]
    assert list(Chunker(DEFAULT_PROFILE, SEED).cut_bytes(b"")) == []
    assert list(Chunker(DEFAULT_PROFILE, SEED).cut_stream(io.BytesIO(b""))) == []


def test_chunker_seed_is_per_repository(tmp_path: Path, buf20: bytes) -> None:
    r1 = local_repo(tmp_path / "r1")
    r2 = new_repo()
    data = buf20[:6_000_000]
    c1 = _cuts(r1.chunker.cut_bytes(data))
    assert c1 != _cuts(r2.chunker.cut_bytes(data))
    again = Repository.open(LocalBackend(tmp_path / "r1"), password=PASSWORD)
    assert _cuts(again.chunker.cut_bytes(data)) == c1  # derived from the key: stable


# ---------------------------------------------------------------------------- codec

CIPHERS = {"aes": lambda: Cipher(os.urandom(64)), "plain": lambda: PlainCipher(os.urandom(32))}


@pytest.mark.parametrize("kind", list(CIPHERS))
@pytest.mark.parametrize("btype", [BLOB_DATA, BLOB_TREE])
def test_blob_roundtrip_and_tampering(kind: str, btype: bytes) -> None:
    c = CIPHERS[kind]()
    other = BLOB_TREE if btype == BLOB_DATA else BLOB_DATA
    for data in (b"x", b"small but > 64 bytes " * 4, b"\0" * 100_000, os.urandom(100_000)):
        bid = c.blob_id(data)
        stored = encode_blob(c, btype, data, bid)
        assert codec.decode_blob(c, btype, bid, stored, len(data)) == data
        bad_id = c.blob_id(data + b"!")
        flipped = bytearray(stored)
        flipped[len(flipped) // 2] ^= 1
        for args in (
            (btype, bad_id, stored, len(data)),
            (btype, bid, stored, len(data) + 1),
            (btype, bid, stored[:-1], len(data)),
            (btype, bid, stored[: min(5, len(stored) - 1)], len(data)),
            (btype, bid, bytes(flipped), len(data)),
            (btype, bid, b"", len(data)),
        ):
            with pytest.raises(IntegrityError):
                codec.decode_blob(c, *args)
        if c.encrypted:  # the type is bound as associated data
            with pytest.raises(IntegrityError):
                codec.decode_blob(c, other, bid, stored, len(data))


def test_blob_compression_only_when_it_pays() -> None:
    c = Cipher(os.urandom(64))
    zeros, noise = b"\0" * 100_000, os.urandom(100_000)
    assert len(encode_blob(c, BLOB_DATA, zeros, c.blob_id(zeros))) < 1_000
    assert len(encode_blob(c, BLOB_DATA, noise, c.blob_id(noise))) == 1 + len(noise) + OVERHEAD
    tiny = b"a" * 63
    assert len(encode_blob(c, BLOB_DATA, tiny, c.blob_id(tiny))) == 1 + 63 + OVERHEAD


def _seal_blob(c: Cipher, body: bytes, bid: bytes) -> bytes:
    return c.seal(b"\x01" + body, b"blob" + BLOB_DATA + bid)


def _frame_claiming(size: int) -> bytes:
    """A valid zstd frame whose header claims ``size`` bytes of content but holds five."""
    return (
        struct.pack("<I", 0xFD2FB528)
        + bytes([0xE0])  # single segment, 8-byte frame content size
        + struct.pack("<Q", size)
        + ((5 << 3) | 1).to_bytes(3, "little")  # last block, raw, 5 bytes
        + b"hello"
    )


def test_zstd_bomb_without_content_size_is_bounded() -> None:
    c = Cipher(os.urandom(64))
    bid = os.urandom(32)
    bomb = zstandard.ZstdCompressor(write_content_size=False).compress(b"\0" * (64 << 20))
    tracemalloc.start()
    try:
        with pytest.raises(IntegrityError):
            codec.decode_blob(c, BLOB_DATA, bid, _seal_blob(c, bomb, bid), 100)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


@pytest.mark.parametrize("kind", ["real-64MiB", "claims-64GiB"])
def test_zstd_bomb_with_content_size_is_bounded(kind: str) -> None:
    c = Cipher(os.urandom(64))
    bid = os.urandom(32)
    if kind == "real-64MiB":
        bomb = zstandard.ZstdCompressor().compress(b"\0" * (64 << 20))
    else:
        bomb = _frame_claiming(64 << 30)
    stored = _seal_blob(c, bomb, bid)
    tracemalloc.start()
    try:
        with pytest.raises(IntegrityError):
            codec.decode_blob(c, BLOB_DATA, bid, stored, 100)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"decoding a 100-byte blob allocated {peak >> 20} MiB"


def test_documents_and_index_are_bound_to_their_kind() -> None:
    c = Cipher(os.urandom(64))
    doc = codec.encode_document(c, b"snapshot", {"a": 1})
    assert codec.decode_document(c, b"snapshot", doc, what="s") == {"a": 1}
    for bad in (doc[:-1], doc[:10], b""):
        with pytest.raises(IntegrityError):
            codec.decode_document(c, b"snapshot", bad, what="s")
    with pytest.raises(IntegrityError):
        codec.decode_document(c, b"head", doc, what="s")
    with pytest.raises(IntegrityError):
        codec.decode_document(c, b"x", c.seal(zstandard.ZstdCompressor().compress(b"[1]"), b"x"), what="x")
    p = PlainCipher(b"s")
    with pytest.raises(IntegrityError):  # a truncated index in an unencrypted repository
        idx = codec.encode_index(p, {"ab" * 32: [(b"\1" * 32, codec.BlobRef("ab" * 32, BLOB_DATA, 0, 10, 10))]})
        raw = zstandard.ZstdDecompressor().decompress(idx)
        codec.decode_index(p, "x", zstandard.ZstdCompressor().compress(raw[:-3]))



def test_blobs_are_read_in_merged_ranges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Neighbouring blobs come back in a few ranged reads, each blob verified: what the restorer's
    speed rests on (and a damaged blob inside a merged range is still refused)."""
    src = tmp_path / "src"
    for i in range(300):
        write(src / f"f{i:03}.txt", f"file {i}\n".encode() * 40)
    repo = new_repo()
    run_backup(repo, {"s": src})
    files = [n for n in snapshot_nodes(repo).values() if n.type == "file"]
    wants = []
    for n in files:
        bid = bytes.fromhex(n.content[0])
        wants.append((bid, repo.blob_ref(bid, BLOB_DATA), n.name))
    assert len(wants) == 300
    stored: dict[str, bytes] = {}
    reads: list[str] = []

    def get(name: str, *, offset: int = 0, length: int | None = None) -> bytes:
        reads.append(name)
        if name not in stored:
            stored[name] = real_get(name)
        return stored[name][offset : None if length is None else offset + length]

    real_get = repo.backend.get
    monkeypatch.setattr(repo.backend, "get", get)
    got = dict(repo.read_blobs(wants))
    assert len(got) == 300 and all(got[f"f{i:03}.txt"] == f"file {i}\n".encode() * 40 for i in range(300))
    assert len(reads) <= 3, reads  # a few ranged reads, not one per blob
    _, ref, _ = wants[150]
    name = f"data/{ref.pack[:2]}/{ref.pack}"
    damaged = bytearray(stored[name])
    damaged[ref.offset + ref.length // 2] ^= 1
    stored[name] = bytes(damaged)
    with pytest.raises(IntegrityError):
        dict(repo.read_blobs([w for w in wants if w[1].pack == ref.pack]))


# ---------------------------------------------------------------------------- excludes


def test_exclude_patterns() -> None:
    ex = Excluder(["node_modules/", "*.log", "!keep.log", "root-npm/_cacache/", "**/x/y", "# comment", ""])
    cases = [
        ("state/node_modules", True, True),
        ("state/a/b/node_modules", True, True),
        ("state/node_modules", False, False),  # a file of that name: dir-only pattern
        ("state/debug.log", False, True),
        ("state/deep/er/debug.log", False, True),
        ("state/logs.d", True, False),
        ("state/keep.log", False, False),
        ("state/sub/keep.log", False, False),
        ("state/keep.log.1", False, False),
        ("root-npm/_cacache", True, True),
        ("root-npm/_cacache", False, False),
        ("root-npm/sub/_cacache", True, False),
        ("root-npm/_cacache2", True, False),
        ("state/x/y", True, True),
        ("state/x/y", False, True),
        ("state/a/b/x/y", False, True),
        ("state/x/yz", False, False),
        ("state/ax/y", False, False),
        ("state/x/y/z", False, False),
        ("state/plain.txt", False, False),
    ]
    for rel, is_dir, want in cases:
        assert ex.excluded(rel, is_dir=is_dir) is want, (rel, is_dir)
    # the last match wins: a later pattern excludes again
    assert Excluder(["*.log", "!keep.log", "keep.*"]).excluded("s/keep.log", is_dir=False)
    assert not Excluder([]).excluded("s/a.log", is_dir=False)


def test_excludes_in_a_backup(tmp_path: Path) -> None:
    src = tmp_path / "state"
    for rel in ("a.txt", "node_modules/m/index.js", "sub/node_modules/x", "debug.log", "keep.log", "sub/keep.log",
                "x/y/inner", "deep/x/y", "deep/x/z", "_cacache/c"):  # fmt: skip
        write(src / rel, rel.encode())
    npm = tmp_path / "npm"
    write(npm / "_cacache/index", b"i")
    write(npm / "bin/npx", b"n")
    repo = new_repo()
    res = run_backup(
        repo, {"state": src, "root-npm": npm}, excludes=["node_modules/", "*.log", "!keep.log", "root-npm/_cacache/",
                                                         "**/x/y"]
    )  # fmt: skip
    assert res.snapshot_id
    paths = set(snapshot_nodes(repo))
    assert paths == {
        "state", "state/a.txt", "state/sub", "state/keep.log", "state/sub/keep.log", "state/x", "state/deep",
        "state/deep/x", "state/deep/x/z", "state/_cacache", "state/_cacache/c", "root-npm", "root-npm/bin",
        "root-npm/bin/npx",
    }  # fmt: skip


# ---------------------------------------------------------------------------- file cache, racy timestamps


def test_file_cache_unchanged_tree_reads_nothing(tmp_path: Path) -> None:
    src = tmp_path / "src"
    sample_state(src)
    set_mtimes(src, past_ns(60))
    repo = new_repo()
    cache_path = tmp_path / "files.db"
    r1 = run_backup(repo, {"s": src}, cache=FileCache(cache_path))
    assert r1.stats["files_read"] == r1.stats["files"] > 5 and r1.stats["files_cached"] == 0
    r2 = run_backup(repo, {"s": src}, cache=FileCache(cache_path))
    assert r2.unchanged and r2.snapshot_id is None and r2.parent_id == r1.snapshot_id
    assert r2.stats["files_read"] == 0 and r2.stats["bytes_read"] == 0
    assert r2.stats["files_cached"] == r1.stats["files"]

    write(src / "agents/main/agent/notes.md", b"changed", mtime_ns=past_ns(60))
    r3 = run_backup(repo, {"s": src}, cache=FileCache(cache_path))
    assert r3.snapshot_id and r3.stats["files_read"] == 1
    out = tmp_path / "out" / "s"
    run_restore(repo, "latest", {"s": out})
    assert (out / "agents/main/agent/notes.md").read_bytes() == b"changed"

    # without a cache everything is read again, and the result is the same tree
    r4 = run_backup(repo, {"s": src}, cache=FileCache(None))
    assert r4.unchanged and r4.stats["files_read"] == r1.stats["files"]


def _coarse_signature(st: os.stat_result, extra: str = "") -> str:
    """A signature as a file system with a coarse ctime tick would give: a rewrite in the same tick
    keeps size, mtime, ctime and inode."""
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}:{extra}"


@pytest.mark.parametrize("racy", [True, False])
def test_racy_timestamp_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, racy: bool) -> None:
    monkeypatch.setattr(archiver, "signature", _coarse_signature)
    src = tmp_path / "src"
    f = write(src / "note.txt", b"version-1")
    mtime = time.time_ns() if racy else past_ns(60)
    os.utime(f, ns=(mtime, mtime))
    os.utime(src, ns=(mtime - 10**9, mtime - 10**9))
    repo = new_repo()
    cache_path = tmp_path / "files.db"
    assert run_backup(repo, {"s": src}, cache=FileCache(cache_path)).snapshot_id
    assert (str(f) in FileCache(cache_path).entries) is not racy  # a racy file is not recorded

    f.write_bytes(b"version-2")  # same size, and the same mtime again
    os.utime(f, ns=(mtime, mtime))
    os.utime(src, ns=(mtime - 10**9, mtime - 10**9))
    r2 = run_backup(repo, {"s": src}, cache=FileCache(cache_path))
    out = tmp_path / "out" / "s"
    run_restore(repo, "latest", {"s": out})
    if racy:
        assert r2.stats["files_read"] == 1 and r2.snapshot_id
        assert (out / "note.txt").read_bytes() == b"version-2"
    else:  # the control: an old file with an unchanged signature is trusted (this is the cache's point)
        assert r2.stats["files_read"] == 0 and r2.unchanged
        assert (out / "note.txt").read_bytes() == b"version-1"


# ---------------------------------------------------------------------------- files that change while read

REC = 16


def _stored(repo: Repository, tmp: Path, root: str, rel: str) -> bytes | None:
    snap = repo.find_snapshot("latest")
    node = snapshot_nodes(repo).get(f"{root}/{rel}")
    if node is None:
        return None
    out = tmp / "restored" / root
    run_restore(repo, snap.id, {root: out}, includes=[f"{root}/{rel}"])
    data = (out / rel).read_bytes()
    assert len(data) == node.size
    return data


def test_appended_while_read_is_never_torn(tmp_path: Path) -> None:
    src = tmp_path / "src"
    log = src / "session.jsonl"
    n0 = 200_000
    write(log, b"".join(b"%015d\n" % i for i in range(n0)), mtime_ns=past_ns(60))
    write(src / "other.txt", b"other")
    repo = new_repo(pack_size=1 << 20)
    stop = threading.Event()

    def appender() -> None:
        n = n0
        with open(log, "ab", buffering=0) as f:
            while not stop.is_set():
                f.write(b"%015d\n" % n)
                n += 1
                time.sleep(0.0001)

    t = threading.Thread(target=appender)
    t.start()
    try:
        time.sleep(0.05)
        res = run_backup(repo, {"s": src})
    finally:
        stop.set()
        t.join()
    final = log.read_bytes()
    stored = _stored(repo, tmp_path, "s", "session.jsonl")
    assert stored is not None, "a file that only grew was left out"
    assert not res.warnings, res.warnings  # it grew: stored as it was when opened, nothing to warn about
    assert final.startswith(stored) and len(stored) % REC == 0 and len(stored) >= n0 * REC


REWRITER = r"""
import os, sys, time
path, base, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3]
v = 0
while not os.path.exists(stop):
    v += 1
    data = bytes([v % 251 + 1]) * (base + v * 7)
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    os.write(fd, data)
    os.close(fd)
    time.sleep(0.002 * (v % 3))
    if v == 3:
        open(stop + ".running", "w").close()
"""


def test_rewritten_while_read_is_never_torn(tmp_path: Path) -> None:
    """Another process rewrites a file in place, again and again; each version has one byte value and
    its own size, so a torn copy would mix values or disagree in size."""
    src = tmp_path / "src"
    f = src / "state.bin"
    base = 2_000_000
    write(f, b"\0" * base, mtime_ns=past_ns(60))
    repo = new_repo(pack_size=1 << 20)
    run_backup(repo, {"s": src}, cache=FileCache(tmp_path / "files.db"))  # a previous version to fall back to
    stop = tmp_path / "stop"
    proc = subprocess.Popen([sys.executable, "-c", REWRITER, str(f), str(base), str(stop)])
    try:
        deadline = time.monotonic() + 20
        while not Path(f"{stop}.running").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the rewriter does not run"
            time.sleep(0.005)
        res = run_backup(repo, {"s": src}, cache=FileCache(tmp_path / "files.db"), force=True)
    finally:
        stop.touch()
        proc.wait(20)
    stored = _stored(repo, tmp_path, "s", "state.bin")
    warned = any("kept changing" in w and "state.bin" in w for w in res.warnings)
    if stored is None:
        assert warned, "left out without a warning"
        return
    values = set(stored)
    assert len(values) <= 1, f"torn copy: bytes of {len(values)} versions mixed"
    if not stored or len(stored) % 4096 == 0:
        return  # the file as it really was for a moment: just truncated, or part way through one write
    (value,) = values
    if value == 0:
        assert len(stored) == base  # the previous snapshot's version (kept with a warning, or read before)
    else:  # one whole version: its byte value and its size agree
        v, rest = divmod(len(stored) - base, 7)
        assert rest == 0 and v % 251 + 1 == value, "size and content come from different versions"


# ---------------------------------------------------------------------------- SQLite


def test_sqlite_sidecars_not_stored_and_stale_ones_removed(tmp_path: Path) -> None:
    src = tmp_path / "src"
    db = src / "data/app.sqlite"
    db.parent.mkdir(parents=True)
    con = sqlite3.connect(db, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA wal_autocheckpoint=0")
        con.execute("CREATE TABLE t (n INTEGER PRIMARY KEY, s TEXT)")
        con.execute("BEGIN")
        con.executemany("INSERT INTO t VALUES (?, ?)", ((i, "x" * 100) for i in range(5000)))
        con.execute("COMMIT")
        assert (db.parent / "app.sqlite-wal").stat().st_size > 100_000  # the rows live in the WAL only
        write(src / "data/notes", b"plain")
        write(src / "data/notes-wal", b"a plain file that only looks like a sidecar")
        write(src / "data/app.sqlite-journal.bak", b"not a sidecar either")
        repo = new_repo()
        res = run_backup(repo, {"s": src}, scratch=tmp_path / "scratch")
        assert res.snapshot_id and not res.warnings, res.warnings
        assert res.stats["sqlite_captured"] == 1
        assert not list((tmp_path / "scratch").iterdir()), "capture copies left behind"
    finally:
        con.close()
    nodes = snapshot_nodes(repo)
    names = {p.rsplit("/", 1)[-1] for p in nodes}
    assert "app.sqlite" in names and nodes["s/data/app.sqlite"].sqlite
    assert not {"app.sqlite-wal", "app.sqlite-shm"} & names
    assert {"notes-wal", "app.sqlite-journal.bak"} <= names

    out = tmp_path / "out" / "s"
    run_restore(repo, "latest", {"s": out})
    assert sorted(os.listdir(out / "data")) == ["app.sqlite", "app.sqlite-journal.bak", "notes", "notes-wal"]
    write(out / "data/app.sqlite-wal", os.urandom(5000))  # stale sidecars from some other state
    write(out / "data/app.sqlite-shm", os.urandom(5000))
    run_restore(repo, "latest", {"s": out}, includes=["s/data/app.sqlite"])
    assert not (out / "data/app.sqlite-wal").exists() and not (out / "data/app.sqlite-shm").exists()
    check = tmp_path / "check.sqlite"
    check.write_bytes((out / "data/app.sqlite").read_bytes())
    c2 = sqlite3.connect(check)
    try:
        assert c2.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert c2.execute("SELECT count(*) FROM t").fetchone()[0] == 5000
    finally:
        c2.close()


# ---------------------------------------------------------------------------- keys and encryption


def test_key_add_and_passwd(tmp_path: Path) -> None:
    repo_dir = tmp_path / "repo"
    repo = local_repo(repo_dir)
    src = tmp_path / "src"
    sample_state(src)
    run_backup(repo, {"s": src})
    repo.add_key("second password", kdf=WEAK)
    for pw in (PASSWORD, "second password"):
        assert Repository.open(LocalBackend(repo_dir), password=pw).config.id == repo.config.id

    # passwd: add the new key, drop the keys that open with the old password
    repo = Repository.open(LocalBackend(repo_dir), password=PASSWORD)
    repo.add_key("new password", kdf=WEAK)
    old = repo.current_key_names(PASSWORD)
    assert len(old) == 1
    repo.remove_keys(old)
    with pytest.raises(WrongPasswordError):
        Repository.open(LocalBackend(repo_dir), password=PASSWORD)
    fresh = Repository.open(LocalBackend(repo_dir), password="new password")
    out = tmp_path / "out" / "s"
    run_restore(fresh, "latest", {"s": out})
    assert fingerprint(out) == fingerprint(src)
    assert Repository.open(LocalBackend(repo_dir), password="second password").state.snapshots

    with pytest.raises(UsageError):
        fresh.remove_keys(fresh.key_names())  # never the last key
    with pytest.raises(UsageError):
        fresh.add_key("", kdf=WEAK)


def test_unencrypted_repository_names_secrets(tmp_path: Path) -> None:
    src = tmp_path / "src"
    sample_state(src)
    write(src / ".env", b"API_KEY=1")
    write(src / "ok/readme.txt", b"harmless")
    repo = new_repo(password=None)
    reporter = Reporter()
    res = run_backup(repo, {"s": src}, reporter=reporter)
    assert res.snapshot_id
    cred = str(src / "credentials/x.json")
    assert cred in res.clear_secrets and str(src / ".env") in res.clear_secrets
    assert str(src / "ok/readme.txt") not in res.clear_secrets
    # a notice the user sees, but not a skipped input: it does not make the backup "partial" (exit 3)
    assert any("stored in the clear" in w and cred in w for w in reporter.warnings)
    assert not res.warnings

    # an encrypted repository stores neither the secret nor the file's name in the clear
    repo_dir = tmp_path / "enc"
    enc = local_repo(repo_dir)
    res = run_backup(enc, {"s": src})
    assert res.clear_secrets == [] and not res.warnings
    for p in repo_dir.rglob("*"):
        if p.is_file():
            blob = p.read_bytes()
            assert b"sekrit" not in blob and b"credentials" not in blob and b"x.json" not in blob, p


def test_backup_twice_into_the_same_repo_dedups(tmp_path: Path) -> None:
    src = tmp_path / "src"
    sample_state(src)
    repo = new_repo()
    r1 = run_backup(repo, {"s": src})
    copy = tmp_path / "copy"
    write(copy / "big.bin", (src / "media/blob.bin").read_bytes())
    r2 = run_backup(repo, {"c": copy})
    assert r2.snapshot_id and r2.parent_id is None  # other roots: another lineage
    assert r2.stats["bytes_added"] < 2_000 < r1.stats["bytes_added"]
    rep = Reporter()
    assert not rep.warnings
