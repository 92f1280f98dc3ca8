"""A prune racing a backup never loses a snapshot nor deletes data a snapshot needs (DESIGN.md §3).

* Real processes: ``forget --keep-last 1 --prune`` and ``backup`` started together against one
  local repository, round after round, with the backup reusing data that the prune drops. The
  backup publishes (exit 0) or fails with a conflict (13), never with a false alarm of damage (a
  pack the prune deleted is not missing under the head that dropped it); every snapshot then
  restores exactly.
* Deterministic interleavings in-process: prune planned before a backup publishes (prune must
  plan again), and a backup that publishes after a prune dropped what it reuses (exit 13).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from openclaw_backup import prune
from openclaw_backup.backends.base import Backend
from openclaw_backup.backends.local import LocalBackend
from openclaw_backup.backends.memory import MemoryBackend
from openclaw_backup.backends.wrappers import WrappedBackend
from openclaw_backup.errors import ConflictError
from openclaw_backup.maintenance import check
from openclaw_backup.reporter import Reporter
from openclaw_backup.repository import Repository
from openclaw_backup.retention import Policy
from tests.support.cli import cli_env, json_out, main_cli, spawn_cli
from tests.support.repos import (
    PASSWORD,
    RETENTION_PACK_SIZE,
    new_repo,
    open_repo,
    restore_all,
    run_backup,
)
from tests.support.trees import fingerprint, fp_diff, write

OLD_NS = 1_600_000_000 * 10**9
ROUNDS = 15


# ============================================================================ real processes


def _verify_round(root: Path, expected: dict[str, Any], tmp: Path, label: str) -> None:
    """check --read-data passes and every snapshot in the head restores to what was backed up."""
    repo = open_repo(LocalBackend(root))
    res = check(repo, read_data=True, reporter=Reporter())
    assert res.ok, f"{label}: {res.problems}"
    assert repo.state.snapshots, f"{label}: no snapshot left"
    for sid in repo.state.snapshots:
        assert sid in expected, f"{label}: unknown snapshot {sid[:8]} in the head"
        target = tmp / f"restore-{label}-{sid[:8]}"
        restore_all(repo, sid, target)
        got = fingerprint(target / "src")
        assert got == expected[sid], f"{label} {sid[:8]}:\n{fp_diff(got, expected[sid])}"


def test_forget_prune_racing_backup_processes(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    src = tmp_path / "src"
    env = cli_env(tmp_path, OPENCLAW_BACKUP_REPOSITORY=str(root))
    new_repo(LocalBackend(root), pack_size=RETENTION_PACK_SIZE)
    write(src / "const.bin", os.urandom(600_000), mtime_ns=OLD_NS)
    write(src / "conf/settings.json", b"{}", mtime_ns=OLD_NS)
    expected: dict[str, Any] = {}
    outcomes: Counter[str] = Counter()
    t0 = time.monotonic()
    for r in range(ROUNDS):
        # Two snapshots in-process: X holds version A of alt.bin (only there), Y (newest) version B.
        a, b = os.urandom(700_000), os.urandom(700_000)
        for alt in (a, b):
            write(src / "alt.bin", alt)
            write(src / "round.txt", f"{r} {len(expected)}".encode())
            res = run_backup(open_repo(LocalBackend(root)), {"src": src}, forked=False)
            assert res.snapshot_id
            expected[res.snapshot_id] = fingerprint(src)
        # The race: forget keeps only Y and prune drops A; the backup reuses A.
        write(src / "alt.bin", a)
        write(src / "new.bin", os.urandom(1_000_000))
        write(src / "round.txt", f"race {r}".encode())
        fp = fingerprint(src)
        delay = (r % 5) * 0.08
        prune_args = ["forget", "--keep-last", "1", "--prune", "--json"]
        backup_args = ["backup", "--source", str(src), "--json"]
        first, second = (prune_args, backup_args) if r % 2 else (backup_args, prune_args)
        p1 = spawn_cli(first, env)
        time.sleep(delay)
        p2 = spawn_cli(second, env)
        out1, err1 = p1.communicate(timeout=60)
        out2, err2 = p2.communicate(timeout=60)
        (pc, _pout, perr), (bc, bout, berr) = (
            ((p1.returncode, out1, err1), (p2.returncode, out2, err2))
            if first is prune_args
            else ((p2.returncode, out2, err2), (p1.returncode, out1, err1))
        )
        assert pc == 0, f"round {r}: prune exit {pc}: {perr}"
        assert bc in (0, 13), f"round {r}: backup exit {bc}: {berr}"
        if bc == 0:
            sid = json_out(bout)["snapshot"]
            assert sid, f"round {r}: the tree changed, a snapshot must be made"
            outcomes["backup ok"] += 1
        else:
            assert "error" in json_out(bout) and "concurrent prune" in berr, berr
            outcomes["backup 13"] += 1
            again = spawn_cli(backup_args, env)
            aout, aerr = again.communicate(timeout=60)
            assert again.returncode == 0, f"round {r}: the backup after a conflict failed: {aerr}"
            sid = json_out(aout)["snapshot"]
        expected[sid] = fp
        head = open_repo(LocalBackend(root)).state.snapshots
        assert sid in head, f"round {r}: the backup's snapshot {sid[:8]} is not in the head"
        outcomes["prune planned again"] += "planning again" in perr
        _verify_round(root, expected, tmp_path, f"r{r}")
    print(f"\n[race] {ROUNDS} rounds in {time.monotonic() - t0:.1f}s: {dict(outcomes)}")


# ============================================================================ deterministic interleavings


class HookBackend(WrappedBackend):
    """Runs ``hook`` once, just before the first publication through this backend."""

    def __init__(self, inner: Backend, hook: Callable[[], None]) -> None:
        super().__init__(inner)
        self.hook: Callable[[], None] | None = hook

    def publish(self, *, head: bytes, expect: str | None, deletes: Sequence[str] = ()) -> str:
        hook, self.hook = self.hook, None
        if hook is not None:
            hook()
        return super().publish(head=head, expect=expect, deletes=deletes)


class PackListingHook(WrappedBackend):
    """Runs ``hook`` once, just before the first listing of the packs through this backend."""

    def __init__(self, inner: Backend, hook: Callable[[], None]) -> None:
        super().__init__(inner)
        self.hook: Callable[[], None] | None = hook

    def list(self, prefix: str = "") -> list[str]:
        if prefix == "data/" and self.hook is not None:
            hook, self.hook = self.hook, None
            hook()
        return super().list(prefix)


def _make_backend(kind: str, tmp: Path) -> Backend:
    return MemoryBackend() if kind == "memory" else LocalBackend(tmp / "repo", lock_timeout=5)


def _setup_two(backend: Backend, tmp: Path) -> dict[str, Any]:
    """Snapshot X (alt.bin = A, only there), then Y (alt.bin = B); forget keeps only Y."""
    repo = new_repo(backend, pack_size=RETENTION_PACK_SIZE)
    src = tmp / "src"
    write(src / "const.bin", os.urandom(300_000), mtime_ns=OLD_NS)
    a, b = os.urandom(400_000), os.urandom(400_000)
    write(src / "alt.bin", a)
    x = run_backup(repo, {"src": src}, forked=False).snapshot_id
    write(src / "alt.bin", b)
    y = run_backup(repo, {"src": src}, forked=False).snapshot_id
    fp_y = fingerprint(src)
    assert x and y
    out = prune.forget(repo, Policy(keep_last=1))
    assert [f.id for f in out.forgotten] == [x]
    write(src / "alt.bin", a)  # the next backup reuses A, which only the forgotten X holds
    write(src / "new.txt", b"new in this backup")
    return {"repo": repo, "src": src, "x": x, "y": y, "fp_y": fp_y, "a": a}


def _a_blob(repo: Repository, a: bytes) -> bytes:
    """alt.bin is below the minimum chunk size: one blob, whose id is the keyed hash of the whole file."""
    return repo.cipher.blob_id(a)


def _restores(backend: Backend, sid: str, fp: Any, target: Path) -> None:
    repo = open_repo(backend)
    restore_all(repo, sid, target)
    got = fingerprint(target / "src")
    assert got == fp, fp_diff(got, fp)


@pytest.mark.parametrize("kind", ["memory", "local"])
def test_stale_prune_plan_is_not_performed(kind: str, tmp_path: Path) -> None:
    backend = _make_backend(kind, tmp_path)
    st = _setup_two(backend, tmp_path)
    repo_p = open_repo(backend)
    a_id = _a_blob(repo_p, st["a"])
    a_pack = repo_p.load_index()[a_id].pack
    stale = prune.plan_prune(repo_p, max_unused=0.1, unindexed_grace=3600)
    assert a_pack in stale.delete and a_id not in stale.live
    res = run_backup(open_repo(backend), {"src": st["src"]}, forked=False)
    assert res.snapshot_id and res.stats["bytes_added"] < len(st["a"]), "A must be reused, not stored again"
    fp = fingerprint(st["src"])
    with pytest.raises(ConflictError):
        prune.perform_prune(repo_p, stale, reporter=Reporter(), squash=None, squash_ratio=0.25)
    repo = open_repo(backend)
    assert set(repo.state.snapshots) == {st["y"], res.snapshot_id}
    assert check(repo, read_data=True, reporter=Reporter()).ok
    _restores(backend, res.snapshot_id, fp, tmp_path / "restored")


@pytest.mark.parametrize("kind", ["memory", "local"])
def test_prune_plans_again_when_a_backup_publishes_between_plan_and_perform(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = _make_backend(kind, tmp_path)
    st = _setup_two(backend, tmp_path)
    a_id = _a_blob(st["repo"], st["a"])
    a_pack = open_repo(backend).load_index()[a_id].pack
    real_plan = prune.plan_prune
    plans: list[prune.PrunePlan] = []
    backups: list[str] = []

    def plan_then_backup(*args: Any, **kw: Any) -> prune.PrunePlan:
        plan = real_plan(*args, **kw)
        plans.append(plan)
        if len(plans) == 1:  # the backup publishes after the plan, before the perform
            res = run_backup(open_repo(backend), {"src": st["src"]}, forked=False)
            assert res.snapshot_id and res.stats["bytes_added"] < len(st["a"]), "A must be reused"
            backups.append(res.snapshot_id)
        return plan

    monkeypatch.setattr(prune, "plan_prune", plan_then_backup)
    infos: list[str] = []

    class R(Reporter):
        def info(self, message: str) -> None:
            infos.append(message)

    prune.prune(open_repo(backend), reporter=R())
    assert a_pack in plans[0].delete and a_id not in plans[0].live, "the first plan meant to delete A"
    assert len(plans) == 2 and any("planning again" in m for m in infos)
    assert a_id in plans[1].live
    fp = fingerprint(st["src"])
    repo = open_repo(backend)
    assert set(repo.state.snapshots) == {st["y"], *backups}
    assert check(repo, read_data=True, reporter=Reporter()).ok
    assert a_id in repo.load_index()
    _restores(backend, backups[0], fp, tmp_path / "restored")
    _restores(backend, st["y"], st["fp_y"], tmp_path / "restored-y")


@pytest.mark.parametrize("kind", ["memory", "local"])
def test_backup_that_reuses_data_a_prune_dropped_fails_with_13(kind: str, tmp_path: Path) -> None:
    backend = _make_backend(kind, tmp_path)
    st = _setup_two(backend, tmp_path)
    a_id = _a_blob(st["repo"], st["a"])
    pruned: list[prune.PruneResult] = []

    def prune_now() -> None:  # the backup has read the head and written its packs; prune lands first
        pruned.append(prune.prune(open_repo(backend), reporter=Reporter()))

    repo_b = open_repo(HookBackend(backend, prune_now))
    with pytest.raises(ConflictError) as e:
        run_backup(repo_b, {"src": st["src"]}, forked=False)
    assert e.value.exit_code == 13 and "concurrent prune" in e.value.message
    assert pruned and pruned[0].packs_deleted >= 1
    repo = open_repo(backend)
    assert repo.state.snapshots == [st["y"]], "nothing was published"
    assert a_id not in repo.load_index()
    assert check(repo, read_data=True, reporter=Reporter()).ok
    _restores(backend, st["y"], st["fp_y"], tmp_path / "restored-y")
    # The next backup simply works (it stores A again).
    fp = fingerprint(st["src"])
    res = run_backup(open_repo(backend), {"src": st["src"]}, forked=False)
    assert res.snapshot_id and res.stats["bytes_added"] >= len(st["a"]) // 2
    repo = open_repo(backend)
    assert check(repo, read_data=True, reporter=Reporter()).ok
    _restores(backend, res.snapshot_id, fp, tmp_path / "restored")


def test_backup_that_reuses_data_a_prune_dropped_exits_13_via_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:  # fmt: skip
    """The same interleaving through ``cli.main``: exit code 13, nothing published."""
    from openclaw_backup.commands import _common as commands

    backend = _make_backend("local", tmp_path)
    st = _setup_two(backend, tmp_path)
    real_open = commands.open_backend

    def open_with_hook(address: str, options: Any = None) -> Backend:
        return HookBackend(real_open(address, options), lambda: prune.prune(open_repo(backend), reporter=Reporter()))

    monkeypatch.setattr(commands, "open_backend", open_with_hook)
    monkeypatch.setenv("OPENCLAW_BACKUP_REPOSITORY", str(tmp_path / "repo"))
    monkeypatch.setenv("OPENCLAW_BACKUP_PASSWORD", PASSWORD)
    code, out, err = main_cli(["backup", "--source", str(st["src"]), "--json"])
    assert code == 13, err
    assert json_out(out)["exit_code"] == 13
    assert open_repo(backend).state.snapshots == [st["y"]]


@pytest.mark.parametrize(
    "kind",
    [
        "local",
        "memory",
    ],
)
def test_prune_never_deletes_a_running_backups_new_packs(kind: str, tmp_path: Path) -> None:
    backend = _make_backend(kind, tmp_path)
    repo = new_repo(backend, pack_size=RETENTION_PACK_SIZE)
    src = tmp_path / "src"
    write(src / "one.bin", os.urandom(300_000))
    run_backup(repo, {"src": src}, forked=False)
    write(src / "one.bin", os.urandom(300_000))  # all new data: nothing reused
    fp = fingerprint(src)
    pruned: list[prune.PruneResult] = []

    def prune_now() -> None:  # default grace: the backup's packs are someone's work in progress
        pruned.append(prune.prune(open_repo(backend), reporter=Reporter()))

    res = run_backup(open_repo(HookBackend(backend, prune_now)), {"src": src}, forked=False)
    assert pruned and res.snapshot_id
    repo = open_repo(backend)
    result = check(repo, read_data=True, reporter=Reporter())
    assert result.ok, result.problems
    _restores(backend, res.snapshot_id, fp, tmp_path / "restored")


def test_hub_prune_racing_backup_keeps_staged_packs(hub_backend: Any, hub_repo: Any, tmp_path: Path) -> None:
    """On a Hub repo unindexed packs are deleted at once; a running backup's uploads are not listed yet."""
    repo = new_repo(hub_backend, cache_dir=tmp_path / "cache", pack_size=RETENTION_PACK_SIZE)
    src = tmp_path / "src"
    write(src / "one.bin", os.urandom(300_000))
    run_backup(repo, {"src": src}, forked=False)
    write(src / "one.bin", os.urandom(300_000))
    fp = fingerprint(src)
    pruned: list[prune.PruneResult] = []
    other = hub_repo.open()  # another client of the same repo

    def prune_now() -> None:
        pruned.append(prune.prune(open_repo(other), reporter=Reporter()))

    res = run_backup(open_repo(HookBackend(hub_backend, prune_now)), {"src": src}, forked=False)
    assert pruned and res.snapshot_id
    repo = open_repo(hub_backend)
    result = check(repo, read_data=True, reporter=Reporter())
    assert result.ok, result.problems
    _restores(hub_backend, res.snapshot_id, fp, tmp_path / "restored")


@pytest.mark.parametrize("kind", ["memory", "local"])
def test_backup_finding_the_packs_a_prune_just_deleted_raises_no_alarm(kind: str, tmp_path: Path) -> None:
    """The backup loaded the index, then a prune published a head without A's pack and deleted it:
    the pack is missing from the store but no head names it any more. Nothing is damaged, so the
    backup warns of nothing (it used to say "missing from the store ... run check" and exit 3)."""
    backend = _make_backend(kind, tmp_path)
    st = _setup_two(backend, tmp_path)
    a_id = _a_blob(st["repo"], st["a"])
    pruned: list[prune.PruneResult] = []

    def prune_now() -> None:  # the backup has loaded the index of the head before the prune's
        pruned.append(prune.prune(open_repo(backend), reporter=Reporter()))

    reporter = Reporter()
    res = run_backup(open_repo(PackListingHook(backend, prune_now)), {"src": st["src"]}, forked=False,
                     reporter=reporter)  # fmt: skip
    assert pruned and pruned[0].packs_deleted >= 1
    assert res.snapshot_id and reporter.warnings == []
    assert res.stats["bytes_added"] >= len(st["a"]), "A was stored again: the new head does not hold it"
    fp = fingerprint(st["src"])
    repo = open_repo(backend)
    assert set(repo.state.snapshots) == {st["y"], res.snapshot_id}
    assert a_id in repo.load_index()
    assert check(repo, read_data=True, reporter=Reporter()).ok
    _restores(backend, res.snapshot_id, fp, tmp_path / "restored")
