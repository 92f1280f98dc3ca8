"""Several processes on one repository at once: backups (different and overlapping trees), a
forget + prune, and restores, against a local directory, a real S3 server and the fake Hub.

Workers are subprocesses (``tests/support/crash_driver.py``, ``op: worker``), each with its own cache,
started together. Backups ``w1`` and ``w2`` back up overlapping trees (the same content, which is
also the content of a seed snapshot that the pruner forgets and prunes while they run, so they
dedup against blobs a prune is deleting); ``w3`` backs up a tree of its own. The pruner forgets
everything not tagged ``keep`` (the seed) and prunes; the restorer restores whatever is newest.

Afterwards: every worker exited normally and every attempt ended in success or a typed error; no
lost snapshot (each backup that reported success has its snapshot in the head); no dangling
reference (``check --read-data`` is ok); every snapshot restores to the tree its backup saw; each
restore that reported success produced the tree of the snapshot it restored.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from openclaw_backup.archiver import BackupOptions, backup
from openclaw_backup.backends.base import Backend
from openclaw_backup.backends.local import LocalBackend
from openclaw_backup.backends.memory import MemoryBackend
from openclaw_backup.errors import ConflictError
from openclaw_backup.filecache import FileCache
from openclaw_backup.prune import forget, forget_ids, perform_prune, plan_prune, prune
from openclaw_backup.reporter import Reporter
from openclaw_backup.restorer import RestoreOptions, restore
from openclaw_backup.retention import Policy
from openclaw_backup.sources import Root
from tests.support.backends import kinds
from tests.support.crash_driver import start_driver
from tests.support.faults import Interleave, verify_store
from tests.support.hub import TOKEN
from tests.support.repos import PASSWORD, new_repo, open_repo
from tests.support.trees import digest, fingerprint, make_tree

TREE: dict[str, Any] = {"files": 4, "size": 40_000}
#: Typed failures a race may still cause (a restore of a snapshot that a concurrent forget removed).
ALLOWED_FAILURES = {"ConflictError", "LockedError", "NotFoundError"}


def _store_spec(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Backend, dict[str, Any]]:
    if kind == "local":
        return LocalBackend(tmp_path / "repo"), {"kind": "local", "path": str(tmp_path / "repo"), "lock_timeout": 30.0}
    if kind == "s3":
        server = request.getfixturevalue("s3_server")
        backend = request.getfixturevalue("s3_backend")
        address = f"s3://{backend.bucket}/{backend.root.rstrip('/')}"
        return backend, {
            "kind": "s3",
            "address": address,
            "endpoint": server.endpoint,
            "access_key": server.access_key,
            "secret_key": server.secret_key,
        }
    hub_repo = request.getfixturevalue("hub_repo")
    backend = hub_repo.open(create=True)
    return backend, {"kind": "hub", "address": hub_repo.address, "endpoint": hub_repo.server.url, "token": TOKEN}


@pytest.mark.parametrize("kind", kinds("local", "s3", "hub"))
def test_concurrent_backups_prune_and_restores(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, reliability: Any
) -> None:
    raw, store = _store_spec(kind, request, tmp_path)
    repo = new_repo(raw)
    # The seed: the content w1 and w2 will back up again, in a snapshot the pruner forgets.
    seed_src = tmp_path / "seed" / "home"
    make_tree(seed_src, 0, **TREE)
    opts = BackupOptions(roots=[Root("home", str(seed_src))], host="seed")
    seed = backup(repo, opts, reporter=Reporter(), cache=FileCache(None)).snapshot_id
    assert seed
    expected: dict[str, str] = {seed: digest(fingerprint(seed_src))}

    common = {"op": "worker", "backend": store, "password": PASSWORD, "iterations": 3, "max_seconds": 90.0}
    workers: dict[str, dict[str, Any]] = {
        "w1": {"role": "backup", "root": "home", "host": "w1", "tags": ["keep"], "base_version": 0, "tag": ""},
        "w2": {"role": "backup", "root": "home", "host": "w2", "tags": ["keep"], "base_version": 1, "tag": ""},
        "w3": {"role": "backup", "root": "other", "host": "w3", "tags": ["keep"], "base_version": 0, "tag": "w3"},
        "pruner": {"role": "prune", "keep_tags": ["keep"], "iterations": 2, "pause": 0.3},
        "restorer": {"role": "restore", "iterations": 3, "pause": 0.2},
    }
    procs: dict[str, subprocess.Popen[str]] = {}
    t0 = time.monotonic()
    for name, extra in workers.items():
        spec = {
            **common,
            **extra,
            **TREE,
            "cache": str(tmp_path / f"cache-{name}"),
            "source_dir": str(tmp_path / f"src-{name}" / extra.get("root", "x")),
            "target_dir": str(tmp_path / f"restored-{name}"),
        }
        procs[name] = start_driver(spec, tmp_path / f"{name}.json")
    results: dict[str, list[dict[str, Any]]] = {}
    problems: list[str] = []
    for name, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=150)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            problems.append(f"{name} hung")
        if proc.returncode != 0:
            problems.append(f"{name} exited {proc.returncode} (an untyped error?): {err[-3000:]}")
        results[name] = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
    elapsed = time.monotonic() - t0
    attempts = [r for rs in results.values() for r in rs]
    for name, rs in results.items():
        for r in rs:
            if not r["ok"] and r["error"] not in ALLOWED_FAILURES:
                problems.append(f"{name}: unexpected {r['error']}: {r['message']}")

    head = open_repo(raw).state.snapshots
    for name in ("w1", "w2", "w3"):
        for r in results[name]:
            if r["ok"] and r["result"]["snapshot"]:
                sid = r["result"]["snapshot"]
                expected[sid] = r["digest"]
                if sid not in head:
                    problems.append(f"{name}: snapshot {sid[:12]} reported as made is not in the head (lost)")
    rep = verify_store(raw, expected)  # check --read-data, every snapshot restores to what was backed up
    problems += rep.problems
    for r in results["restorer"]:
        if r["ok"] and "digest" in r:
            want = expected.get(r["result"]["snapshot"])
            if want is not None and want != r["digest"]:
                problems.append(f"restorer: snapshot {r['result']['snapshot'][:12]} restored to another tree")
    reliability.record("concurrency", n=len(attempts), lost=rep.lost)
    summary = {name: [("ok" if r["ok"] else r["error"]) for r in rs] for name, rs in results.items()}
    print(f"{kind}: {len(attempts)} operations in {elapsed:.1f} s: {summary}")
    for name, rs in results.items():
        for r in rs:
            if not r["ok"]:
                print(f"  {name}#{r['iteration']}: {r['error']}: {r['message']}")
    assert not problems, "\n".join(problems[:20])
    made = sum(1 for n in ("w1", "w2", "w3") for r in results[n] if r["ok"] and r["result"]["snapshot"])
    assert made >= 3, f"too few backups succeeded to say anything: {summary}"
    assert seed not in head or not any(r["ok"] for r in results["pruner"]), "the pruner's forget did not stick"


# ---------------------------------------------------------------------------- pinned interleavings


def _history(tmp_path: Path) -> tuple[MemoryBackend, str, dict[str, Any]]:
    """A repository whose only live snapshot shares packs with forgotten ones (prune will repack)."""
    raw = MemoryBackend()
    repo = new_repo(raw)
    src = tmp_path / "src" / "home"
    sid = None
    for version in (0, 1, 2):
        make_tree(src, version, files=3, size=20_000)
        sid = backup(
            repo, BackupOptions(roots=[Root("home", str(src))], host="h"), reporter=Reporter(), cache=FileCache(None)
        ).snapshot_id
    forget(repo, Policy(keep_last=1))
    assert sid
    return raw, sid, fingerprint(src)


def test_restore_survives_a_prune_between_reading_the_index_and_the_packs(tmp_path: Path) -> None:
    raw, sid, want = _history(tmp_path)
    racing = Interleave(
        raw,
        methods="get",
        names="data/*",
        action=lambda: prune(open_repo(raw), reporter=Reporter(), max_unused=0.0),
    )
    repo = open_repo(racing)
    dest = tmp_path / "target" / "home"
    try:
        restore(repo, repo.load_snapshot(sid), RestoreOptions({"home": dest}), reporter=Reporter())
    finally:
        assert racing.results and racing.results[0].packs_repacked + racing.results[0].packs_deleted > 0
        assert verify_store(raw, {sid: want}).ok  # the snapshot itself is intact all along
    assert fingerprint(dest) == want


def test_backup_survives_a_prune_between_reading_the_head_and_the_index(tmp_path: Path) -> None:
    raw, _sid, _ = _history(tmp_path)
    racing = Interleave(
        raw,
        methods="get",
        names="index/*",
        action=lambda: prune(open_repo(raw), reporter=Reporter(), max_unused=0.0),
    )
    repo = open_repo(racing)
    src = tmp_path / "src2" / "home"
    make_tree(src, 3, files=3, size=20_000)
    res = backup(
        repo, BackupOptions(roots=[Root("home", str(src))], host="h"), reporter=Reporter(), cache=FileCache(None)
    )
    assert res.snapshot_id in open_repo(raw).state.snapshots


def _seeded(tmp_path: Path) -> tuple[MemoryBackend, Path, BackupOptions, str]:
    """A repository with one snapshot (the seed) of a small tree: the store, the tree, the backup's
    options, the seed's id."""
    raw = MemoryBackend()
    src = tmp_path / "src" / "home"
    make_tree(src, 0, files=3, size=20_000)
    opts = BackupOptions(roots=[Root("home", str(src))], host="h")
    seed = backup(new_repo(raw), opts, reporter=Reporter(), cache=FileCache(None)).snapshot_id
    assert seed
    return raw, src, opts, seed


def test_backup_dedups_against_the_index_of_the_head_it_publishes_over(tmp_path: Path) -> None:
    """A forget and a prune land between a backup's loading of the index and its reading of the
    snapshots (looking for its parent): the backup finds the forgotten snapshot gone, which re-reads
    the head (the prune's, naming none of the data). The backup must not then publish over that head
    a snapshot deduplicated against the index it loaded before: the prune deleted those packs. It
    checks what it reuses against the new head's index (as after a conflict) and stores it again,
    or fails without publishing. (Found by the S3 stress loop: a snapshot whose blobs were lost.)"""
    raw, src, opts, seed = _seeded(tmp_path)

    def forget_and_prune() -> Any:
        forget_ids(open_repo(raw), [seed])
        return prune(open_repo(raw), reporter=Reporter(), max_unused=0.0)

    racing = Interleave(raw, methods="get", names="snapshots/*", action=forget_and_prune)
    repo = open_repo(racing)
    try:
        res = backup(repo, opts, reporter=Reporter(), cache=FileCache(None))
    except ConflictError:
        res = None  # refused without publishing: as good (nothing claims to be saved)
    assert racing.results and racing.results[0].packs_deleted > 0  # the race happened: the seed's packs went
    made = {res.snapshot_id: fingerprint(src)} if res is not None and res.snapshot_id else {}
    report = verify_store(raw, made)
    assert report.ok, report.problems
    assert sorted(made) == sorted(open_repo(raw).state.snapshots)


def test_prune_performs_no_plan_made_under_another_head(tmp_path: Path) -> None:
    """A prune's plan is only valid for the head it was made from: if the pruning process has
    read the head again since (as a snapshot or index file found gone makes it do), publishing
    the plan over that newer head must not happen — the compare-and-swap would pass, and a
    backup published in between (deduplicated against packs the plan deletes) would lose data."""
    raw, src, opts, seed = _seeded(tmp_path)
    forget_ids(open_repo(raw), [seed])
    pruner = open_repo(raw)
    plan = plan_prune(pruner, max_unused=0.0, unindexed_grace=3600.0)
    assert plan.delete  # the seed's packs: nothing live under this head
    made = backup(open_repo(raw), opts, reporter=Reporter(), cache=FileCache(None)).snapshot_id  # reuses them
    assert made
    pruner.refresh()
    with pytest.raises(ConflictError):
        perform_prune(pruner, plan, reporter=Reporter(), squash=None, squash_ratio=0.25)
    prune(pruner, reporter=Reporter(), max_unused=0.0)  # planned again: the new snapshot's data is live
    report = verify_store(raw, {made: fingerprint(src)})
    assert report.ok, report.problems
