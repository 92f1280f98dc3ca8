"""SQLite capture: when the database file is read in place, writers cannot change it under us; when
it cannot be (frames in the WAL), a checked copy is taken; either way the image is one transaction.

Writers in this process use APSW, the same SQLite library the capture uses: two different SQLite
libraries in one process do not see each other's POSIX locks (sqlite.org/howtocorrupt.html 2.2.1),
so a stdlib ``sqlite3`` writer here would prove nothing. Writers with another SQLite run in their own
process (tests/test_sqlite_live_writer.py)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import apsw
import pytest

from openclaw_backup.sqlite_capture import SqliteCaptureError, snapshot


def _make(path: Path, rows: int, *, mode: str) -> None:
    con = sqlite3.connect(path, isolation_level=None)
    con.execute(f"PRAGMA journal_mode={mode}")
    con.execute("CREATE TABLE t (n INTEGER PRIMARY KEY, s BLOB)")
    con.execute("BEGIN")
    con.executemany("INSERT INTO t VALUES (?, ?)", ((i, os.urandom(300)) for i in range(rows)))
    con.execute("COMMIT")
    con.close()


class _Writer:
    """An APSW connection with the small part of the sqlite3 API these tests use."""

    def __init__(self, path: Path, timeout_ms: int) -> None:
        self.con = apsw.Connection(str(path))
        self.con.set_busy_timeout(timeout_ms)

    def execute(self, sql: str) -> apsw.Cursor:
        return self.con.execute(sql)

    def executemany(self, sql: str, rows: object) -> None:
        self.con.executemany(sql, rows)

    def close(self) -> None:
        self.con.close()


def _apsw_writer(path: Path, timeout_ms: int) -> _Writer:
    return _Writer(path, timeout_ms)


def _rows(image: bytes, tmp_path: Path) -> int:
    check = tmp_path / "check.sqlite"
    check.write_bytes(image)
    con = sqlite3.connect(check)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return int(con.execute("SELECT count(*) FROM t").fetchone()[0])
    finally:
        con.close()
        check.unlink()


def test_wal_db_read_in_place_while_a_writer_commits_and_checkpoints(tmp_path: Path) -> None:
    db = tmp_path / "a.sqlite"
    _make(db, 2000, mode="wal")
    assert not Path(f"{db}-wal").exists()
    writer = _apsw_writer(db, 200)
    try:
        with snapshot(str(db), tmp_path / "scratch") as cap:
            image = cap.image
            assert cap.how == "in place"
            head = image.read(4096)
            # A writer commits more rows and asks for a full checkpoint: the rows land in the WAL,
            # but the checkpoint must not write them into the file we are reading.
            writer.execute("BEGIN")
            writer.executemany("INSERT INTO t VALUES (?, ?)", ((i, os.urandom(300)) for i in range(2000, 3000)))
            writer.execute("COMMIT")
            busy, _log, _done = writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            assert busy == 1, "the checkpoint went through while the image was being read"
            data = head + image.read()
        assert _rows(data, tmp_path) == 2000
        assert writer.execute("SELECT count(*) FROM t").fetchone()[0] == 3000
        # frames now sit in the WAL: the next capture copies through the backup API instead
        with snapshot(str(db), tmp_path / "scratch") as cap:
            image = cap.image
            assert cap.how == "copied"
            assert _rows(image.read(), tmp_path) == 3000
        assert not list((tmp_path / "scratch").iterdir()), "the copy was left behind"
    finally:
        writer.close()


def test_rollback_journal_db_keeps_writers_out_while_read(tmp_path: Path) -> None:
    db = tmp_path / "b.sqlite"
    _make(db, 1500, mode="delete")
    writer = _apsw_writer(db, 100)
    try:
        with snapshot(str(db), tmp_path / "scratch") as cap:
            image = cap.image
            assert cap.how == "in place"
            with pytest.raises(apsw.BusyError):
                writer.execute("DELETE FROM t")
            data = image.read()
        writer.execute("DELETE FROM t WHERE n < 100")  # the lock is gone with the image
    finally:
        writer.close()
    assert _rows(data, tmp_path) == 1500


def test_folder_mtime_kept_and_damaged_db_taken_as_raw_set(tmp_path: Path) -> None:
    db = tmp_path / "d" / "c.sqlite"
    db.parent.mkdir()
    _make(db, 100, mode="wal")
    os.utime(db.parent, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    with snapshot(str(db), tmp_path / "scratch") as cap:
        assert _rows(cap.image.read(), tmp_path) == 100
    assert os.stat(db.parent).st_mtime_ns == 1_600_000_000_000_000_000
    assert sorted(os.listdir(db.parent)) == ["c.sqlite"]

    bad = bytearray(db.read_bytes())
    bad[4096 : 4096 + 12] = b"\x0d\xff\xff" + b"\xff" * 9  # a leaf page header pointing nowhere
    db.write_bytes(bytes(bad))
    # damaged: no checked image exists, so the file is taken as a raw set (here without a WAL)
    with snapshot(str(db), tmp_path / "scratch") as cap:
        assert cap.how == "raw set" and cap.degraded and "page 2" in cap.degraded
        assert cap.image.read() == bytes(bad) and cap.sidecars == {}


def test_locked_beyond_the_bound_is_an_error_not_a_raw_copy(tmp_path: Path) -> None:
    """A writer holding the database exclusively past the busy timeout: the capture fails (the caller
    keeps the previous version); it never falls back to copying a file it could not lock."""
    db = tmp_path / "e.sqlite"
    _make(db, 300, mode="delete")
    writer = _apsw_writer(db, 100)
    try:
        writer.execute("BEGIN EXCLUSIVE")
        writer.execute("DELETE FROM t WHERE n < 10")
        with pytest.raises(SqliteCaptureError, match="cannot"), snapshot(str(db), tmp_path / "s", busy_timeout=0.2):
            pass
    finally:
        writer.execute("ROLLBACK")
        writer.close()
