"""The commands that show the tool rather than use a repository: ``excludes`` and ``demo``.

``excludes`` lists the patterns a backup would apply and why each default is there; ``demo``
backs up and restores a sample agent home (or a copy of the real one, read only) in a repository
of its own, under a temporary directory.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..reporter import Reporter
from ..settings import Settings
from ..sources import DEFAULT_EXCLUDES, NPM_ROOT, STATE_ROOT

if TYPE_CHECKING:  # the result type only: these commands need none of _common's imports
    from ._common import Result


def cmd_excludes(args: argparse.Namespace, s: Settings, reporter: Reporter) -> Result:
    rows: list[dict[str, Any]] = []
    if not args.no_default_excludes:
        rows += [{"pattern": p, "why": w, "default": True} for p, w in DEFAULT_EXCLUDES]
    rows += [{"pattern": p, "why": "from --exclude", "default": False} for p in args.exclude]
    width = max([len(r["pattern"]) for r in rows] + [20])
    lines = []
    if not args.no_default_excludes:
        lines.append(
            f"Defaults are anchored at the OpenClaw state root ({STATE_ROOT}/) and npm's root ({NPM_ROOT}/): "
            "nothing in a workspace or elsewhere is excluded by default."
        )
    lines += [f"{r['pattern']:{width}}  {r['why']}" for r in rows]
    lines.append("SQLite sidecars (-wal, -shm, -journal) are never stored: databases are captured through SQLite.")
    lines.append("Override a default with --exclude '!PATTERN', or drop them all with --no-default-excludes;")
    lines.append("`backup --dry-run` shows what each rule would leave out.")
    return {"excludes": rows}, "\n".join(lines), 0


def cmd_demo(args: argparse.Namespace, s: Settings, reporter: Reporter) -> Result:
    from ..demo import run_demo  # a backup and a restore: not what `excludes` should pay for

    doc, text = run_demo(workdir=Path(args.dir) if args.dir else None, settings=s, reporter=reporter)
    return doc, text, 0
