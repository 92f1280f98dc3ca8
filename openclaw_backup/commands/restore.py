"""``restore``: put a snapshot back, atomically, into the places this machine configures or under ``--target``.

With the legacy script's configuration and no ``--include``, ``restore`` does what that script did:
restore the newest state, ours or the legacy archives' (:meth:`..service.Service.restore_latest`).
A restore into place also seeds the file cache, so the next backup does not read what it wrote.
"""

from __future__ import annotations

import argparse
import os
import shlex
import stat as stat_mod
import sys
from pathlib import Path

from ..errors import EXIT_PARTIAL, UsageError
from ..marker import write_marker
from ..reporter import Reporter
from ..repository import Repository, walk
from ..restorer import RestoreOptions, restore
from ..settings import Settings, restore_destinations
from ..snapshot import Snapshot, written_by_newer
from ..sources import STATE_ROOT
from ..swap import holds_something, kept_copies_note
from ._common import Result, count, file_cache, find_snapshot, human_size, open_repo, printable


def cmd_restore(args: argparse.Namespace, s: Settings, reporter: Reporter) -> Result:
    if s.legacy_mode() and not args.include:  # the legacy script's `restore`: ours or legacy, newest
        from ..service import Service

        account = Service(s, reporter=reporter).restore_latest(
            snapshot=args.snapshot, target=Path(args.target) if args.target else None
        )
        return {"result": account}, account, 0
    repo = open_repo(s, reporter=reporter, snapshot=args.snapshot, index=True)  # begun while the key is derived
    with repo.reading_ahead(snapshot=args.snapshot, index=True):  # the snapshots and the index: one round trip
        snap = find_snapshot(repo, args.snapshot, s, reporter=reporter)
        repo.load_index()
    dest = restore_destinations(snap.roots, s, args.target)
    delete = args.delete or not args.target  # in place the state becomes the snapshot exactly
    if args.dry_run:
        return _dry_run(repo, snap, dest, args.include, delete=delete)
    installed = s.installed_agent_version() if STATE_ROOT in snap.roots else None
    if written_by_newer(snap, installed):
        reporter.warn(f"snapshot {snap.id[:8]} holds state last written by OpenClaw {snap.agent_version}, newer than "
                      f"the installed {installed}: OpenClaw refuses state from newer versions; upgrade OpenClaw, "
                      "or restore an older snapshot (`openclaw-backup snapshots`)")  # fmt: skip
    occupied = [str(p) for p in dest.values() if holds_something(p)]
    if occupied and not args.target and not args.yes and sys.stdin.isatty():
        answer = input(f"replace {', '.join(occupied)} with snapshot {snap.id[:8]} ({snap.time[:19]})? "
                       "What it replaces is kept beside it. [y/N] ")  # fmt: skip
        if answer.strip().lower() not in ("y", "yes"):
            raise UsageError("restore cancelled; nothing was changed", hint="pass --yes to restore without asking")
    partial = args.partial or bool(args.target)  # in place only when asked for
    seeds = not args.target and repo.cache_dir is not None  # the file cache is seeded only in place
    opts = RestoreOptions(destinations=dest, includes=args.include, delete=delete, partial=partial, seeds=seeds)
    res = restore(repo, snap, opts, reporter=reporter)
    if seeds:
        file_cache(repo).replace(res.seeds, merge=True)
    if not args.target and not args.include and not res.failed and STATE_ROOT in snap.roots:
        write_marker(Path(s.state_dir()), repository=repo.id, snapshot=snap.id, how="restore")
    lines = [f"restored snapshot {snap.id[:8]}: {res.files} files, {human_size(res.bytes)}"]
    lines += [f"  {k} -> {printable(str(v))}" for k, v in res.restored.items()]
    if res.carried:
        lines.append(f"left in place {res.carried} entries the snapshot does not have (--delete removes them)")
    if res.hardlinks:
        lines.append(f"{count(res.hardlinks, 'file')} restored as hard links, as they were")
    if res.owners_not_restored:
        lines.append(f"note: {count(res.owners_not_restored, 'entry')} owned by other users now belong to you "
                     "(owners are restored only when restoring as root)")  # fmt: skip
    if res.xattrs_not_restored:
        lines.append(f"note: {count(res.xattrs_not_restored, 'extended attribute')} outside user.* not restored "
                     "(this process may not set them)")  # fmt: skip
    for where, kept in res.kept.items():
        lines.append(f"what it replaced is kept at {printable(kept)}")
        lines.append(f"  to undo: mv {shlex.quote(where)} {shlex.quote(where + '.restored')} && "
                     f"mv {shlex.quote(kept)} {shlex.quote(where)}")  # fmt: skip
        lines += [note] if (note := kept_copies_note(Path(where))) else []
    if res.failed:
        lines.append(f"PARTIAL: {len(res.failed)} path(s) could NOT be restored (their data is missing or damaged "
                     "in the repository):")  # fmt: skip
        lines += [f"  {printable(p)}: {printable(why)}" for p, why in sorted(res.failed.items())]
        lines.append("next: `openclaw-backup check --read-data` (records the damage; the next backup stores again "
                     "what the sources hold), or restore these from an older snapshot with --include")  # fmt: skip
        return res.to_json(), "\n".join(lines), EXIT_PARTIAL
    return res.to_json(), "\n".join(lines), 0


def _dry_run(repo: Repository, snap: Snapshot, dest: dict[str, Path], includes: list[str], *, delete: bool) -> Result:
    """What a restore would create, replace and remove (or leave), compared by type, size and mtime."""
    repo.load_index()
    wanted = [i.strip("/") for i in includes]
    create: list[str] = []
    replace: list[str] = []
    remove: list[str] = []
    same = 0
    in_snapshot: set[str] = set()
    for path, node in walk(repo, snap.tree):
        root, _, rel = path.partition("/")
        if root not in dest or (wanted and not any(path == w or path.startswith(w + "/") for w in wanted)):
            continue
        local = dest[root] / rel if rel else dest[root]
        in_snapshot.add(os.fspath(local))
        try:
            st = os.lstat(local)
        except FileNotFoundError:
            create.append(os.fspath(local))
            continue
        kind = "dir" if stat_mod.S_ISDIR(st.st_mode) else "symlink" if stat_mod.S_ISLNK(st.st_mode) else "file"
        if kind != node.type or (kind == "file" and (st.st_size, st.st_mtime_ns) != (node.size, node.mtime_ns)):
            replace.append(os.fspath(local))
        else:
            same += 1
    for top in {dest[w.partition("/")[0]] / w.partition("/")[2] for w in wanted} or set(dest.values()):
        for base, dirs, files in os.walk(top):
            for name in dirs + files:
                p = os.path.join(base, name)
                if p not in in_snapshot and not any(p.startswith(r + "/") for r in remove):
                    remove.append(p)
    verb = "remove" if delete else "leave in place"
    lines = ["dry run: nothing was changed", f"would create {len(create)}, replace {len(replace)}, "
             f"{verb} {len(remove)}, leave {same} unchanged"]  # fmt: skip
    lines += [f"+ {printable(p)}" for p in create] + [f"M {printable(p)}" for p in replace]
    lines += [f"{'-' if delete else '='} {printable(p)}" for p in remove]
    doc = {"snapshot": snap.id, "create": create, "replace": replace, ("remove" if delete else "leave"): remove,
           "unchanged": same, "dry_run": True}  # fmt: skip
    return doc, "\n".join(lines), 0
