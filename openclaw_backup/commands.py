"""The commands behind the CLI: each takes parsed arguments and settings, returns (JSON, text, exit code).

This is still the edge layer (it builds typed options from :class:`~.settings.Settings`), but it
neither prints nor exits: :mod:`.cli` does.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .archiver import BackupOptions, backup
from .backends import open_backend
from .errors import IntegrityError, NotFoundError, PartialError, UsageError
from .filecache import FileCache
from .reporter import Reporter
from .repository import Repository, walk
from .settings import Settings, restore_destinations, sources_from_paths
from .sources import DEFAULT_EXCLUDES, default_patterns

if TYPE_CHECKING:
    from .retention import Policy

# Modules only some commands need (restore, check, stats, forget, prune, repair) are imported by
# those commands: every CLI run pays for what it imports, and a backup every few minutes runs often.

Result = tuple[dict[str, Any], str, int]


def _settings(args: argparse.Namespace, env: Mapping[str, str]) -> Settings:
    return Settings(
        env,
        repo=args.repo,
        password_file=args.password_file,
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
    )


def open_repo(settings: Settings, *, reporter: Reporter) -> Repository:
    backend = open_backend(settings.repository(), settings.backend_options())
    repo = Repository.open(backend, password=settings.password(), cache_dir=settings.cache_root())
    for w in repo.warnings:
        reporter.warn(w)
    return repo


def _human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _excludes(args: argparse.Namespace) -> list[str]:
    patterns = [] if args.no_default_excludes else default_patterns()
    for f in getattr(args, "exclude_file", []):
        try:
            patterns += Path(f).read_text().splitlines()
        except OSError as e:
            raise UsageError(f"cannot read exclude file {f}: {e.strerror}") from None
    patterns += args.exclude
    patterns += [".*.openclaw-restore-*", ".*.openclaw-old-*"]
    return patterns


# ---------------------------------------------------------------------------- commands


def cmd_init(args: argparse.Namespace, s: Settings, reporter: Reporter) -> Result:
    password = s.password()
    if args.insecure_no_encryption:
        if password:
            raise UsageError(
                "--insecure-no-encryption, but a password is configured",
                hint="unset OPENCLAW_BACKUP_PASSWORD / --password-file: an unencrypted repository refuses passwords",
            )
    elif not password:
        raise UsageError(
            "no password given for the new repository",
            hint="set OPENCLAW_BACKUP_PASSWORD or --password-file (or --insecure-no-encryption, not recommended)",
        )
    backend = open_backend(s.repository(), s.backend_options(create=True))
    repo = Repository.init(
        backend,
        password=password,
        kdf=s.kdf_params(),
        cache_dir=s.cache_root(),
        hostname=s.host(),
        username=s.username(),
    )
    text = f"created repository {repo.config.id[:8]} at {backend.location}"
    if not repo.cipher.encrypted:
        reporter.warn("this repository is NOT encrypted: anyone who can read the storage can read your files")
    return {"id": repo.config.id, "location": backend.location, "encrypted": repo.cipher.encrypted}, text, 0


def legacy_mode(env: Mapping[str, str], args: argparse.Namespace) -> bool:
    """The legacy script's configuration drives this run (no repository given the new way)."""
    return bool(env.get("OPENCLAW_BACKUP_DATASET_REPO")) and not args.repo and not env.get("OPENCLAW_BACKUP_REPOSITORY")


def cmd_backup(args: argparse.Namespace, s: Settings, reporter: Reporter) -> Result:
    if legacy_mode(s.env, args):  # the legacy script's `backup`: create our repository on first use
        from .service import Service

        repo = Service(s, reporter=reporter).repo(create=True)
    else:
        repo = open_repo(s, reporter=reporter)
    roots = sources_from_paths(args.source) if args.source else s.default_roots()
    opts = BackupOptions(
        roots=roots,
        excludes=_excludes(args),
        tags=args.tag,
        host=args.host or s.host(),
        username=s.username(),
        agent_version=s.agent_version(),
        force=args.force,
        scratch_dir=s.cache_root() / "tmp",
    )
    cache = FileCache(repo.cache_dir / "files.db" if repo.cache_dir else None)
    res = backup(repo, opts, reporter=reporter, cache=cache)
    st = res.stats
    if res.unchanged:
        text = f"no changes since snapshot {res.parent_id[:8] if res.parent_id else '?'}; no snapshot made"
    else:
        text = (
            f"snapshot {res.snapshot_id[:8] if res.snapshot_id else '?'} saved: {st['files']} files, "
            f"{_human_size(st['bytes'])}; read {st['files_read']} files ({_human_size(st['bytes_read'])}), "
            f"added {_human_size(st['bytes_added'])} to the repository"
        )
    code = PartialError.exit_code if res.warnings else 0
    return res.to_json(), text, code


def cmd_snapshots(args: argparse.Namespace, s: Settings, reporter: Reporter) -> Result:
    repo = open_repo(s, reporter=reporter)
    snaps = repo.snapshots()
    rows = []
    lines = [f"{'ID':8}  {'TIME':25}  {'HOST':16}  {'FILES':>7}  {'SIZE':>10}  ROOTS"]
    for sn in snaps:
        summ = sn.get("summary", {})
        rows.append({k: sn.get(k) for k in ("id", "time", "host", "tags", "roots", "parent", "agent_version",
                                              "tool_version", "origin", "summary")})  # fmt: skip
        lines.append(
            f"{sn['id'][:8]}  {str(sn.get('time', ''))[:25]:25}  {str(sn.get('host', ''))[:16]:16}  "
            f"{summ.get('files', 0):>7}  {_human_size(summ.get('bytes', 0)):>10}  {','.join(sn.get('roots', {}))}"
        )
    lines.append(f"{len(snaps)} snapshot(s)")
    return {"snapshots": rows}, "\n".join(lines), 0


def cmd_ls(args: argparse.Namespace, s: Settings, reporter: Reporter) -> Result:
    repo = open_repo(s, reporter=reporter)
    repo.load_index()
    snap = repo.find_snapshot(args.snapshot)
    prefix = args.path.strip("/")
    rows, lines = [], []
    for path, node in walk(repo, snap["tree"]):
        if prefix and not (path == prefix or path.startswith(prefix + "/")):
            continue
        rows.append({"path": path, "type": node.type, "size": node.size, "mode": oct(node.mode),
                     "mtime_ns": node.mtime_ns, "target": node.target})  # fmt: skip
        suffix = f" -> {node.target}" if node.type == "symlink" else ("/" if node.type == "dir" else "")
        lines.append(f"{oct(node.mode)[2:]:>4} {node.size:>12} {path}{suffix}")
    return {"snapshot": snap["id"], "entries": rows}, "\n".join(lines), 0


def _flatten(repo: Repository, tree: str) -> dict[str, tuple[str, int, int, str]]:
    out = {}
    for path, node in walk(repo, tree):
        key = ",".join(node.content) if node.type == "file" else (node.target or "")
        out[path] = (node.type, node.mode, node.mtime_ns, key)
    return out


def cmd_diff(args: argparse.Namespace, s: Settings, reporter: Reporter) -> Result:
    repo = open_repo(s, reporter=reporter)
    repo.load_index()
    a, b = repo.find_snapshot(args.first), repo.find_snapshot(args.second)
    fa, fb = _flatten(repo, a["tree"]), _flatten(repo, b["tree"])
    added = sorted(set(fb) - set(fa))
    removed = sorted(set(fa) - set(fb))
    changed = sorted(p for p in set(fa) & set(fb) if fa[p] != fb[p])
    lines = [f"+ {p}" for p in added] + [f"- {p}" for p in removed] + [f"M {p}" for p in changed]
    lines.append(f"{len(added)} added, {len(removed)} removed, {len(changed)} modified")
    doc = {"first": a["id"], "second": b["id"], "added": added, "removed": removed, "modified": changed}
    return doc, "\n".join(lines), 0


def cmd_restore(args: argparse.Namespace, s: Settings, reporter: Reporter) -> Result:
    from .restorer import RestoreOptions, restore

    if legacy_mode(s.env, args) and not args.include:  # the legacy script's `restore`: ours or legacy, newest
        from .service import Service

        account = Service(s, reporter=reporter).restore_latest(
            snapshot=args.snapshot, target=Path(args.target) if args.target else None
        )
        return {"result": account}, account, 0
    repo = open_repo(s, reporter=reporter)
    snap = repo.find_snapshot(args.snapshot)
    dest = restore_destinations(snap, s, args.target)
    res = restore(repo, snap, RestoreOptions(destinations=dest, includes=args.include), reporter=reporter)
    if not args.target and repo.cache_dir:
        FileCache(repo.cache_dir / "files.db").replace(res.seeds, merge=True)
    text = f"restored snapshot {snap['id'][:8]}: {res.files} files, {_human_size(res.bytes)}\n" + "\n".join(
        f"  {k} -> {v}" for k, v in res.restored.items()
    )
    return res.to_json(), text, 0


def _subset(spec: str | None) -> tuple[int, int] | float | None:
    if not spec:
        return None
    try:
        if spec.endswith("%"):
            pct = float(spec[:-1])
            if 0 < pct <= 100:
                return pct
        else:
            n, m = (int(x) for x in spec.split("/"))
            if 1 <= n <= m:
                return (n, m)
    except ValueError:
        pass
    raise UsageError(f"bad --read-data-subset {spec!r}", hint="use N/M (e.g. 1/5) or a percentage (e.g. 10%)")


def cmd_check(args: argparse.Namespace, s: Settings, reporter: Reporter) -> Result:
    from .maintenance import check

    repo = open_repo(s, reporter=reporter)
    subset = _subset(args.read_data_subset)
    res = check(repo, read_data=args.read_data or subset is not None, subset=subset, reporter=reporter)
    if res.ok:
        text = f"no problems found ({res.snapshots} snapshots, {res.trees} trees, {res.packs} packs"
        text += f", {res.packs_read} packs read)" if res.packs_read else ")"
        return res.to_json(), text, 0
    lines = [f"problem: {p}" for p in res.problems]
    for sid, paths in res.damaged.items():
        lines.append(f"damaged snapshot {sid[:8]}: " + ", ".join(paths[:20]) + (" …" if len(paths) > 20 else ""))
    return res.to_json(), "\n".join(lines), IntegrityError.exit_code


def cmd_stats(args: argparse.Namespace, s: Settings, reporter: Reporter) -> Result:
    from .maintenance import stats

    doc = stats(open_repo(s, reporter=reporter))
    text = "\n".join(f"{k:24} {_human_size(v) if k.endswith('bytes') else v}" for k, v in doc.items())
    return doc, text, 0


def _read_new_password(args: argparse.Namespace, env: Mapping[str, str]) -> str:
    if args.new_password_file:
        try:
            return Path(args.new_password_file).read_text().rstrip("\r\n")
        except OSError as e:
            raise UsageError(f"cannot read {args.new_password_file}: {e.strerror}") from None
    if env.get("OPENCLAW_BACKUP_NEW_PASSWORD"):
        return env["OPENCLAW_BACKUP_NEW_PASSWORD"]
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
    new = _read_new_password(args, s.env)
    kid = repo.add_key(new, kdf=s.kdf_params(), hostname=s.host(), username=s.username())
    if args.key_command == "add":
        return {"added": kid[:12]}, f"added key {kid[:12]}", 0
    old = [n for n in repo.current_key_names(s.password() or "") if not n.endswith(kid)]
    repo.remove_keys(old)
    return {"added": kid[:12], "removed": [n.split("/")[-1][:12] for n in old]}, "password changed", 0


def policy_from(args: argparse.Namespace, env: Mapping[str, str]) -> Policy:
    from .retention import Policy, parse_duration

    policy = Policy(
        keep_last=args.keep_last,
        keep_hourly=args.keep_hourly,
        keep_daily=args.keep_daily,
        keep_weekly=args.keep_weekly,
        keep_monthly=args.keep_monthly,
        keep_yearly=args.keep_yearly,
        keep_within=parse_duration(args.keep_within) if args.keep_within else None,
        keep_tags=tuple(args.keep_tag),
    )
    if policy.empty() and (env.get("OPENCLAW_BACKUP_KEEP_COUNT") or "").strip().isdigit():
        policy = Policy(keep_last=int(env["OPENCLAW_BACKUP_KEEP_COUNT"]))
    if policy.empty():
        raise UsageError(
            "no keep policy given", hint="e.g. --keep-last 10 --keep-daily 7 (or OPENCLAW_BACKUP_KEEP_COUNT)"
        )
    return policy


def cmd_forget(args: argparse.Namespace, s: Settings, reporter: Reporter) -> Result:
    from .prune import forget, prune

    repo = open_repo(s, reporter=reporter)
    doc = forget(repo, policy_from(args, s.env), dry_run=args.dry_run)
    lines = [f"policy: {doc['policy']}"]
    lines += [f"keep   {k['id'][:8]}  ({', '.join(k['reasons'])})" for k in doc["keep"]]
    lines += [f"forget {f['id'][:8]}  {f['time']}" for f in doc["forget"]]
    lines.append(f"{len(doc['forget'])} snapshot(s) {'would be ' if args.dry_run else ''}forgotten")
    if args.prune and not args.dry_run:
        doc["prune"] = prune(repo, reporter=reporter)
        lines.append(f"pruned: {_human_size(doc['prune']['bytes_to_free'])} freed")
    return doc, "\n".join(lines), 0


def _percent(text: str) -> float:
    try:
        value = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    except ValueError:
        value = -1
    if not 0 <= value <= 1:
        raise UsageError(f"bad fraction {text!r}", hint="e.g. 10% or 0.1")
    return value


def cmd_prune(args: argparse.Namespace, s: Settings, reporter: Reporter) -> Result:
    from .prune import prune

    repo = open_repo(s, reporter=reporter)
    doc = prune(repo, reporter=reporter, max_unused=_percent(args.max_unused), squash=args.squash,
                dry_run=args.dry_run)  # fmt: skip
    verb = "would free" if args.dry_run else "freed"
    text = (
        f"{verb} {_human_size(doc['bytes_to_free'])}: {doc['packs_deleted']} packs deleted, "
        f"{doc['packs_repacked']} repacked, {doc['unindexed_deleted']} unindexed removed"
        + (", history squashed" if doc.get("squashed") else "")
    )
    return doc, text, 0


def cmd_repair(args: argparse.Namespace, s: Settings, reporter: Reporter) -> Result:
    from .prune import repair_index

    backend = open_backend(s.repository(), s.backend_options())
    repo = Repository.open(backend, password=s.password(), cache_dir=s.cache_root())
    doc = repair_index(repo, reporter=reporter)
    text = f"index rebuilt from {doc['packs_indexed']} packs ({doc['blobs']} blobs)"
    if doc["damaged_packs"]:
        text += "\n" + "\n".join(f"damaged pack {d}" for d in doc["damaged_packs"])
    return doc, text, IntegrityError.exit_code if doc["damaged_packs"] else 0


def cmd_excludes(args: argparse.Namespace, s: Settings, reporter: Reporter) -> Result:
    rows = [] if args.no_default_excludes else [{"pattern": p, "why": w, "default": True} for p, w in DEFAULT_EXCLUDES]
    rows += [{"pattern": p, "why": "from --exclude", "default": False} for p in args.exclude]
    lines = [f"{r['pattern']:32} {r['why']}" for r in rows]
    lines.append("SQLite sidecars (-wal, -shm, -journal) are never stored: databases are captured through SQLite.")
    lines.append("Override a default with --exclude '!PATTERN', or drop them all with --no-default-excludes.")
    return {"excludes": rows}, "\n".join(lines), 0


def cmd_demo(args: argparse.Namespace, s: Settings, reporter: Reporter) -> Result:
    from .demo import run_demo

    doc, text = run_demo(workdir=Path(args.dir) if args.dir else None, settings=s, reporter=reporter)
    return doc, text, 0


COMMANDS: dict[str, Callable[[argparse.Namespace, Settings, Reporter], Result]] = {
    "init": cmd_init,
    "backup": cmd_backup,
    "snapshots": cmd_snapshots,
    "ls": cmd_ls,
    "diff": cmd_diff,
    "restore": cmd_restore,
    "check": cmd_check,
    "stats": cmd_stats,
    "key": cmd_key,
    "excludes": cmd_excludes,
    "forget": cmd_forget,
    "prune": cmd_prune,
    "repair": cmd_repair,
    "demo": cmd_demo,
}


def run_command(args: argparse.Namespace, env: Mapping[str, str], reporter: Reporter) -> Result:
    if args.command in ("run", "status", "migrate", "legacy-env"):  # the service commands, imported on demand
        from . import commands_service as cs

        COMMANDS.update({"run": cs.cmd_run, "status": cs.cmd_status, "migrate": cs.cmd_migrate,
                         "legacy-env": cs.cmd_legacy_env})  # fmt: skip
    if args.command not in COMMANDS:
        raise NotFoundError(f"unknown command {args.command}")
    return COMMANDS[args.command](args, _settings(args, env), reporter)
