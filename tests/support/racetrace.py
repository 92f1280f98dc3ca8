"""Race traces: what each process of a concurrency scenario asked the store and decided, for the
stress mode (``python -m tests.stress``) to keep when a run fails.

Off unless ``STRESS_TRACE_DIR`` names a folder. Then :func:`start` (called by
:mod:`tests.support.crash_driver` in each worker) opens ``<dir>/<worker>-<pid>.trace`` and hooks the
repository's decisions — every reading of the head (and whether a head fresh enough was reused),
every publication (the head it replaced, what it expected, what it published), the index loaded
(under which head), a backup's check of what it reuses, a prune's plan, the reads answered by a
read-ahead — and :func:`traced` wraps a worker's store so each call is recorded with the times it
was asked for and answered. One JSON line per event. ``python -m tests.support.racetrace DIR``
prints the run's events merged in time order, object names cut to 10 characters, versions to 6.

Test code only: the hooks replace methods of the running process's classes, and the library never
reads the variable.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from openclaw_backup.backends.base import Backend, Head
from openclaw_backup.backends.wrappers import WrappedBackend

ENV = "STRESS_TRACE_DIR"

_lock = threading.Lock()
_out: IO[str] | None = None


def enabled() -> bool:
    return bool(os.environ.get(ENV))


def start(worker: str) -> None:
    """Trace this process as ``worker`` when :data:`ENV` is set (else nothing)."""
    global _out
    if not enabled() or _out is not None:
        return
    folder = Path(os.environ[ENV])
    folder.mkdir(parents=True, exist_ok=True)
    _out = open(folder / f"{worker}-{os.getpid()}.trace", "a", buffering=1)  # noqa: SIM115 (open while traced)
    _hook()


def event(kind: str, **fields: Any) -> None:
    if _out is None:
        return
    doc = {"t": round(time.time(), 4), "pid": os.getpid(), "th": threading.current_thread().name, "ev": kind, **fields}
    with _lock:
        _out.write(json.dumps(doc, default=str) + "\n")


def traced(store: Backend) -> Backend:
    """``store``, each call recorded, when tracing is on."""
    return TracingBackend(store) if enabled() else store


def _short(name: str) -> str:
    return name.rsplit("/", 1)[-1][:10]


class TracingBackend(WrappedBackend):
    """Records each call: what, when asked (``t0``) and answered (``t``), the head versions."""

    def get(self, name: str, *, offset: int = 0, length: int | None = None) -> bytes:
        t0 = time.time()
        try:
            out = self.inner.get(name, offset=offset, length=length)
        except Exception as e:
            event("get", name=name, t0=t0, err=type(e).__name__)
            raise
        if not name.startswith("data/"):  # pack reads are many and say little
            event("get", name=name, t0=t0)
        return out

    def list(self, prefix: str = "") -> list[str]:
        t0 = time.time()
        out = self.inner.list(prefix)
        event("list", prefix=prefix, t0=t0, names=[_short(n) for n in out])
        return out

    def put(self, name: str, data: bytes) -> None:
        t0 = time.time()
        self.inner.put(name, data)
        event("put", name=name, t0=t0)

    def put_file(self, name: str, fd: int, length: int) -> None:
        t0 = time.time()
        self.inner.put_file(name, fd, length)
        event("put", name=name, t0=t0)

    def read_head(self) -> Head | None:
        t0 = time.time()
        out = self.inner.read_head()
        event("read_head", t0=t0, version=out.version if out else None)
        return out

    def publish(self, *, head: bytes, expect: str | None, deletes: Sequence[str] = ()) -> str:
        t0 = time.time()
        gone = [_short(d) for d in deletes]
        try:
            version = self.inner.publish(head=head, expect=expect, deletes=deletes)
        except Exception as e:
            event("publish", t0=t0, expect=expect, err=type(e).__name__, deletes=gone)
            raise
        event("publish", t0=t0, expect=expect, version=version, deletes=gone)
        return version

    def delete_unpublished(self, names: Sequence[str]) -> None:
        t0 = time.time()
        self.inner.delete_unpublished(names)
        event("delete_unpublished", t0=t0, names=[_short(n) for n in names])


def _state(repo: Any) -> dict[str, Any]:
    return {
        "version": repo.head.version if repo.head else None,
        "seq": repo.state.seq,
        "snaps": [x[:10] for x in repo.state.snapshots],
        "idx": [x[:10] for x in repo.state.indexes],
    }


def _hook() -> None:
    from openclaw_backup import archiver, prune
    from openclaw_backup.backends import wrappers
    from openclaw_backup.repository import Repository

    refresh, publish_state, plan_prune = Repository.refresh, Repository._publish_state, prune.plan_prune
    save_index, load_index, made = Repository.save_index, Repository.load_index, wrappers.ReadAhead._made
    check_needed = archiver.Archiver._check_needed

    def traced_refresh(self: Any, *, max_age: float = 0.0) -> Any:
        before = self._head_read_at
        out = refresh(self, max_age=max_age)
        event("refresh", max_age=max_age, reused=before is not None and self._head_read_at == before, **_state(self))
        return out

    def traced_publish_state(self: Any, state: Any, *, expect: Any, deletes: Any = ()) -> None:
        fields = {"base": _state(self), "expect": expect, "new_seq": state.seq,
                  "new_snaps": [x[:10] for x in state.snapshots],
                  "new_idx": [x[:10] for x in state.indexes]}  # fmt: skip
        try:
            publish_state(self, state, expect=expect, deletes=deletes)
        except Exception as e:
            event("publish_state", **fields, err=type(e).__name__)
            raise
        event("publish_state", **fields, version=self.head.version)

    def traced_plan(repo: Any, **kw: Any) -> Any:
        plan = plan_prune(repo, **kw)
        event("plan", **_state(repo), delete=sorted(_short(p) for p in plan.delete),
              repack=sorted(_short(p) for p in plan.repack), keep=sorted(_short(p) for p in plan.keep),
              unindexed=[_short(p) for p in plan.unindexed], live=len(plan.live))  # fmt: skip
        return plan

    def traced_save_index(self: Any, packs: Any, *, backup: bool = False) -> Any:
        name = save_index(self, packs, backup=backup)
        event("save_index", name=(name or "")[:10], packs=sorted(_short(p) for p in packs))
        return name

    def traced_load_index(self: Any, *, reload: bool = False, backup: bool = False) -> Any:
        out = load_index(self, reload=reload, backup=backup)
        event("load_index", **_state(self), packs=len(out.by_pack()))
        return out

    def traced_made(self: Any, read: Any) -> Any:
        out = made(self, read)
        if out is not None:
            event("read_ahead_used", op=read.op, name=read.name)
        return out

    def traced_check_needed(self: Any) -> None:
        try:
            check_needed(self)
        except Exception as e:
            event("check_needed", **_state(self.repo), err=type(e).__name__)
            raise
        event("check_needed", **_state(self.repo))

    archiver.Archiver._check_needed = traced_check_needed  # type: ignore[method-assign]
    Repository.refresh = traced_refresh  # type: ignore[method-assign]
    Repository._publish_state = traced_publish_state  # type: ignore[method-assign]
    Repository.save_index = traced_save_index  # type: ignore[method-assign]
    Repository.load_index = traced_load_index  # type: ignore[method-assign]
    wrappers.ReadAhead._made = traced_made  # type: ignore[method-assign]
    prune.plan_prune = traced_plan


def timeline(folder: Path) -> list[str]:
    """The events of every trace in ``folder``, merged in time order, one line each."""
    events = []
    for path in sorted(folder.glob("*.trace")):
        worker = path.stem.rsplit("-", 1)[0]
        for line in path.read_text().splitlines():
            try:
                events.append((worker, json.loads(line)))
            except ValueError:
                continue  # a line cut short by a kill
    out = []
    for worker, e in sorted(events, key=lambda we: we[1]["t"]):
        t, kind, thread = e.pop("t"), e.pop("ev"), e.pop("th")
        e.pop("pid", None)
        for key in ("version", "expect"):
            if isinstance(e.get(key), str):
                e[key] = e[key].strip('"')[:6]
        if isinstance(e.get("base"), dict) and isinstance(e["base"].get("version"), str):
            e["base"]["version"] = e["base"]["version"].strip('"')[:6]
        if isinstance(e.get("name"), str) and "/" in e["name"]:
            e["name"] = e["name"].split("/", 1)[0] + "/" + _short(e["name"])
        if "t0" in e:
            e["asked"] = f"-{t - e.pop('t0'):.3f}s"
        out.append(f"{t % 1000:8.3f} {worker:9} {thread[:12]:12} {kind:18} {json.dumps(e)}")
    return out


if __name__ == "__main__":
    for line in timeline(Path(sys.argv[1])):
        print(line)
