"""Consistent images of live SQLite databases, taken through the SQLite this package brings.

Every capture goes through APSW's bundled SQLite (:data:`SQLITE_VERSION`), never the system's
``libsqlite3``: a writer may use a newer SQLite than the distribution's, and a schema that names a
function an old library lacks (OpenClaw's ``CHECK (octet_length(…))``) cannot even be checked by it.
Checks run with ``ignore_check_constraints`` on, so a constraint that calls a function only the
writer registers cannot fail them either: they verify the file's structure, not the application's
rules. Virtual tables of modules we do not load (sqlite-vec) are not touched.

:func:`snapshot` yields a :class:`Capture` holding the database as of one read transaction, taken
one of three ways:

* **in place** — the database is opened read-only, a read transaction begun, and the file itself is
  read while that transaction is held, when SQLite guarantees the file *is* the transaction's
  view: in rollback-journal mode the shared lock keeps every writer out of the file; in WAL mode,
  a WAL that is empty while the transaction is held proves the reader took read-lock 0 (it sees the
  database file alone), and a checkpoint needs that lock exclusively before it writes a single page
  into the file. ``PRAGMA quick_check`` runs inside the same transaction. No copy is written.
* **copied** — otherwise (frames in the WAL, other journal modes, an in-place image that fails its
  check): SQLite's online backup API in a single step, which holds one read transaction for the
  whole copy, into a temporary file that is checked with ``PRAGMA quick_check``.
* **raw set** (degraded) — when no image passes its check (the database is damaged): the main file
  and its ``-wal`` / ``-journal`` are copied together while a read transaction is held (no
  checkpoint can reset the WAL, no writer can touch a rollback-mode file), and only if none of them
  changed size or mtime during the copy (when even a read transaction is refused, that check alone
  vouches for the set, and ``info["locked"]`` says so). Restored side by side, SQLite replays the
  WAL, so every committed row the WAL held comes back. The main file is never taken without its WAL.

A database that cannot be read under SQLite's locks at all (locked beyond ``busy_timeout``,
unreadable) raises :class:`SqliteCaptureError`; the caller keeps the previous version.

Opening a WAL database that nobody holds open makes SQLite create and then delete its ``-wal`` and
``-shm`` files, which bumps the folder's mtime; the next backup would see a changed folder. When
the sidecars were absent before and after, the mtime is put back.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.parse
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import apsw

from .errors import BackupError

SQLITE_VERSION: str = apsw.sqlite_lib_version()
_ROLLBACK_MODES = ("delete", "truncate", "persist")
_SET_SUFFIXES = ("-wal", "-journal")  # what a raw set carries beside the main file (-shm is rebuilt)


class SqliteCaptureError(BackupError):
    """The database could not be captured consistently (locked too long, unreadable)."""


@dataclass
class Capture:
    """One captured database: ``image`` to read inside the ``with``; for a raw set, ``sidecars``
    maps ``-wal``/``-journal`` to their copies, and ``degraded`` says why no checked image exists."""

    image: BinaryIO
    how: str  # "in place" | "copied" | "raw set"
    info: dict[str, Any]
    sidecars: dict[str, BinaryIO] = field(default_factory=dict)
    degraded: str | None = None


@contextmanager
def snapshot(path: str, scratch_dir: Path, *, busy_timeout: float = 20.0) -> Iterator[Capture]:
    """Yield a :class:`Capture` of the database at ``path`` (see the module docstring).
    Raises :class:`SqliteCaptureError`."""
    parent = os.path.dirname(os.path.abspath(path))
    sidecars = [path + "-wal", path + "-shm"]
    before = os.stat(parent)
    had_sidecars = any(os.path.lexists(p) for p in sidecars)
    try:
        src = _connect(path, busy_timeout, read_only=had_sidecars)
    except apsw.Error as e:
        raise SqliteCaptureError(f"{path}: cannot open the SQLite database ({_why(e)})") from e
    try:
        with _capture(src, path, scratch_dir) as cap:
            yield cap
    except apsw.Error as e:
        raise SqliteCaptureError(f"{path}: cannot capture the SQLite database ({_why(e)})") from e
    finally:
        src.close()
        if not had_sidecars and not any(os.path.lexists(p) for p in sidecars):
            after = os.stat(parent)
            if after.st_mtime_ns != before.st_mtime_ns:
                os.utime(parent, ns=(after.st_atime_ns, before.st_mtime_ns))


def _why(e: apsw.Error) -> str:
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def _connect(path: str, busy_timeout: float, *, read_only: bool) -> apsw.Connection:
    """A database nobody holds open is opened normally (with ``query_only``) so that SQLite
    removes the sidecars it creates; a read-only connection would leave them behind."""
    if read_only:
        uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"
        try:
            src = apsw.Connection(uri, flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
            _prepare(src, busy_timeout)
            src.execute("SELECT count(*) FROM sqlite_master").fetchall()
            return src
        except apsw.Error:
            pass  # read-only opening of a WAL database may need a writable -shm
    src = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READWRITE)
    _prepare(src, busy_timeout)
    src.execute("PRAGMA query_only = ON")
    return src


def _prepare(con: apsw.Connection, busy_timeout: float) -> None:
    con.set_busy_timeout(int(busy_timeout * 1000))
    con.execute("PRAGMA ignore_check_constraints = ON")  # checks verify structure, not app rules


def _one(con: apsw.Connection, sql: str) -> Any:
    row = con.execute(sql).fetchone()
    return row[0] if row else None


def _quick_check(con: apsw.Connection) -> str | None:
    """None when the database passes ``PRAGMA quick_check``; else what it said."""
    try:
        rows = [str(r[0]) for r in con.execute("PRAGMA quick_check(5)")]
    except apsw.Error as e:
        return _why(e)
    if rows == ["ok"]:
        return None
    lines = [ln.strip() for r in rows for ln in r.splitlines() if ln.strip() and not ln.startswith("***")]
    return "; ".join(lines[:2]) or "quick_check failed"


def _info(con: apsw.Connection, how: str) -> dict[str, Any]:
    return {
        "capture": how,
        "journal_mode": str(_one(con, "PRAGMA journal_mode")).lower(),
        "page_size": int(_one(con, "PRAGMA page_size") or 0),
        "pages": int(_one(con, "PRAGMA page_count") or 0),
        "sqlite_version": SQLITE_VERSION,
    }


@contextmanager
def _capture(src: apsw.Connection, path: str, scratch_dir: Path) -> Iterator[Capture]:
    damage: str | None = None
    try:
        image = _in_place(src, path)
    except (apsw.CorruptError, apsw.NotADBError) as e:
        image, damage = None, _why(e)
    if image is not None:
        f, info = image
        with f:
            yield Capture(f, "in place", info)
        return
    if damage is None:
        scratch_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="sqlite-", suffix=".db", dir=scratch_dir)
        os.close(fd)
        try:
            damage, info = _copy(src, tmp)
            if damage is None:
                with open(tmp, "rb") as f:
                    yield Capture(f, "copied", info)
                return
        finally:
            Path(tmp).unlink(missing_ok=True)
    with _raw_set(src, path, scratch_dir, damage) as cap:
        yield cap


def _in_place(src: apsw.Connection, path: str) -> tuple[BinaryIO, dict[str, Any]] | None:
    """Begin a read transaction (left open: the caller's ``close`` ends it) and open the database
    file when it is provably that transaction's view; else end the transaction, return None."""
    src.execute("BEGIN")
    src.execute("SELECT count(*) FROM sqlite_master").fetchall()  # takes the read lock
    info = _info(src, "in place")
    mode = info["journal_mode"]
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
            problem = _quick_check(src)
        except BaseException:
            f.close()
            raise
        if (st.st_ino, st.st_dev) == (now.st_ino, now.st_dev) and problem is None:
            return f, info
        f.close()  # replaced under us, or damaged: the copy path decides (and reports)
    src.execute("ROLLBACK")
    return None


def _copy(src: apsw.Connection, tmp: str) -> tuple[str | None, dict[str, Any]]:
    """Copy through the online backup API in one step; return (problem found, info)."""
    dst = apsw.Connection(tmp)
    try:
        with dst.backup("main", src, "main") as b:
            b.step(-1)  # the whole database in one step, under one read transaction
        dst.execute("PRAGMA ignore_check_constraints = ON")
        info = _info(dst, "copied")
        info["journal_mode"] = str(_one(src, "PRAGMA journal_mode")).lower()
        return _quick_check(dst), info
    except (apsw.CorruptError, apsw.NotADBError) as e:
        return _why(e), {}
    finally:
        dst.close()


def _stats(paths: list[str]) -> list[tuple[int, int, int] | None]:
    out: list[tuple[int, int, int] | None] = []
    for p in paths:
        try:
            st = os.stat(p)
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
        except FileNotFoundError:
            out.append(None)
    return out


@contextmanager
def _raw_set(src: apsw.Connection, path: str, scratch_dir: Path, damage: str | None) -> Iterator[Capture]:
    """Copy the main file with its ``-wal``/``-journal`` under a read transaction, as one set."""
    scratch_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="sqlite-set-", dir=scratch_dir))
    try:
        # sidecars first, the main file last: closing a copy's descriptor of the main file drops this
        # process's POSIX locks on it (a rollback-mode reader's shared lock among them)
        names = [path + s for s in _SET_SUFFIXES] + [path]
        for _attempt in range(3):
            in_txn = _begin_read(src)
            try:
                before = _stats(names)
                copies = {}
                for name, st in zip(names, before, strict=True):
                    if st is not None and (st[1] or name == path):  # an empty sidecar holds nothing
                        dest = work / ("main" if name == path else name[len(path) :])
                        shutil.copyfile(name, dest)
                        copies[name] = dest
                stable = _stats(names) == before
            finally:
                if in_txn:
                    src.execute("ROLLBACK")
            if stable and path in copies:
                break
        else:
            raise SqliteCaptureError(f"{path}: damaged ({damage}) and kept changing while copied as a set")
        info = {"capture": "raw set", "sqlite_version": SQLITE_VERSION, "damage": damage or "unknown",
                "locked": in_txn, "set": sorted(n[len(path):] for n in copies if n != path)}  # fmt: skip
        with ExitStack() as stack:
            main = stack.enter_context(open(copies.pop(path), "rb"))
            side: dict[str, BinaryIO] = {n[len(path) :]: stack.enter_context(open(c, "rb")) for n, c in copies.items()}
            yield Capture(main, "raw set", info, side, degraded=f"damaged database ({damage})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _begin_read(src: apsw.Connection) -> bool:
    """Hold a read transaction if SQLite can still give one on this (damaged) database."""
    try:
        src.execute("BEGIN")
        src.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        return True
    except apsw.Error:
        try:
            src.execute("ROLLBACK")
        except apsw.Error:
            pass
        return False
