"""Backups and restores whose file work is shared with a forked process (local store): the same
results as in one process, warnings and typed errors carried back, nothing published on failure."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from openclaw_backup.backends.local import LocalBackend
from openclaw_backup.errors import StoreError
from openclaw_backup.filecache import FileCache
from openclaw_backup.maintenance import check
from openclaw_backup.reporter import Reporter
from tests.support.repos import local_repo, new_repo, run_backup, run_restore
from tests.support.trees import fingerprint, past_ns, sample_state, set_mtimes, write


def _state(root: Path) -> None:
    sample_state(root)
    db = root / "memory/main.sqlite"
    db.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE t (n INTEGER PRIMARY KEY, v BLOB)")
    con.executemany("INSERT INTO t VALUES (?, ?)", ((i, os.urandom(500)) for i in range(3000)))
    con.commit()
    con.close()
    big = os.urandom(3_000_000)
    for name in ("a.bin", "b.bin"):  # equal files: one process stores them, once
        write(root / "media" / name, big)
    for i in range(300):  # many small files, some identical, for the other process
        write(root / "cache" / f"{i:03}.js", b"module.exports = %d;\n" % (i % 7) * (i + 1))
    set_mtimes(root, past_ns(60))  # not "racy": the file cache may keep them


def test_forked_backup_and_restore_roundtrip(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _state(src)
    repo = local_repo(tmp_path / "repo")
    cache = FileCache(tmp_path / "files.db")
    res = run_backup(repo, {"s": src}, cache=cache)
    assert res.snapshot_id and not res.warnings, res.warnings
    assert res.stats["files_read"] == res.stats["files"] and res.stats["sqlite_captured"] == 1
    assert res.stats["bytes_added"] == sum(p.stat().st_size for p in (tmp_path / "repo/data").rglob("*") if p.is_file())
    report = check(repo, read_data=True, reporter=Reporter())
    assert not report.problems, report.problems
    stored = sum(ref.raw_len for ref in repo.index.values() if ref.btype == b"D")
    assert stored < sum(p.stat().st_size for p in src.rglob("*") if p.is_file()) - 2_900_000  # b.bin deduplicated

    again = run_backup(repo, {"s": src}, cache=FileCache(tmp_path / "files.db"))
    assert again.unchanged and again.stats["files_read"] == 0  # the child's files went into the cache too

    out = tmp_path / "out" / "s"
    run_restore(repo, "latest", {"s": out})
    skip = lambda rel: rel.startswith("memory/main.sqlite")  # noqa: E731  # a capture, compared by rows
    assert fingerprint(out, skip=skip) == fingerprint(src, skip=skip)
    con = sqlite3.connect(out / "memory/main.sqlite")
    assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 3000
    con.close()


def test_a_warning_in_the_forked_half_reaches_the_result(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _state(src)
    bad = bytearray((src / "memory/main.sqlite").read_bytes())
    bad[4096 : 4096 + 12] = b"\x0d\xff\xff" + b"\xff" * 9  # the largest file, so the forked half's
    write(src / "memory/main.sqlite", bytes(bad) + os.urandom(4_000_000))
    res = run_backup(local_repo(tmp_path / "repo"), {"s": src})
    assert res.snapshot_id
    assert any("main.sqlite" in w and "stored as a raw set" in w for w in res.warnings), res.warnings


class _RunsOutOfSpace(LocalBackend):
    """A local store that runs out of space after a few packs: while the files are being read
    (the worker never writes to the store itself: what it stores, this process does)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, lock_timeout=5.0)
        self.packs = 0

    def _fill(self, name: str) -> None:
        if name.startswith("data/"):
            self.packs += 1
            if self.packs > 3:
                raise StoreError(f"cannot write {name}: no space left on device", transient=False)

    def put(self, name: str, data: bytes) -> None:
        self._fill(name)
        super().put(name, data)

    def put_file(self, name: str, fd: int, length: int) -> None:  # the worker's packs, stored here
        self._fill(name)
        super().put_file(name, fd, length)


def test_a_store_error_while_the_worker_runs_fails_the_backup_and_publishes_nothing(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _state(src)
    repo = new_repo(_RunsOutOfSpace(tmp_path / "repo"))
    with pytest.raises(StoreError, match="no space left"):
        run_backup(repo, {"s": src})
    assert repo.refresh().snapshots == {} or not repo.snapshots()


def test_forked_backup_from_a_worker_thread(tmp_path: Path) -> None:
    """The supervisor backs up from a thread, with its own signal handlers installed: the forked
    reader must work from there too (and must not run those handlers)."""
    import signal
    import threading

    src = tmp_path / "src"
    _state(src)
    repo = local_repo(tmp_path / "repo")
    seen: list[int] = []
    old = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    results: list[object] = []
    try:
        t = threading.Thread(target=lambda: results.append(run_backup(repo, {"s": src})))
        t.start()
        t.join(120)
    finally:
        signal.signal(signal.SIGTERM, old)
    (res,) = results
    assert res.snapshot_id and not res.warnings  # type: ignore[attr-defined]
    out = tmp_path / "out" / "s"
    run_restore(repo, "latest", {"s": out})
    skip = lambda rel: rel.startswith("memory/main.sqlite")  # noqa: E731
    assert fingerprint(out, skip=skip) == fingerprint(src, skip=skip) and not seen
