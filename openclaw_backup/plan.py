"""A backup's plan, without taking it: what it would store, read and leave out (``backup --dry-run``).

The plan scans the roots exactly as a backup does (same :class:`~.sources.Excluder`, same SQLite
sidecar rule), then asks the local :class:`~.filecache.FileCache` which files it would reuse by
their signature alone. It reads no file contents and writes nothing, anywhere.

Words: a file is **to read** when the cache has no entry with its current signature (a backup
reads, chunks and perhaps stores it) and **cached** when it has one (a backup reuses the stored
content without reading it, provided the repository still holds that content: a prune since the
last backup from this machine may make a few more files read than planned). **Excluded** is what
the exclude rules leave out, by rule; unlike a backup, the plan walks excluded directories to
measure them.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from .filecache import FileCache, signature
from .sources import Entry, Excluder, ExclusionReport, Root, scan_root

#: How many of the largest files to read a plan names.
LARGEST = 10


@dataclass
class RootPlan:
    """What a backup would do with one root (``kind`` is ``missing`` when it does not exist)."""

    name: str
    path: str
    kind: str = "missing"
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    bytes: int = 0
    files_to_read: int = 0
    bytes_to_read: int = 0
    files_cached: int = 0
    bytes_cached: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BackupPlan:
    """The plan of one backup: per root, the exclusions by rule, and the largest files to read."""

    roots: list[RootPlan]
    excluded: ExclusionReport
    cache_used: bool
    largest_to_read: list[tuple[str, int]] = field(default_factory=list)

    def total(self, key: str) -> int:
        return sum(int(getattr(r, key)) for r in self.roots)

    def to_json(self) -> dict[str, Any]:
        keys = ("files", "dirs", "symlinks", "bytes", "files_to_read", "bytes_to_read", "files_cached", "bytes_cached")
        return {
            "dry_run": True,
            "roots": [r.to_json() for r in self.roots],
            "totals": {k: self.total(k) for k in keys},
            "excluded": self.excluded.to_json(),
            "excluded_totals": {"entries": self.excluded.entries, "bytes": self.excluded.bytes},
            "special": self.excluded.specials,
            "cache_used": self.cache_used,
            "largest_to_read": [{"path": p, "bytes": n} for p, n in self.largest_to_read],
        }


def _walk(e: Entry) -> Iterator[Entry]:
    yield e
    for c in e.children:
        yield from _walk(c)


def plan_backup(
    roots: list[Root], excludes: list[str], *, cache: FileCache | None, warn: Callable[[str], None]
) -> BackupPlan:
    """Plan a backup of ``roots`` with ``excludes``; ``cache`` is the repository's file cache (None:
    every file would be read). Problems a backup would warn about go to ``warn``."""
    excluder = Excluder(excludes)
    report = ExclusionReport(measure=True)
    lookup = cache if cache is not None else FileCache(None)
    plans: list[RootPlan] = []
    to_read: list[tuple[int, str]] = []
    for root in roots:
        rp = RootPlan(root.name, root.path)
        plans.append(rp)
        top = scan_root(root, excluder, warn=warn, sqlite_hint=lookup.is_sqlite, report=report)
        if top is None:
            continue
        rp.kind = top.kind
        for e in _walk(top):
            if e.kind == "dir":
                rp.dirs += 1
            elif e.kind == "symlink":
                rp.symlinks += 1
            else:
                size = e.st.st_size
                rp.files += 1
                rp.bytes += size
                if lookup.lookup(e.path, signature(e.st, e.wal_sig)) is not None:
                    rp.files_cached += 1
                    rp.bytes_cached += size
                else:
                    rp.files_to_read += 1
                    rp.bytes_to_read += size
                    to_read.append((size, e.rel))
    largest = [(rel, size) for size, rel in heapq.nlargest(LARGEST, to_read)]
    return BackupPlan(plans, report, cache is not None, largest)
