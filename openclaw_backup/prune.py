"""Freeing space: forget snapshots (by policy or by id), prune unreferenced data.

``prune`` is plan, then perform. The **plan** marks every blob reachable from the snapshots of
the head it read, classifies each pack (keep / delete: nothing live / repack: more than
``max_unused`` of it is garbage) and finds unindexed packs (crash leftovers). **Perform** copies
the live blobs of repacked packs into new packs (authenticating each), writes one consolidated
index, and publishes a head naming only it — *without merging*: if anyone published meanwhile the
plan is void, and prune starts over. Only after that publication are packs, old index files and
forgotten snapshots deleted (in the same commit on a Hub repo). A backup racing a prune either
published first (then prune re-plans and sees its snapshot) or finds, when it publishes, that a
blob it reused was dropped, and fails without publishing (see :meth:`Repository.publish`).
A plan with nothing to free (no pack to delete or repack, nothing unindexed) publishes nothing,
unless the index files have grown to ``INDEX_MERGE_AT`` (then merging them is worth a commit).

Unindexed packs can be a concurrent backup's work in progress on stores where uploads are
visible before the head (local, S3); they are deleted only after this machine has seen them
unindexed for ``unindexed_grace`` seconds (default :data:`UNINDEXED_GRACE`, one hour; settable
with ``prune --grace`` or ``OPENCLAW_BACKUP_PRUNE_GRACE``). A failed backup removes its own packs
at once (:meth:`.Repository.discard_unpublished`): the grace only matters for a killed one. On a
Hub repo, uploads become visible only with their commit, so unindexed packs there are garbage at once.

A damaged repository is never pruned: an unreadable snapshot (its data cannot be marked live) or
index file (its packs would look unindexed) stops the plan with a hint naming the repair.

On a Hub dataset repo deleting files frees nothing until history is squashed: ``squash=None``
squashes when the bytes deleted since the last squash (counted in the head) exceed
``squash_ratio`` of the live bytes; ``True`` always; ``False`` never.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from .errors import ConflictError, IntegrityError, NotFoundError, UsageError
from .index import PackEntries
from .reporter import Reporter
from .repository import Repository
from .retention import Policy, apply_policy
from .snapshot import Snapshot

INDEX_MERGE_AT = 16  # index files from which a prune with nothing to free still merges them into one
PRUNE_ATTEMPTS = 5
UNINDEXED_GRACE = 3600.0  # seconds an unindexed pack is left alone (a concurrent backup's work)


@dataclass
class ForgetResult:
    """What a forget removed (or would remove) and why each other snapshot stays."""

    policy: str
    forgotten: list[Snapshot]
    kept: dict[str, list[str]]  # snapshot id -> the rules that keep it
    dry_run: bool
    unreadable: dict[str, str] = field(default_factory=dict)  # snapshot id -> why (kept, not judged)

    def to_json(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "forget": [{"id": s.id, "time": s.time} for s in self.forgotten],
            "keep": [{"id": k, "reasons": v} for k, v in self.kept.items()],
            "dry_run": self.dry_run,
            "unreadable": self.unreadable,
        }


def forget(repo: Repository, policy: Policy, *, dry_run: bool = False) -> ForgetResult:
    """Remove the snapshots the policy does not keep (their data stays until ``prune``). An
    unreadable snapshot is never judged by the policy: it stays (with a warning naming it)."""
    gone, reasons = apply_policy(repo.snapshots(), policy)
    if gone and not dry_run:
        repo.forget_snapshots([s.id for s in gone])
    unreadable = {n[10:]: why for n, why in repo.unreadable.items() if n.startswith("snapshots/")}
    unreadable = {sid: why for sid, why in unreadable.items() if sid in repo.snapshot_ids()}
    return ForgetResult(policy.describe(), gone, reasons, dry_run, unreadable)


def forget_ids(repo: Repository, refs: list[str], *, dry_run: bool = False) -> list[str]:
    """Remove the snapshots named by id prefixes — damaged or not, their documents are not read.
    The full ids; ``NotFoundError``/``UsageError`` for a prefix that names none or several."""
    ids = []
    for ref in refs:
        matches = [s for s in repo.snapshot_ids() if s.startswith(ref)] if ref else []
        if not matches:
            raise NotFoundError(f"no snapshot matches {ref!r}", hint="list them with `openclaw-backup snapshots`")
        if len(matches) > 1:
            raise UsageError(f"{ref!r} matches {len(matches)} snapshots; give more characters")
        ids.append(matches[0])
    ids = list(dict.fromkeys(ids))
    if ids and not dry_run:
        repo.forget_snapshots(ids)
    return ids


@dataclass
class PrunePlan:
    live: set[bytes]
    head: tuple[int, str | None] = (0, None)  # the head the plan was made from (Repository.head_id)
    keep: set[str] = field(default_factory=set)
    delete: set[str] = field(default_factory=set)
    repack: set[str] = field(default_factory=set)
    unindexed: list[str] = field(default_factory=list)
    bytes_total: int = 0
    bytes_live: int = 0
    bytes_freed: int = 0


@dataclass
class PruneResult:
    """What a prune did (or, with ``dry_run``, would do): pack counts and bytes of its plan, then
    what performing it took."""

    packs_kept: int
    packs_deleted: int
    packs_repacked: int
    unindexed_deleted: int
    live_blobs: int
    bytes_total: int
    bytes_live: int
    bytes_to_free: int
    dry_run: bool = False
    squashed: bool = False
    new_packs: int = 0
    temporaries_removed: int = 0

    @classmethod
    def of(cls, plan: PrunePlan, **done: Any) -> PruneResult:
        return cls(len(plan.keep), len(plan.delete), len(plan.repack), len(plan.unindexed), len(plan.live),
                   plan.bytes_total, plan.bytes_live, plan.bytes_freed, **done)  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "packs_kept": self.packs_kept,
            "packs_deleted": self.packs_deleted,
            "packs_repacked": self.packs_repacked,
            "unindexed_deleted": self.unindexed_deleted,
            "live_blobs": self.live_blobs,
            "bytes_total": self.bytes_total,
            "bytes_live": self.bytes_live,
            "bytes_to_free": self.bytes_to_free,
        }
        if self.dry_run:
            return {**doc, "dry_run": True}
        return {**doc, "squashed": self.squashed, "new_packs": self.new_packs,
                "temporaries_removed": self.temporaries_removed}  # fmt: skip


def mark_live(repo: Repository) -> set[bytes]:
    """Every blob reachable from the head's snapshots; raises when a tree is missing."""
    live: set[bytes] = set()
    stack: list[str] = []
    for sid in repo.snapshot_ids():
        try:
            stack.append(repo.load_snapshot(sid).tree)
        except IntegrityError as e:
            raise IntegrityError(
                f"snapshot {sid[:8]} is unreadable ({e.message}); refusing to prune a damaged repository",
                hint=f"remove it with `openclaw-backup forget {sid[:8]}` (or `repair snapshots`), then prune",
            ) from e
    while stack:
        tid = stack.pop()
        bid = bytes.fromhex(tid)
        if bid in live:
            continue
        live.add(bid)
        try:
            nodes = repo.read_tree(tid)
        except (IntegrityError, NotFoundError) as e:  # store trouble (StoreError, QuotaError) propagates as is
            raise IntegrityError(
                f"tree {tid[:16]} is unreadable ({e.message}); refusing to prune a damaged repository",
                hint="run `openclaw-backup check`, then `repair packs` and `repair snapshots`",
            ) from e
        for n in nodes:
            if n.type == "dir" and n.subtree:
                stack.append(n.subtree)
            elif n.type == "file":
                live.update(bytes.fromhex(c) for c in n.content)
    return live


def plan_prune(repo: Repository, *, max_unused: float, unindexed_grace: float) -> PrunePlan:
    repo.refresh()
    repo.load_index()
    lost = sorted(n for n in repo.unreadable if n.startswith("index/") and n[6:] in repo.index_names())
    if lost:
        raise IntegrityError(
            f"{lost[0][:22]} is unreadable; refusing to prune (its packs would look unreferenced)",
            hint="rebuild the index first: `openclaw-backup repair index`",
        )
    head = repo.head_id()
    plan = PrunePlan(mark_live(repo), head=head)
    per_pack = repo.indexed_packs()
    # packs a damage record names are left to ``repair packs`` (it salvages what still authenticates)
    damaged = {pack for places in repo.damage_records().values() for _, pack in places}
    for pack, blobs in per_pack.items():
        if pack in damaged:
            plan.keep.add(pack)
            continue
        total = sum(r.length for _, r in blobs)
        live = sum(r.length for b, r in blobs if b in plan.live)
        plan.bytes_total += total
        plan.bytes_live += live
        if live == 0:
            plan.delete.add(pack)
            plan.bytes_freed += total
        elif total and (total - live) / total > max_unused:
            plan.repack.add(pack)
            plan.bytes_freed += total - live
        else:
            plan.keep.add(pack)
    stored = repo.list_packs()
    if gone := repo.confirm_missing(plan.repack - stored):  # (a missing pack with nothing live just goes)
        raise IntegrityError(
            f"{len(gone)} pack(s) the index names are missing from the store (e.g. {sorted(gone)[0][:16]}); "
            "refusing to prune", hint="run `openclaw-backup check`, then `openclaw-backup repair packs`",
        )  # fmt: skip
    unindexed = sorted(stored - set(per_pack) - damaged)
    plan.unindexed = _old_enough(repo, unindexed, unindexed_grace)
    return plan


def _old_enough(repo: Repository, names: list[str], grace: float) -> list[str]:
    if repo.staged_uploads:
        return names  # uploads are invisible until committed: unindexed means garbage
    seen: dict[str, float] = {}
    marker = repo.cache_read("unindexed-seen.json")
    if marker is not None:
        try:
            seen = json.loads(marker)
        except ValueError:
            seen = {}
    now = time.time()
    seen = {n: seen.get(n, now) for n in names}
    repo.cache_write("unindexed-seen.json", json.dumps(seen).encode())
    return [n for n, first in seen.items() if now - first >= grace]


def perform_prune(repo: Repository, plan: PrunePlan, *, reporter: Reporter, squash: bool | None,
                  squash_ratio: float, unindexed_grace: float = UNINDEXED_GRACE) -> PruneResult:  # fmt: skip
    if not (plan.delete or plan.repack or plan.unindexed) and len(repo.index_names()) < INDEX_MERGE_AT:
        # Nothing to free: no new index, no commit (a Hub repo counts commits against an hourly budget).
        return _finish(repo, plan, squash=squash, squash_ratio=squash_ratio, unindexed_grace=unindexed_grace)
    if repo.head_id() != plan.head:
        # The head was read again since the plan (an object it named was found gone): the
        # publication below would replace that newer head, which the plan never saw.
        raise ConflictError("the repository changed while prune planned")
    writer = repo.pack_writer(keep=False)
    reporter.phase("repack", total_items=len(plan.repack))
    per_pack = repo.indexed_packs()
    for pack in sorted(plan.repack):
        writer.repack(pack, [(bid, ref) for bid, ref in per_pack.get(pack, []) if bid in plan.live])
        reporter.progress(done_items=1)
    writer.flush()
    # all of a kept pack, garbage included, so later plans can count it
    entries: PackEntries = {pack: blobs for pack, blobs in per_pack.items() if pack in plan.keep}
    entries.update(writer.packs)
    new_index = repo.save_index(entries)
    repo.publish(
        remove_indexes=[i for i in repo.index_names() if i != new_index],
        add_indexes=[new_index] if new_index else [],
        delete_packs=sorted(plan.delete | plan.repack) + plan.unindexed,
        deleted_bytes=plan.bytes_freed,
        merge=False,
    )
    repo.load_index()
    return _finish(
        repo,
        plan,
        squash=squash,
        squash_ratio=squash_ratio,
        unindexed_grace=unindexed_grace,
        new_packs=len(writer.packs),
    )


def _finish(repo: Repository, plan: PrunePlan, *, squash: bool | None, squash_ratio: float, unindexed_grace: float,
            new_packs: int = 0) -> PruneResult:  # fmt: skip
    temporaries = repo.remove_stale_temporaries(older_than=unindexed_grace)  # leftovers of killed writes
    pending = repo.deleted_since_squash
    due = squash or (squash is None and pending > squash_ratio * max(plan.bytes_live, 1))
    squashed = bool(due) and repo.squash_history()
    return PruneResult.of(plan, squashed=squashed, new_packs=new_packs, temporaries_removed=temporaries)


def prune(
    repo: Repository,
    *,
    reporter: Reporter,
    max_unused: float = 0.1,
    unindexed_grace: float = UNINDEXED_GRACE,
    squash: bool | None = None,
    squash_ratio: float = 0.25,
    dry_run: bool = False,
) -> PruneResult:
    """Plan and perform, re-planning when a concurrent writer publishes first."""
    for attempt in range(PRUNE_ATTEMPTS):
        plan = plan_prune(repo, max_unused=max_unused, unindexed_grace=unindexed_grace)
        if dry_run:
            return PruneResult.of(plan, dry_run=True)
        try:
            return perform_prune(
                repo, plan, reporter=reporter, squash=squash, squash_ratio=squash_ratio, unindexed_grace=unindexed_grace
            )
        except ConflictError:
            if attempt == PRUNE_ATTEMPTS - 1:
                raise
            reporter.info("the repository changed during prune; planning again")
    raise AssertionError("unreachable")
