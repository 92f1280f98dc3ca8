"""The subprocess side of the crash and concurrency tests (``tests/test_crash.py``, ``tests/test_concurrency.py``).

The tests start it with :func:`run_driver` or :func:`start_driver` (``python -m
tests.support.crash_driver SPEC.json`` from the checkout, our own variables removed). It performs
one operation (or a small loop of them) on a real backend and prints one JSON line per result on
stdout. It imports neither pytest nor the test helpers' plugins (only :mod:`tests.support.trees`),
so a run costs little more than importing ``openclaw_backup``.

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
which is how the tests enumerate every kill point. With ``STRESS_TRACE_DIR`` set (the stress mode,
``python -m tests.stress``) each process writes a trace of its store calls and of the repository's
decisions there (:mod:`tests.support.racetrace`). The trees it backs up and compares are
:func:`~tests.support.trees.make_tree` and :func:`~tests.support.trees.fingerprint`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from openclaw_backup.backends.base import Backend, Head
from openclaw_backup.backends.wrappers import WrappedBackend
from tests.support import racetrace
from tests.support.trees import digest, fingerprint, make_tree

PROJECT = Path(__file__).resolve().parents[2]

# ---------------------------------------------------------------------------- starting the driver


def _invocation(spec: dict[str, Any], path: Path) -> dict[str, Any]:
    """Write ``spec`` to ``path``; the arguments that run the driver on it, from the checkout."""
    path.write_text(json.dumps(spec))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENCLAW_", "HF_", "AWS_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT), env.get("PYTHONPATH")]))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return {"args": [sys.executable, "-m", "tests.support.crash_driver", str(path)], "cwd": PROJECT, "env": env}


def run_driver(spec: dict[str, Any], path: Path, *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the driver on ``spec`` (written to ``path``) to completion; output captured."""
    return subprocess.run(**_invocation(spec, path), capture_output=True, text=True, timeout=timeout, check=False)


def start_driver(spec: dict[str, Any], path: Path) -> subprocess.Popen[str]:
    """Start the driver on ``spec`` (written to ``path``) in the background; output piped."""
    return subprocess.Popen(**_invocation(spec, path), text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


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
    from openclaw_backup import restorer, swap

    restorer.os = _CountingOs(os, counter)  # type: ignore[assignment]
    swap.os = _CountingOs(os, counter)  # type: ignore[assignment]
    real_exchange, real_remove = swap.exchange, swap._remove

    def exchange(a: Path, b: Path) -> bool:
        if not allow_exchange:
            return False  # exercise the two-rename fallback
        counter.step("fs", "exchange")
        return real_exchange(a, b)

    def remove(p: Path) -> None:
        counter.step("fs", "remove")
        real_remove(p)

    swap.exchange = exchange
    swap._remove = remove
    restorer._remove = remove


# ---------------------------------------------------------------------------- backends


def open_store(spec: dict[str, Any]) -> Backend:
    kind = spec["kind"]
    if kind == "local":
        from openclaw_backup.backends.local import LocalBackend

        return racetrace.traced(LocalBackend(spec["path"], lock_timeout=spec.get("lock_timeout", 30.0)))
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
        return RetryingBackend(racetrace.traced(open_s3(spec["address"], opts)), attempts=5, base_delay=0.05)
    if kind == "hub":
        os.environ["HF_HUB_DISABLE_XET"] = "1"
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        from openclaw_backup.backends import open_hf

        opts = BackendOptions(token=spec["token"], hf_endpoint=spec["endpoint"], timeout=20.0, retries=1)
        return RetryingBackend(racetrace.traced(open_hf(spec["address"], opts)), attempts=5, base_delay=0.05)
    raise SystemExit(f"unknown backend kind {kind!r}")


# ---------------------------------------------------------------------------- operations


def _repo(backend: Backend, spec: dict[str, Any], *, snapshot: str | None = None, index: bool = False) -> Any:
    from openclaw_backup.repository import Repository

    cache = Path(spec["cache"]) if spec.get("cache") else None
    return Repository.open(backend, password=spec.get("password"), cache_dir=cache, snapshot=snapshot, index=index)


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
    """Restore ``snapshot`` as the ``restore`` command does (the open begins the reads of the
    snapshots and index files); ``target`` maps root names to places, or is a folder for every root."""
    from openclaw_backup.reporter import Reporter
    from openclaw_backup.restorer import RestoreOptions, restore

    repo = _repo(backend, spec, snapshot=snapshot, index=True)  # as `restore` opens: reads begun for the block
    with repo.reading_ahead(snapshot=snapshot, index=True):
        snap = repo.find_snapshot(snapshot)
        repo.load_index()
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
        racetrace.event("result", out=out)
        _emit(out)
        time.sleep(spec.get("pause", 0.0))


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[1]).read_text())
    if spec.get("weak_kdf", True):
        os.environ["OPENCLAW_BACKUP_TEST_WEAK_KDF"] = "1"
    counter = Counter(spec.get("kill"))
    racetrace.start(spec.get("host") if spec.get("role") == "backup" else spec.get("role") or spec["op"])
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
