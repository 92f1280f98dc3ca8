"""``backup`` and ``backup --dry-run``: take a snapshot, or show what one would store, read and leave out.

The exclude patterns of a backup are the built-in defaults (unless ``--no-default-excludes``), the
``--exclude-file`` lines, the ``--exclude`` flags, then the leftovers of interrupted restores, which
are never stored. A dry run plans with the same patterns (:mod:`..plan`) and writes nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..archiver import BackupOptions, backup
from ..backends import open_backend
from ..errors import EXIT_INCOMPLETE, BackupError, NotFoundError, RepositoryNotFoundError, UsageError
from ..filecache import FileCache
from ..marker import write_marker
from ..reporter import Reporter
from ..repository import Repository
from ..settings import Settings, sources_from_paths
from ..sources import INTERNAL_EXCLUDES, default_patterns, default_reason
from ._common import (
    Result,
    change_lines,
    count,
    file_cache,
    file_cache_path,
    human_size,
    open_repo,
    printable,
    tree_changes,
)

if TYPE_CHECKING:
    from ..plan import BackupPlan


def exclude_patterns(args: argparse.Namespace) -> list[str]:
    """The exclude patterns a backup with these arguments applies, in order."""
    patterns = [] if args.no_default_excludes else default_patterns()
    for f in getattr(args, "exclude_file", []):
        try:
            patterns += Path(f).read_text().splitlines()
        except OSError as e:
            raise UsageError(f"cannot read exclude file {f}: {e.strerror}") from None
    patterns += args.exclude
    patterns += list(INTERNAL_EXCLUDES)
    return patterns


def cmd_backup(args: argparse.Namespace, s: Settings, reporter: Reporter) -> Result:
    if args.dry_run:
        return _dry_run(args, s, reporter)
    if s.legacy_mode():  # the legacy script's `backup`: create our repository on first use
        from ..service import Service

        repo = Service(s, reporter=reporter).repo(create=True)
    else:
        repo = open_repo(s, reporter=reporter)
    roots = sources_from_paths(args.source) if args.source else s.default_roots()
    opts = BackupOptions(
        roots=roots,
        excludes=exclude_patterns(args),
        tags=args.tag,
        host=args.host or s.host(),
        username=s.username(),
        agent_version=s.agent_version(),
        force=args.force,
        scratch_dir=s.cache_root() / "tmp",
    )
    res = backup(repo, opts, reporter=reporter, cache=file_cache(repo))
    if not args.source:  # the agent's own state: mark it as backed up here (see marker.py)
        write_marker(Path(s.state_dir()), repository=repo.id, snapshot=res.snapshot_id or res.parent_id, how="backup")
    st = res.stats
    if res.unchanged:
        text = f"no changes since snapshot {res.parent_id[:8] if res.parent_id else '?'}; no snapshot made"
    else:
        text = (
            f"snapshot {res.snapshot_id[:8] if res.snapshot_id else '?'} saved: {st['files']} files, "
            f"{human_size(st['bytes'])}; read {st['files_read']} files ({human_size(st['bytes_read'])}), "
            f"added {human_size(st['bytes_added'])} to the repository"
        )
    if args.verbose and res.snapshot_id:  # -v: the files this backup changed, as `diff` shows them
        parent = repo.find_snapshot(res.parent_id).tree if res.parent_id else None
        added, removed, changed = tree_changes(repo, parent, repo.find_snapshot(res.snapshot_id).tree)
        text += "\n" + "\n".join(change_lines(added, removed, changed))
        text += f"\n{len(added)} added, {len(removed)} removed, {len(changed)} modified"
    text += "\n" + "\n".join(excluded_lines(res.excluded, measured=False) + special_lines(res.special))
    if res.degraded:
        text += (
            f"\nINCOMPLETE: {len(res.warnings)} problem(s) above; this snapshot holds less than, or other than,"
            " what the sources had for the files named"
        )
    code = EXIT_INCOMPLETE if res.warnings else 0
    return res.to_json(), text, code


# ---------------------------------------------------------------------------- --dry-run


def _plan_cache(s: Settings) -> tuple[FileCache | None, str]:
    """The repository's file cache, found without the password (the config, which names the cache,
    is not encrypted) and without writing anything; or None and why."""
    try:
        backend = open_backend(s.repository(), s.backend_options())
        repo_id = Repository.peek_id(backend)
    except (NotFoundError, RepositoryNotFoundError):
        return None, f"no repository at {s.repository()} yet: every file would be read"
    except BackupError as e:
        return None, f"cannot read the repository ({e.message}): counted as if every file would be read"
    path = file_cache_path(s.cache_root() / repo_id)
    if path is None or not path.exists():
        return None, "no file cache for this repository on this machine yet: every file would be read"
    return FileCache(path), ""


def _dry_run(args: argparse.Namespace, s: Settings, reporter: Reporter) -> Result:
    from ..plan import plan_backup

    roots = sources_from_paths(args.source) if args.source else s.default_roots()
    cache, note = _plan_cache(s)
    first_warning = len(reporter.warnings)
    plan = plan_backup(roots, exclude_patterns(args), cache=cache, warn=reporter.warn)
    if all(r.kind == "missing" for r in plan.roots):
        raise UsageError(
            "nothing to back up: none of the sources exist (" + ", ".join(r.path for r in roots) + ")",
            hint="set OPENCLAW_STATE_DIR or pass --source",
        )
    doc = plan.to_json()
    doc["note"] = note
    warnings = reporter.warnings[first_warning:]
    doc["warnings"] = warnings
    return doc, _plan_text(plan, note), EXIT_INCOMPLETE if warnings else 0


def _plan_text(plan: BackupPlan, note: str) -> str:
    t = plan.total
    lines = [
        "dry run: nothing was stored or written",
        f"would store {count(t('files'), 'file')} ({human_size(t('bytes'))}), {count(t('dirs'), 'folder')}, "
        f"{count(t('symlinks'), 'symlink')}",
        f"would read {count(t('files_to_read'), 'file')} ({human_size(t('bytes_to_read'))}); "
        f"{count(t('files_cached'), 'unchanged file')} ({human_size(t('bytes_cached'))}) reused from the file cache",
    ]
    if note:
        lines.append(f"  ({note})")
    width = max(len(r.name) for r in plan.roots)
    for r in plan.roots:
        if r.kind == "missing":
            lines.append(f"  {r.name:{width}}  {r.path}: missing")
            continue
        lines.append(f"  {r.name:{width}}  {r.path}: {count(r.files, 'file')}, {human_size(r.bytes)}; "
                     f"read {r.files_to_read:,} ({human_size(r.bytes_to_read)})")  # fmt: skip
    if plan.largest_to_read:
        lines.append("largest files to read:")
        lines += [f"  {human_size(n):>10}  {p}" for p, n in plan.largest_to_read[:5]]
    lines += excluded_lines(plan.excluded.to_json(), measured=True) + special_lines(plan.excluded.specials)
    return "\n".join(lines)


def special_lines(special: list[dict[str, str]], *, limit: int = 5) -> list[str]:
    """The sockets, fifos and devices a scan met: named, since nothing of them is stored."""
    if not special:
        return []
    named = ", ".join(f"{s['kind']} {printable(s['path'])}" for s in special[:limit])
    more = f" and {len(special) - limit} more" if len(special) > limit else ""
    return [f"not stored: {len(special)} special file(s), which hold no file data: {named}{more}"]


def excluded_lines(by_rule: dict[str, dict[str, Any]], *, measured: bool) -> list[str]:
    """What the exclude rules left out, one line per rule with its reason (``by_rule`` is
    :meth:`~..sources.ExclusionReport.to_json`); without ``measured``, excluded folders were not
    walked and their sizes are unknown."""
    if not by_rule:
        return ["left out by exclude rules: nothing"]
    total = sum(r["bytes"] for r in by_rule.values())
    entries = sum(r["entries"] for r in by_rule.values())
    size = human_size(total) if measured else f"{human_size(total)} of files, folders not measured"
    lines = [f"left out by exclude rules: {count(entries, 'entry')}, {size}"]
    for pattern, row in sorted(by_rule.items(), key=lambda kv: -kv[1]["bytes"]):
        why = default_reason(pattern) or "from --exclude"
        lines.append(f"  {pattern}  {count(row['entries'], 'entry')}, {count(row['files'], 'file')}, "
                     f"{human_size(row['bytes'])}: {why}")  # fmt: skip
        paths = row.get("paths", [])
        lines += [f"      {p['path']}  ({human_size(p['bytes'])})" for p in paths[:5]]
        if len(paths) > 5:
            lines.append(f"      … and {len(paths) - 5} more")
    return lines
