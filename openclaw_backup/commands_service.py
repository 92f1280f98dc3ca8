"""Commands for running as a Space's backup service: ``run``, ``status``, ``migrate``, ``legacy-env``.

Edge layer (see :mod:`.commands`): builds typed options from settings, returns (JSON, text, exit code).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path

from .commands import Result
from .errors import NotFoundError, UsageError
from .reporter import Reporter
from .service import Service, migrate
from .settings import Settings
from .supervisor import RunOptions, Supervisor

#: Legacy variables and what becomes of them (shown by ``openclaw-backup legacy-env``).
LEGACY_VARS: tuple[tuple[str, str], ...] = (
    ("OPENCLAW_BACKUP_DATASET_REPO", "honoured: the repository is hf://datasets/<it> (or models, see REPO_TYPE)"),
    ("HF_TOKEN", "honoured: Hub token (never printed)"),
    ("HUGGINGFACE_HUB_TOKEN", "honoured: Hub token when HF_TOKEN is unset"),
    ("OPENCLAW_RESTORE_DATASET_REPO", "honoured: restore from this repo (falls back to the backup repo)"),
    ("OPENCLAW_RESTORE_ARCHIVE", "honoured: restore this legacy archive"),
    ("OPENCLAW_BACKUP_ENCRYPTION_ENABLED", "honoured: true without a password is refused (not silently plaintext)"),
    ("OPENCLAW_BACKUP_ENCRYPTION_PASSWORD", "honoured: the repository password (and the legacy archives')"),
    ("OPENCLAW_STATE_DIR", "honoured: the state directory"),
    ("OPENCLAW_BACKUP_SOURCE_DIR", "honoured: overrides OPENCLAW_STATE_DIR"),
    ("OPENCLAW_BACKUP_ROOT_CONFIG_DIR", "honoured: extra root root-config"),
    ("OPENCLAW_BACKUP_ROOT_CODEX_DIR", "honoured: extra root root-codex"),
    ("OPENCLAW_BACKUP_ROOT_CLAUDE_DIR", "honoured: extra root root-claude"),
    ("OPENCLAW_BACKUP_ROOT_AGENTS_DIR", "honoured: extra root root-agents"),
    ("OPENCLAW_BACKUP_ROOT_SSH_DIR", "honoured: extra root root-ssh"),
    ("OPENCLAW_BACKUP_ROOT_ENV_DIR", "honoured: extra root root-env"),
    ("OPENCLAW_BACKUP_ROOT_LARK_CLI_DIR", "honoured: extra root root-lark-cli"),
    ("OPENCLAW_BACKUP_ROOT_NPM_DIR", "honoured: extra root root-npm"),
    ("OPENCLAW_BACKUP_NPM_ENABLED", "honoured: include root-npm"),
    ("OPENCLAW_RESTORE_NPM_ENABLED", "accepted; root-npm is restored when the snapshot has it"),
    ("OPENCLAW_BACKUP_EXTRA_DIRS", "honoured: name:/path,… extra roots"),
    ("OPENCLAW_BACKUP_EXTRA_FILES", "honoured: name:/path,… extra file roots"),
    ("OPENCLAW_BACKUP_REPO_TYPE", "honoured: dataset (default) or model"),
    ("OPENCLAW_BACKUP_PATH_PREFIX", "honoured: where the legacy archives are read from"),
    ("OPENCLAW_BACKUP_PRIVATE", "honoured: visibility of a repo we create"),
    ("OPENCLAW_BACKUP_KEEP_COUNT", "honoured: keep-last policy of the supervisor's forget/prune"),
    ("OPENCLAW_BACKUP_CRON", "honoured by `run`: */N minutes becomes the backup interval"),
    ("OPENCLAW_INCREMENTAL_INTERVAL_MINUTES", "honoured by `run`: the backup interval"),
    ("OPENCLAW_BACKUP_WORK_DIR", "ignored: no scratch archives are built"),
    ("OPENCLAW_BACKUP_METADATA_DIR", "ignored: metadata lives in the repository"),
    ("OPENCLAW_INCREMENTAL_BACKUP", "ignored: every backup is incremental and complete"),
    ("OPENCLAW_FULL_BACKUP_INTERVAL_HOURS", "ignored: no full/incremental chains"),
    ("OPENCLAW_MAX_INCREMENTAL_BACKUPS", "ignored: no chains"),
    ("OPENCLAW_BACKUP_COMPRESSION_LEVEL", "ignored: zstd per chunk, only when it pays"),
    ("OPENCLAW_BACKUP_SPLIT_SIZE", "ignored: data is packed in ~16 MiB packs"),
    ("OPENCLAW_BACKUP_SIZE_WARNING_MB", "ignored"),
    ("OPENCLAW_DYNAMIC_BACKUP", "ignored: `run` backs up soon after bursts of change"),
)


def interval_from(env: Mapping[str, str]) -> float:
    """Seconds between backups: OPENCLAW_BACKUP_INTERVAL, else the legacy cron/minutes, else 300."""
    if env.get("OPENCLAW_BACKUP_INTERVAL", "").strip():
        return _positive(env["OPENCLAW_BACKUP_INTERVAL"], "OPENCLAW_BACKUP_INTERVAL")
    cron = env.get("OPENCLAW_BACKUP_CRON", "").split()
    if cron and (m := re.fullmatch(r"\*/(\d+)", cron[0])) and all(f == "*" for f in cron[1:]):
        return int(m.group(1)) * 60.0
    if env.get("OPENCLAW_INCREMENTAL_INTERVAL_MINUTES", "").strip():
        return _positive(env["OPENCLAW_INCREMENTAL_INTERVAL_MINUTES"], "OPENCLAW_INCREMENTAL_INTERVAL_MINUTES") * 60
    return 300.0


def _positive(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1
    if value <= 0:
        raise UsageError(f"{what} must be a positive number, got {text!r}")
    return value


def status_path(s: Settings, args: argparse.Namespace) -> Path:
    explicit = getattr(args, "status_file", None) or s.env.get("OPENCLAW_BACKUP_STATUS_FILE")
    return Path(explicit) if explicit else s.cache_root() / "status.json"


def cmd_run(args: argparse.Namespace, s: Settings, reporter: Reporter) -> Result:
    command = [c for c in args.cmd if c != "--"] if args.cmd else []
    if not command:
        raise UsageError("no command to run", hint="openclaw-backup run -- <agent command …>")
    service = Service(s, reporter=reporter)

    def log(line: str) -> None:
        sys.stderr.write(f"openclaw-backup: {line}\n")
        sys.stderr.flush()

    interval = args.interval or interval_from(s.env)
    opts = RunOptions(
        command=command,
        interval=interval,
        poll=max(0.2, min(15.0, args.settle / 2)),
        min_gap=args.min_gap if args.min_gap is not None else min(60.0, interval),
        grace=args.grace if args.grace is not None else _positive(s.env.get("OPENCLAW_BACKUP_GRACE_SECONDS", "10"),
                                                                  "OPENCLAW_BACKUP_GRACE_SECONDS"),
        restore=args.restore,
        prune_interval=args.prune_interval,
        status_file=status_path(s, args),
        settle=args.settle,
    )  # fmt: skip
    code = Supervisor(opts, service, log=log).run()
    return {"exit_code": code, "_always": True}, "", code


def cmd_status(args: argparse.Namespace, s: Settings, reporter: Reporter) -> Result:
    path = status_path(s, args)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise NotFoundError(f"no status file at {path}", hint="is `openclaw-backup run` running here?") from None
    except ValueError:
        raise NotFoundError(f"status file {path} is unreadable") from None
    lines = [f"{k:16} {doc[k]}" for k in ("state", "last_success", "last_result", "last_error", "next_run",
                                          "backups_ok", "backups_failed", "child_pid") if k in doc]  # fmt: skip
    healthy = doc.get("healthy", not doc.get("last_error"))
    lines.append(f"{'healthy':16} {healthy}")
    if doc.get("degraded"):
        lines.append("the last backup is INCOMPLETE; these files were not stored as they are:")
        lines += [f"  {problem}" for problem in doc["degraded"]]
    return doc, "\n".join(lines), 0 if healthy else 1


def cmd_migrate(args: argparse.Namespace, s: Settings, reporter: Reporter) -> Result:
    doc = migrate(Service(s, reporter=reporter), dry_run=args.dry_run)
    verb = "would import" if args.dry_run else "imported"
    lines = [f"{verb} {d['archive']} ({d['time']})" for d in doc["imported"]]
    lines.append(f"{len(doc['imported'])} legacy backup(s) {verb}, {len(doc['already_imported'])} already imported")
    return doc, "\n".join(lines), 0


def cmd_legacy_env(args: argparse.Namespace, s: Settings, reporter: Reporter) -> Result:
    rows = [{"name": n, "set": n in s.env, "handling": h} for n, h in LEGACY_VARS]
    lines = [f"{'*' if r['set'] else ' '} {r['name']:40} {r['handling']}" for r in rows]
    lines.append("* = set in this environment. Values are never shown (some are secrets).")
    return {"variables": rows}, "\n".join(lines), 0
