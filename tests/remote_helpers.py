"""Helpers for the end-to-end tests over remote stores (``tests/test_remote_e2e.py``).

* :func:`agent_tree` writes a small agent-like home: nested folders, an empty one, symlinks
  (relative, absolute, dangling), modes, past mtimes, a 3 MB random file and a WAL-mode SQLite
  database whose latest rows are still in its ``-wal`` (a connection stays open).
* :func:`fingerprint` describes a tree for equality: everything byte-exact (type, mode, mtime_ns,
  SHA-256, link target), except SQLite databases, which a backup captures through SQLite itself:
  those compare by mode, mtime and their logical content, and their ``-wal``/``-shm`` sidecars are
  left out.
* CLI helpers: a clean environment pointed at the fake Hub or at SeaweedFS, and a launcher that
  imports everything first and waits for a "go" file, so two backup processes start together.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from openclaw_backup.archiver import BackupOptions, BackupResult, backup
from openclaw_backup.backends import BackendOptions, open_backend
from openclaw_backup.backends.base import Backend
from openclaw_backup.crypto import KdfParams
from openclaw_backup.filecache import FileCache
from openclaw_backup.maintenance import check
from openclaw_backup.reporter import Reporter
from openclaw_backup.repository import Repository
from openclaw_backup.restorer import RestoreOptions, restore
from openclaw_backup.sources import Root
from tests.servers import cli_command as cli_command
from tests.servers import json_out
from tests.servers import run_cli as _run_cli

cli_json = json_out  # the name this suite uses
run_cli = functools.partial(_run_cli, timeout=60)  # this module's bound per CLI call

PASSWORD = "remote e2e password"
WEAK = KdfParams.weak_for_tests()
SQLITE_MAGIC = b"SQLite format 3\x00"
SIDECARS = (b"-wal", b"-shm", b"-journal")
PAST = 1_700_000_000 * 10**9  # a fixed time well in the past (no racy timestamps)

Fingerprint = dict[str, tuple[Any, ...]]

# ---------------------------------------------------------------------------- trees


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)


def set_mtimes(root: Path, ns: int) -> None:
    """Give ``root`` and everything under it (symlinks not followed) the mtime ``ns``."""
    entries: list[bytes] = []
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        entries += [os.path.join(dirpath, n) for n in dirnames + filenames]
    entries.sort(key=lambda p: -p.count(b"/"))  # children before their folder
    for p in [*entries, os.fsencode(root)]:
        os.utime(p, ns=(ns, ns), follow_symlinks=False)


def agent_tree(root: Path, *, seed: str = "a", big: int = 3 * 1024 * 1024) -> sqlite3.Connection:
    """Write an agent-like home at ``root``; returns the open connection that keeps the WAL live."""
    _write(root / "openclaw.json", json.dumps({"meta": {"lastTouchedVersion": "2025.1.1"}, "seed": seed}).encode())
    _write(root / "agents/main/agent/notes.md", f"# notes {seed}\n".encode() * 200)
    _write(root / "agents/main/sessions/s1.jsonl", f'{{"role":"user","text":"{seed}"}}\n'.encode() * 400, 0o600)
    _write(root / "agents/main/sessions/empty.jsonl", b"", 0o600)
    _write(root / "credentials/whatsapp/creds.json", f'{{"token":"{seed}-secret"}}'.encode(), 0o600)
    _write(root / "workspace/bin/run.sh", b"#!/bin/sh\necho hi\n", 0o755)
    _write(root / "workspace/deep/a/b/c/d/leaf.txt", f"leaf {seed}\n".encode())
    _write(root / "media/big.bin", os.urandom(big))
    (root / "empty-dir").mkdir()
    (root / "private").mkdir(mode=0o700)
    os.chmod(root / "private", 0o700)
    _write(root / "private/key", b"k" * 32, 0o400)
    (root / "links").mkdir()
    os.symlink("../openclaw.json", root / "links/relative")
    os.symlink("/usr/bin/env", root / "links/absolute")
    os.symlink("does/not/exist", root / "links/dangling")
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
    set_mtimes(root, PAST)
    return con


def touch_change(path: Path, data: bytes) -> None:
    """Replace a file's bytes and give it a past mtime distinct from its previous one."""
    old = os.lstat(path).st_mtime_ns if path.exists() else PAST
    path.write_bytes(data)
    os.utime(path, ns=(old + 10**9, old + 10**9))


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


def fingerprint(root: Path | str) -> Fingerprint:
    """Describe the tree at ``root`` (see the module docstring); keys are paths relative to it."""
    out: Fingerprint = {}
    databases: list[tuple[str, bytes]] = []
    base = os.fsencode(root)

    def visit(path: bytes, rel: str) -> None:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("symlink", st.st_mtime_ns, os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir", stat.S_IMODE(st.st_mode), st.st_mtime_ns)
            for name in sorted(os.listdir(path)):
                visit(os.path.join(path, name), os.fsdecode(name) if rel == "." else f"{rel}/{os.fsdecode(name)}")
        elif stat.S_ISREG(st.st_mode):
            if path.endswith(SIDECARS):
                return  # captured through SQLite, never stored
            with open(path, "rb") as f:
                data = f.read()
            if data[:16] == SQLITE_MAGIC:
                out[rel] = ("sqlite", stat.S_IMODE(st.st_mode), st.st_mtime_ns)
                databases.append((rel, path))
            else:
                out[rel] = (
                    "file",
                    stat.S_IMODE(st.st_mode),
                    st.st_mtime_ns,
                    len(data),
                    hashlib.sha256(data).hexdigest(),
                )
        else:
            out[rel] = ("other", st.st_mode)

    visit(base, ".")
    for rel, path in databases:  # after every lstat: nothing above is disturbed
        out[rel] = (*out[rel], _sqlite_digest(path))
    return out


def fp_diff(a: Fingerprint, b: Fingerprint) -> str:
    lines = [f"{k}: {a.get(k)!r} != {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return "\n".join(lines[:30]) or "(equal)"


# ---------------------------------------------------------------------------- in-process API


def init_repo(backend: Backend, *, pack_size: int = 512 * 1024, cache_dir: Path | None = None) -> Repository:
    return Repository.init(backend, password=PASSWORD, kdf=WEAK, pack_size=pack_size, cache_dir=cache_dir)


def open_repo(address: str, options: BackendOptions, *, cache_dir: Path | None = None) -> Repository:
    return Repository.open(open_backend(address, options), password=PASSWORD, cache_dir=cache_dir)


def api_backup(
    repo: Repository, roots: Mapping[str, Path], *, host: str = "e2e-host", cache: FileCache | None = None
) -> BackupResult:
    opts = BackupOptions(roots=[Root(n, str(p)) for n, p in roots.items()], host=host, workers=2)
    return backup(repo, opts, reporter=Reporter(), cache=cache or FileCache(None))


def api_restore(repo: Repository, snapshot: str, dests: Mapping[str, Path]) -> None:
    repo.load_index()
    snap = repo.find_snapshot(snapshot)
    restore(repo, snap, RestoreOptions(destinations=dict(dests), workers=2), reporter=Reporter())


def assert_check_ok(repo: Repository) -> None:
    repo.refresh()
    res = check(repo, read_data=True, reporter=Reporter())
    assert res.ok, res.problems
    assert not res.damaged, res.damaged


# ---------------------------------------------------------------------------- CLI


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    """A clean environment: private HOME, XDG dirs, cheap KDF, the password; plus ``extra``."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("OPENCLAW_", "HF_", "HUGGINGFACE_", "AWS_", "XDG_"))
    }
    home.mkdir(parents=True, exist_ok=True)
    env.update(
        HOME=str(home),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_DATA_HOME=str(home / ".local/share"),
        OPENCLAW_BACKUP_TEST_WEAK_KDF="1",
        OPENCLAW_BACKUP_PASSWORD=PASSWORD,
        OPENCLAW_BACKUP_NPM_ENABLED="0",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.update(extra)
    return env


def hub_env(url: str, token: str) -> dict[str, str]:
    return {
        "HF_ENDPOINT": url,
        "HF_TOKEN": token,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }


def s3_env(endpoint: str, access_key: str, secret_key: str) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": access_key,
        "AWS_SECRET_ACCESS_KEY": secret_key,
        "AWS_REGION": "us-east-1",
        "OPENCLAW_BACKUP_S3_ENDPOINT": endpoint,
    }


def cli_ok(args: list[str], env: Mapping[str, str], *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    proc = run_cli(args, env, timeout=timeout)
    assert proc.returncode == 0, f"{args} -> {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return proc


# The CLI's own main(), in a fresh process, started only when the "go" file appears: the heavy
# imports are done by then, so two processes begin their backups within milliseconds of each other.
_LAUNCHER = r"""
import os, sys, time
import openclaw_backup.cli, openclaw_backup.commands.backup
import openclaw_backup.backends.hf_repo, openclaw_backup.backends.s3
go, ready = sys.argv[1], sys.argv[2]
open(ready, "w").close()
deadline = time.monotonic() + 60
while not os.path.exists(go):
    if time.monotonic() > deadline:
        sys.exit(99)
    time.sleep(0.002)
sys.exit(openclaw_backup.cli.main(sys.argv[3:]))
"""


def spawn_cli_on_go(args: list[str], env: Mapping[str, str], go: Path, ready: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _LAUNCHER, str(go), str(ready), *args],
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def spawn_cli(args: list[str], env: Mapping[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        cli_command() + args, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
