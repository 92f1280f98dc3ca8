"""Freeing space: forget snapshots by policy, prune unreferenced data, repair a lost index.

``prune`` is plan, then perform. The **plan** marks every blob reachable from the snapshots of
the head it read, classifies each pack (keep / delete: nothing live / repack: more than
``max_unused`` of it is garbage) and finds unindexed packs (crash leftovers). **Perform** copies
the live blobs of repacked packs into new packs (authenticating each), writes one consolidated
index, and publishes a head naming only it — *without merging*: if anyone published meanwhile the
plan is void, and prune starts over. Only after that publication are packs, old index files and
forgotten snapshots deleted (in the same commit on a Hub repo). A backup racing a prune either
published first (then prune re-plans and sees its snapshot) or finds, when it publishes, that a
blob it reused was dropped, and fails without publishing (see :meth:`Repository.publish`).

Unindexed packs can be a concurrent backup's work in progress on stores where uploads are
visible before the head (local, S3); they are deleted only after this machine has seen them
unindexed for ``unindexed_grace`` seconds. On a Hub repo, uploads become visible only with their
commit, so unindexed packs there are garbage at once.

On a Hub dataset repo deleting files frees nothing until history is squashed: ``squash=None``
squashes when the bytes deleted since the last squash (counted in the head) exceed
``squash_ratio`` of the live bytes; ``True`` always; ``False`` never.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from . import codec
from .codec import BLOB_TREE, BlobRef
from .errors import ConflictError, IntegrityError, NotFoundError
from .reporter import Reporter
from .repository import PackWriter, Repository, pack_name
from .retention import Policy, apply_policy
from .tree import decode_tree

PRUNE_ATTEMPTS = 5


def forget(repo: Repository, policy: Policy, *, dry_run: bool = False) -> dict[str, Any]:
    """Remove the snapshots the policy does not keep (their data stays until ``prune``)."""
    snaps = repo.snapshots()
    gone, reasons = apply_policy(snaps, policy)
    ids = [s["id"] for s in gone]
    if ids and not dry_run:
        repo.publish(remove_snapshots=ids, deletes=[f"snapshots/{i}" for i in ids])
    return {
        "policy": policy.describe(),
        "forget": [{"id": s["id"], "time": s.get("time")} for s in gone],
        "keep": [{"id": k, "reasons": v} for k, v in reasons.items()],
        "dry_run": dry_run,
    }


@dataclass
class PrunePlan:
    head_version: str | None
    live: set[bytes]
    keep: set[str] = field(default_factory=set)
    delete: set[str] = field(default_factory=set)
    repack: set[str] = field(default_factory=set)
    unindexed: list[str] = field(default_factory=list)
    bytes_total: int = 0
    bytes_live: int = 0
    bytes_freed: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "packs_kept": len(self.keep),
            "packs_deleted": len(self.delete),
            "packs_repacked": len(self.repack),
            "unindexed_deleted": len(self.unindexed),
            "live_blobs": len(self.live),
            "bytes_total": self.bytes_total,
            "bytes_live": self.bytes_live,
            "bytes_to_free": self.bytes_freed,
        }


def mark_live(repo: Repository) -> set[bytes]:
    """Every blob reachable from the head's snapshots; raises when a tree is missing."""
    live: set[bytes] = set()
    stack: list[str] = []
    for sid in repo.state.snapshots:
        stack.append(repo.load_snapshot(sid)["tree"])
    while stack:
        tid = stack.pop()
        bid = bytes.fromhex(tid)
        if bid in live:
            continue
        live.add(bid)
        try:
            nodes = decode_tree(repo.read_blob(bid, BLOB_TREE))
        except (IntegrityError, NotFoundError) as e:  # store trouble (StoreError, QuotaError) propagates as is
            raise IntegrityError(
                f"tree {tid[:16]} is unreadable ({e.message}); refusing to prune a damaged repository",
                hint="run `openclaw-backup check` and `repair`",
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
    plan = PrunePlan(repo.head.version if repo.head else None, mark_live(repo))
    per_pack: dict[str, list[tuple[bytes, BlobRef]]] = {}
    for bid, ref in repo.index.items():
        per_pack.setdefault(ref.pack, []).append((bid, ref))
    for pack, blobs in per_pack.items():
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
    stored = {n.rsplit("/", 1)[-1] for n in repo.backend.list("data/")}
    unindexed = sorted(stored - set(per_pack))
    plan.unindexed = _old_enough(repo, unindexed, unindexed_grace)
    return plan


def _old_enough(repo: Repository, names: list[str], grace: float) -> list[str]:
    if repo.backend.capabilities.atomic_batch:
        return names  # uploads are invisible until committed: unindexed means garbage
    seen: dict[str, float] = {}
    marker = repo.cache_dir / "unindexed-seen.json" if repo.cache_dir else None
    if marker is not None:
        try:
            seen = json.loads(marker.read_text())
        except (OSError, ValueError):
            seen = {}
    now = time.time()
    seen = {n: seen.get(n, now) for n in names}
    if marker is not None:
        repo.cache_write("unindexed-seen.json", json.dumps(seen).encode())
    return [n for n, first in seen.items() if now - first >= grace]


def perform_prune(repo: Repository, plan: PrunePlan, *, reporter: Reporter, squash: bool | None,
                  squash_ratio: float, unindexed_grace: float = 3600.0) -> dict[str, Any]:  # fmt: skip
    writer = PackWriter(repo)
    reporter.phase("repack", total_items=len(plan.repack))
    live_in: dict[str, list[tuple[bytes, BlobRef]]] = {}
    for bid, ref in repo.index.items():
        if ref.pack in plan.repack and bid in plan.live:
            live_in.setdefault(ref.pack, []).append((bid, ref))
    for pack in sorted(plan.repack):
        data = repo.backend.get(pack_name(pack))
        for bid, ref in live_in.get(pack, []):
            stored = data[ref.offset : ref.offset + ref.length]
            codec.decode_blob(repo.cipher, ref.btype, bid, stored, ref.raw_len)  # never copy damage
            writer.add_stored(ref.btype, bid, stored, ref.raw_len)
        reporter.progress(done_items=1)
    writer.flush()
    entries: dict[str, list[tuple[bytes, BlobRef]]] = {}
    for bid, ref in repo.index.items():
        if ref.pack in plan.keep:  # all of a kept pack, garbage included, so later plans can count it
            entries.setdefault(ref.pack, []).append((bid, ref))
    for pack, blobs in writer.packs.items():
        entries[pack] = blobs
    new_index = repo.put_immutable("index", codec.encode_index(repo.cipher, entries)) if entries else None
    old_indexes = list(repo.state.indexes)
    deletes = [pack_name(p) for p in sorted(plan.delete | plan.repack)] + [pack_name(p) for p in plan.unindexed]
    deletes += [f"index/{i}" for i in old_indexes if i != new_index]
    freed = plan.bytes_freed
    repo.state.deleted_since_squash += freed
    repo.publish(
        remove_indexes=[i for i in old_indexes if i != new_index],
        add_indexes=[new_index] if new_index else [],
        deletes=deletes,
        merge=False,
    )
    repo.load_index()
    temporaries = repo.backend.remove_stale_temporaries(older_than=unindexed_grace)  # leftovers of killed writes
    squashed = False
    pending = repo.state.deleted_since_squash
    due = squash or (squash is None and pending > squash_ratio * max(plan.bytes_live, 1))
    if due and not repo.backend.capabilities.frees_space_on_delete and repo.backend.squash_history():
        repo.refresh()
        repo.state.deleted_since_squash = 0
        repo.publish()
        squashed = True
    return {**plan.to_json(), "squashed": squashed, "new_packs": len(writer.packs), "temporaries_removed": temporaries}


def prune(
    repo: Repository,
    *,
    reporter: Reporter,
    max_unused: float = 0.1,
    unindexed_grace: float = 3600.0,
    squash: bool | None = None,
    squash_ratio: float = 0.25,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Plan and perform, re-planning when a concurrent writer publishes first."""
    for attempt in range(PRUNE_ATTEMPTS):
        plan = plan_prune(repo, max_unused=max_unused, unindexed_grace=unindexed_grace)
        if dry_run:
            return {**plan.to_json(), "dry_run": True}
        try:
            return perform_prune(
                repo, plan, reporter=reporter, squash=squash, squash_ratio=squash_ratio, unindexed_grace=unindexed_grace
            )
        except ConflictError:
            if attempt == PRUNE_ATTEMPTS - 1:
                raise
            reporter.info("the repository changed during prune; planning again")
    raise AssertionError("unreachable")


def repair_index(repo: Repository, *, reporter: Reporter) -> dict[str, Any]:
    """Rebuild the index from the packs' own headers (reading only their tails)."""
    names = repo.backend.list("data/")
    reporter.phase("repair", total_items=len(names))
    entries: dict[str, list[tuple[bytes, BlobRef]]] = {}
    damaged: list[str] = []
    for name in names:
        pack = name.rsplit("/", 1)[-1]
        try:
            size = repo.backend.size(name)
            tail = repo.backend.get(name, offset=max(0, size - 4))
            hlen = int.from_bytes(tail[-4:], "little")
            if hlen + 4 > size:
                raise IntegrityError(f"pack {pack[:16]}: bad header length")
            head = repo.backend.get(name, offset=size - 4 - hlen, length=hlen + 4)
            refs = codec.parse_pack_header(repo.cipher, pack, bytes(size - 4 - hlen) + head)
        except (IntegrityError, NotFoundError) as e:
            damaged.append(f"{pack[:16]}: {e.message}")
            continue
        entries[pack] = list(refs.items())
        reporter.progress(done_items=1)
    old = list(repo.state.indexes)
    new_index = repo.put_immutable("index", codec.encode_index(repo.cipher, entries)) if entries else None
    repo.publish(
        remove_indexes=[i for i in old if i != new_index],
        add_indexes=[new_index] if new_index else [],
        deletes=[f"index/{i}" for i in old if i != new_index],
        merge=False,
    )
    return {"packs_indexed": len(entries), "blobs": sum(len(v) for v in entries.values()), "damaged_packs": damaged}
