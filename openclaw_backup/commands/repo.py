"""The repository and what it holds: ``init``, ``key`` (list, add, passwd), ``snapshots``, ``ls``, ``diff``.

``key add``/``key passwd`` take the new password from ``--new-password-file``, else from the
settings (:meth:`~..settings.Settings.new_password`), else by asking twice on a terminal.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from ..backends import open_backend
from ..errors import EXIT_INCOMPLETE, UsageError
from ..reporter import Reporter
from ..repository import Repository, walk
from ..settings import Settings
from ..snapshot import Snapshot, group_key
from ._common import Result, change_lines, find_snapshot, human_size, open_repo, printable, tree_changes
from ._text import local_time

MIN_PASSWORD = 12  # characters; shorter passwords get a warning at init


#: Said at every ``init`` of an encrypted repository.
UNRECOVERABLE = (
    "Keep this password safe: without it these backups cannot be read. Nobody can recover it — "
    "not the store, not this tool. Keep a copy somewhere else (a password manager), and consider "
    "a second password (`openclaw-backup key add`)."
)


def cmd_init(args: argparse.Namespace, s: Settings, reporter: Reporter) -> Result:
    password = s.password()
    if args.insecure_no_encryption:
        if password:
            raise UsageError(
                "--insecure-no-encryption, but a password is configured",
                hint="unset OPENCLAW_BACKUP_PASSWORD / --password-file: an unencrypted repository refuses passwords",
            )
    elif not password:
        address = s.repository()  # a mistyped address is refused before the password is typed
        if s.can_ask():
            sys.stderr.write(f"Creating an encrypted repository at {address}.\n{UNRECOVERABLE}\n")
            sys.stderr.flush()
        password = s.ask_password(confirm=True)
        if not password:
            raise UsageError(
                "no password given for the new repository",
                hint="set OPENCLAW_BACKUP_PASSWORD, OPENCLAW_BACKUP_PASSWORD_FILE, --password-file or "
                "--password-command, or run it on a terminal to type one "
                "(or --insecure-no-encryption, not recommended)",
            )
    address = s.repository()  # an unknown or mistyped scheme is refused before anything is created
    if password and len(password) < MIN_PASSWORD:
        reporter.warn(f"the password has {len(password)} characters: anyone who gets the repository can guess it; "
                      f"use at least {MIN_PASSWORD} (a long passphrase is best)")  # fmt: skip
    backend = open_backend(address, s.backend_options(create=True))
    repo = Repository.init(
        backend,
        password=password,
        kdf=s.kdf_params(),
        cache_dir=s.cache_root(),
        hostname=s.host(),
        username=s.username(),
    )
    lines = [f"created repository {repo.id[:8]} at {backend.location}"]
    if not repo.encrypted:
        reporter.warn("this repository is NOT encrypted: anyone who can read the storage can read your files")
    else:
        lines.append(f"the password came from: {s.password_source()}")
        lines.append(UNRECOVERABLE)
    doc = {"id": repo.id, "location": backend.location, "encrypted": repo.encrypted}
    if repo.encrypted:
        doc["warning"] = UNRECOVERABLE
    return doc, "\n".join(lines), 0


def cmd_snapshots(args: argparse.Namespace, s: Settings, reporter: Reporter) -> Result:
    repo = open_repo(s, reporter=reporter, snapshot="latest")  # every snapshot, begun while the key is derived
    with repo.reading_ahead(snapshot="latest"):
        every = repo.snapshots()
    snaps = [
        sn for sn in every
        if (args.host is None or sn.host == args.host)
        and all(t in sn.tags for t in args.tag)
        and (args.group is None or group_key(sn) == args.group)
    ]  # fmt: skip
    rows = []
    for sn in snaps:
        doc = {"id": sn.id, **sn.to_json()}
        keys = ("id", "time", "host", "tags", "roots", "parent", "agent_version", "tool_version", "origin", "summary")
        rows.append({k: doc[k] for k in keys} | {"group": group_key(sn)})
    groups: dict[str, list[Snapshot]] = {}
    for sn in snaps:
        groups.setdefault(group_key(sn), []).append(sn)
    lines: list[str] = []
    for key, members in groups.items():
        host, _, roots = key.partition(":")
        lines.append(printable(f"group {host} — {roots.replace(',', ', ')}"))
        lines.append(f"  {'ID':8}  {'TIME':23}  {'FILES':>7}  {'SIZE':>10}  TAGS")
        for sn in members:
            summ = sn.summary
            lines.append(f"  {sn.id[:8]}  {local_time(sn.time):23}  {summ.get('files', 0):>7,}  "
                         f"{human_size(summ.get('bytes', 0)):>10}  {printable(', '.join(sn.tags))}")  # fmt: skip
    lines.append(f"{len(snaps)} snapshot(s) in {len(groups)} group(s); times in this machine's time zone")
    unreadable = {n[10:]: why for n, why in repo.unreadable.items() if n.startswith("snapshots/")}
    if unreadable:  # each was named in a warning; listing goes on, but not as if all were well
        lines.append(f"{len(unreadable)} unreadable snapshot(s) left out; "
                     f"`openclaw-backup forget ID` removes one, `openclaw-backup check` says more")  # fmt: skip
    return {"snapshots": rows, "unreadable": unreadable}, "\n".join(lines), EXIT_INCOMPLETE if unreadable else 0


def cmd_ls(args: argparse.Namespace, s: Settings, reporter: Reporter) -> Result:
    repo = open_repo(s, reporter=reporter, snapshot=args.snapshot, index=True)  # begun while the key is derived
    with repo.reading_ahead(snapshot=args.snapshot, index=True):  # the snapshots and the index: one round trip
        repo.load_index()
        snap = find_snapshot(repo, args.snapshot, s, reporter=reporter)
    prefix = args.path.strip("/")
    rows, lines = [], []
    for path, node in walk(repo, snap.tree):
        if prefix and not (path == prefix or path.startswith(prefix + "/")):
            continue
        rows.append({"path": path, "type": node.type, "size": node.size, "mode": oct(node.mode),
                     "mtime_ns": node.mtime_ns, "target": node.target})  # fmt: skip
        suffix = f" -> {node.target}" if node.type == "symlink" else ("/" if node.type == "dir" else "")
        lines.append(f"{oct(node.mode)[2:]:>4} {node.size:>12} {printable(path + suffix)}")
    return {"snapshot": snap.id, "entries": rows}, "\n".join(lines), 0


def cmd_diff(args: argparse.Namespace, s: Settings, reporter: Reporter) -> Result:
    repo = open_repo(s, reporter=reporter)
    repo.load_index()
    a, b = (find_snapshot(repo, ref, s, reporter=reporter) for ref in (args.first, args.second))
    added, removed, changed = tree_changes(repo, a.tree, b.tree)
    lines = change_lines(added, removed, changed)
    lines.append(f"{len(added)} added, {len(removed)} removed, {len(changed)} modified")
    doc = {"first": a.id, "second": b.id, "added": added, "removed": removed, "modified": changed}
    return doc, "\n".join(lines), 0


def _new_password(args: argparse.Namespace, s: Settings) -> str:
    configured = s.new_password(args.new_password_file)
    if configured is not None:
        return configured
    if sys.stdin.isatty():
        first = getpass.getpass("new password: ")
        if first != getpass.getpass("again: "):
            raise UsageError("the passwords differ")
        return first
    raise UsageError("no new password", hint="use --new-password-file or OPENCLAW_BACKUP_NEW_PASSWORD")


def cmd_key(args: argparse.Namespace, s: Settings, reporter: Reporter) -> Result:
    repo = open_repo(s, reporter=reporter)
    if args.key_command in (None, "list"):
        keys = repo.describe_keys()
        lines = [f"{k['id']}  {k.get('created', '')}  {k.get('username', '')}@{k.get('hostname', '')}" for k in keys]
        return {"keys": keys}, "\n".join(lines), 0
    new = _new_password(args, s)
    kid = repo.add_key(new, kdf=s.kdf_params(), hostname=s.host(), username=s.username())
    if args.key_command == "add":
        return {"added": kid[:12]}, f"added key {kid[:12]}", 0
    old = [n for n in repo.current_key_names(s.password() or "") if not n.endswith(kid)]
    repo.remove_keys(old)
    return {"added": kid[:12], "removed": [n.split("/")[-1][:12] for n in old]}, "password changed", 0
