"""The subprocess side of the crash and concurrency tests (``tests/test_crash.py``, ``tests/test_concurrency.py``).

Run as ``python tests/crash_driver.py SPEC.json``. It performs one operation (or a small loop of
them) on a real backend and prints one JSON line per result on stdout. It imports neither pytest
nor the test helpers' plugin, so a run costs little more than importing ``openclaw_backup``.

Words used here:

* **write** — a backend call that changes the store: ``put`` or ``publish``. ``delete`` is one
  name removed by a publication; the driver performs a publication's deletes one by one after the
  head swap (what :class:`~openclaw_backup.backends.local.LocalBackend` does inside ``publish``), so a
  kill can land between any two of them.
* **fs step** — a call that changes the file system inside :mod:`openclaw_backup.restorer`:
  ``mkdir open pwrite chmod utime symlink rename exchange remove``.
* **kill point** — ``{"at": "write", "k": K, "when": "before"|"after"}`` (the K-th write),
  ``{"at": "delete", "k": K}`` (before the K-th delete) or ``{"at": "fs", "k": K}`` (before the
  K-th fs step). There the process SIGKILLs itself: no ``finally``, no ``atexit``, no flush.

With ``"count": true`` the driver reports how many writes, deletes and fs steps the operation made,
which is how the tests enumerate every kill point.

The module also holds the two helpers both sides need (so the subprocess never imports pytest):
:func:`make_tree`, a small deterministic agent home in several versions, and :func:`fingerprint`.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import stat
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from openclaw_backup.backends.base import Backend, Head
from openclaw_backup.backends.wrappers import WrappedBackend

Fingerprint = dict[str, tuple[Any, ...]]

# ---------------------------------------------------------------------------- trees


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
    import shutil

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


def fingerprint(root: Path | str) -> Fingerprint:
    """Everything under ``root`` (included, as ``.``): type, mode, mtime_ns, size+SHA-256, link target.

    A missing ``root`` fingerprints as ``{}``.
    """
    out: Fingerprint = {}
    base = os.fsencode(root)
    if not os.path.lexists(base):
        return out

    def visit(path: bytes, rel: str) -> None:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("symlink", st.st_mtime_ns, os.fsdecode(os.readlink(path)))
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir", stat.S_IMODE(st.st_mode), st.st_mtime_ns)
            for name in sorted(os.listdir(path)):
                visit(os.path.join(path, name), os.fsdecode(name) if rel == "." else f"{rel}/{os.fsdecode(name)}")
        elif stat.S_ISREG(st.st_mode):
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            out[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_mtime_ns, st.st_size, digest)
        else:
            out[rel] = ("other", st.st_mode)

    visit(base, ".")
    return out


def digest(fp: Fingerprint) -> str:
    """A short stable name for a fingerprint (what subprocesses report)."""
    return hashlib.sha256(json.dumps(sorted(fp.items())).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------- kill points


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(10)  # never reached


class Counter:
    """Thread-safe step counter that SIGKILLs the process at the armed step."""

    def __init__(self, kill: dict[str, Any] | None) -> None:
        self.kill = kill or {}
        self.counts = {"write": 0, "delete": 0, "fs": 0}
        self.steps: list[str] = []
        self._lock = threading.Lock()

    def step(self, kind: str, what: str, when: str = "before") -> None:
        """Count a step of ``kind`` (only on the ``before`` call) and die if it is the armed one."""
        with self._lock:
            if when == "before":
                self.counts[kind] += 1
                self.steps.append(f"{kind}:{what}")
            n = self.counts[kind]
            armed = self.kill.get("at") == kind and self.kill.get("k") == n and self.kill.get("when", "before") == when
        if armed:
            _die()


class KillingBackend(WrappedBackend):
    """Counts writes (put, publish) and deletes; SIGKILLs at the armed one (see the module docstring)."""

    def __init__(self, inner: Backend, counter: Counter, *, split_deletes: bool) -> None:
        super().__init__(inner)
        self.counter = counter
        self.split_deletes = split_deletes

    def put(self, name: str, data: bytes) -> None:
        self.counter.step("write", f"put {name}")
        self.inner.put(name, data)
        self.counter.step("write", f"put {name}", "after")

    def publish(self, *, head: bytes, expect: str | None, deletes: Sequence[str] = ()) -> str:
        self.counter.step("write", f"publish ({len(deletes)} deletes)")
        if not self.split_deletes:
            version = self.inner.publish(head=head, expect=expect, deletes=deletes)
        else:
            version = self.inner.publish(head=head, expect=expect, deletes=())
        self.counter.step("write", "publish", "after")
        if self.split_deletes:
            for name in deletes:
                self.counter.step("delete", name)
                self.inner.delete_unpublished([name])
        return version

    def read_head(self) -> Head | None:
        return self.inner.read_head()


class _CountingOs:
    """Stands in for ``os`` inside :mod:`openclaw_backup.restorer`: counts and may kill at fs steps."""

    STEPS = ("mkdir", "open", "pwrite", "chmod", "utime", "symlink", "rename")

    def __init__(self, real: Any, counter: Counter) -> None:
        self._real = real
        self._counter = counter

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._real, name)
        if name not in self.STEPS:
            return attr

        def step(*args: Any, **kwargs: Any) -> Any:
            self._counter.step("fs", name)
            return attr(*args, **kwargs)

        return step


def instrument_restorer(counter: Counter, *, allow_exchange: bool) -> None:
    from openclaw_backup import restorer

    restorer.os = _CountingOs(os, counter)  # type: ignore[assignment]
    real_exchange, real_remove = restorer.exchange, restorer._remove

    def exchange(a: Path, b: Path) -> bool:
        if not allow_exchange:
            return False  # exercise the two-rename fallback
        counter.step("fs", "exchange")
        return real_exchange(a, b)

    def remove(p: Path) -> None:
        counter.step("fs", "remove")
        real_remove(p)

    restorer.exchange = exchange
    restorer._remove = remove


# ---------------------------------------------------------------------------- backends


def open_store(spec: dict[str, Any]) -> Backend:
    kind = spec["kind"]
    if kind == "local":
        from openclaw_backup.backends.local import LocalBackend

        return LocalBackend(spec["path"], lock_timeout=spec.get("lock_timeout", 30.0))
    from openclaw_backup.backends import BackendOptions
    from openclaw_backup.backends.wrappers import RetryingBackend

    if kind == "s3":
        from openclaw_backup.backends.s3 import open_s3

        opts = BackendOptions(
            s3_endpoint=spec["endpoint"],
            s3_region="us-east-1",
            s3_access_key=spec["access_key"],
            s3_secret_key=spec["secret_key"],
            timeout=20.0,
        )
        return RetryingBackend(open_s3(spec["address"], opts), attempts=5, base_delay=0.05)
    if kind == "hub":
        os.environ["HF_HUB_DISABLE_XET"] = "1"
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        from openclaw_backup.backends import open_hf

        opts = BackendOptions(token=spec["token"], hf_endpoint=spec["endpoint"], timeout=20.0, retries=1)
        return RetryingBackend(open_hf(spec["address"], opts), attempts=5, base_delay=0.05)
    raise SystemExit(f"unknown backend kind {kind!r}")


# ---------------------------------------------------------------------------- operations


def _repo(backend: Backend, spec: dict[str, Any]) -> Any:
    from openclaw_backup.repository import Repository

    cache = spec.get("cache")
    return Repository.open(backend, password=spec.get("password"), cache_dir=Path(cache) if cache else None)


def do_backup(backend: Backend, spec: dict[str, Any], source: dict[str, str], **kw: Any) -> dict[str, Any]:
    from openclaw_backup.archiver import BackupOptions, backup
    from openclaw_backup.filecache import FileCache
    from openclaw_backup.reporter import Reporter
    from openclaw_backup.sources import Root

    repo = _repo(backend, spec)
    cache = FileCache(repo.cache_dir / "files.db" if repo.cache_dir else None)
    opts = BackupOptions(
        roots=[Root(name, path) for name, path in source.items()],
        host=spec.get("host", "crash-host"),
        tags=spec.get("tags", []),
        workers=kw.pop("workers", spec.get("workers", 1)),
        **kw,
    )
    res = backup(repo, opts, reporter=Reporter(), cache=cache)
    return {"snapshot": res.snapshot_id, "unchanged": res.unchanged, "parent": res.parent_id}


def do_prune(backend: Backend, spec: dict[str, Any]) -> dict[str, Any]:
    from openclaw_backup.prune import prune
    from openclaw_backup.reporter import Reporter

    return prune(
        _repo(backend, spec),
        reporter=Reporter(),
        max_unused=spec.get("max_unused", 0.1),
        unindexed_grace=spec.get("unindexed_grace", 3600.0),
    ).to_json()


def do_forget(backend: Backend, spec: dict[str, Any]) -> dict[str, Any]:
    from openclaw_backup.prune import forget
    from openclaw_backup.retention import Policy

    policy = Policy(keep_last=spec.get("keep_last", 0), keep_tags=tuple(spec.get("keep_tags", ())))
    return forget(_repo(backend, spec), policy).to_json()


def do_restore(backend: Backend, spec: dict[str, Any], snapshot: str, target: dict[str, str] | str) -> dict[str, Any]:
    """Restore ``snapshot``; ``target`` maps root names to places, or is a folder for every root."""
    from openclaw_backup.reporter import Reporter
    from openclaw_backup.restorer import RestoreOptions, restore

    repo = _repo(backend, spec)
    snap = repo.find_snapshot(snapshot)
    if isinstance(target, str):
        dests = {name: Path(target) / name for name in snap.roots}
    else:
        dests = {k: Path(v) for k, v in target.items()}
    res = restore(repo, snap, RestoreOptions(destinations=dests, workers=spec.get("workers", 1)), reporter=Reporter())
    return {"snapshot": res.snapshot_id, "files": res.files, "roots": sorted(dests)}


def _emit(doc: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(doc, sort_keys=True) + "\n")
    sys.stdout.flush()


def _attempt(fn: Any) -> dict[str, Any]:
    from openclaw_backup.errors import BackupError

    t0 = time.monotonic()
    try:
        return {"ok": True, "result": fn(), "seconds": round(time.monotonic() - t0, 3)}
    except BackupError as e:
        return {
            "ok": False,
            "error": type(e).__name__,
            "message": e.message,
            "exit_code": e.exit_code,
            "seconds": round(time.monotonic() - t0, 3),
        }


def run_worker(backend: Backend, spec: dict[str, Any]) -> None:
    """A concurrency worker: ``role`` backup | prune | restore, ``iterations`` times; one line per attempt."""
    role = spec["role"]
    deadline = time.monotonic() + spec.get("max_seconds", 60.0)
    for i in range(spec.get("iterations", 3)):
        if time.monotonic() > deadline:
            break
        if role == "backup":
            src = Path(spec["source_dir"])
            make_tree(
                src,
                spec.get("base_version", 1) + i,
                files=spec.get("files", 4),
                size=spec.get("size", 40_000),
                tag=spec.get("tag", ""),
            )
            fp = digest(fingerprint(src))
            out = _attempt(lambda src=src: do_backup(backend, spec, {spec["root"]: str(src)}, workers=2))
            out["digest"] = fp
        elif role == "prune":
            out = _attempt(lambda: {"forget": do_forget(backend, spec)["forget"], "prune": do_prune(backend, spec)})
        else:  # restore: the newest snapshot into a fresh folder, reported with what it restored
            dest = Path(spec["target_dir"]) / f"r{i}"
            out = _attempt(lambda dest=dest: do_restore(backend, spec, "latest", str(dest)))
            if out["ok"] and len(out["result"]["roots"]) == 1:
                out["digest"] = digest(fingerprint(dest / out["result"]["roots"][0]))
        out["role"], out["iteration"] = role, i
        _emit(out)
        time.sleep(spec.get("pause", 0.0))


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[1]).read_text())
    if spec.get("weak_kdf", True):
        os.environ["OPENCLAW_BACKUP_TEST_WEAK_KDF"] = "1"
    counter = Counter(spec.get("kill"))
    backend: Backend = open_store(spec["backend"])
    op = spec["op"]
    if op == "worker":
        run_worker(backend, spec)
        return 0
    backend = KillingBackend(backend, counter, split_deletes=spec.get("split_deletes", False))
    if op == "restore":
        instrument_restorer(counter, allow_exchange=spec.get("exchange", True))
    if op == "backup":
        out = _attempt(lambda: do_backup(backend, spec, spec["source"]))
    elif op == "prune":
        out = _attempt(lambda: do_prune(backend, spec))
    elif op == "restore":
        out = _attempt(lambda: do_restore(backend, spec, spec["snapshot"], spec["target"]))
    else:
        raise SystemExit(f"unknown op {op!r}")
    out["counts"] = counter.counts
    if spec.get("count"):
        out["steps"] = counter.steps
    _emit(out)
    backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
