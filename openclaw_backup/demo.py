"""``openclaw-backup demo``: a real backup and restore on a local repository, verified, in one command.

Backs up the user's OpenClaw state when it exists (read-only: the restore goes to a scratch
directory), else a small generated sample agent home, into a local repository in the work
directory; takes a second, unchanged backup; restores; and compares the restored tree with the
source (content, symlinks, modes, mtimes; SQLite databases by their rows).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
import tempfile
from pathlib import Path
from typing import Any

from .archiver import BackupOptions, backup
from .backends.local import LocalBackend
from .crypto import KdfParams
from .errors import IntegrityError
from .filecache import FileCache
from .reporter import Reporter
from .repository import Repository
from .restorer import RestoreOptions, restore
from .settings import Settings
from .sources import Root, default_patterns
from .units import human_size


def make_sample_home(path: Path) -> None:
    """A small agent home with the shapes that matter: logs, a WAL database, links, empty dirs."""
    (path / "agents/main/sessions").mkdir(parents=True)
    (path / "workspace/notes").mkdir(parents=True)
    (path / "credentials").mkdir()
    (path / "media").mkdir()
    (path / "empty-dir").mkdir()
    (path / "openclaw.json").write_text(json.dumps({"meta": {"lastTouchedVersion": "demo"}, "agents": ["main"]}))
    (path / "credentials/telegram.json").write_text('{"token": "demo-not-a-secret"}')
    os.chmod(path / "credentials/telegram.json", 0o600)
    with open(path / "agents/main/sessions/s1.jsonl", "w") as f:
        for i in range(2000):
            f.write(json.dumps({"role": "user" if i % 2 else "assistant", "text": f"message {i} " * 8}) + "\n")
    (path / "workspace/notes/todo.md").write_text("# Todo\n\n- back up the agent\n")
    (path / "media/photo.jpg").write_bytes(os.urandom(300_000))
    os.symlink("notes/todo.md", path / "workspace/current.md")
    db = sqlite3.connect(path / "memory.sqlite")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE memory (id INTEGER PRIMARY KEY, text TEXT, embedding BLOB)")
    db.executemany(
        "INSERT INTO memory (text, embedding) VALUES (?, ?)", [(f"fact {i}", os.urandom(512)) for i in range(500)]
    )
    db.commit()
    db.close()


def fingerprint(root: Path) -> dict[str, Any]:
    """Everything a restore must bring back, per relative path."""
    out: dict[str, Any] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = p.lstat()
            if name.endswith(("-wal", "-shm")):
                continue
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            elif name.endswith(".sqlite"):
                con = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
                rows = hashlib.sha256(repr(con.execute("SELECT * FROM memory ORDER BY id").fetchall()).encode())
                con.close()
                out[rel] = ("sqlite", stat.S_IMODE(st.st_mode), rows.hexdigest())
            else:
                out[rel] = (
                    "file",
                    stat.S_IMODE(st.st_mode),
                    st.st_mtime_ns,
                    hashlib.sha256(p.read_bytes()).hexdigest(),
                )
    return out


def run_demo(*, workdir: Path | None, settings: Settings, reporter: Reporter) -> tuple[dict[str, Any], str]:
    work = workdir or Path(tempfile.mkdtemp(prefix="openclaw-backup-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    state = Path(settings.state_dir())
    sample = not state.is_dir()
    if sample:
        state = work / "sample-home" / ".openclaw"
        make_sample_home(state)
    repo = Repository.init(
        LocalBackend(work / "repository"), password="demo", kdf=KdfParams(), cache_dir=work / "cache"
    )
    opts = BackupOptions(roots=[Root("openclaw-state", str(state))], excludes=default_patterns(), host="demo",
                         scratch_dir=work / "cache" / "tmp")  # fmt: skip
    cache = FileCache(work / "cache" / "files.db")
    first = backup(repo, opts, reporter=reporter, cache=cache)
    second = backup(repo, opts, reporter=reporter, cache=FileCache(work / "cache" / "files.db"))
    snap = repo.find_snapshot("latest")
    target = work / "restored"
    res = restore(repo, snap, RestoreOptions(destinations={"openclaw-state": target}), reporter=reporter)
    if sample and fingerprint(state) != fingerprint(target):
        raise IntegrityError("demo: the restored tree differs from the source")
    lines = [
        f"work directory: {work}",
        f"source: {state}" + (" (a generated sample agent home)" if sample else " (your OpenClaw state, read only)"),
        f"backup 1: snapshot {str(first.snapshot_id)[:8]}, {first.stats['files']} files, "
        f"{human_size(first.stats['bytes'])} read, {human_size(first.stats['bytes_added'])} stored "
        "(compressed, encrypted)",
        "backup 2: " + ("nothing changed, no snapshot made" if second.unchanged else f"snapshot {second.snapshot_id}"),
        f"restore: {res.files} files into {target}" + (", verified identical to the source" if sample else ""),
        "repository password for this demo: demo",
    ]
    doc = {"workdir": str(work), "first": first.to_json(), "second": second.to_json(), "restore": res.to_json()}
    return doc, "\n".join(lines)
