"""Repairing a damaged repository: ``repair index``, ``repair packs``, ``repair snapshots``, ``repair head``.

Each repair makes the repository consistent again with what can still be vouched for, and says
what it could not keep. The sequence after ``check`` found damage (docs/retention.md, "Repair"):

1. ``repair index`` — an index file is lost or damaged: rebuild the index from the packs' own
   headers (reading only their tails), leaving out the places the damage records distrust;
2. ``repair packs`` — packs are missing or hold damaged blobs (``check --read-data`` records them):
   copy every blob of a damaged pack that still authenticates into new packs, publish an index
   without the damaged packs, then delete them and the damage records they consumed;
3. ``backup`` — stores again, from the sources, every lost blob they still hold: every snapshot
   that used such a blob is whole again;
4. ``repair snapshots`` — rewrites each snapshot that still misses data without the files (or
   folders) it cannot restore, recording them in the new snapshot (``repaired``); a snapshot whose
   document or top tree is unreadable is forgotten.

``repair head`` rebuilds a lost or undecodable head from the snapshot and index files the store
lists; its sequence number is the current time in seconds, above any number a head had before.

Every repair publishes without merging (as prune does): a concurrent writer makes it fail with a
conflict, and it can simply be run again.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from . import codec
from .codec import BLOB_DATA, BLOB_TREE, BlobRef
from .errors import ConflictError, IntegrityError, NotFoundError, UsageError
from .index import PackEntries
from .pack import PackWriter, pack_name
from .reporter import Reporter
from .repository import HeadState, Repository
from .snapshot import Snapshot
from .tree import Node, encode_tree

_DROPPED_LISTED = 1000  # paths a repaired snapshot lists (the count is always whole)


@dataclass
class RepairResult:
    """What a repair did: ``kept``/``dropped`` counts and the names of what it could not keep."""

    what: str
    packs_indexed: int = 0
    blobs: int = 0
    damaged_packs: list[str] = field(default_factory=list)  # "<pack id prefix>: why"
    blobs_salvaged: int = 0
    blobs_lost: int = 0
    packs_removed: int = 0
    records_consumed: int = 0
    rewritten: dict[str, dict[str, Any]] = field(default_factory=dict)  # old id -> {new, dropped}
    forgotten: dict[str, str] = field(default_factory=dict)  # snapshot id -> why
    snapshots: int = 0
    index_files: int = 0

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def repair_index(repo: Repository, *, reporter: Reporter) -> RepairResult:
    """Rebuild the index from the packs' own headers, leaving out distrusted places."""
    repo.refresh()
    distrusted = {place for places in repo.damage_records().values() for place in places}
    packs = sorted(repo.list_packs())
    reporter.phase("repair index", total_items=len(packs))
    entries: PackEntries = {}
    res = RepairResult("index")
    for pack in packs:
        try:
            refs = repo.pack_header(pack)
        except (IntegrityError, NotFoundError) as e:
            res.damaged_packs.append(f"{pack[:16]}: {e.message}")
            continue
        entries[pack] = [(bid, ref) for bid, ref in refs.items() if (bid, pack) not in distrusted]
        reporter.progress(done_items=1)
    _publish_index(repo, entries)
    res.packs_indexed, res.blobs = len(entries), sum(len(v) for v in entries.values())
    return res


def repair_packs(repo: Repository, *, reporter: Reporter) -> RepairResult:
    """Salvage the packs the damage records name (and those the index names but the store lacks):
    their good blobs move to new packs, the damaged packs and the records go."""
    repo.refresh()
    records = repo.damage_records()
    distrusted = {place for places in records.values() for place in places}
    repo.load_index()
    indexed = repo.listed_places()
    stored = repo.list_packs()
    stored |= (set(indexed) - stored) - repo.confirm_missing(set(indexed) - stored)  # listed late, but there
    damaged = ({pack for _, pack in distrusted} | (set(indexed) - stored)) & (set(indexed) | stored)
    res = RepairResult("packs")
    writer = repo.pack_writer(keep=False)
    salvaged: set[bytes] = set()
    reporter.phase("repair packs", total_items=len(damaged))
    for pack in sorted(damaged):
        if pack not in stored:
            res.damaged_packs.append(f"{pack[:16]}: missing from the store")
            res.blobs_lost += len(indexed.get(pack, []))
            continue
        kept, lost = _salvage(repo, pack, indexed.get(pack, []), writer, salvaged)
        res.blobs_salvaged += kept
        res.blobs_lost += lost
        res.damaged_packs.append(f"{pack[:16]}: {kept} blob(s) salvaged, {lost} lost")
        reporter.progress(done_items=1)
    writer.flush()
    entries: PackEntries = {p: blobs for p, blobs in indexed.items() if p not in damaged}
    entries.update(writer.packs)
    _publish_index(repo, entries, delete=[pack_name(p) for p in sorted(damaged & stored)] + sorted(records))
    res.packs_removed, res.records_consumed = len(damaged & stored), len(records)
    res.packs_indexed, res.blobs = len(entries), sum(len(v) for v in entries.values())
    return res


def _salvage(
    repo: Repository,
    pack: str,
    indexed: list[tuple[bytes, BlobRef]],
    writer: PackWriter,
    salvaged: set[bytes],
) -> tuple[int, int]:
    """Copy the blobs of ``pack`` that authenticate into ``writer``; (kept, lost)."""
    data = repo.backend.get(pack_name(pack))
    try:
        listed = list(codec.parse_pack_header(repo.cipher, pack, data).items())
    except IntegrityError:
        listed = list(indexed)  # its own header is damaged: the index says what it held
    kept = lost = 0
    for bid, ref in listed:
        elsewhere = repo.locate(bid)
        if bid in salvaged or (elsewhere is not None and elsewhere.pack != pack):
            continue  # a good copy exists elsewhere
        stored = data[ref.offset : ref.offset + ref.length]
        try:  # a distrusted blob that authenticates now (a fault of the read that found it) is kept
            codec.decode_blob(repo.cipher, ref.btype, bid, stored, ref.raw_len)
        except IntegrityError:
            lost += 1
            continue
        writer.add_stored(ref.btype, bid, stored, ref.raw_len)
        salvaged.add(bid)
        kept += 1
    return kept, lost


def _publish_index(repo: Repository, entries: PackEntries, *, delete: Sequence[str] = ()) -> None:
    new_index = repo.save_index(entries)
    repo.publish(
        remove_indexes=[i for i in repo.index_names() if i != new_index],
        add_indexes=[new_index] if new_index else [],
        merge=False,
    )
    if delete:
        repo.backend.delete_unpublished(list(delete))
    repo.load_index()


def repair_snapshots(repo: Repository, *, reporter: Reporter) -> RepairResult:
    """Rewrite each snapshot that misses data without what it cannot restore; forget those whose
    document or top tree cannot be read."""
    repo.refresh()
    repo.load_index()
    head = repo.head_id()  # what is rewritten below is judged by this head's index
    res = RepairResult("snapshots")
    writer = repo.pack_writer(keep=False)
    new: list[str] = []
    gone: list[str] = []
    ids = repo.snapshot_ids()
    reporter.phase("repair snapshots", total_items=len(ids))
    for sid in ids:
        reporter.progress(done_items=1)
        try:
            snap = repo.load_snapshot(sid)
        except NotFoundError:
            continue
        except IntegrityError as e:
            res.forgotten[sid] = e.message
            gone.append(sid)
            continue
        dropped: list[str] = []
        tree = _fix_tree(repo, snap.tree, "", dropped, writer, {})
        if tree is None:
            res.forgotten[sid] = "its top tree is missing or damaged"
            gone.append(sid)
            continue
        if tree == snap.tree:
            continue
        fixed = replace(
            snap,
            tree=tree,
            tags=sorted({*snap.tags, "repaired"}),
            repaired={
                "from": sid,
                "time": datetime.now(UTC).isoformat(timespec="seconds"),
                "dropped": dropped[:_DROPPED_LISTED],
                "dropped_count": len(dropped),
            },
            id="",
        )
        writer.flush()
        new_id = repo.save_snapshot(fixed)
        new.append(new_id)
        gone.append(sid)
        res.rewritten[sid] = {"new": new_id, "dropped": dropped}
    writer.flush()
    if new or gone:
        if repo.head_id() != head:  # a snapshot found gone re-read the head: publishing over it is unsafe
            raise ConflictError("the repository changed during the repair; nothing was changed",
                                hint="run `openclaw-backup repair snapshots` again")  # fmt: skip
        index = repo.save_index(writer.packs)
        repo.publish(add_snapshots=new, remove_snapshots=gone, add_indexes=[index] if index else [], merge=False)
    res.snapshots = len(repo.snapshot_ids())
    return res


def _fix_tree(repo: Repository, tid: str, prefix: str, dropped: list[str], writer: PackWriter,
              done: dict[str, str | None]) -> str | None:  # fmt: skip
    """The id of tree ``tid`` without what cannot be restored (itself when whole); None when the
    tree itself cannot be read. ``dropped`` collects the paths left out."""
    if tid in done:
        return done[tid]
    try:
        nodes = repo.read_tree(tid)
    except IntegrityError:
        done[tid] = None
        return None
    out: list[Node] = []
    changed = False
    for node in nodes:
        path = f"{prefix}/{node.name}" if prefix else node.name
        if node.type == "dir" and node.subtree:
            sub = _fix_tree(repo, node.subtree, path, dropped, writer, done)
            if sub is None:
                dropped.append(path + "/")
                changed = True
                continue
            if sub != node.subtree:
                node = replace(node, subtree=sub)
                changed = True
        elif node.type == "file" and any(repo.locate(bytes.fromhex(c), BLOB_DATA) is None for c in node.content):
            dropped.append(path)
            changed = True
            continue
        out.append(node)
    result = tid if not changed else writer.store(BLOB_TREE, encode_tree(out)).hex()
    done[tid] = result
    return result


def repair_head(repo: Repository, *, reporter: Reporter) -> RepairResult:
    """Rebuild a lost or undecodable head from the snapshot and index files the store lists."""
    backend = repo.backend
    current = backend.read_head()
    if current is not None:
        try:
            codec.decode_document(repo.cipher, b"head", current.data, what="head")
            raise UsageError("the head is readable: nothing to repair", hint="run `openclaw-backup check`")
        except IntegrityError:
            pass  # undecodable: replaced below
    reporter.phase("repair head")
    res = RepairResult("head")
    snaps = []
    for name in backend.list("snapshots/"):
        sid = name.rsplit("/", 1)[-1]
        try:
            doc = codec.decode_document(repo.cipher, b"snapshot", backend.get(name), what=f"snapshot {sid[:8]}")
            Snapshot.from_json(doc, id=sid)
            if codec.storage_id(backend.get(name)) != sid:
                raise IntegrityError("content does not match its name")
            snaps.append(sid)
        except (IntegrityError, NotFoundError) as e:
            res.forgotten[sid] = e.message
    indexes = []
    for name in backend.list("index/"):
        iid = name.rsplit("/", 1)[-1]
        try:
            data = backend.get(name)
            codec.decode_index(repo.cipher, iid, data)
            if codec.storage_id(data) != iid:
                raise IntegrityError("content does not match its name")
            indexes.append(iid)
        except (IntegrityError, NotFoundError) as e:
            res.damaged_packs.append(f"index {iid[:16]}: {e.message}")
    state = HeadState(seq=int(time.time()), snapshots=snaps, indexes=indexes)
    repo.replace_head(state, expect=current.version if current else None)
    res.snapshots, res.index_files = len(snaps), len(indexes)
    return res
