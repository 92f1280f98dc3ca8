"""Helpers for the retention/maintenance tests (``test_retention.py``, ``test_prune_race.py``).

* repositories with cheap keys and small packs, backups and restores in-process;
* :func:`fingerprint` of a directory tree (type, mode, mtime, content hash) for byte-exact checks;
* :func:`stored_bytes` (what a backend holds) and :func:`needed_bytes` (what the live snapshots need);
* a CLI runner (subprocess, clean environment) for the race test and one for ``cli.main`` in-process.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from contextlib import redirect_stderr, redirect_stdout
from datetime import datetime
from pathlib import Path
from typing import Any

from openclaw_backup import prune
from openclaw_backup.archiver import BackupOptions, BackupResult, backup
from openclaw_backup.backends.base import Backend
from openclaw_backup.backends.local import LocalBackend
from openclaw_backup.backends.memory import MemoryBackend
from openclaw_backup.crypto import KdfParams
from openclaw_backup.filecache import FileCache
from openclaw_backup.reporter import Reporter
from openclaw_backup.repository import Repository
from openclaw_backup.restorer import RestoreOptions, restore
from openclaw_backup.sources import Root
from tests.servers import clean_env

PASSWORD = "retention test password"
PACK_SIZE = 256 * 1024
WEAK = KdfParams.weak_for_tests()
HOST = "retention-host"

Fingerprint = dict[str, tuple[Any, ...]]


# ---------------------------------------------------------------------------- repositories


def new_repo(backend: Backend, *, cache_dir: Path | None = None, pack_size: int = PACK_SIZE) -> Repository:
    return Repository.init(backend, password=PASSWORD, kdf=WEAK, pack_size=pack_size, cache_dir=cache_dir)


def open_repo(backend: Backend, *, cache_dir: Path | None = None) -> Repository:
    return Repository.open(backend, password=PASSWORD, cache_dir=cache_dir)


def do_backup(
    repo: Repository,
    roots: Mapping[str, Path],
    *,
    cache: FileCache | None = None,
    when: datetime | None = None,
    tags: Iterable[str] = (),
    host: str = HOST,
    force: bool = False,
    scratch: Path | None = None,
) -> BackupResult:
    opts = BackupOptions(
        roots=[Root(name, str(path)) for name, path in roots.items()],
        host=host,
        tags=list(tags),
        force=force,
        time=when,
        scratch_dir=scratch,
        workers=2,
    )
    return backup(repo, opts, reporter=Reporter(), cache=cache or FileCache(None))


def restore_to(repo: Repository, snap_id: str, target: Path) -> dict[str, Path]:
    """Restore every root of a snapshot under ``target/<root>``; returns the destinations."""
    repo.load_index()
    snap = repo.find_snapshot(snap_id)
    dests = {name: target / name for name in snap.roots}
    target.mkdir(parents=True, exist_ok=True)
    restore(repo, snap, RestoreOptions(destinations=dests, check_space=False), reporter=Reporter())
    return dests


# ---------------------------------------------------------------------------- file trees


def fingerprint(root: Path, *, mtimes: bool = True) -> Fingerprint:
    """Everything under ``root`` by relative path: type, permission bits, mtime, size, SHA-256."""
    out: Fingerprint = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in [".", *sorted(dirnames), *sorted(filenames)]:
            p = Path(dirpath) if name == "." else Path(dirpath) / name
            if name == "." and Path(dirpath) != root:
                continue  # directories are recorded by their parent
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            mt = st.st_mtime_ns if mtimes else 0
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("symlink", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode), mt)
            else:
                digest = hashlib.sha256(p.read_bytes()).hexdigest()
                out[rel] = ("file", stat.S_IMODE(st.st_mode), mt, st.st_size, digest)
    return out


def fp_diff(a: Fingerprint, b: Fingerprint) -> str:
    return "\n".join(f"{k}: {a.get(k)!r} != {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))[
        :3000
    ]


def write(path: Path, data: bytes, *, mtime_ns: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


# ---------------------------------------------------------------------------- space accounting


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


# ---------------------------------------------------------------------------- CLI


def cli_env(tmp: Path, **extra: str) -> dict[str, str]:
    """A clean environment for a CLI subprocess: private HOME/XDG dirs, weak KDF, fixed host."""
    return clean_env(tmp, **{"OPENCLAW_BACKUP_PASSWORD": PASSWORD, "OPENCLAW_BACKUP_HOST": HOST,
                             "OPENCLAW_BACKUP_NPM_ENABLED": "0", **extra})  # fmt: skip


def cli_command() -> list[str]:
    exe = Path(sys.executable).with_name("openclaw-backup")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "openclaw_backup"]


def start_cli(args: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        cli_command() + list(args),
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def run_cli(args: Sequence[str], env: Mapping[str, str], *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_command() + list(args), env=dict(env), capture_output=True, text=True, timeout=timeout, check=False
    )


def json_of(stdout: str) -> dict[str, Any]:
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one JSON line on stdout, got {stdout!r}"
    doc = json.loads(lines[0])
    assert isinstance(doc, dict)
    return doc


def main_cli(args: Sequence[str]) -> tuple[int, str, str]:
    """``openclaw_backup.cli.main`` in-process (environment from ``os.environ``): (code, stdout, stderr)."""
    from openclaw_backup.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()
