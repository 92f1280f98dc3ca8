"""What a backup is given and gives back, and what it makes of each file: the options, the result,
a file's outcome (stored, reused, or why it could not be stored as it is) and the recorder that
checks a file that grew while read was only appended to. Used by :mod:`.archiver`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .sources import Root

_HEAD_CHECK = 4096  # bytes re-read at the start and end of a file that grew while read
_TAIL_CHECK = 64 * 1024


@dataclass(frozen=True)
class BackupOptions:
    """What to back up and how. Built by the edges (CLI/settings)."""

    roots: list[Root]
    excludes: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    host: str = ""
    username: str = ""
    agent_version: str | None = None
    workers: int = max(2, os.cpu_count() or 2)
    read_attempts: int = 3
    #: Share the reading with a forked worker process (:mod:`.batches`): None when there is enough
    #: to read from a store on this machine, True whenever the platform allows, False never.
    fork: bool | None = None
    force: bool = False
    scratch_dir: Path | None = None
    origin: str = "backup"
    time: datetime | None = None  # override (imports of legacy backups keep their original time)
    recorded_paths: dict[str, str] = field(default_factory=dict)  # root name -> path to record instead


@dataclass
class BackupResult:
    snapshot_id: str | None
    parent_id: str | None
    unchanged: bool
    stats: dict[str, int]
    warnings: list[str]
    clear_secrets: list[str]
    excluded: dict[str, dict[str, int]] = field(default_factory=dict)  # by rule: what the rules left out
    special: list[dict[str, str]] = field(default_factory=list)  # sockets, fifos, devices: not stored

    @property
    def degraded(self) -> bool:
        """The snapshot holds less than, or other than, what the sources had (see the warnings)."""
        return bool(self.warnings)

    def to_json(self) -> dict[str, Any]:
        return {
            "snapshot": self.snapshot_id,
            "parent": self.parent_id,
            "unchanged": self.unchanged,
            "degraded": self.degraded,
            "stats": self.stats,
            "warnings": self.warnings,
            "stored_in_clear": self.clear_secrets,
            "excluded": self.excluded,
            "special": self.special,
        }


@dataclass
class Outcome:
    content: list[str]
    size: int
    sqlite: bool
    st: os.stat_result
    sig: str
    read: bool  # False: reused from the cache
    wal_mtime_ns: int = 0
    info: dict[str, Any] | None = None  # what SQLite said about a captured database
    sidecars: list[tuple[str, list[str], int]] = field(default_factory=list)  # raw set: (suffix, ids, size)
    grown: bool = False  # grew while read: stored as it was when opened
    damage: str = ""  # a database stored as a raw set: why, and how


class Unread(Exception):
    """A file we could not store as it is now; ``reason`` goes into the warning."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Recorder:
    """A file object limited to ``limit`` bytes that remembers the first and last bytes read."""

    def __init__(self, f: Any, limit: int) -> None:
        self.f, self.left = f, limit
        self.head = b""
        self.tail = bytearray()

    def _note(self, data: bytes | memoryview) -> None:
        if len(self.head) < _HEAD_CHECK:
            self.head += bytes(data[: _HEAD_CHECK - len(self.head)])
        self.tail += data[-_TAIL_CHECK:]
        del self.tail[:-_TAIL_CHECK]

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = self.f.read(n) if n else b""
        self.left -= len(data)
        self._note(data)
        return data

    def readinto(self, buf: memoryview) -> int:
        view = memoryview(buf)[: self.left]
        got = self.f.readinto(view) if len(view) else 0
        self.left -= got
        self._note(view[:got])
        return got
