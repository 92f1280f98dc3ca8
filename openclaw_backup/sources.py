"""What gets backed up: named roots, exclude patterns, and the scan of the file system.

A **root** is a named top-level entry of a snapshot (``openclaw-state`` → ``~/.openclaw``), a
directory or a single file. The scan walks each root without following symlinks and yields a
tree of :class:`Entry` with the ``lstat`` of everything it keeps; it never reads file contents.

**Exclude patterns** (gitignore-like, matched against the path relative to the root's parent,
e.g. ``openclaw-state/agents/main/tmp``): a pattern without ``/`` matches a name at any depth;
one with ``/`` matches the whole relative path (``*`` stays inside one component, ``**`` spans
several); a trailing ``/`` matches directories only; a leading ``!`` re-includes what an earlier
pattern excluded, so users can override the defaults.

SQLite **sidecars** (``X-wal``, ``X-shm``, ``X-journal`` beside a SQLite database ``X``) are
never stored: the database is captured through SQLite instead (see :mod:`.sqlite_capture`).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from .errors import UsageError

SQLITE_MAGIC = b"SQLite format 3\x00"
SIDECAR_SUFFIXES = ("-wal", "-shm", "-journal")

#: OpenClaw's regenerable bulk and runtime debris. Shown by ``openclaw-backup excludes``.
DEFAULT_EXCLUDES: tuple[tuple[str, str], ...] = (
    ("node_modules/", "runtime JavaScript dependencies (reinstalled by npm)"),
    (".cache/", "application caches"),
    ("__pycache__/", "Python bytecode caches"),
    ("tmp/", "temporary files"),
    ("temp/", "temporary files"),
    ("logs/", "log folders"),
    ("*.log", "log files"),
    ("*.lock", "lock files"),
    ("*.pid", "pid files"),
    ("*.sock", "socket paths"),
    ("Cache/", "browser caches"),
    ("Code Cache/", "browser caches"),
    ("GPUCache/", "browser caches"),
    ("Service Worker/CacheStorage/", "browser caches"),
    ("_cacache/", "npm's package cache"),
    ("_npx/", "npx's package cache"),
)


@dataclass(frozen=True)
class Root:
    """A named source: ``name`` becomes the top-level entry of the snapshot."""

    name: str
    path: str

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9._-]+", self.name) or self.name in (".", ".."):
            raise UsageError(f"invalid root name {self.name!r} (letters, digits, '.', '_', '-')")
        if not os.path.isabs(self.path):
            raise UsageError(f"root {self.name}: path must be absolute, got {self.path!r}")


@lru_cache(maxsize=512)
def _compile(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


class Excluder:
    """Decides what the scan skips. ``patterns`` are applied in order; the last match wins."""

    def __init__(self, patterns: list[str]) -> None:
        self.rules: list[tuple[bool, bool, bool, re.Pattern[str]]] = []
        for raw in patterns:
            p = raw.strip()
            if not p or p.startswith("#"):
                continue
            negate = p.startswith("!")
            p = p.removeprefix("!")
            dir_only = p.endswith("/")
            p = p.rstrip("/")
            anchored = "/" in p
            self.rules.append((negate, dir_only, anchored, _compile(p.lstrip("/"))))

        # Without re-includes the order does not matter: one combined pattern per case is enough.
        self._fast: dict[bool, tuple[re.Pattern[str], re.Pattern[str]]] | None = None
        if not any(neg for neg, *_ in self.rules):
            self._fast = {}
            for is_dir in (False, True):
                chosen = [(anch, rx) for _, d_only, anch, rx in self.rules if is_dir or not d_only]
                names = "|".join(f"(?:{rx.pattern})" for anch, rx in chosen if not anch) or "(?!)"
                paths = "|".join(f"(?:{rx.pattern})" for anch, rx in chosen if anch) or "(?!)"
                self._fast[is_dir] = (re.compile(names), re.compile(paths))

    def excluded(self, rel: str, *, is_dir: bool) -> bool:
        name = rel.rsplit("/", 1)[-1]
        if self._fast is not None:
            names, paths = self._fast[is_dir]
            return bool(names.match(name) or paths.match(rel) or paths.match(rel.split("/", 1)[-1]))
        verdict = False
        for negate, dir_only, anchored, rx in self.rules:
            if dir_only and not is_dir:
                continue
            target = rel if anchored else name
            if rx.match(target) or (anchored and rx.match(rel.split("/", 1)[-1])):
                verdict = not negate
        return verdict


def default_patterns() -> list[str]:
    return [p for p, _ in DEFAULT_EXCLUDES]


@dataclass
class Entry:
    """One scanned file-system object; ``children`` for directories (sorted by name)."""

    name: str
    path: str
    rel: str
    st: os.stat_result
    kind: str  # file | dir | symlink
    children: list[Entry] = field(default_factory=list)
    target: str | None = None
    wal_sig: str = ""  # for SQLite candidates: the -wal sidecar's stat, so WAL changes are seen
    wal_mtime_ns: int = 0
    is_sidecar_of: str | None = None


def is_sqlite_file(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(16) == SQLITE_MAGIC
    except OSError:
        return False


def _note_wal(e: Entry) -> None:
    """Record the ``-wal`` sidecar's stat on a file that may be a SQLite database."""
    try:
        st = os.lstat(e.path + "-wal")
    except OSError:
        return
    e.wal_sig = f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"
    e.wal_mtime_ns = st.st_mtime_ns


def scan_root(
    root: Root,
    excluder: Excluder,
    *,
    warn: Callable[[str], None],
    sqlite_hint: Callable[[str], bool | None] = lambda path: None,
) -> Entry | None:
    """Walk ``root``; None when it does not exist. ``sqlite_hint(path)`` may answer from a cache."""
    try:
        st = os.lstat(root.path)
    except FileNotFoundError:
        return None
    except OSError as e:
        warn(f"{root.path}: cannot read ({e.strerror}); root skipped")
        return None
    top = _make_entry(root.name, root.path, root.name, st, warn)
    if top is None:
        return None
    if top.kind == "dir":
        _scan_dir(top, excluder, warn, sqlite_hint)
    elif top.kind == "file":
        _note_wal(top)
    return top


def _make_entry(name: str, path: str, rel: str, st: os.stat_result, warn: Callable[[str], None]) -> Entry | None:
    if stat.S_ISREG(st.st_mode):
        return Entry(name, path, rel, st, "file")
    if stat.S_ISDIR(st.st_mode):
        return Entry(name, path, rel, st, "dir")
    if stat.S_ISLNK(st.st_mode):
        try:
            return Entry(name, path, rel, st, "symlink", target=os.readlink(path))
        except OSError as e:
            warn(f"{path}: cannot read link ({e.strerror}); skipped")
            return None
    if not stat.S_ISSOCK(st.st_mode):  # sockets are runtime debris; say nothing about them
        warn(f"{path}: special file (device or fifo) not backed up")
    return None


def _scan_dir(
    d: Entry, excluder: Excluder, warn: Callable[[str], None], sqlite_hint: Callable[[str], bool | None]
) -> None:
    try:
        with os.scandir(d.path) as it:
            raw = sorted(it, key=lambda e: e.name)
    except OSError as e:
        warn(f"{d.path}: cannot list ({e.strerror}); kept as an empty directory")
        return
    names = {e.name for e in raw}
    for de in raw:
        name = os.fsdecode(os.fsencode(de.name))
        rel = f"{d.rel}/{name}"
        try:
            st = de.stat(follow_symlinks=False)
        except OSError as e:
            warn(f"{de.path}: cannot stat ({e.strerror}); skipped")
            continue
        is_dir = stat.S_ISDIR(st.st_mode)
        if excluder.excluded(rel, is_dir=is_dir):
            continue
        if stat.S_ISREG(st.st_mode) and name.endswith(SIDECAR_SUFFIXES):
            base = name.rsplit("-", 1)[0]
            if base in names:
                base_path = os.path.join(d.path, base)
                hint = sqlite_hint(base_path)
                if hint if hint is not None else is_sqlite_file(base_path):
                    continue
        child = _make_entry(name, de.path, rel, st, warn)
        if child is None:
            continue
        if child.kind == "dir":
            _scan_dir(child, excluder, warn, sqlite_hint)
        elif child.kind == "file" and f"{name}-wal" in names:
            _note_wal(child)
        d.children.append(child)
