"""``restore``: put a snapshot back, atomically, into the places this machine configures or under ``--target``.

With the legacy script's configuration and no ``--include``, ``restore`` does what that script did:
restore the newest state, ours or the legacy archives' (:meth:`..service.Service.restore_latest`).
A restore into place also seeds the file cache, so the next backup does not read what it wrote.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..reporter import Reporter
from ..restorer import RestoreOptions, restore
from ..settings import Settings, restore_destinations
from ._common import Result, file_cache, human_size, open_repo


def cmd_restore(args: argparse.Namespace, s: Settings, reporter: Reporter) -> Result:
    if s.legacy_mode() and not args.include:  # the legacy script's `restore`: ours or legacy, newest
        from ..service import Service

        account = Service(s, reporter=reporter).restore_latest(
            snapshot=args.snapshot, target=Path(args.target) if args.target else None
        )
        return {"result": account}, account, 0
    repo = open_repo(s, reporter=reporter)
    snap = repo.find_snapshot(args.snapshot)
    dest = restore_destinations(snap.roots, s, args.target)
    res = restore(repo, snap, RestoreOptions(destinations=dest, includes=args.include), reporter=reporter)
    if not args.target and repo.cache_dir:
        file_cache(repo).replace(res.seeds, merge=True)
    text = f"restored snapshot {snap.id[:8]}: {res.files} files, {human_size(res.bytes)}\n" + "\n".join(
        f"  {k} -> {v}" for k, v in res.restored.items()
    )
    return res.to_json(), text, 0
