"""What gets backed up: named roots, exclude patterns, and the scan of the file system.

A **root** is a named top-level entry of a snapshot (``openclaw-state`` → ``~/.openclaw``), a
directory or a single file. The scan walks each root without following symlinks and yields a
tree of :class:`Entry` with the ``lstat`` of everything it keeps; it never reads file contents.

**Exclude patterns** (gitignore-like, matched against the path relative to the root's parent,
e.g. ``openclaw-state/agents/main/tmp``): a pattern without ``/`` matches a name at any depth;
one with ``/`` is anchored: it matches the whole relative path, from the root's parent or from
the root itself (``agents/*/tmp`` works for every root; the default excludes match from the root's
parent only, see :class:`Excluder`); ``*`` stays inside one component, ``**``
spans several; a trailing ``/`` matches directories only; a leading ``!`` re-includes what an
earlier pattern excluded (the last matching pattern decides), so users can override the defaults.
An excluded directory is not walked, so nothing under it can be re-included.

The **default excludes** (:data:`DEFAULT_EXCLUDES`) are all anchored: at the OpenClaw state root
(``openclaw-state/…``, the places where OpenClaw's own backup finds regenerable bulk) and at the
npm root (``root-npm/…``). None can match anything deeper, so nothing in a workspace
(``openclaw-state/workspace*/…``) or any other user folder is excluded by default.

An :class:`ExclusionReport` given to :func:`scan_root` accounts for what the rules left out, by
rule: entries, and bytes of files (of everything under an excluded directory only when it is told
to measure them, as a dry run does; a backup never walks an excluded directory).

SQLite **sidecars** (``X-wal``, ``X-shm``, ``X-journal`` beside a SQLite database ``X``) are
never stored: the database is captured through SQLite instead (see :mod:`.sqlite_capture`).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple

from .errors import UsageError

SQLITE_MAGIC = b"SQLite format 3\x00"
SIDECAR_SUFFIXES = ("-wal", "-shm", "-journal")

#: What a restore leaves beside what it restores (staging, an interrupted swap, the state it
#: replaced): never backed up, whatever the user's patterns.
INTERNAL_EXCLUDES: tuple[str, ...] = (
    ".*.openclaw-restore-*", ".*.openclaw-old-*", ".*.pre-restore-*",
    ".*.openclaw-backup.json", ".*.openclaw-backup.json.tmp",  # state markers (see marker.py)
)  # fmt: skip

#: The OpenClaw state root and the npm root, as named in snapshots (see :mod:`.settings`).
STATE_ROOT = "openclaw-state"
NPM_ROOT = "root-npm"
_LOCK_DB = "lock database of the memory index: no tables, no rows; OpenClaw recreates it when it opens it"

#: OpenClaw's regenerable bulk, each anchored where OpenClaw keeps it: its own backup's exclusion
#: list (``openclaw backup create``, 2026.9.6), its cache, and npm's caches under the npm root.
#: Shown, with the reasons, by ``openclaw-backup excludes``.
DEFAULT_EXCLUDES: tuple[tuple[str, str], ...] = (
    (f"{STATE_ROOT}/cache/", "OpenClaw's caches: Control UI assets (~96 % of a real state, rebuilt from the "
     "installed package) and worker bundles (downloaded again)"),
    (f"{STATE_ROOT}/tmp/", "OpenClaw's scratch space"),
    (f"{STATE_ROOT}/npm/", "plugins installed from npm (reinstalled from their install records)"),
    (f"{STATE_ROOT}/npm-runtime/", "OpenClaw's managed npm runtime (its own backup skips it as regenerable)"),
    (f"{STATE_ROOT}/git/", "plugins installed from git (cloned again from their install records)"),
    (f"{STATE_ROOT}/dev/", "OpenClaw's managed dev state (its own backup skips it as regenerable)"),
    (f"{STATE_ROOT}/tools/", "helper tools OpenClaw downloads on demand (node, crabbox, ...)"),
    (f"{STATE_ROOT}/plugin-skills/", "links into installed plugins, regenerated at start"),
    (f"{STATE_ROOT}/extensions/*/node_modules/", "plugins' dependencies (reinstalled by npm)"),
    (f"{STATE_ROOT}/agents/*/agent/**/tmp/", "agents' temporary files"),
    (f"{STATE_ROOT}/agents/*/agent/**/.tmp/", "agents' temporary files"),
    (f"{STATE_ROOT}/sandbox/skills-workspaces/", "sandbox copies of skills, rebuilt for each run"),
    (f"{STATE_ROOT}/agents/*/agent/*.sqlite.generation-lock.sqlite*", _LOCK_DB),
    (f"{STATE_ROOT}/agents/*/agent/*.sqlite.generation-writer.sqlite*", _LOCK_DB),
    (f"{STATE_ROOT}/agents/*/agent/*.sqlite.reindex-lock.sqlite*", _LOCK_DB),
    (f"{NPM_ROOT}/_cacache/", "npm's package cache"),
    (f"{NPM_ROOT}/_npx/", "npx's package cache"),
)  # fmt: skip


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


class _Rule(NamedTuple):
    pattern: str  # as written, without the leading "!"
    negate: bool
    dir_only: bool
    anchored: bool
    top_only: bool  # anchored at the root's parent only, never inside a root
    rx: re.Pattern[str]


class Excluder:
    """Decides what the scan skips. ``patterns`` are applied in order; the last match wins.

    An anchored pattern matches the path from the root's parent or from the root itself, except
    those in ``top_only`` (by default the default excludes), which match from the root's parent
    only: ``openclaw-state/cache/`` is the state root's cache, never ``<any root>/openclaw-state/cache``.
    """

    def __init__(self, patterns: list[str], *, top_only: Collection[str] | None = None) -> None:
        tops = _DEFAULT_REASONS.keys() if top_only is None else top_only
        self.rules: list[_Rule] = []
        for raw in patterns:
            p = raw.strip()
            if not p or p.startswith("#"):
                continue
            negate = p.startswith("!")
            p = p.removeprefix("!")
            dir_only = p.endswith("/")
            body = p.rstrip("/")
            anchored = "/" in body
            self.rules.append(_Rule(p, negate, dir_only, anchored, anchored and p in tops, _compile(body.lstrip("/"))))

        # Without re-includes the order does not matter: one combined pattern per case is enough
        # (names: the last component; full: the path from the root's parent; in_root: from the root).
        self._fast: dict[bool, tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str] | None]] | None = None
        if not any(r.negate for r in self.rules):
            self._fast = {}
            for is_dir in (False, True):
                chosen = [r for r in self.rules if is_dir or not r.dir_only]
                names = "|".join(f"(?:{r.rx.pattern})" for r in chosen if not r.anchored) or "(?!)"
                full = _alternatives([r.pattern.rstrip("/").lstrip("/") for r in chosen if r.anchored])
                loose = [r.pattern.rstrip("/").lstrip("/") for r in chosen if r.anchored and not r.top_only]
                in_root = re.compile(_alternatives(loose)) if loose else None
                self._fast[is_dir] = (re.compile(names), re.compile(full), in_root)

    def excluded(self, rel: str, *, is_dir: bool) -> bool:
        if self._fast is not None:
            names, full, in_root = self._fast[is_dir]
            if names.match(rel.rsplit("/", 1)[-1]) or full.match(rel):
                return True
            return in_root is not None and in_root.match(rel.split("/", 1)[-1]) is not None
        return self.rule_for(rel, is_dir=is_dir) is not None

    def rule_for(self, rel: str, *, is_dir: bool) -> str | None:
        """The pattern that excludes ``rel`` (the last that matches), or None when ``rel`` is kept.

        Slower than :meth:`excluded` (one match per rule): ask it only about what is excluded.
        """
        name = rel.rsplit("/", 1)[-1]
        in_root = rel.split("/", 1)[-1]
        verdict: str | None = None
        for rule in self.rules:
            if rule.dir_only and not is_dir:
                continue
            if rule.anchored:
                hit = rule.rx.match(rel) or (not rule.top_only and rule.rx.match(in_root))
            else:
                hit = rule.rx.match(name)
            if hit:
                verdict = None if rule.negate else rule.pattern
        return verdict


def _alternatives(patterns: list[str]) -> str:
    """One regex for anchored ``patterns``, those that start with the same plain first component
    (``openclaw-state/…``) grouped under it: a path that does not start so is refused at once,
    instead of once per pattern (the defaults are all anchored so; this is the scan's hot path)."""
    groups: dict[str, list[str]] = {}
    for p in patterns:
        head, _, rest = p.partition("/")
        plain = rest and not any(c in head for c in "*?")
        groups.setdefault(head if plain else "", []).append(rest if plain else p)
    alts = [f"(?:{_compile(p).pattern})" for p in groups.pop("", [])]
    for head, rests in groups.items():
        inner = "|".join(f"(?:{_compile(r).pattern})" for r in rests)
        alts.append(f"{re.escape(head)}/(?:{inner})")
    return "|".join(alts) or "(?!)"


def default_patterns() -> list[str]:
    return [p for p, _ in DEFAULT_EXCLUDES]


def default_reason(pattern: str) -> str | None:
    """Why ``pattern`` is a default exclude, or None when it is not one."""
    return _DEFAULT_REASONS.get(pattern)


_DEFAULT_REASONS = dict(DEFAULT_EXCLUDES)


class ExclusionReport:
    """What the exclude rules left out of a scan, by rule (the pattern that decided).

    Each excluded object is one entry; ``bytes`` are file sizes. An excluded directory is not
    walked, so its contents count only when ``measure`` is set (a dry run): then every file under
    it is counted too, and each excluded path is kept with its size.
    """

    def __init__(self, *, measure: bool = False) -> None:
        self.measure = measure
        self.by_rule: dict[str, dict[str, int]] = {}
        self.paths: dict[str, list[dict[str, Any]]] = {}
        #: Sockets, fifos and devices met (no rule needed: no file data to keep), each ``{"path", "kind"}``.
        self.specials: list[dict[str, str]] = []

    def special(self, rel: str, st: os.stat_result) -> None:
        self.specials.append({"path": rel, "kind": special_kind(st.st_mode)})

    def record(self, pattern: str, path: str, rel: str, st: os.stat_result, *, is_dir: bool) -> None:
        is_file = stat.S_ISREG(st.st_mode)
        if is_dir:
            files, size = _measure(path) if self.measure else (0, 0)
        else:
            files, size = (1, st.st_size) if is_file else (0, 0)
        row = self.by_rule.setdefault(pattern, {"entries": 0, "files": 0, "bytes": 0})
        row["entries"] += 1
        row["files"] += files
        row["bytes"] += size
        if self.measure:
            kind = "dir" if is_dir else "file" if is_file else "other"
            self.paths.setdefault(pattern, []).append({"path": rel, "kind": kind, "files": files, "bytes": size})

    @property
    def entries(self) -> int:
        return sum(r["entries"] for r in self.by_rule.values())

    @property
    def bytes(self) -> int:
        return sum(r["bytes"] for r in self.by_rule.values())

    def to_json(self) -> dict[str, dict[str, Any]]:
        """``{pattern: {"entries": n, "files": f, "bytes": b[, "paths": [...]]}}``, in the order the
        rules first left something out; ``paths`` (``{"path", "kind", "files", "bytes"}``) when measured."""
        out: dict[str, dict[str, Any]] = {}
        for pattern, row in self.by_rule.items():
            out[pattern] = dict(row)
            if self.measure:
                out[pattern]["paths"] = list(self.paths.get(pattern, []))
        return out


def _measure(path: str) -> tuple[int, int]:
    """Regular files under the directory ``path`` and their total size (symlinks not followed)."""
    files = size = 0
    stack = [path]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for de in it:
                    try:
                        st = de.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if stat.S_ISDIR(st.st_mode):
                        stack.append(de.path)
                    elif stat.S_ISREG(st.st_mode):
                        files += 1
                        size += st.st_size
        except OSError:
            continue
    return files, size


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
    report: ExclusionReport | None = None,
) -> Entry | None:
    """Walk ``root``; None when it does not exist. ``sqlite_hint(path)`` may answer from a cache;
    ``report`` (shared by the roots of one backup) is told what the exclude rules leave out.

    A root that is itself a symlink (a state directory on a mounted volume) is followed — the
    root only: links inside it stay links — so its contents are backed up, not the link; a root
    link whose target does not exist is stored as the link it is."""
    path = root.path
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode) and os.path.exists(path):
            path = os.path.realpath(path)  # read through the target itself: lstat checks then hold
            st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        warn(f"{root.path}: cannot read ({e.strerror}); root skipped")
        return None
    top = _make_entry(root.name, path, root.name, st, warn)
    if top is None:
        return None
    if top.kind == "dir":
        _scan_dir(top, excluder, warn, sqlite_hint, report)
    elif top.kind == "file":
        _note_wal(top)
    return top


def special_kind(mode: int) -> str:
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISFIFO(mode):
        return "fifo"
    return "device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "special file"


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
    warn(f"{path}: a {special_kind(st.st_mode)} (no file data to back up) given as a root; skipped")
    return None


def _scan_dir(
    d: Entry,
    excluder: Excluder,
    warn: Callable[[str], None],
    sqlite_hint: Callable[[str], bool | None],
    report: ExclusionReport | None,
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
            if report is not None:
                report.record(excluder.rule_for(rel, is_dir=is_dir) or "?", de.path, rel, st, is_dir=is_dir)
            continue
        if stat.S_ISREG(st.st_mode) and name.endswith(SIDECAR_SUFFIXES):
            base = name.rsplit("-", 1)[0]
            if base in names:
                base_path = os.path.join(d.path, base)
                hint = sqlite_hint(base_path)
                if hint if hint is not None else is_sqlite_file(base_path):
                    continue
        if not (stat.S_ISREG(st.st_mode) or is_dir or stat.S_ISLNK(st.st_mode)):
            if report is not None:
                report.special(rel, st)  # reported in the backup's summary: never skipped unsaid
            else:
                warn(f"{de.path}: a {special_kind(st.st_mode)} (no file data); not backed up")
            continue
        child = _make_entry(name, de.path, rel, st, warn)
        if child is None:
            continue
        if child.kind == "dir":
            _scan_dir(child, excluder, warn, sqlite_hint, report)
        elif child.kind == "file" and f"{name}-wal" in names:
            _note_wal(child)
        d.children.append(child)
