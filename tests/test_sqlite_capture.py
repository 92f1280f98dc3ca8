"""SQLite capture: when the database file is read in place, writers cannot change it under us; when
it cannot be (frames in the WAL), a checked copy is taken; either way the image is one transaction."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

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
    writer = sqlite3.connect(db, isolation_level=None, timeout=0.2)
    try:
        with snapshot(str(db), tmp_path / "scratch") as (image, how):
            assert how == "in place"
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
        with snapshot(str(db), tmp_path / "scratch") as (image, how):
            assert how == "copied"
            assert _rows(image.read(), tmp_path) == 3000
        assert not list((tmp_path / "scratch").iterdir()), "the copy was left behind"
    finally:
        writer.close()


def test_rollback_journal_db_keeps_writers_out_while_read(tmp_path: Path) -> None:
    db = tmp_path / "b.sqlite"
    _make(db, 1500, mode="delete")
    writer = sqlite3.connect(db, isolation_level=None, timeout=0.1)
    try:
        with snapshot(str(db), tmp_path / "scratch") as (image, how):
            assert how == "in place"
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                writer.execute("DELETE FROM t")
            data = image.read()
        writer.execute("DELETE FROM t WHERE n < 100")  # the lock is gone with the image
    finally:
        writer.close()
    assert _rows(data, tmp_path) == 1500


def test_folder_mtime_kept_and_damaged_db_refused(tmp_path: Path) -> None:
    db = tmp_path / "d" / "c.sqlite"
    db.parent.mkdir()
    _make(db, 100, mode="wal")
    os.utime(db.parent, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    with snapshot(str(db), tmp_path / "scratch") as (image, _):
        assert _rows(image.read(), tmp_path) == 100
    assert os.stat(db.parent).st_mtime_ns == 1_600_000_000_000_000_000
    assert sorted(os.listdir(db.parent)) == ["c.sqlite"]

    bad = bytearray(db.read_bytes())
    bad[4096 : 4096 + 12] = b"\x0d\xff\xff" + b"\xff" * 9  # a leaf page header pointing nowhere
    db.write_bytes(bytes(bad))
    with pytest.raises(SqliteCaptureError), snapshot(str(db), tmp_path / "scratch") as (image, _):
        image.read()
