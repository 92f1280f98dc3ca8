"""What every command shares: the result type, opening the repository, the file cache, sizes and counts.

Words: a command's **result** is (JSON document, text for a terminal, exit code); the **file cache**
is the per-repository ``files.db`` under the cache directory that lets a backup skip unchanged
files (:mod:`..filecache`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..backends import open_backend
from ..errors import NotFoundError
from ..filecache import FileCache
from ..reporter import Reporter, printable
from ..repository import Repository
from ..settings import Settings
from ..snapshot import Snapshot, agent_snapshots, group_key
from ..sources import STATE_ROOT

#: (JSON document, text, exit code): what every command returns to the CLI.
Result = tuple[dict[str, Any], str, int]

__all__ = ["FILE_CACHE", "Result", "count", "file_cache", "file_cache_path", "find_snapshot", "human_size",
           "open_repo", "printable"]  # fmt: skip

#: The file cache's name inside a repository's cache directory.
FILE_CACHE = "files.db"


def open_repo(settings: Settings, *, reporter: Reporter) -> Repository:
    """The configured repository, opened with the configured password; its warnings go to ``reporter``."""
    backend = open_backend(settings.repository(), settings.backend_options())
    repo = Repository.open(backend, password=settings.password(), cache_dir=settings.cache_root())
    repo.report_to(reporter.warn)
    return repo


def find_snapshot(repo: Repository, ref: str, settings: Settings, *, reporter: Reporter) -> Snapshot:
    """``ref`` resolved: an id prefix, or ``latest`` — the latest of the agent's own snapshots on this
    machine (:func:`..snapshot.agent_snapshots`), never a one-off ``--source`` backup of another folder."""
    if ref != "latest":
        return repo.find_snapshot(ref)
    snaps, how = agent_snapshots(repo.snapshots(), host=settings.host(), root=STATE_ROOT)
    if not snaps:
        raise NotFoundError("the repository has no snapshots yet")
    if len({group_key(s) for s in repo.snapshots()}) > 1:
        reporter.info(f"latest: {how} ({snaps[-1].id[:8]})")
    return snaps[-1]


def file_cache_path(cache_dir: Path | None) -> Path | None:
    """Where a repository's file cache lives, given the repository's cache directory (None: no cache)."""
    return cache_dir / FILE_CACHE if cache_dir else None


def file_cache(repo: Repository) -> FileCache:
    """The file cache of ``repo`` on this machine (an in-memory one when the repository has no cache)."""
    return FileCache(file_cache_path(repo.cache_dir))


def human_size(n: float) -> str:
    """``n`` bytes for people: ``512 B``, ``1.5 KiB`` … ``2.0 TiB`` (the one size format of the CLI)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def count(n: int, word: str) -> str:
    """``1 file``, ``2,048 files``, ``3 entries``."""
    plural = word[:-1] + "ies" if word.endswith("y") else word + "s"
    return f"{n:,} {word if n == 1 else plural}"
