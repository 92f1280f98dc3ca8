"""SIGKILL at every step: backup, prune and restore run as subprocesses (``tests/support/crash_driver.py``)
and are killed at each backend write and at each file-system step of a restore.

Enumeration: each operation is run once with counting on, which tells the number N of its writes
(``put``/``publish``), of the deletes its publication makes, and of its fs steps; then, for every
k in 1..N, it is run again on a fresh copy of the repository and killed at the k-th step — before
the call and after it for writes, before it for deletes and fs steps. A restore's steps are
enumerated in full for the atomic swap (``renameat2(RENAME_EXCHANGE)``); the two variants that
differ only in the swap (the two-rename fallback, a target that does not exist yet) are killed
at each of their swap steps.

After every kill, on the store: ``check --read-data`` is ok, every snapshot the head names
restores byte-exact (the killed backup's own snapshot only if its publication happened), the
next backup (with the killed process's own cache) succeeds and restores. On the target of a
restore: exactly the old tree or exactly the new one (type, mode, mtime, content, link target),
or — only inside the fallback's window between its two renames — no target and the old tree
parked whole beside it, which the next run puts back; the next restore succeeds and leaves no
staging leftovers.

The tree is small (N ≈ 10–100 per operation) and scenarios run two at a time.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from openclaw_backup.archiver import BackupOptions, backup
from openclaw_backup.backends.local import LocalBackend
from openclaw_backup.filecache import FileCache
from openclaw_backup.prune import forget
from openclaw_backup.reporter import Reporter
from openclaw_backup.restorer import RestoreOptions, restore
from openclaw_backup.retention import Policy
from openclaw_backup.sources import Root
from openclaw_backup.swap import recover
from tests.support.crash_driver import run_driver
from tests.support.faults import verify_store
from tests.support.repos import PASSWORD, new_repo, open_repo
from tests.support.trees import fingerprint, make_tree

HOST = "crash-host"
TREE: dict[str, Any] = {"files": 14, "size": 70_000}  # each random file is bigger than a pack: one pack per file
PARALLEL = 2

# ---------------------------------------------------------------------------- the base repository


@dataclass
class Base:
    root: Path
    repo: Path
    cache: Path
    srcs: dict[int, Path] = field(default_factory=dict)  # version -> source tree ("home")
    fps: dict[int, dict[str, Any]] = field(default_factory=dict)
    sids: dict[int, str] = field(default_factory=dict)  # version -> live snapshot
    target: Path = Path()  # holds version 1, restored


def _backup(repo: Any, src: Path, cache: FileCache | None = None) -> str | None:
    opts = BackupOptions(roots=[Root("home", str(src))], host=HOST, workers=1)
    return backup(repo, opts, reporter=Reporter(), cache=cache or FileCache(None)).snapshot_id


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Base:
    """Snapshots of v0 (then forgotten: garbage for prune), v1 and v2; v3 (new data) waits to be backed up."""
    root = tmp_path_factory.mktemp("crash-base")
    b = Base(root, root / "repo", root / "cache")
    repo = new_repo(LocalBackend(b.repo), cache_dir=b.cache)
    cache = FileCache(b.cache / repo.config.id / "files.db")
    for version in (0, 1, 2, 3):
        src = root / f"src{version}" / "home"
        make_tree(src, version, tag="b" if version == 3 else "", **TREE)
        b.srcs[version], b.fps[version] = src, fingerprint(src)
        if version < 3:
            sid = _backup(repo, src, cache)
            assert sid
            b.sids[version] = sid
    forget(repo, Policy(keep_last=2))
    del b.sids[0]
    b.target = root / "target"
    restore(repo, repo.load_snapshot(b.sids[1]), RestoreOptions({"home": b.target / "home"}), reporter=Reporter())
    assert fingerprint(b.target / "home") == b.fps[1]
    return b


# ---------------------------------------------------------------------------- running the driver


def drive(spec: dict[str, Any], workdir: Path) -> tuple[int, dict[str, Any] | None, str]:
    """Run the driver; returns (return code, its JSON answer or None, stderr)."""
    proc = run_driver(spec, workdir / "spec.json")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    return proc.returncode, (json.loads(lines[-1]) if lines else None), proc.stderr


def _spec(op: str, repo: Path, *, cache: Path | None, **kw: Any) -> dict[str, Any]:
    return {
        "op": op,
        "backend": {"kind": "local", "path": str(repo)},
        "password": PASSWORD,
        "cache": str(cache) if cache else None,
        "host": HOST,
        "workers": 1,
        **kw,
    }


def count_steps(spec: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Run once without a kill; the driver's counts and its step list."""
    code, out, err = drive({**spec, "count": True}, workdir)
    assert code == 0 and out and out["ok"], f"the counting run failed: {out} {err[-2000:]}"
    return out


def kill_points(counts: dict[str, int], *, writes: bool, deletes: bool, fs: bool) -> list[dict[str, Any]]:
    points: list[dict[str, Any]] = []
    if writes:
        points += [
            {"at": "write", "k": k, "when": w} for k in range(1, counts["write"] + 1) for w in ("before", "after")
        ]
    if deletes:
        points += [{"at": "delete", "k": k} for k in range(1, counts["delete"] + 1)]
    if fs:
        points += [{"at": "fs", "k": k} for k in range(1, counts["fs"] + 1)]
    return points


def run_scenarios(points: list[dict[str, Any]], one: Callable[[int, dict[str, Any]], list[str]]) -> list[str]:
    """Run ``one(i, point)`` for each kill point, ``PARALLEL`` at a time; return every problem found."""
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        results = list(pool.map(lambda ip: one(*ip), enumerate(points)))
    return [p for r in results for p in r]


def _label(point: dict[str, Any]) -> str:
    return f"{point['at']}#{point['k']}" + (f"/{point['when']}" if "when" in point else "")


def _killed(code: int, out: dict[str, Any] | None, err: str, point: dict[str, Any]) -> list[str]:
    if code == -9:
        return []
    return [f"{_label(point)}: the driver was not killed (exit {code}, {out}, {err[-500:]})"]


def _repo_copy(base: Base, dest: Path) -> tuple[Path, Path]:
    shutil.copytree(base.repo, dest / "repo", symlinks=True)
    shutil.copytree(base.cache, dest / "cache", symlinks=True)
    return dest / "repo", dest / "cache"


def _after_crash(
    base: Base,
    repo_dir: Path,
    cache: Path,
    expected: dict[str, Any],
    *,
    label: str,
    allow_new: dict[str, Any] | None = None,
) -> tuple[list[str], int]:
    """Store invariants after a kill; ``allow_new``: the fingerprint a snapshot not in ``expected`` may have."""
    problems: list[str] = []
    backend = LocalBackend(repo_dir)
    head = open_repo(backend).state.snapshots
    expect = dict(expected)
    new = [s for s in head if s not in expected]
    if new and allow_new is not None and len(new) == 1:
        expect[new[0]] = allow_new
    rep = verify_store(backend, expect)
    problems += [f"{label}: {p}" for p in rep.problems]
    problems += [f"{label}: snapshot {s[:12]} published before the crash is gone" for s in expected if s not in head]
    # The next backup, with the killed process's own cache, succeeds and restores.
    repo = open_repo(backend, cache_dir=cache)
    nxt = base.srcs[3]
    try:
        sid = _backup(repo, nxt, FileCache(cache / repo.config.id / "files.db"))
        head2 = open_repo(backend).state.snapshots
        sid = sid or next(s for s in head2 if s not in expected)  # unchanged: the killed backup's own
        rep2 = verify_store(backend, {**expect, sid: base.fps[3]})
        problems += [f"{label}: after the next backup: {p}" for p in rep2.problems]
    except Exception as e:
        problems.append(f"{label}: the next backup failed: {type(e).__name__}: {e}")
    return problems, rep.lost


# ---------------------------------------------------------------------------- backup


def test_kill_backup_at_every_write(base: Base, tmp_path: Path, reliability: Any) -> None:
    expected = {base.sids[1]: base.fps[1], base.sids[2]: base.fps[2]}
    probe = tmp_path / "count"
    probe.mkdir()
    repo, cache = _repo_copy(base, probe)
    spec_of = lambda r, c: _spec("backup", r, cache=c, source={"home": str(base.srcs[3])})  # noqa: E731
    counts = count_steps(spec_of(repo, cache), probe)["counts"]
    points = kill_points(counts, writes=True, deletes=False, fs=False)
    assert 10 <= len(points) <= 120, counts
    lost_total = 0

    def one(i: int, point: dict[str, Any]) -> list[str]:
        nonlocal lost_total
        work = tmp_path / f"s{i}"
        work.mkdir()
        r, c = _repo_copy(base, work)
        code, out, err = drive({**spec_of(r, c), "kill": point}, work)
        problems = _killed(code, out, err, point)
        found, lost = _after_crash(base, r, c, expected, label=_label(point), allow_new=base.fps[3])
        lost_total += lost
        reliability.record("crash", lost=lost)
        shutil.rmtree(work, ignore_errors=True)
        return problems + found

    problems = run_scenarios(points, one)
    print(f"backup: {counts['write']} writes, {len(points)} kill scenarios")
    assert not problems, "\n".join(problems[:20])
    assert lost_total == 0


# ---------------------------------------------------------------------------- prune


def test_kill_prune_at_every_write_and_delete(base: Base, tmp_path: Path, reliability: Any) -> None:
    expected = {base.sids[1]: base.fps[1], base.sids[2]: base.fps[2]}
    probe = tmp_path / "count"
    probe.mkdir()
    repo, cache = _repo_copy(base, probe)
    spec_of = lambda r, c: _spec("prune", r, cache=c, split_deletes=True, max_unused=0.1)  # noqa: E731
    out = count_steps(spec_of(repo, cache), probe)
    counts = out["counts"]
    assert out["result"]["packs_deleted"] + out["result"]["packs_repacked"] >= 2, out["result"]
    points = kill_points(counts, writes=True, deletes=True, fs=False)
    assert counts["delete"] >= 3, counts

    def one(i: int, point: dict[str, Any]) -> list[str]:
        work = tmp_path / f"s{i}"
        work.mkdir()
        r, c = _repo_copy(base, work)
        code, out, err = drive({**spec_of(r, c), "kill": point}, work)
        problems = _killed(code, out, err, point)
        found, lost = _after_crash(base, r, c, expected, label=_label(point))
        reliability.record("crash", lost=lost)
        # A prune run again after the crash finishes the job.
        code2, out2, err2 = drive({**spec_of(r, c), "unindexed_grace": 0.0}, work)
        if code2 != 0 or not (out2 and out2["ok"]):
            problems.append(f"{_label(point)}: the prune after the crash failed: {out2} {err2[-500:]}")
        else:
            rep = verify_store(LocalBackend(r), {**expected}, allow_unknown=True)
            problems += [f"{_label(point)}: after the second prune: {p}" for p in rep.problems]
        shutil.rmtree(work, ignore_errors=True)
        return problems + found

    problems = run_scenarios(points, one)
    print(f"prune: {counts['write']} writes, {counts['delete']} deletes, {len(points)} kill scenarios")
    assert not problems, "\n".join(problems[:20])


# ---------------------------------------------------------------------------- restore


def _siblings(parent: Path, name: str) -> list[str]:
    return sorted(n for n in os.listdir(parent) if n != name)


@pytest.mark.parametrize("variant", ["exchange", "fallback", "fresh"])
def test_kill_restore_at_every_fs_step(base: Base, tmp_path: Path, variant: str, reliability: Any) -> None:
    repo_state = fingerprint(base.repo)
    old, new = base.fps[1], base.fps[2]

    def target_for(work: Path) -> Path:
        target = work / "target"
        if variant != "fresh":
            shutil.copytree(base.target, target, symlinks=True)
        else:
            target.mkdir()
        return target

    def spec_of(target: Path) -> dict[str, Any]:
        return _spec(
            "restore",
            base.repo,
            cache=None,
            snapshot=base.sids[2],
            target={"home": str(target / "home")},
            exchange=variant == "exchange",
        )

    probe = tmp_path / "count"
    probe.mkdir()
    out = count_steps(spec_of(target_for(probe)), probe)
    counts = out["counts"]
    points = kill_points(counts, writes=False, deletes=False, fs=True)
    if variant != "exchange":  # the same steps up to the swap: kill only from the swap on
        steps = out["steps"]
        first_swap = max(i for i, s in enumerate(steps) if not s.startswith(("fs:rename", "fs:exchange", "fs:remove")))
        points = points[first_swap + 1 :]
    assert points, counts

    def one(i: int, point: dict[str, Any]) -> list[str]:
        work = tmp_path / f"s{i}"
        work.mkdir()
        target = target_for(work)
        before = fingerprint(target / "home")
        if variant != "fresh" and before != old:
            return [f"{_label(point)}: the copied target is not the old tree"]
        code, out, err = drive({**spec_of(target), "kill": point}, work)
        problems = _killed(code, out, err, point)
        now = fingerprint(target / "home")
        allowed = [before, new]
        if now not in allowed:
            parked = [n for n in _siblings(target, "home") if ".openclaw-old-" in n]
            if variant == "fallback" and now == {} and len(parked) == 1 and fingerprint(target / parked[0]) == old:
                recover(target / "home")  # the window between the two renames: the next run puts it back
                if fingerprint(target / "home") != old:
                    problems.append(f"{_label(point)}: recover() did not put the old tree back")
            else:
                problems.append(f"{_label(point)}: the target is neither the old nor the new tree (a mix)")
        reliability.record("crash", lost=0 if not problems else 1)
        # The next restore succeeds, gives the new tree, and leaves nothing behind.
        repo = open_repo(LocalBackend(base.repo))
        restore(repo, repo.load_snapshot(base.sids[2]), RestoreOptions({"home": target / "home"}), reporter=Reporter())
        if fingerprint(target / "home") != new:
            problems.append(f"{_label(point)}: the restore after the crash did not give the snapshot")
        # What a restore replaced is kept beside the target (so it can be undone): each kept copy is
        # a whole tree — the old one, or (killed right before the exchange) the new one — never a mix.
        kept = [n for n in _siblings(target, "home") if ".pre-restore-" in n]
        for n in kept:
            if fingerprint(target / n) not in (before, old, new):
                problems.append(f"{_label(point)}: the kept copy {n} is neither the old nor the new tree")
        stray = [n for n in _siblings(target, "home") if ".pre-restore-" not in n]
        if stray:
            problems.append(f"{_label(point)}: leftovers after the next restore: {stray}")
        shutil.rmtree(work, ignore_errors=True)
        return problems

    problems = run_scenarios(points, one)
    print(f"restore ({variant}): {counts['fs']} fs steps, {len(points)} kill scenarios")
    assert not problems, "\n".join(problems[:20])
    assert fingerprint(base.repo) == repo_state, "a restore wrote to the repository"
