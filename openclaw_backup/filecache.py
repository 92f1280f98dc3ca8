"""The local file cache: (path, size, mtime, ctime, inode) → content ids, so unchanged files are not read.

The cache lives beside the repository's other cached objects (``<cache>/<repo id>/files.db``, a
SQLite database). An entry is trusted only when the file's signature is identical and every blob
it names is still in the repository's index (a prune may have removed them).

**Racy timestamps.** A file written in the same clock tick as, but after, our read keeps its mtime;
trusting the signature next time would miss that change. So an entry whose mtime is within
:data:`RACY_WINDOW_NS` of the start of the backup is not recorded, and the file is read again next
time (git's racy-clean rule).

A restore seeds the cache with the files it wrote, so the first backup on a fresh container is
not a full re-read. The cache file is mode 0600: it names the user's files in plaintext.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RACY_WINDOW_NS = 2_000_000_000


def signature(st: os.stat_result, extra: str = "") -> str:
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}:{extra}"


@dataclass(frozen=True)
class CachedFile:
    sig: str
    content: list[str]
    sqlite: bool
    info: dict[str, Any] | None = None  # what SQLite said about a captured database (tree node field)


class FileCache:
    """Read the whole cache at open; :meth:`replace` writes the new generation in one transaction."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, CachedFile] = {}
        if path is None or not path.exists():
            return
        try:
            con = sqlite3.connect(path)
            try:
                rows = con.execute("SELECT path, sig, content, sqlite, info FROM files")
                for p, sig, content, is_sqlite, info in rows:
                    self.entries[bytes(p).decode("utf-8", "surrogateescape")] = CachedFile(
                        sig, json.loads(content), bool(is_sqlite), json.loads(info) if info else None
                    )
            finally:
                con.close()
        except (sqlite3.Error, ValueError, TypeError):
            self.entries = {}  # a damaged cache only costs a re-read

    def lookup(self, path: str, sig: str) -> CachedFile | None:
        hit = self.entries.get(path)
        return hit if hit is not None and hit.sig == sig else None

    def is_sqlite(self, path: str) -> bool | None:
        """True when ``path`` was last captured as a SQLite database; None when not known (a
        negative answer is never given: whether a file is a database is read from the file)."""
        hit = self.entries.get(path)
        return True if hit is not None and hit.sqlite else None

    def replace(self, entries: dict[str, CachedFile], *, merge: bool = False) -> None:
        """Store ``entries`` as the cache (or add them to it when ``merge``)."""
        if self.path is None:
            return
        new = {**self.entries, **entries} if merge else entries
        if new == self.entries and self.path.exists():
            return  # nothing changed: skip the rewrite
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # It names the user's files in plaintext: private to the user (SQLite gives its
            # journal the database file's mode).
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
            os.chmod(self.path, 0o600)
            con = sqlite3.connect(self.path)
            try:
                with con:
                    con.execute("DROP TABLE IF EXISTS files")  # every generation is written whole
                    con.execute(
                        "CREATE TABLE files (path BLOB PRIMARY KEY, sig TEXT, content TEXT, sqlite INT, info TEXT)"
                    )
                    con.executemany(
                        "INSERT INTO files VALUES (?, ?, ?, ?, ?)",
                        [
                            (p.encode("utf-8", "surrogateescape"), e.sig, json.dumps(e.content), int(e.sqlite),
                             json.dumps(e.info, sort_keys=True) if e.info else None)
                            for p, e in new.items()
                        ],
                    )  # fmt: skip
            finally:
                con.close()
            self.entries = new
        except sqlite3.Error:
            pass  # the cache is an optimisation only
