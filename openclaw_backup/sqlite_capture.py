"""Consistent images of live SQLite databases, taken through SQLite itself.

Copying a database in WAL mode byte by byte (with or without its ``-wal``/``-shm`` sidecars)
can give a torn file. :func:`snapshot` yields a readable file holding the database as of one read
transaction, taken one of two ways:

* **in place** — the database is opened read-only, a read transaction begun, and the file itself is
  read while that transaction is held, when SQLite guarantees the file *is* the transaction's
  view: in rollback-journal mode the shared lock keeps every writer out of the file; in WAL mode,
  a WAL that is empty while the transaction is held proves the reader took read-lock 0 (it sees the
  database file alone), and a checkpoint needs that lock exclusively before it writes a single page
  into the file. ``PRAGMA quick_check`` runs inside the same transaction. No copy is written.
* **copied** — otherwise (frames in the WAL, other journal modes, an in-place image that fails its
  check): SQLite's online backup API in a single step, which holds one read transaction for the
  whole copy, into a temporary file that is checked with ``PRAGMA quick_check``.

Either way the result holds exactly the transactions committed before the transaction began,
whatever writers do meanwhile. Opening a WAL database that nobody holds open makes SQLite create
and then delete its ``-wal`` and ``-shm`` files, which bumps the folder's mtime; the next backup
would see a changed folder. When the sidecars were absent before and after, the mtime is put back.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from .errors import BackupError


class SqliteCaptureError(BackupError):
    """The database could not be captured consistently (locked too long, corrupt, unreadable)."""


_ROLLBACK_MODES = ("delete", "truncate", "persist")


@contextmanager
def snapshot(path: str, scratch_dir: Path, *, busy_timeout: float = 20.0) -> Iterator[tuple[BinaryIO, str]]:
    """Yield ``(file, how)``: an image of the database at ``path`` opened for reading, and
    ``"in place"`` or ``"copied"``. Read it inside the ``with``. Raises :class:`SqliteCaptureError`.
    """
    parent = os.path.dirname(os.path.abspath(path))
    sidecars = [path + "-wal", path + "-shm"]
    before = os.stat(parent)
    had_sidecars = any(os.path.lexists(p) for p in sidecars)
    try:
        src = _connect(path, busy_timeout, read_only=had_sidecars)
    except sqlite3.Error as e:
        raise SqliteCaptureError(f"{path}: cannot open the SQLite database ({e})") from e
    try:
        image = _in_place(src, path)
        if image is not None:
            with image:
                yield image, "in place"
            return
        with _copied(src, path, scratch_dir) as copy:
            yield copy, "copied"
    except sqlite3.Error as e:
        raise SqliteCaptureError(f"{path}: cannot capture the SQLite database ({e})") from e
    finally:
        src.close()
        if not had_sidecars and not any(os.path.lexists(p) for p in sidecars):
            after = os.stat(parent)
            if after.st_mtime_ns != before.st_mtime_ns:
                os.utime(parent, ns=(after.st_atime_ns, before.st_mtime_ns))


def _connect(path: str, busy_timeout: float, *, read_only: bool) -> sqlite3.Connection:
    """A database nobody holds open is opened normally (with ``query_only``) so that SQLite
    removes the sidecars it creates; a read-only connection would leave them behind."""
    if read_only:
        uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"
        try:
            src = sqlite3.connect(uri, uri=True, timeout=busy_timeout, isolation_level=None)
            src.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return src
        except sqlite3.OperationalError:
            pass  # read-only opening of a WAL database needs a writable -shm
    src = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    src.execute("PRAGMA query_only = ON")
    return src


def _in_place(src: sqlite3.Connection, path: str) -> BinaryIO | None:
    """Begin a read transaction (left open: the caller's ``close`` ends it) and open the database
    file when it is provably that transaction's view; else end the transaction, return None."""
    src.execute("BEGIN")
    src.execute("SELECT count(*) FROM sqlite_master").fetchone()  # takes the read lock
    mode = str(src.execute("PRAGMA journal_mode").fetchone()[0]).lower()
    if mode == "wal":
        try:
            usable = os.stat(path + "-wal").st_size == 0
        except FileNotFoundError:
            usable = True
    else:
        usable = mode in _ROLLBACK_MODES
    if usable:
        f = open(path, "rb")  # noqa: SIM115  # closed by the caller's ``with``
        try:
            st, now = os.fstat(f.fileno()), os.stat(path)
            result = src.execute("PRAGMA quick_check").fetchone()
        except BaseException:
            f.close()
            raise
        if (st.st_ino, st.st_dev) == (now.st_ino, now.st_dev) and result and result[0] == "ok":
            return f
        f.close()  # replaced under us, or damaged: the copy path decides (and reports)
    src.execute("ROLLBACK")
    return None


@contextmanager
def _copied(src: sqlite3.Connection, path: str, scratch_dir: Path) -> Iterator[BinaryIO]:
    scratch_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="sqlite-", suffix=".db", dir=scratch_dir)
    os.close(fd)
    try:
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst)  # pages=-1: the whole database in one step, under one read transaction
            result = dst.execute("PRAGMA quick_check").fetchone()
        finally:
            dst.close()
        if not result or result[0] != "ok":
            raise SqliteCaptureError(f"{path}: the captured copy fails its integrity check ({result})")
        with open(tmp, "rb") as f:
            yield f
    finally:
        Path(tmp).unlink(missing_ok=True)
