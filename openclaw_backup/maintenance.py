"""Checking and measuring a repository: ``check`` (structure, optionally every byte) and ``stats``.

``check`` walks the repository the way a restore would — head → index files → snapshots → trees
→ blobs — and reports every problem with the snapshots and paths it affects, rather than stopping
at the first. With ``read_data`` it reads every pack (or a subset), verifies its name against its
bytes, parses its own header and authenticates every blob in it. It never trusts the local cache:
every index file and snapshot it vouches for is read from the store.

What it finds missing (packs the index names that the store lacks) or damaged (blobs that fail
authentication) it **records** in the repository (a damage record, see
:meth:`.Repository.record_damage`): from then on the index does not vouch for those blobs, so the
next backup stores them again from the sources, which heals every snapshot that uses them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import IntegrityError, NotFoundError, StoreError
from .reporter import Reporter
from .repository import Repository

_Places = set[tuple[bytes, str]]  # (blob id, pack) places


@dataclass
class CheckResult:
    problems: list[str] = field(default_factory=list)
    damaged: dict[str, list[str]] = field(default_factory=dict)  # snapshot id -> affected paths
    snapshots: int = 0
    trees: int = 0
    packs: int = 0
    packs_read: int = 0
    blobs_read: int = 0
    recorded: str | None = None  # the damage record written (None: nothing new found)
    unreadable: dict[str, str] = field(default_factory=dict)  # index/snapshot files that cannot be read

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "problems": self.problems,
            "damaged_snapshots": {k: sorted(v) for k, v in self.damaged.items()},
            "snapshots": self.snapshots,
            "trees": self.trees,
            "packs": self.packs,
            "packs_read": self.packs_read,
            "blobs_read": self.blobs_read,
            "damage_recorded": self.recorded,
            "unreadable": self.unreadable,
        }


def _select(packs: list[str], subset: tuple[int, int] | float | None) -> list[str]:
    if subset is None:
        return packs
    if isinstance(subset, tuple):
        n, m = subset
        return [p for p in packs if int(p[:8], 16) % m == n - 1]
    keep = max(1, round(len(packs) * subset / 100)) if packs else 0
    return sorted(packs, key=lambda p: p[::-1])[:keep]


def check(
    repo: Repository,
    *,
    read_data: bool = False,
    subset: tuple[int, int] | float | None = None,
    reporter: Reporter,
) -> CheckResult:
    res = CheckResult()
    reporter.phase("check structure")
    repo.trust_cache = False  # everything check vouches for comes from the store
    repo.refresh()
    repo.unreadable.clear()
    records = repo.damage_records()
    recorded = {place for places in records.values() for place in places}
    repo.load_index(reload=True)
    for name, why in sorted(repo.unreadable.items()):
        res.problems.append(f"{name[:22]}: {why}")
    stored = repo.list_packs()
    by_pack = repo.indexed_packs()
    packs_in_index = set(by_pack)
    res.packs = len(packs_in_index)
    lost: set[tuple[bytes, str]] = set()
    missing_packs = repo.confirm_missing(packs_in_index - stored)
    stored |= (packs_in_index - stored) - missing_packs  # listed late, but there
    for pack in sorted(missing_packs):
        res.problems.append(f"pack {pack[:16]} is named by the index but missing from the store")
        lost.update((bid, pack) for bid, _ in by_pack[pack])
    verified: set[tuple[bytes, str]] = set()  # places read and authenticated by this check
    if read_data:
        bad_places, verified = _read_packs(repo, _select(sorted(packs_in_index & stored), subset), res, reporter)
        lost |= bad_places
    try:
        res.recorded = repo.record_damage(lost - recorded, found_by="check --read-data" if read_data else "check")
        if read_data:  # records whose every place authenticates now were wrong (a fault of the read)
            repo.clear_damage([name for name, places in records.items() if places <= verified])
    except StoreError as e:  # read-only credentials, say: the findings are still reported
        res.problems.append(f"the damage found could not be recorded in the repository: {e.message}")
    for snap_id in repo.snapshot_ids():
        try:
            snap = repo.load_snapshot(snap_id)
        except NotFoundError:
            continue  # forgotten meanwhile
        except IntegrityError as e:  # store trouble propagates: it is not damage
            res.problems.append(f"snapshot {snap_id[:8]}: {e.message}")
            res.unreadable[snap_id] = e.message
            continue
        res.snapshots += 1
        affected = _check_tree(repo, snap.tree, "", res, (verified, lost), seen=set())
        if affected:
            res.damaged[snap_id] = affected
    return res


def _blob_ok(repo: Repository, bid: bytes, seen: tuple[_Places, _Places]) -> bool:
    """Not found lost by this check (``seen[1]``), and indexed at a place nothing distrusts (what
    was found lost is recorded by now) or at one this check has just read and authenticated."""
    ref = repo.locate(bid)
    verified, lost = seen
    return ref is not None and (bid, ref.pack) not in lost and (repo.is_indexed(bid) or (bid, ref.pack) in verified)


def _check_tree(
    repo: Repository,
    tree_id: str,
    prefix: str,
    res: CheckResult,
    found: tuple[_Places, _Places],
    *,
    seen: set[str],
) -> list[str]:
    affected: list[str] = []
    bid = bytes.fromhex(tree_id)
    if not _blob_ok(repo, bid, found):
        res.problems.append(f"tree {tree_id[:16]} ({prefix or '/'}) is missing or damaged")
        return [prefix or "/"]
    try:
        nodes = repo.read_tree(tree_id)
    except (IntegrityError, NotFoundError) as e:  # store trouble propagates: it is not damage
        res.problems.append(f"tree {tree_id[:16]} ({prefix or '/'}): {e.message}")
        return [prefix or "/"]
    res.trees += 1
    for node in nodes:
        path = f"{prefix}/{node.name}" if prefix else node.name
        if node.type == "dir" and node.subtree:
            if node.subtree in seen:
                continue  # identical subtrees are checked once per snapshot
            seen.add(node.subtree)
            affected += _check_tree(repo, node.subtree, path, res, found, seen=seen)
        elif node.type == "file":
            broken = [c for c in node.content if not _blob_ok(repo, bytes.fromhex(c), found)]
            if broken:
                affected.append(path)
                res.problems.append(f"{path}: {len(broken)} data blob(s) missing or damaged")
    return affected


def _read_packs(
    repo: Repository, packs: Iterable[str], res: CheckResult, reporter: Reporter
) -> tuple[_Places, _Places]:
    """Read packs fully; the places ``(blob id, pack)`` of blobs that failed, and of those that
    authenticated."""
    packs = list(packs)
    reporter.phase("read data", total_items=len(packs))
    by_pack = repo.indexed_packs()
    bad: _Places = set()
    good: _Places = set()
    for found in repo.verify_packs(packs):  # damage and absence are reported; store trouble propagates
        pack = found.pack
        if found.error is not None:
            res.problems.append(f"pack {pack[:16]}: {found.error}")
            bad.update((bid, pack) for bid, _ in found.bad)
            continue
        res.packs_read += 1
        # (b"", pack): the pack itself (its bytes do not match its name: ``repair packs`` rewrites it)
        (good if found.name_ok else bad).add((b"", pack))
        if not found.name_ok:
            res.problems.append(f"pack {pack[:16]}: content does not match its name (damaged)")
        res.blobs_read += found.blobs_ok
        failed = {bid for bid, _ in found.bad}
        for bid, why in found.bad:
            bad.add((bid, pack))
            res.problems.append(f"pack {pack[:16]}: {why}")
        good.update((bid, pack) for bid, _ in by_pack.get(pack, []) if bid not in failed)
        reporter.progress(done_items=1, done_bytes=found.size)
    return bad, good


@dataclass
class StatsResult:
    """Sizes: what the snapshots hold versus what the repository stores."""

    snapshots: int
    packs: int
    blobs: int
    data_blobs: int
    stored_bytes: int
    unique_raw_bytes: int
    snapshots_logical_bytes: int
    dedup_ratio: float | None
    index_files: int
    encrypted: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def stats(repo: Repository) -> StatsResult:
    """Sizes: what the snapshots hold versus what the repository stores."""
    repo.load_index()
    snaps = repo.snapshots()
    idx = repo.index_summary()
    logical = sum(int(s.summary.get("bytes", 0)) for s in snaps)
    return StatsResult(
        snapshots=len(snaps),
        packs=idx.packs,
        blobs=idx.blobs,
        data_blobs=idx.data_blobs,
        stored_bytes=idx.stored_bytes,
        unique_raw_bytes=idx.raw_bytes,
        snapshots_logical_bytes=logical,
        dedup_ratio=round(logical / idx.raw_bytes, 2) if idx.raw_bytes else None,
        index_files=idx.files,
        encrypted=repo.encrypted,
    )
