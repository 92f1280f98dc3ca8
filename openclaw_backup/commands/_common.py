"""What every command shares: the result type, opening the repository, the file cache, sizes and counts.

Words: a command's **result** is (JSON document, text for a terminal, exit code); the **file cache**
is the per-repository ``files.db`` under the cache directory that lets a backup skip unchanged
files (:mod:`..filecache`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..backends import open_backend
from ..backends.base import Backend
from ..errors import BackupError, NotFoundError, RepositoryNotFoundError, WrongPasswordError
from ..filecache import FileCache
from ..reporter import Reporter, printable
from ..repository import Repository, walk
from ..settings import Settings
from ..snapshot import Snapshot, agent_snapshots, group_key
from ..sources import STATE_ROOT
from ..units import human_size as human_size  # the commands' one size format, re-exported

#: (JSON document, text, exit code): what every command returns to the CLI.
Result = tuple[dict[str, Any], str, int]

__all__ = ["FILE_CACHE", "Result", "count", "file_cache", "file_cache_path", "find_snapshot", "human_size",
           "open_repo", "printable"]  # fmt: skip

#: The file cache's name inside a repository's cache directory.
FILE_CACHE = "files.db"


def open_repo(
    settings: Settings, *, reporter: Reporter, snapshot: str | None = None, index: bool = False
) -> Repository:
    """The configured repository, opened with the configured password; its warnings go to ``reporter``.

    ``snapshot`` and ``index``: the command's next block is ``repo.reading_ahead(snapshot=...,
    index=...)``; from a store far away the open starts those reads (:meth:`.Repository.open`)."""
    try:
        backend = open_backend(settings.repository(), settings.backend_options())
        repo = open_with_password(backend, settings, snapshot=snapshot, index=index)
    except RepositoryNotFoundError as e:
        raise _legacy_only(settings) or e from None
    repo.report_to(reporter.warn)
    return repo


def _legacy_only(settings: Settings) -> RepositoryNotFoundError | None:
    """The error for a place that holds only the legacy script's backups (with the way on), or None."""
    from ..service import legacy_store  # only on this path: the service imports the engine

    try:
        store = legacy_store(settings)
    except BackupError:
        return None
    if store is None:
        return None
    return RepositoryNotFoundError(
        f"no openclaw-backup repository at {settings.repository()}, but it holds the legacy script's backups "
        "(latest-backup.json)",
        hint="import them as snapshots with `openclaw-backup migrate` (`--dry-run` lists them); "
        "`openclaw-backup restore` with the legacy variables set restores the newest directly",
    )


def open_with_password(
    backend: Backend, settings: Settings, *, snapshot: str | None = None, index: bool = False
) -> Repository:
    """``backend``'s repository, with the configured password — or, when none is configured and the
    repository is encrypted, one typed on the terminal (when there is one). ``snapshot``, ``index``:
    as :meth:`.Repository.open` takes them."""
    password = settings.password()
    cache = settings.cache_root()
    try:
        return Repository.open(backend, password=password, cache_dir=cache, snapshot=snapshot, index=index)
    except WrongPasswordError:
        if password is not None or not settings.can_ask():
            raise
    return Repository.open(backend, password=settings.ask_password(), cache_dir=cache, snapshot=snapshot, index=index)


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


def count(n: int, word: str) -> str:
    """``1 file``, ``2,048 files``, ``3 entries``."""
    plural = word[:-1] + "ies" if word.endswith("y") else word + "s"
    return f"{n:,} {word if n == 1 else plural}"


def _flatten(repo: Repository, tree: str | None) -> dict[str, tuple[str, int, int, str]]:
    out: dict[str, tuple[str, int, int, str]] = {}
    if tree is None:
        return out
    for path, node in walk(repo, tree):
        key = ",".join(node.content) if node.type == "file" else (node.target or "")
        out[path] = (node.type, node.mode, node.mtime_ns, key)
    return out


def tree_changes(repo: Repository, first: str | None, second: str) -> tuple[list[str], list[str], list[str]]:
    """(added, removed, modified) paths from tree ``first`` (None: nothing) to tree ``second``."""
    repo.load_index()
    fa, fb = _flatten(repo, first), _flatten(repo, second)
    added = sorted(set(fb) - set(fa))
    removed = sorted(set(fa) - set(fb))
    changed = sorted(p for p in set(fa) & set(fb) if fa[p] != fb[p])
    return added, removed, changed


def change_lines(added: list[str], removed: list[str], changed: list[str]) -> list[str]:
    """``+ path`` / ``- path`` / ``M path`` lines (the form of ``diff`` and ``backup -v``)."""
    return [f"{mark} {printable(p)}" for mark, paths in (("+", added), ("-", removed), ("M", changed)) for p in paths]
