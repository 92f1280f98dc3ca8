"""Shared helpers for the engine tests (``tests/test_engine_*.py``).

* :func:`fingerprint` — a full, comparable description of a directory tree: type, permission
  bits, ``mtime_ns`` (``lstat``, so symlinks too), content SHA-256, link target. Names are bytes,
  so non-UTF-8 names compare exactly.
* repository helpers with cheap keys (``KdfParams.weak_for_tests``) and a small pack size, so
  small data still spans several packs.
* CLI helpers that run the real ``openclaw-backup`` in a subprocess with a clean environment.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from openclaw_backup import codec
from openclaw_backup.archiver import BackupOptions, BackupResult, backup
from openclaw_backup.backends.base import Backend
from openclaw_backup.backends.local import LocalBackend
from openclaw_backup.backends.memory import MemoryBackend
from openclaw_backup.codec import BLOB_TREE, BlobRef
from openclaw_backup.crypto import Cipher, KdfParams
from openclaw_backup.filecache import FileCache
from openclaw_backup.pack import PackWriter
from openclaw_backup.reporter import Reporter
from openclaw_backup.repository import Repository
from openclaw_backup.restorer import RestoreOptions, RestoreResult, restore
from openclaw_backup.sources import Root
from tests.servers import clean_env, json_out
from tests.servers import cli_command as cli_command
from tests.servers import run_cli as run_cli

cli_json = json_out  # the name this suite uses

PASSWORD = "correct horse battery staple"
PACK_SIZE = 64 * 1024
WEAK = KdfParams.weak_for_tests()
HOST = "engine-test-host"

# ---------------------------------------------------------------------------- file-system state

Fingerprint = dict[bytes, tuple[Any, ...]]


def fingerprint(root: Path | str | bytes, *, skip: Callable[[bytes], bool] = lambda rel: False) -> Fingerprint:
    """Describe everything under ``root`` (included) by its path relative to ``root`` (``b"."``).

    ``skip(rel)`` leaves out an entry (and, for a directory, everything under it).
    """
    out: Fingerprint = {}
    base = os.fsencode(root)

    def visit(path: bytes, rel: bytes) -> None:
        if skip(rel):
            return
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("symlink", st.st_mtime_ns, os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir", stat.S_IMODE(st.st_mode), st.st_mtime_ns)
            for name in sorted(os.listdir(path)):
                visit(os.path.join(path, name), name if rel == b"." else rel + b"/" + name)
        elif stat.S_ISREG(st.st_mode):
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            out[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_mtime_ns, st.st_size, digest)
        else:
            out[rel] = ("other", st.st_mode)

    visit(base, b".")
    return out


def fp_diff(a: Fingerprint, b: Fingerprint) -> str:
    """A readable difference of two fingerprints (for assertion messages)."""
    lines = []
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            lines.append(f"{k!r}: {a.get(k)!r} != {b.get(k)!r}")
    return "\n".join(lines[:30])


def set_mtimes(root: Path, ns: int) -> None:
    """Give ``root`` and everything under it (symlinks included, not followed) the mtime ``ns``."""
    entries: list[bytes] = []
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        for n in dirnames + filenames:
            entries.append(os.path.join(dirpath, n))
    entries.sort(key=lambda p: -p.count(b"/"))  # deepest first: children before their folder
    for p in [*entries, os.fsencode(root)]:
        os.utime(p, ns=(ns, ns), follow_symlinks=False)


def past_ns(seconds: float = 30.0) -> int:
    return time.time_ns() - int(seconds * 1e9)


def write(path: Path, data: bytes, *, mode: int | None = None, mtime_ns: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mode is not None:
        os.chmod(path, mode)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def leftovers(parent: Path) -> list[str]:
    """Staging or half-swapped trees a restore may have left in ``parent``."""
    return sorted(n for n in os.listdir(parent) if ".openclaw-restore-" in n or ".openclaw-old-" in n)


def sample_state(root: Path) -> None:
    """A small agent home: nested folders, empty ones, symlinks of each kind, modes, a secret."""
    write(root / "openclaw.json", b'{"meta": {"lastTouchedVersion": "2025.1.1"}}\n', mode=0o644)
    write(root / "agents/main/agent/notes.md", b"# notes\n" * 50, mode=0o644)
    write(root / "agents/main/sessions/s1.jsonl", b'{"role":"user","text":"hi"}\n' * 300, mode=0o600)
    write(root / "agents/main/sessions/empty.jsonl", b"", mode=0o600)
    write(root / "credentials/x.json", b'{"token":"sekrit"}', mode=0o600)
    write(root / "bin/run.sh", b"#!/bin/sh\necho hi\n", mode=0o755)
    write(root / "media/blob.bin", os.urandom(300_000), mode=0o644)
    write(root / "media/copy.bin", (root / "media/blob.bin").read_bytes(), mode=0o644)  # dedups
    (root / "empty-dir").mkdir()
    (root / "private").mkdir(mode=0o700)
    os.chmod(root / "private", 0o700)
    write(root / "private/key", b"k" * 10, mode=0o600)
    (root / "links").mkdir()
    os.symlink("../openclaw.json", root / "links/relative")
    os.symlink("/usr/bin/env", root / "links/absolute")
    os.symlink("does/not/exist", root / "links/dangling")
    write(root / os.fsdecode(b"caf\xc3\xa9-\xe2\x9c\x93.txt"), "unicode ✓".encode())
    write(root / os.fsdecode(b"latin1-\xe9\xff.bin"), b"not utf-8 name")


# ---------------------------------------------------------------------------- repositories


def new_repo(
    backend: Backend | None = None,
    *,
    password: str | None = PASSWORD,
    pack_size: int = PACK_SIZE,
    cache_dir: Path | None = None,
) -> Repository:
    return Repository.init(
        backend if backend is not None else MemoryBackend(),
        password=password,
        kdf=WEAK,
        pack_size=pack_size,
        cache_dir=cache_dir,
    )


def local_repo(path: Path, **kw: Any) -> Repository:
    return new_repo(LocalBackend(path, lock_timeout=5.0), **kw)


def run_backup(
    repo: Repository,
    roots: Mapping[str, Path],
    *,
    cache: FileCache | None = None,
    excludes: Iterable[str] = (),
    scratch: Path | None = None,
    reporter: Reporter | None = None,
    **kw: Any,
) -> BackupResult:
    """Back up with the reading shared by two processes whatever the size (the forked path; a store
    that cannot be forked from falls back to threads), so that every engine test goes through it."""
    kw.setdefault("workers", 2)
    kw.setdefault("fork_threshold", 0)
    opts = BackupOptions(
        roots=[Root(name, str(path)) for name, path in roots.items()],
        excludes=list(excludes),
        host=HOST,
        scratch_dir=scratch,
        **kw,
    )
    return backup(repo, opts, reporter=reporter or Reporter(), cache=cache or FileCache(None))


def run_restore(
    repo: Repository, ref: str, dests: Mapping[str, Path], *, includes: Iterable[str] = ()
) -> RestoreResult:
    """Restore with the data written by two processes whatever the size (the forked path; a store
    that cannot be forked from falls back to threads), so that every engine test goes through it."""
    snap = repo.find_snapshot(ref)
    opts = RestoreOptions(destinations=dict(dests), includes=list(includes), workers=2, fork_threshold=0)
    return restore(repo, snap, opts, reporter=Reporter())


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


# ---------------------------------------------------------------------------- CLI


def cli_env(tmp: Path, **extra: str) -> dict[str, str]:
    """A clean environment: a private HOME and XDG dirs, weak KDF, a fixed host name."""
    return clean_env(tmp, **{"OPENCLAW_BACKUP_PASSWORD": PASSWORD, "OPENCLAW_BACKUP_HOST": HOST,
                             "OPENCLAW_BACKUP_NPM_ENABLED": "0", **extra})  # fmt: skip


# ---------------------------------------------------------------------------- stored forms, built by hand


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
