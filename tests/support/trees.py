"""File trees: writing them (sample agent homes, small edits) and describing them for equality.

* :func:`fingerprint` — the exact description of a tree: type, permission bits, ``mtime_ns``
  (``lstat``, so symlinks too), size and SHA-256, link target; keys are paths relative to the root
  (``"."`` is the root itself), decoded with ``os.fsdecode`` so non-UTF-8 names compare exactly and
  the whole fingerprint is JSON (:func:`digest`). ``sqlite=True`` compares SQLite databases by
  their logical content (what a capture through SQLite keeps) and leaves their sidecars out.
* :func:`tar_fingerprint` — what a tar archive keeps (the legacy format): everything under the root
  (not the root), modes, whole-second mtimes, contents, link targets.
* writers: :func:`write`, :func:`write_tree`, :func:`set_mtimes`, :func:`touch_change`, and the
  sample trees :func:`sample_state` (engine), :func:`make_tree` (versioned, for crash and
  concurrency; also used by the driver subprocess, so this module imports neither pytest nor
  the product), :func:`agent_tree` (with a live WAL database).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sqlite3
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

Fingerprint = dict[str, tuple[Any, ...]]

SQLITE_MAGIC = b"SQLite format 3\x00"
SQLITE_SIDECARS = (b"-wal", b"-shm", b"-journal")
PAST_NS = 1_700_000_000 * 10**9  # a fixed time well in the past (no racy timestamps)

# ---------------------------------------------------------------------------- describing trees


def _walk(root: Path | str | bytes, skip: Callable[[str], bool] | None) -> Iterator[tuple[str, bytes, os.stat_result]]:
    """``(relative path, path, lstat)`` of ``root`` (as ``"."``) and everything under it, parents
    first, names sorted (nothing if ``root`` is missing); ``skip(rel)`` leaves out an entry and,
    for a folder, all it holds."""
    base = os.fsencode(root)
    stack: list[tuple[str, bytes]] = [(".", base)] if os.path.lexists(base) else []
    while stack:
        rel, path = stack.pop()
        if skip is not None and skip(rel):
            continue
        st = os.lstat(path)
        yield rel, path, st
        if stat.S_ISDIR(st.st_mode):
            for name in sorted(os.listdir(path), reverse=True):  # popped in sorted order
                sub = os.fsdecode(name) if rel == "." else f"{rel}/{os.fsdecode(name)}"
                stack.append((sub, os.path.join(path, name)))


def _sha256(path: bytes) -> tuple[int, str]:
    with open(path, "rb") as f:
        data = f.read()
    return len(data), hashlib.sha256(data).hexdigest()


def fingerprint(
    root: Path | str | bytes, *, skip: Callable[[str], bool] | None = None, sqlite: bool = False
) -> Fingerprint:
    """Describe everything under ``root`` (included, as ``"."``) exactly; a missing ``root`` is ``{}``.

    ``skip(rel)`` leaves out an entry (and, for a folder, everything under it). With ``sqlite``, a
    file starting with SQLite's magic is ``("sqlite", mode, mtime_ns, logical digest)`` (the
    database read with its ``-wal``, from a scratch copy) and ``-wal``/``-shm``/``-journal`` files
    are left out: a backup captures databases through SQLite, never their sidecars.
    """
    out: Fingerprint = {}
    databases: list[tuple[str, bytes]] = []
    for rel, path, st in _walk(root, skip):
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("symlink", st.st_mtime_ns, os.fsdecode(os.readlink(path)))
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir", mode, st.st_mtime_ns)
        elif stat.S_ISREG(st.st_mode):
            if sqlite and path.endswith(SQLITE_SIDECARS):
                continue
            if sqlite and _is_sqlite(path):
                out[rel] = ("sqlite", mode, st.st_mtime_ns)
                databases.append((rel, path))
            else:
                out[rel] = ("file", mode, st.st_mtime_ns, *_sha256(path))
        else:
            out[rel] = ("other", st.st_mode)
    for rel, path in databases:  # after every lstat: reading a database disturbs nothing above
        out[rel] = (*out[rel], _sqlite_digest(path))
    return out


def tar_fingerprint(root: Path | str, *, dir_mtimes: bool = True) -> Fingerprint:
    """What a tar archive keeps of everything under ``root`` (not ``root`` itself): type, mode bits,
    mtime in whole seconds (folders' only with ``dir_mtimes``), content hash, link target. A missing
    ``root`` is ``{}``."""
    out: Fingerprint = {}
    for rel, path, st in _walk(os.path.realpath(os.fsencode(root)), None):  # a linked root is followed
        if rel == ".":
            continue
        mode, mtime = stat.S_IMODE(st.st_mode), int(st.st_mtime)
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("symlink", os.fsdecode(os.readlink(path)))
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir", mode, mtime if dir_mtimes else None)
        else:
            out[rel] = ("file", mode, mtime, *_sha256(path))
    return out


def _is_sqlite(path: bytes) -> bool:
    with open(path, "rb") as f:
        return f.read(16) == SQLITE_MAGIC


def _sqlite_digest(path: bytes) -> str:
    """Logical content of a database (with its -wal, if any), read from a scratch copy."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "db")
        shutil.copyfile(path, copy)
        if os.path.exists(path + b"-wal"):
            shutil.copyfile(path + b"-wal", copy + "-wal")
        con = sqlite3.connect(copy)
        try:
            return hashlib.sha256("\n".join(con.iterdump()).encode()).hexdigest()
        finally:
            con.close()


def fp_diff(a: Fingerprint, b: Fingerprint) -> str:
    """A readable difference of two fingerprints (for assertion messages)."""
    lines = [f"{k}: {a.get(k)!r} != {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return "\n".join(lines[:30]) or "(equal)"


def digest(fp: Fingerprint) -> str:
    """A short stable name for a fingerprint (what subprocesses report)."""
    return hashlib.sha256(json.dumps(sorted(fp.items())).encode()).hexdigest()[:16]


def leftovers(parent: Path) -> list[str]:
    """Staging or half-swapped trees a restore may have left in ``parent``."""
    return sorted(n for n in os.listdir(parent) if ".openclaw-restore-" in n or ".openclaw-old-" in n)


# ---------------------------------------------------------------------------- writing trees


def past_ns(seconds: float = 30.0) -> int:
    return time.time_ns() - int(seconds * 1e9)


def write(path: Path, data: str | bytes, *, mode: int | None = None, mtime_ns: int | None = None) -> Path:
    """Write ``data`` (a ``str`` as UTF-8) at ``path``, making its folders; then its mode and mtime."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    if mode is not None:
        os.chmod(path, mode)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def write_tree(root: Path, files: dict[str, bytes | str], *, mtime: int = 1_700_000_000) -> None:
    """Write ``files`` (relative path -> content; a ``str`` starting with '->' is a symlink) with
    the mtime ``mtime`` (seconds)."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str) and content.startswith("->"):
            if path.is_symlink():
                path.unlink()
            path.symlink_to(content[2:])
            continue
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        os.utime(path, (mtime, mtime))


def set_mtimes(root: Path, ns: int) -> None:
    """Give ``root`` and everything under it (symlinks included, not followed) the mtime ``ns``."""
    entries: list[bytes] = []
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        entries += [os.path.join(dirpath, n) for n in dirnames + filenames]
    entries.sort(key=lambda p: -p.count(b"/"))  # deepest first: children before their folder
    for p in [*entries, os.fsencode(root)]:
        os.utime(p, ns=(ns, ns), follow_symlinks=False)


def touch_change(path: Path, data: bytes) -> None:
    """Replace a file's bytes and give it a past mtime distinct from its previous one."""
    old = os.lstat(path).st_mtime_ns if path.exists() else PAST_NS
    path.write_bytes(data)
    os.utime(path, ns=(old + 10**9, old + 10**9))


def _folders_and_links(root: Path, *, key: bytes, key_mode: int) -> None:
    """An empty folder, a private one (0700) holding ``private/key``, and ``links/`` with a symlink of
    each kind: relative (to ``openclaw.json``), absolute, dangling."""
    (root / "empty-dir").mkdir()
    (root / "private").mkdir(mode=0o700)
    os.chmod(root / "private", 0o700)
    write(root / "private/key", key, mode=key_mode)
    (root / "links").mkdir()
    os.symlink("../openclaw.json", root / "links/relative")
    os.symlink("/usr/bin/env", root / "links/absolute")
    os.symlink("does/not/exist", root / "links/dangling")


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
    _folders_and_links(root, key=b"k" * 10, key_mode=0o600)
    write(root / os.fsdecode(b"caf\xc3\xa9-\xe2\x9c\x93.txt"), "unicode ✓".encode())
    write(root / os.fsdecode(b"latin1-\xe9\xff.bin"), b"not utf-8 name")


def agent_tree(root: Path, *, seed: str = "a", big: int = 3 * 1024 * 1024) -> sqlite3.Connection:
    """An agent-like home at ``root``: nested folders, an empty one, symlinks (relative, absolute,
    dangling), modes, a ``big`` random file and a WAL-mode SQLite database whose latest rows are
    still in its ``-wal``, everything with the mtime :data:`PAST_NS`. Returns the open connection
    that keeps the WAL live."""
    write(root / "openclaw.json", json.dumps({"meta": {"lastTouchedVersion": "2025.1.1"}, "seed": seed}), mode=0o644)
    write(root / "agents/main/agent/notes.md", f"# notes {seed}\n" * 200, mode=0o644)
    write(root / "agents/main/sessions/s1.jsonl", f'{{"role":"user","text":"{seed}"}}\n' * 400, mode=0o600)
    write(root / "agents/main/sessions/empty.jsonl", b"", mode=0o600)
    write(root / "credentials/whatsapp/creds.json", f'{{"token":"{seed}-secret"}}', mode=0o600)
    write(root / "workspace/bin/run.sh", b"#!/bin/sh\necho hi\n", mode=0o755)
    write(root / "workspace/deep/a/b/c/d/leaf.txt", f"leaf {seed}\n", mode=0o644)
    write(root / "media/big.bin", os.urandom(big), mode=0o644)
    _folders_and_links(root, key=b"k" * 32, key_mode=0o400)
    db = root / "memory/main.sqlite"
    db.parent.mkdir(parents=True)
    con = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA wal_autocheckpoint=0")  # keep the newest rows in the -wal file
    con.execute("CREATE TABLE chunks (id INTEGER PRIMARY KEY, text TEXT, emb BLOB)")
    con.execute("BEGIN")
    con.executemany(
        "INSERT INTO chunks (text, emb) VALUES (?, ?)", ((f"{seed} chunk {i}", os.urandom(200)) for i in range(400))
    )
    con.execute("COMMIT")
    set_mtimes(root, PAST_NS)
    return con


def _rand(seed: str, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


def make_tree(root: Path, version: int, *, files: int = 8, size: int = 70_000, tag: str = "") -> None:
    """Write version ``version`` (0, 1, 2, 3 …) of a small agent home at ``root`` (replacing it).

    ``files`` random files of ``size`` bytes (each bigger than a 64 KiB pack, so each becomes its
    own pack), a few small ones with modes 0600/0755/0640, an empty folder, and symlinks
    (relative, absolute, dangling). Later versions change, add and delete files, change a mode and
    retarget a link, while sharing most data with the earlier ones (dedup, repack). ``tag`` makes
    the random content of a tree distinct from other trees' (overlapping trees share untagged files).
    """
    if root.exists():
        shutil.rmtree(root)
    (root / "agents/main/sessions").mkdir(parents=True)
    (root / "media").mkdir()
    (root / "empty").mkdir()
    (root / "links").mkdir()
    (root / "openclaw.json").write_bytes(b'{"meta": {"lastTouchedVersion": "2026.%d"}}\n' % version)
    (root / "agents/main/notes.md").write_bytes(b"# notes\n" * (40 + version))
    secret = root / "credentials.json"
    secret.write_bytes(b'{"token": "sekrit-%d"}' % (version // 2))
    os.chmod(secret, 0o600)
    run = root / "run.sh"
    run.write_bytes(b"#!/bin/sh\necho hi\n")
    os.chmod(run, 0o755 if version < 2 else 0o750)
    for i in range(files):
        if version >= 2 and i == 0:
            continue  # deleted in version 2
        # file i changes in version v when i % 4 == v (so each version rewrites a few)
        gen = max([v for v in range(version + 1) if v == 0 or i % 4 == v % 4])
        data = _rand(f"{tag}:{i}:{gen}", size)
        (root / f"media/f{i:02d}.bin").write_bytes(data)
    if version >= 1:
        (root / f"agents/main/sessions/s{version}.jsonl").write_bytes(_rand(f"{tag}:session:{version}", size))
    os.symlink("../openclaw.json", root / "links/config")
    os.symlink("/usr/bin/env" if version < 3 else "/bin/sh", root / "links/absolute")
    os.symlink("does/not/exist", root / "links/dangling")
    os.chmod(root / "agents", 0o750)
