"""Keeping the repository healthy and small: ``check``, ``stats``, ``forget``, ``prune``, ``repair``.

``forget`` with no keep flags falls back to the settings' keep policy (the legacy
``OPENCLAW_BACKUP_KEEP_COUNT``, :meth:`~..settings.Settings.keep_policy`), the same rule the
supervisor's daily forget applies; no policy at all is a usage error, never "forget everything".
"""

from __future__ import annotations

import argparse

from ..backends import open_backend
from ..errors import IntegrityError, UsageError
from ..maintenance import check, stats
from ..prune import forget, prune, repair_index
from ..reporter import Reporter
from ..repository import Repository
from ..retention import Policy, parse_duration
from ..settings import Settings
from ._common import Result, human_size, open_repo
from ._text import stats_text


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
    doc = stats(open_repo(s, reporter=reporter)).to_json()
    text = stats_text(doc, human_size)
    return doc, text, 0


def policy_from(args: argparse.Namespace, s: Settings) -> Policy:
    """The keep policy of the flags, else the settings' (``OPENCLAW_BACKUP_KEEP_COUNT``)."""
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
    if policy.empty():
        policy = s.keep_policy() or policy
    if policy.empty():
        raise UsageError(
            "no keep policy given", hint="e.g. --keep-last 10 --keep-daily 7 (or OPENCLAW_BACKUP_KEEP_COUNT)"
        )
    return policy


def cmd_forget(args: argparse.Namespace, s: Settings, reporter: Reporter) -> Result:
    repo = open_repo(s, reporter=reporter)
    doc = forget(repo, policy_from(args, s), dry_run=args.dry_run).to_json()
    lines = [f"policy: {doc['policy']}"]
    lines += [f"keep   {k['id'][:8]}  ({', '.join(k['reasons'])})" for k in doc["keep"]]
    lines += [f"forget {f['id'][:8]}  {f['time']}" for f in doc["forget"]]
    lines.append(f"{len(doc['forget'])} snapshot(s) {'would be ' if args.dry_run else ''}forgotten")
    if args.prune and not args.dry_run:
        doc["prune"] = prune(repo, reporter=reporter).to_json()
        lines.append(f"pruned: {human_size(doc['prune']['bytes_to_free'])} freed")
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
    repo = open_repo(s, reporter=reporter)
    doc = prune(repo, reporter=reporter, max_unused=_percent(args.max_unused), squash=args.squash,
                dry_run=args.dry_run).to_json()  # fmt: skip
    verb = "would free" if args.dry_run else "freed"
    text = (
        f"{verb} {human_size(doc['bytes_to_free'])}: {doc['packs_deleted']} packs deleted, "
        f"{doc['packs_repacked']} repacked, {doc['unindexed_deleted']} unindexed removed"
        + (", history squashed" if doc.get("squashed") else "")
    )
    return doc, text, 0


def cmd_repair(args: argparse.Namespace, s: Settings, reporter: Reporter) -> Result:
    backend = open_backend(s.repository(), s.backend_options())
    repo = Repository.open(backend, password=s.password(), cache_dir=s.cache_root())
    doc = repair_index(repo, reporter=reporter).to_json()
    text = f"index rebuilt from {doc['packs_indexed']} packs ({doc['blobs']} blobs)"
    if doc["damaged_packs"]:
        text += "\n" + "\n".join(f"damaged pack {d}" for d in doc["damaged_packs"])
    return doc, text, IntegrityError.exit_code if doc["damaged_packs"] else 0
