"""Consistent copies of live SQLite databases, taken through SQLite itself.

Copying a database in WAL mode byte by byte (with or without its ``-wal``/``-shm`` sidecars)
can give a torn file. Instead we open it read-only and run SQLite's online backup API in a single
step, which holds one read transaction for the whole copy: the result holds exactly the
transactions committed before the copy began, whatever writers do meanwhile. The copy is then
checked with ``PRAGMA quick_check`` before it is stored under the database's own path.

Opening a WAL database that nobody holds open makes SQLite create and then delete its ``-wal``
and ``-shm`` files, which bumps the folder's mtime; the next backup would see a changed folder.
When the sidecars were absent before and after the capture, the folder's mtime is put back.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import urllib.parse
from pathlib import Path

from .errors import BackupError


class SqliteCaptureError(BackupError):
    """The database could not be captured consistently (locked too long, corrupt, unreadable)."""


def capture(path: str, scratch_dir: Path, *, busy_timeout: float = 20.0) -> Path:
    """Copy the database at ``path`` into a new temporary file in ``scratch_dir`` and return it.

    The caller deletes the returned file. Raises :class:`SqliteCaptureError`.
    """
    scratch_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="sqlite-", suffix=".db", dir=scratch_dir)
    os.close(fd)
    parent = os.path.dirname(os.path.abspath(path))
    sidecars = [path + "-wal", path + "-shm"]
    try:
        before = os.stat(parent)
        had_sidecars = any(os.path.lexists(p) for p in sidecars)
        _copy(path, tmp, busy_timeout, read_only=had_sidecars)
        if not had_sidecars and not any(os.path.lexists(p) for p in sidecars):
            after = os.stat(parent)
            if after.st_mtime_ns != before.st_mtime_ns:
                os.utime(parent, ns=(after.st_atime_ns, before.st_mtime_ns))
        dst = sqlite3.connect(tmp)
        try:
            result = dst.execute("PRAGMA quick_check").fetchone()
        finally:
            dst.close()
        if not result or result[0] != "ok":
            raise SqliteCaptureError(f"{path}: the captured copy fails its integrity check ({result})")
        return Path(tmp)
    except sqlite3.Error as e:
        Path(tmp).unlink(missing_ok=True)
        raise SqliteCaptureError(f"{path}: cannot capture the SQLite database ({e})") from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _copy(path: str, tmp: str, busy_timeout: float, *, read_only: bool) -> None:
    """Copy with the backup API. A database nobody holds open is opened normally (with
    ``query_only``) so that SQLite removes the sidecars it creates; a read-only connection would
    leave them behind."""
    src = None
    if read_only:
        uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"
        try:
            src = sqlite3.connect(uri, uri=True, timeout=busy_timeout)
            src.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError:
            src = None  # read-only opening of a WAL database needs a writable -shm
    if src is None:
        src = sqlite3.connect(path, timeout=busy_timeout)
        src.execute("PRAGMA query_only = ON")
    try:
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst)  # pages=-1: the whole database in one step, under one read transaction
        finally:
            dst.close()
    finally:
        src.close()
