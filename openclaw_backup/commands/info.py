"""The commands that tell what this installation is and would use: ``version`` and ``config``.

``version`` names the package, the Python and the libraries that decide what it can do (the Hub
client, the SQLite bundled with APSW). ``config`` shows the effective configuration, resolved by
:class:`~..settings.Settings` exactly as a backup would resolve it, and never a secret's value.
"""

from __future__ import annotations

import argparse
import os
import platform
from importlib import metadata
from typing import TYPE_CHECKING

from .. import __version__
from ..errors import BackupError
from ..reporter import Reporter
from ..settings import Settings, env_files_read
from ..sources import DEFAULT_EXCLUDES

if TYPE_CHECKING:  # the result type only: these commands open no repository
    from ._common import Result

#: The libraries ``version`` reports (distribution names).
LIBRARIES = ("huggingface_hub", "httpx2", "botocore", "apsw", "cryptography", "zstandard", "blake3", "pyfastcdc")


def _installed(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def cmd_version(args: argparse.Namespace, s: Settings, reporter: Reporter) -> Result:
    import apsw  # the SQLite that captures databases is APSW's own, not the system's

    libs = {name: _installed(name) for name in LIBRARIES}
    doc = {"version": __version__, "python": platform.python_version(), "sqlite": apsw.sqlite_lib_version(),
           "libraries": libs}  # fmt: skip
    lines = [f"openclaw-backup {__version__}", f"python          {doc['python']}",
             f"sqlite          {doc['sqlite']} (bundled with apsw)"]  # fmt: skip
    lines += [f"{name:15} {v or 'not installed'}" for name, v in libs.items()]
    return doc, "\n".join(lines), 0


def cmd_config(args: argparse.Namespace, s: Settings, reporter: Reporter) -> Result:
    """The effective configuration; opens nothing, prints no secret. Exit 1 when something in it
    would stop backups from protecting the agent (the problems are listed)."""
    problems: list[str] = []

    def value(get: object, what: str) -> str | None:
        try:
            return str(get() if callable(get) else get)
        except BackupError as e:
            problems.append(f"{what}: {e.message}")
            return None

    repository = value(s.repository, "repository")
    durability = s.durability_problem() if repository else None
    if durability is not None:
        problems.append(durability.message + (f" ({durability.hint})" if durability.hint else ""))
    source = s.password_source()
    if source == "none" and not args.insecure_ok:
        problems.append("no password: set OPENCLAW_BACKUP_PASSWORD, OPENCLAW_BACKUP_PASSWORD_FILE or "
                        "OPENCLAW_BACKUP_PASSWORD_COMMAND (an unencrypted repository needs none)")  # fmt: skip
    try:
        layout = s.layout_roots()
    except BackupError as e:
        layout = []
        problems.append(f"roots: {e.message}")
    roots = [{"name": r.name, "path": r.path, "exists": os.path.lexists(r.path)} for r in layout]
    env_files = [{"path": path, "variables": names} for path, names in env_files_read(s.process_env or s.env)]
    unknown = [{"name": n, "did_you_mean": close} for n, close in s.unknown_variables()]
    doc = {
        "repository": repository,
        "repository_from": s.repository_source(),
        "password_from": source,
        "hub_token_from": s.token_source(),
        "roots": roots,
        "excludes": {"defaults": len(DEFAULT_EXCLUDES), "anchored_at": "openclaw-state/ and root-npm/"},
        "env_files": env_files,
        "cache_dir": str(s.cache_root()),
        "status_file": str(s.status_file()),
        "host": s.host(),
        "space": s.space_id(),
        "unknown_variables": unknown,
        "problems": problems,
    }
    lines = [
        f"repository      {repository or '(invalid)'}",
        f"                from {doc['repository_from']}",
        f"password        {'none configured' if source == 'none' else 'from ' + source} (never shown)",
    ]
    if repository and repository.startswith("hf://"):
        lines.append(f"hub token       from {doc['hub_token_from'] or 'none (only public repositories can be read)'}")
    lines.append(f"space           {s.space_id() or 'not detected (no SPACE_ID)'}")
    lines.append(f"host            {doc['host']} (recorded in snapshots)")
    lines.append(f"cache           {doc['cache_dir']}")
    lines.append("roots           (the OpenClaw layout; only those that exist are backed up)")
    lines += [f"  {r['name']:14}  {r['path']}{'' if r['exists'] else '  (missing)'}" for r in roots]
    lines.append(f"excludes        {len(DEFAULT_EXCLUDES)} defaults, anchored at openclaw-state/ and root-npm/ "
                 "(`openclaw-backup excludes` lists them)")  # fmt: skip
    if env_files:
        lines.append("env files read")
        lines += [f"  {f['path']}: {', '.join(f['variables']) or 'nothing new'}" for f in env_files]
    else:
        lines.append("env files read  none")
    for u in unknown:
        close = f"; did you mean {u['did_you_mean']}?" if u["did_you_mean"] else ""
        lines.append(f"unknown         {u['name']} is ignored{close}")
    lines += [f"PROBLEM         {p}" for p in problems]
    return doc, "\n".join(lines), 1 if problems else 0
