"""Files that change while a backup reads them, and damaged databases: what the snapshot holds.

* a log appended to by another process during a cold-cache backup is in the snapshot, as it was
  when opened (never left out), and a prefix of the final file;
* a file rewritten in place throughout the backup keeps the parent snapshot's version (found in the
  parent snapshot's trees, not the local cache), with a warning, and the backup says it is degraded;
* a damaged WAL database (a corrupted page in the main file, rows only in the WAL) is stored as a
  raw set and restored with its WAL, so the WAL's rows come back;
* what SQLite said about a captured database is in its tree node.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import apsw

from openclaw_backup.filecache import FileCache
from openclaw_backup.reporter import Reporter
from openclaw_backup.sqlite_capture import SQLITE_VERSION
from tests.support.repos import local_repo, run_backup, run_restore, snapshot_nodes
from tests.support.trees import past_ns, write

REC = 64  # bytes per log record

APPENDER = r"""
import os, sys, time
path, ready = sys.argv[1], sys.argv[2]
n = 0
with open(path, "ab", buffering=0) as f:
    while True:
        f.write(b"%063d\n" % (10**9 + n))
        n += 1
        if n == 200:
            open(ready, "w").close()
        if n % 50 == 0:
            time.sleep(0.001)
"""

def _start(script: str, path: Path, tmp: Path) -> subprocess.Popen[bytes]:
    ready = tmp / f"ready-{path.name}"
    proc = subprocess.Popen([sys.executable, "-c", script, str(path), str(ready)])
    deadline = time.monotonic() + 20
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the writer does not run"
        time.sleep(0.005)
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait(10)


def test_log_appended_during_a_cold_backup_is_in_the_snapshot(tmp_path: Path) -> None:
    src = tmp_path / "src"
    log = src / "agents" / "main" / "session.jsonl"
    write(log, b"".join(b"%063d\n" % i for i in range(400_000)), mtime_ns=past_ns(60))  # 25.6 MB
    initial = log.stat().st_size
    repo = local_repo(tmp_path / "repo")
    proc = _start(APPENDER, log, tmp_path)
    try:
        res = run_backup(repo, {"s": src}, cache=FileCache(None))  # a cold cache: every file is read
    finally:
        _stop(proc)
    assert not res.degraded, res.warnings
    node = snapshot_nodes(repo)["s/agents/main/session.jsonl"]
    assert node.size >= initial
    out = tmp_path / "out"
    run_restore(repo, "latest", {"s": out})
    stored = (out / "agents/main/session.jsonl").read_bytes()
    assert len(stored) == node.size and len(stored) % REC == 0
    assert log.read_bytes().startswith(stored), "the stored log is not a state the file really had"
    assert res.stats["files_grown"] + res.stats["files_read"] >= 1


class _RewriteWhileRead(Reporter):
    """Rewrites ``path`` in place (same size, new first bytes, a new mtime) each time the backup
    reports progress, i.e. while it is reading: a file that never holds still, deterministically."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path, self.version = path, 0

    def progress(self, *, done_bytes: int = 0, done_items: int = 0) -> None:
        if done_bytes:
            self.version += 1
            fd = os.open(self.path, os.O_WRONLY)
            try:
                os.pwrite(fd, bytes([self.version % 250 + 1]) * 4096, 0)
            finally:
                os.close(fd)
            os.utime(self.path, ns=(0, past_ns(30) + self.version))


def test_rewritten_in_place_keeps_the_parent_snapshots_version(tmp_path: Path) -> None:
    src = tmp_path / "src"
    state = src / "state.bin"
    write(state, b"\0" * 3_000_000, mtime_ns=past_ns(60))
    repo = local_repo(tmp_path / "repo")
    assert not run_backup(repo, {"s": src}).degraded
    write(src / "other.txt", b"a change, so that a snapshot is made", mtime_ns=past_ns(60))
    # a fresh cache, so the earlier version can only come from the parent snapshot
    res = run_backup(repo, {"s": src}, cache=FileCache(None), workers=1, reporter=_RewriteWhileRead(state))
    assert res.degraded and res.stats["files_previous"] == 1
    assert any("state.bin" in w and "previous snapshot's version is kept" in w for w in res.warnings), res.warnings
    assert snapshot_nodes(repo)["s/state.bin"].size == 3_000_000
    assert _restored(repo, tmp_path, "state.bin") == b"\0" * 3_000_000


def test_rewritten_in_place_with_no_earlier_version_is_named(tmp_path: Path) -> None:
    src = tmp_path / "src"
    state = src / "state.bin"
    write(state, b"\0" * 3_000_000, mtime_ns=past_ns(60))
    write(src / "other.txt", b"other", mtime_ns=past_ns(60))
    repo = local_repo(tmp_path / "repo")
    res = run_backup(repo, {"s": src}, workers=1, reporter=_RewriteWhileRead(state))
    assert res.degraded and res.stats["files_skipped"] == 1
    assert any("state.bin" in w and "NOT in this snapshot" in w for w in res.warnings), res.warnings
    assert "s/state.bin" not in snapshot_nodes(repo) and "s/other.txt" in snapshot_nodes(repo)


def _restored(repo: object, tmp: Path, rel: str) -> bytes:
    out = tmp / f"out-{time.monotonic_ns()}"
    run_restore(repo, "latest", {"s": out})  # type: ignore[arg-type]
    return (out / rel).read_bytes()


def _damaged_wal_db(db: Path) -> apsw.Connection:
    """A WAL database whose table ``old`` lives in the main file (one of its pages then corrupted)
    and whose table ``new`` lives only in the WAL; the returned writer keeps the WAL in place."""
    w = apsw.Connection(str(db))
    w.execute("PRAGMA journal_mode=wal")
    w.execute("PRAGMA wal_autocheckpoint=0")
    w.execute("CREATE TABLE old (id INTEGER PRIMARY KEY, body TEXT)")
    w.execute("CREATE TABLE new (id INTEGER PRIMARY KEY, body TEXT CHECK (octet_length(body) < 1000))")
    with w:
        w.executemany("INSERT INTO old(body) VALUES (?)", [("o" * 500,) for _ in range(400)])
    w.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with w:
        w.executemany("INSERT INTO new(body) VALUES (?)", [(f"row {i}",) for i in range(250)])
    data = bytearray(db.read_bytes())
    page = 4096
    data[page * 5 : page * 5 + 12] = b"\x0d\xff\xff" + b"\xff" * 9  # a leaf of `old`, not in the WAL
    with open(db, "r+b") as f:
        f.write(data)
    return w


def test_damaged_wal_database_restores_with_its_wal(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "agents").mkdir(parents=True)
    db = src / "agents" / "agent.sqlite"
    writer = _damaged_wal_db(db)
    try:
        repo = local_repo(tmp_path / "repo")
        res = run_backup(repo, {"s": src}, workers=1)
    finally:
        writer.close()
    assert res.degraded and res.stats["sqlite_degraded"] == 1
    assert any("agent.sqlite" in w and "raw set" in w and "-wal" in w for w in res.warnings), res.warnings
    nodes = snapshot_nodes(repo)
    assert nodes["s/agents/agent.sqlite"].sqlite_info["capture"] == "raw set"  # type: ignore[index]
    assert nodes["s/agents/agent.sqlite-wal"].size > 0
    out = tmp_path / "out"
    run_restore(repo, "latest", {"s": out})
    con = apsw.Connection(str(out / "agents" / "agent.sqlite"))
    try:
        rows = [r[0] for r in con.execute("SELECT body FROM new ORDER BY id")]
    finally:
        con.close()
    assert rows == [f"row {i}" for i in range(250)], "the WAL's committed rows did not come back"


def test_captured_database_records_what_sqlite_said(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    db = src / "memory.sqlite"
    w = apsw.Connection(str(db))
    w.execute("PRAGMA journal_mode=wal")
    w.execute("CREATE TABLE t (x TEXT CHECK (octet_length(x) < 100))")
    w.execute("CREATE VIRTUAL TABLE f USING fts5(body)")
    with w:
        w.executemany("INSERT INTO t VALUES (?)", [(f"v{i}",) for i in range(500)])
        w.executemany("INSERT INTO f VALUES (?)", [(f"word{i} text",) for i in range(500)])
    try:
        repo = local_repo(tmp_path / "repo")
        cache = FileCache(tmp_path / "files.db")
        res = run_backup(repo, {"s": src}, cache=cache)
        assert not res.degraded, res.warnings
        info = snapshot_nodes(repo)["s/memory.sqlite"].sqlite_info
        assert info is not None and info["journal_mode"] == "wal" and info["sqlite_version"] == SQLITE_VERSION
        assert info["capture"] in ("in place", "copied") and info["pages"] > 1 and info["page_size"] == 4096
        assert "s/memory.sqlite-wal" not in snapshot_nodes(repo), "a sidecar was stored beside a captured database"
        # unchanged: the cached capture reproduces the same tree, so nothing is published
        again = run_backup(repo, {"s": src}, cache=FileCache(tmp_path / "files.db"))
        assert again.unchanged, "the cached database changed the tree"
    finally:
        w.close()


def test_the_file_cache_is_private(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "secret-project" / "plan.md", b"names are plaintext in the cache")
    cache_path = tmp_path / "cache" / "files.db"
    run_backup(local_repo(tmp_path / "repo"), {"s": src}, cache=FileCache(cache_path))
    assert cache_path.exists() and cache_path.stat().st_mode & 0o777 == 0o600
