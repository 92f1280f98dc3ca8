"""A Space's backup service: ``run`` (supervise the agent), ``status``, ``migrate``, ``legacy-env``.

``run`` builds the :class:`~..supervisor.RunOptions` from the flags, else the settings (interval,
max age, grace, status file); the jobs it schedules are a :class:`~..service.Service`'s. ``status`` reads
the status file ``run`` writes. ``legacy-env`` lists the legacy script's variables
(:data:`~..settings.LEGACY_VARS`), whether each is set and how it is handled, never a value.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from ..errors import NotFoundError, UsageError
from ..reporter import Reporter
from ..settings import Settings
from ._text import status_text

if TYPE_CHECKING:  # the result type only: these commands need none of _common's imports
    from ._common import Result

# ``run`` and ``migrate`` import the service (a backup and a restore engine) themselves: ``status``
# and ``legacy-env`` are asked often, by health checks and people, and need none of it.


def cmd_run(args: argparse.Namespace, s: Settings, reporter: Reporter) -> Result:
    from ..service import Service
    from ..supervisor import RunOptions, Supervisor

    command = [c for c in args.cmd if c != "--"] if args.cmd else []
    if not command:
        raise UsageError("no command to run", hint="openclaw-backup run -- <agent command …>")
    s.prompt = None  # a supervisor never waits on a terminal (its backups run in the background)
    service = Service(s, reporter=reporter)

    def log(line: str) -> None:
        sys.stderr.write(f"openclaw-backup: {line}\n")
        sys.stderr.flush()

    interval = args.interval or s.interval()
    max_age = args.max_age if args.max_age is not None else s.max_age()
    if max_age <= 0:
        raise UsageError(f"--max-age must be a positive number of seconds, got {max_age}")
    opts = RunOptions(
        command=command,
        interval=interval,
        max_age=max_age,
        poll=max(0.2, min(15.0, args.settle / 2, max_age / 4)),
        min_gap=args.min_gap if args.min_gap is not None else min(60.0, interval),
        grace=args.grace if args.grace is not None else s.grace(),
        restore=args.restore,
        prune_interval=args.prune_interval,
        status_file=s.status_file(args.status_file),
        settle=args.settle,
        env=s.agent_environment(),
    )  # fmt: skip
    code = Supervisor(opts, service, log=log).run()
    return {"exit_code": code, "_always": True}, "", code


def cmd_status(args: argparse.Namespace, s: Settings, reporter: Reporter) -> Result:
    path = s.status_file(args.status_file)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise NotFoundError(f"no status file at {path}", hint="is `openclaw-backup run` running here?") from None
    except ValueError:
        raise NotFoundError(f"status file {path} is unreadable") from None
    healthy = bool(doc.get("healthy", not doc.get("last_error")))
    text, running = status_text(doc, healthy)
    lines = [text]
    if doc.get("degraded"):
        lines.append("the last backup is INCOMPLETE; these files were not stored as they are:")
        lines += [f"  {problem}" for problem in doc["degraded"]]
    doc = {**doc, "running": running}
    return doc, "\n".join(lines), 0 if healthy and running else 1


def cmd_migrate(args: argparse.Namespace, s: Settings, reporter: Reporter) -> Result:
    from ..service import Service, migrate

    doc = migrate(Service(s, reporter=reporter), dry_run=args.dry_run)
    verb = "would import" if args.dry_run else "imported"
    lines = [f"{verb} {d['archive']} ({d['time']})" for d in doc["imported"]]
    lines.append(f"{len(doc['imported'])} legacy backup(s) {verb}, {len(doc['already_imported'])} already imported")
    return doc, "\n".join(lines), 0


def cmd_legacy_env(args: argparse.Namespace, s: Settings, reporter: Reporter) -> Result:
    rows = [{"name": n, "set": is_set, "handling": h} for n, is_set, h in s.legacy_variables()]
    lines = [f"{'*' if r['set'] else ' '} {r['name']:40} {r['handling']}" for r in rows]
    lines.append("* = set in this environment. Values are never shown (some are secrets).")
    return {"variables": rows}, "\n".join(lines), 0
