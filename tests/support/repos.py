"""Repositories for the tests, in process: cheap keys, small packs, backups and restores, and what a
store holds.

* :data:`PASSWORD` (the one test password), :data:`WEAK` (cheap key derivation), :data:`PACK_SIZE`
  (small, so small data spans several packs) and :data:`HOST`;
* :func:`new_repo`, :func:`open_repo`, :func:`local_repo`;
* :func:`run_backup` / :func:`run_restore` (forked by default: the reading and the writing are
  shared with a forked worker whatever the size, so every engine test goes through that path)
  and :func:`restore_all`;
* inspection: :func:`snapshot_nodes`, :func:`assert_check_ok`, :func:`stored_bytes`,
  :func:`needed_bytes`;
* stored forms built by hand: :func:`publish_crafted`, :func:`raw_tree`, :func:`tree_id`,
  :func:`encode_blob`, :func:`build_pack`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from openclaw_backup import codec, prune
from openclaw_backup.archiver import BackupOptions, BackupResult, backup
from openclaw_backup.backends.base import Backend
from openclaw_backup.backends.local import LocalBackend
from openclaw_backup.backends.memory import MemoryBackend
from openclaw_backup.codec import BLOB_TREE, BlobRef
from openclaw_backup.crypto import Cipher, KdfParams
from openclaw_backup.filecache import FileCache
from openclaw_backup.maintenance import check
from openclaw_backup.pack import PackWriter
from openclaw_backup.reporter import Reporter
from openclaw_backup.repository import Repository, walk
from openclaw_backup.restorer import RestoreOptions, RestoreResult, restore
from openclaw_backup.snapshot import Snapshot
from openclaw_backup.sources import Root
from openclaw_backup.tree import Node

PASSWORD = "correct horse battery staple"
PACK_SIZE = 64 * 1024
#: The pack size of the retention and prune-race suites (their space accounting and repacking).
RETENTION_PACK_SIZE = 256 * 1024
WEAK = KdfParams.weak_for_tests()
HOST = "test-host"

# ---------------------------------------------------------------------------- repositories


def new_repo(
    backend: Backend | None = None,
    *,
    password: str | None = PASSWORD,
    pack_size: int = PACK_SIZE,
    cache_dir: Path | None = None,
) -> Repository:
    """A new repository (on a fresh :class:`MemoryBackend` unless ``backend``), cheap keys."""
    return Repository.init(
        backend if backend is not None else MemoryBackend(),
        password=password,
        kdf=WEAK,
        pack_size=pack_size,
        cache_dir=cache_dir,
    )


def open_repo(backend: Backend, *, password: str | None = PASSWORD, cache_dir: Path | None = None) -> Repository:
    return Repository.open(backend, password=password, cache_dir=cache_dir)


def local_repo(path: Path, **kw: Any) -> Repository:
    return new_repo(LocalBackend(path, lock_timeout=5.0), **kw)


# ---------------------------------------------------------------------------- backup and restore


def run_backup(
    repo: Repository,
    roots: Mapping[str, Path],
    *,
    cache: FileCache | None = None,
    excludes: Iterable[str] = (),
    scratch: Path | None = None,
    reporter: Reporter | None = None,
    forked: bool = True,
    **options: Any,
) -> BackupResult:
    """Back up ``roots`` (name -> folder) in process; ``options`` are other :class:`BackupOptions`
    fields (two workers and :data:`HOST` unless given).

    ``forked``: the reading is shared with a forked worker whatever the size and the store (threads
    where the platform has no fork); ``forked=False`` keeps the product's choice (a worker for
    enough work on a store on this machine).
    """
    options.setdefault("workers", 2)
    options.setdefault("host", HOST)
    if forked:
        options.setdefault("fork", True)
    opts = BackupOptions(
        roots=[Root(name, str(path)) for name, path in roots.items()],
        excludes=list(excludes),
        scratch_dir=scratch,
        **options,
    )
    return backup(repo, opts, reporter=reporter or Reporter(), cache=cache or FileCache(None))


def run_restore(
    repo: Repository, ref: str, dests: Mapping[str, Path], *, forked: bool = True, **options: Any
) -> RestoreResult:
    """Restore snapshot ``ref`` (root name -> destination); ``options`` are :class:`RestoreOptions`
    fields (two workers unless given). ``forked`` as for :func:`run_backup`: the files are written
    by two processes whatever the size, from a store on this machine (a worker reads the store)."""
    options.setdefault("workers", 2)
    if forked:
        options.setdefault("fork", True)
    return _restore(repo, repo.find_snapshot(ref), dests, **options)


def restore_all(repo: Repository, ref: str, target: Path) -> dict[str, Path]:
    """Restore every root of a snapshot under ``target/<root>`` with the product's defaults but no
    space check; returns the destinations."""
    repo.load_index()
    snap = repo.find_snapshot(ref)
    dests = {name: target / name for name in snap.roots}
    target.mkdir(parents=True, exist_ok=True)
    _restore(repo, snap, dests, check_space=False)
    return dests


def _restore(repo: Repository, snap: Snapshot, dests: Mapping[str, Path], **options: Any) -> RestoreResult:
    return restore(repo, snap, RestoreOptions(destinations=dict(dests), **options), reporter=Reporter())


# ---------------------------------------------------------------------------- inspection


def snapshot_nodes(repo: Repository, ref: str = "latest") -> dict[str, Node]:
    """Every node of a snapshot by its path (``root/rel``)."""
    repo.load_index()
    return dict(walk(repo, repo.find_snapshot(ref).tree))


def assert_check_ok(repo: Repository) -> None:
    """``check --read-data`` finds nothing wrong."""
    repo.refresh()
    res = check(repo, read_data=True, reporter=Reporter())
    assert res.ok, res.problems
    assert not res.damaged, res.damaged


def stored_bytes(backend: Backend) -> int:
    """Every byte the store holds for the repository: objects, head (and the empty lock file)."""
    if isinstance(backend, MemoryBackend):
        return sum(len(v) for v in backend.objects.values()) + (len(backend.head.data) if backend.head else 0)
    if isinstance(backend, LocalBackend):
        return sum(p.stat().st_size for p in backend.root.rglob("*") if p.is_file())
    raise TypeError(f"no byte count for {type(backend).__name__}")


def needed_bytes(repo: Repository) -> int:
    """What the snapshots of the head need, by definition:

    the stored length (sealed, compressed) of every unique blob reachable from a live snapshot
    (``prune.mark_live``), plus the objects a reader needs besides data: ``config``, the key files,
    the index files and snapshot documents named by the head, and the head itself. Pack headers
    and pack-internal garbage are *not* counted as needed (they are the overhead the 1.3 x allows).
    """
    repo.refresh()
    repo.load_index()
    live = prune.mark_live(repo)
    data = sum(repo.index[b].length for b in live)
    b = repo.backend
    meta = ["config", *b.list("keys/")]
    meta += [f"index/{i}" for i in repo.state.indexes] + [f"snapshots/{s}" for s in repo.state.snapshots]
    head = b.read_head()
    return data + sum(b.size(m) for m in meta) + (len(head.data) if head else 0)


# ---------------------------------------------------------------------------- stored forms, built by hand


def publish_crafted(repo: Repository, top_nodes: list[dict[str, Any]], *, subtrees: Iterable[bytes] = (),
                    roots: Mapping[str, str] | None = None) -> tuple[str, PackWriter]:  # fmt: skip
    """Write a snapshot whose top tree is ``top_nodes`` (raw node dicts, not validated).

    ``subtrees`` are extra tree blobs (raw JSON bytes) stored first; returns the snapshot id.
    """
    repo.load_index()
    w = repo.pack_writer()
    for data in subtrees:
        w.store(BLOB_TREE, data)
    top = w.store(BLOB_TREE, raw_tree(top_nodes))
    w.flush()
    index = repo.save_index(w.packs)
    doc = {
        "version": 1,
        "time": "2030-01-01T00:00:00.000000+00:00",
        "host": HOST,
        "username": "",
        "tags": [],
        "roots": {
            name: {"path": path, "type": "dir"}
            for name, path in (roots or {str(n.get("name")): f"/crafted/{n.get('name')}" for n in top_nodes}).items()
        },
        "tree": top.hex(),
        "parent": None,
        "tool_version": "test",
        "agent_version": None,
        "origin": "backup",
        "summary": {},
        "warnings": 0,
    }
    sid = repo.put_immutable("snapshots", codec.encode_document(repo.cipher, b"snapshot", doc))
    repo.publish(add_snapshots=[sid], add_indexes=[index] if index else [])
    repo.load_index()
    return sid, w


def raw_tree(nodes: list[dict[str, Any]]) -> bytes:
    return json.dumps({"nodes": nodes}, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def tree_id(repo: Repository, nodes: list[dict[str, Any]]) -> tuple[str, bytes]:
    data = raw_tree(nodes)
    return repo.cipher.blob_id(data).hex(), data


def encode_blob(cipher: Cipher, btype: bytes, data: bytes | memoryview, blob_id: bytes) -> bytearray:
    """One blob's stored form: compressed when it pays, sealed (what a pack writer stores)."""
    flag, body = codec.blob_body(data)
    out = bytearray(cipher.sealed_size(1 + len(body)))
    with memoryview(out) as view:
        cipher.seal_flagged_into(flag, body, codec.blob_ad(btype, blob_id), view)
    return out


def build_pack(cipher: Cipher, entries: list[tuple[bytes, bytes, bytes, int]]) -> tuple[bytes, dict[bytes, BlobRef]]:
    """A pack of ``(type, id, stored bytes, raw length)``: its bytes and the refs of its blobs."""
    buf = bytearray(b"".join(e[2] for e in entries))
    refs, _ = codec.finish_pack(cipher, buf, [(t, i, len(st), r) for t, i, st, r in entries])
    return bytes(buf), refs
