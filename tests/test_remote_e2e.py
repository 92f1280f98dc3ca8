"""End-to-end: backup → restore over every store, the Hub's commit budget, faults, races, kills.

The Hub is the fake Hub API server of ``tests/support/hubserver`` (real ``huggingface_hub`` client, plain
LFS); S3 is a real SeaweedFS on loopback. Both are started once per session by the fixtures in
``tests/support/hub.py`` and ``tests/support/s3.py``. CLI runs are real subprocesses with a clean
environment (``OPENCLAW_BACKUP_TEST_WEAK_KDF=1``).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from openclaw_backup.backends import open_backend
from openclaw_backup.errors import BackupError, QuotaError
from openclaw_backup.filecache import FileCache
from openclaw_backup.repository import Repository
from tests.support.backends import kinds
from tests.support.cli import cli_env, cli_ok, hub_env, json_out, run_cli, s3_env, spawn_cli, spawn_cli_on_go, wait_for
from tests.support.hub import TOKEN, HubRepo, HubServer
from tests.support.legacy import LegacyRepo
from tests.support.repos import PASSWORD, assert_check_ok, new_repo, open_repo, run_backup, run_restore
from tests.support.s3 import S3Server
from tests.support.trees import agent_tree, fingerprint, fp_diff, set_mtimes, touch_change, write_tree

pytestmark = pytest.mark.timeout(120)
PACK_SIZE = 512 * 1024  # a 3 MB file spans a few packs


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[tuple[Path, sqlite3.Connection]]:
    src = tmp_path / "src" / "openclaw"
    con = agent_tree(src)
    yield src, con
    con.close()


def _commits(hub_repo: HubRepo) -> int:
    return int(hub_repo.stats()["commits"])


def _hub_cli_env(server: HubServer, home: Path, **extra: str) -> dict[str, str]:
    return cli_env(home, **hub_env(server.url, TOKEN), **extra)


def _s3_cli_env(server: S3Server, home: Path, **extra: str) -> dict[str, str]:
    return cli_env(home, **s3_env(server.endpoint, server.access_key, server.secret_key), **extra)


# ---------------------------------------------------------------------------- 1. round trips


@pytest.mark.parametrize("kind", kinds("memory", "local", "hub", "s3"))
def test_api_roundtrip_byte_exact(
    kind: str, request: pytest.FixtureRequest, tree: tuple[Path, sqlite3.Connection], tmp_path: Path
) -> None:
    src, con = tree
    backend = request.getfixturevalue(f"{kind}_backend")
    repo = new_repo(backend, pack_size=PACK_SIZE)
    first_fp = fingerprint(src, sqlite=True)
    first = run_backup(repo, {"openclaw": src}, forked=False)
    assert not first.unchanged and first.snapshot_id

    # a second snapshot: one file changed, one deleted, a row added to the live database
    touch_change(src / "agents/main/agent/notes.md", b"# changed\n")
    (src / "workspace/deep/a/b/c/d/leaf.txt").unlink()
    con.execute("INSERT INTO chunks (text, emb) VALUES ('late', x'00')")
    set_mtimes(src, 1_700_000_100 * 10**9)
    second_fp = fingerprint(src, sqlite=True)
    db = "memory/main.sqlite"
    assert first_fp[db][0] == "sqlite" and first_fp[db][-1] != second_fp[db][-1]  # the WAL row counts
    second = run_backup(repo, {"openclaw": src}, forked=False)
    assert second.snapshot_id and second.parent_id == first.snapshot_id

    # read back through a freshly opened repository (nothing cached in memory or on disk)
    reader = repo if kind == "memory" else Repository.open(backend, password=PASSWORD)
    for sid, expected, name in ((first.snapshot_id, first_fp, "one"), (second.snapshot_id, second_fp, "two")):
        dest = tmp_path / "restored" / name
        run_restore(reader, sid, {"openclaw": dest}, forked=False)
        got = fingerprint(dest, sqlite=True)
        assert got == expected, fp_diff(expected, got)
    assert "workspace/deep/a/b/c/d/leaf.txt" not in fingerprint(tmp_path / "restored" / "two", sqlite=True)
    assert_check_ok(reader)


@pytest.mark.parametrize("kind", kinds("hub", "s3"))
def test_cli_roundtrip_byte_exact(
    kind: str,
    request: pytest.FixtureRequest,
    tree: tuple[Path, sqlite3.Connection],
    tmp_path: Path,
) -> None:
    src, _con = tree
    if kind == "hub":
        hub_repo: HubRepo = request.getfixturevalue("hub_repo")
        address = hub_repo.address
        env = _hub_cli_env(hub_repo.server, tmp_path / "home")
    else:
        s3: S3Server = request.getfixturevalue("s3_server")
        bucket = request.getfixturevalue("s3_shared_bucket")
        address = f"s3://{bucket}/{uuid.uuid4().hex[:12]}/cli"
        env = _s3_cli_env(s3, tmp_path / "home")
    expected = fingerprint(src, sqlite=True)
    cli_ok(["--repo", address, "init"], env)
    doc = json_out(cli_ok(["--repo", address, "backup", "--source", str(src), "--host", "cli-host", "--json"], env))
    assert doc["snapshot"] and not doc["unchanged"]
    before = _commits(hub_repo) if kind == "hub" else 0
    again = json_out(cli_ok(["--repo", address, "backup", "--source", str(src), "--host", "cli-host", "--json"], env))
    assert again["unchanged"] and again["snapshot"] is None
    if kind == "hub":
        assert _commits(hub_repo) == before, "an unchanged backup made a commit"

    # restore on "another machine": a fresh HOME, so no cache is shared
    env2 = {**env, **{k: v for k, v in cli_env(tmp_path / "home2").items() if k in ("HOME", "XDG_CACHE_HOME")}}
    target = tmp_path / "target"
    cli_ok(["--repo", address, "restore", "latest", "--target", str(target)], env2)
    got = fingerprint(target / "openclaw", sqlite=True)
    assert got == expected, fp_diff(expected, got)
    check = json_out(cli_ok(["--repo", address, "check", "--read-data", "--json"], env2))
    assert check["ok"] and check["snapshots"] == 1


# ---------------------------------------------------------------------------- 2. the Hub's commit budget


def _small_tree(root: Path, files: int = 5) -> None:
    for i in range(files):
        p = root / f"dir{i % 2}" / f"f{i}.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(f"file {i}\n".encode() * 50)
    set_mtimes(root, 1_700_000_000 * 10**9)


def _hub_repo_api(hub_repo: HubRepo, **options: Any) -> Repository:
    """Open the repository on the fake Hub through the product's composition (retries included)."""
    opts = {"retries": 5, **options}
    return open_repo(open_backend(hub_repo.address, hub_repo.server.options(**opts)))


def _hub_init(hub_repo: HubRepo) -> Repository:
    backend = open_backend(hub_repo.address, hub_repo.server.options(create=True, retries=5))
    return new_repo(backend, pack_size=PACK_SIZE)


def test_hub_changed_backup_is_one_commit_unchanged_is_none(hub_repo: HubRepo, tmp_path: Path) -> None:
    src = tmp_path / "src"
    _small_tree(src)
    repo = _hub_init(hub_repo)
    assert _commits(hub_repo) == 1  # init: config, key and head in one commit
    cache = FileCache(tmp_path / "files.db")
    for i in range(3):
        touch_change(src / "dir0/f0.txt", f"change {i}\n".encode())
        before = _commits(hub_repo)
        res = run_backup(repo, {"src": src}, cache=FileCache(tmp_path / "files.db"), forked=False)
        assert res.snapshot_id and not res.unchanged
        assert _commits(hub_repo) == before + 1, "a changed backup must be exactly one commit"
        res = run_backup(repo, {"src": src}, cache=cache, forked=False)
        assert res.unchanged
        assert _commits(hub_repo) == before + 1, "an unchanged backup must make no commit"
    assert len(_hub_repo_api(hub_repo).snapshots()) == 3


def test_hub_fifty_backups_fit_the_hourly_commit_quota(hub_repo: HubRepo, tmp_path: Path) -> None:
    src = tmp_path / "src"
    _small_tree(src)
    repo = _hub_init(hub_repo)
    hub_repo.server.set_quota(hub_repo.key, 128)
    try:
        for i in range(50):
            touch_change(src / f"dir{i % 2}/f{i % 5}.txt", f"backup {i}\n".encode() * 3)
            repo.refresh()  # as the supervisor does before each run
            try:
                res = run_backup(repo, {"src": src}, forked=False)
            except QuotaError as e:  # pragma: no cover - the failure this test is about
                pytest.fail(f"backup {i} hit the commit quota: {e.message}")
            assert res.snapshot_id, f"backup {i} made no snapshot"
        res = run_backup(repo, {"src": src}, forked=False)
        assert res.unchanged
    finally:
        hub_repo.server.set_quota(hub_repo.key, None)
    assert _commits(hub_repo) == 1 + 50 <= 128
    assert len(_hub_repo_api(hub_repo).snapshots()) == 50


@pytest.mark.parametrize("where", ["commit quota", "api rate limit"])
def test_hub_quota_429_surfaces_fast_as_exit_14(where: str, hub_repo: HubRepo, tmp_path: Path) -> None:
    """huggingface_hub would sleep for the whole Retry-After (an hour); the CLI must give up at once."""
    src = tmp_path / "src"
    _small_tree(src)
    env = _hub_cli_env(hub_repo.server, tmp_path / "home")
    cli_ok(["--repo", hub_repo.address, "init"], env)
    cli_ok(["--repo", hub_repo.address, "backup", "--source", str(src)], env)
    if where == "commit quota":
        hub_repo.server.set_quota(hub_repo.key, _commits(hub_repo))  # the budget is spent
    else:  # the upload API says "come back in an hour"
        hub_repo.add_fault(kind="preupload", status=429, retry_after=3600, count=50)
    try:
        touch_change(src / "dir1/f1.txt", b"needs a commit\n")
        start = time.monotonic()
        proc = run_cli(["--repo", hub_repo.address, "backup", "--source", str(src)], env, timeout=120)
        elapsed = time.monotonic() - start
    finally:
        hub_repo.server.set_quota(hub_repo.key, None)
        hub_repo.server.clear_faults()
    assert proc.returncode == 14, (proc.returncode, proc.stderr)
    assert "quota" in proc.stderr.lower() or "retry" in proc.stderr.lower(), proc.stderr
    assert elapsed < 10, f"a commit quota must surface within seconds, took {elapsed:.1f} s"
    # nothing half-published; the next backup, once the quota allows, goes through
    assert len(_hub_repo_api(hub_repo).snapshots()) == 1
    cli_ok(["--repo", hub_repo.address, "backup", "--source", str(src)], env)
    assert len(_hub_repo_api(hub_repo).snapshots()) == 2


# Faults of the fake Hub (tests/support/hubserver/model.py: Fault), each injected for one backup. A fault
# without status/drop/lose/delay is a no-op that only consumes matching requests: it lets the next
# fault hit a later request (HEAD_UPLOAD skips every preupload of the backup but the head's).
HEAD_UPLOAD = "head upload"
HUB_FAULTS: list[tuple[str, list[dict[str, Any]]]] = [
    ("commit 500", [{"kind": "commit", "status": 500}]),
    ("commit 502 x2", [{"kind": "commit", "status": 502, "count": 2}]),
    ("commit dropped", [{"kind": "commit", "drop": True}]),
    ("commit landed, answer 500", [{"kind": "commit", "lose": "500"}]),
    ("commit landed, answer 503", [{"kind": "commit", "lose": "503"}]),
    ("commit landed, answer dropped", [{"kind": "commit", "lose": "drop"}]),
    (
        "commit landed, answer 500, read-back 500",
        [{"kind": "commit", "lose": "500"}, {"kind": "commits", "status": 500}],
    ),
    ("preupload 503", [{"kind": "preupload", "status": 503}]),
    ("preupload 500 x3", [{"kind": "preupload", "status": 500, "count": 3}]),
    (HEAD_UPLOAD, [{"kind": "preupload", "count": -1}, {"kind": "preupload", "status": 503}]),
    ("lfs batch 500", [{"kind": "lfs_batch", "status": 500}]),
    ("lfs upload 502 x2", [{"kind": "lfs_upload", "status": 502, "count": 2}]),
    ("lfs upload dropped", [{"kind": "lfs_upload", "drop": True}]),
    ("lfs verify 500", [{"kind": "lfs_verify", "status": 500}]),
    ("repo info 500", [{"kind": "info", "status": 500}]),
    ("resolve 503 x2", [{"kind": "resolve", "status": 503, "count": 2}]),
    ("paths-info 500", [{"kind": "paths_info", "status": 500}]),
    ("tree 500", [{"kind": "tree", "status": 500}]),
    ("any request 500 x4", [{"kind": "*", "status": 500, "count": 4}]),
]


# Documented to be invisible to the caller: lost answers are read back (docs/hub.md "Lost answers"),
# transient errors of idempotent calls are retried by RetryingBackend.
MUST_SUCCEED = {
    "commit landed, answer 500",
    "commit landed, answer 503",
    "commit landed, answer dropped",
    "preupload 503",
    "preupload 500 x3",
    "lfs batch 500",
    "lfs upload 502 x2",
    "lfs upload dropped",
    "lfs verify 500",
    "resolve 503 x2",
    "paths-info 500",
    "tree 500",
}


def _requests(hub_repo: HubRepo, kind: str) -> int:
    return int(hub_repo.stats()["requests"].get(kind, 0))


def test_hub_faults_never_duplicate_or_lose_a_snapshot(hub_repo: HubRepo, tmp_path: Path) -> None:
    """After every faulted backup: exactly the snapshots of the backups that reported success (a
    failed one is followed by a clean retry), one commit per snapshot, no duplicate, check passes."""
    src = tmp_path / "src"
    _small_tree(src)
    _hub_init(hub_repo)
    touch_change(src / "dir0/f0.txt", b"baseline\n")
    before = _requests(hub_repo, "preupload")
    run_backup(_hub_repo_api(hub_repo), {"src": src}, forked=False)
    preuploads = _requests(hub_repo, "preupload") - before  # packs, index, snapshot, then the head
    assert preuploads >= 2
    expected = 1
    outcomes: dict[str, str] = {}
    for i, (label, faults) in enumerate(HUB_FAULTS):
        touch_change(src / "dir0/f0.txt", f"state {i}\n".encode())
        commits_before = _commits(hub_repo)
        for fault in faults:
            spec = {**fault, "count": preuploads - 1} if fault.get("count") == -1 else fault
            hub_repo.add_fault(**spec)
        try:
            res = run_backup(_hub_repo_api(hub_repo), {"src": src}, forked=False)
            assert res.snapshot_id
            expected += 1
            outcomes[label] = "ok"
        except BackupError as e:
            outcomes[label] = f"{type(e).__name__} (exit {e.exit_code})"
        finally:
            hub_repo.server.clear_faults()
        if outcomes[label] != "ok":
            # The failure was reported (its outcome may be unknown: the commit may have landed).
            # The next backup must capture this state exactly once: a new snapshot, or "unchanged"
            # when the failed one did land.
            res = run_backup(_hub_repo_api(hub_repo), {"src": src}, forked=False)
            assert res.snapshot_id or res.unchanged, label
            outcomes[label] += ", landed anyway" if res.unchanged else ", retried"
            expected += 1
        assert _commits(hub_repo) == commits_before + 1, f"{label} ({outcomes[label]}): not exactly one commit"
        snaps = _hub_repo_api(hub_repo).snapshots()
        assert len(snaps) == expected, f"{label} ({outcomes[label]}): {len(snaps)} snapshots, expected {expected}"
        assert len({s.tree for s in snaps}) == len(snaps), f"{label}: a duplicate snapshot"
    print("\nfault outcomes:", outcomes)
    assert {k: v for k, v in outcomes.items() if k in MUST_SUCCEED and v != "ok"} == {}
    assert_check_ok(_hub_repo_api(hub_repo))
    # a restore rides out transient read errors too
    hub_repo.add_fault(kind="resolve", status=503, count=3)
    dest = tmp_path / "restored"
    run_restore(_hub_repo_api(hub_repo), "latest", {"src": dest}, forked=False)
    hub_repo.server.clear_faults()
    assert fingerprint(dest, sqlite=True) == fingerprint(src, sqlite=True)


def test_hub_commit_landing_after_the_timeout_is_not_duplicated(hub_repo: HubRepo, tmp_path: Path) -> None:
    """The commit's answer times out and the commit lands only afterwards (after the read-back):
    the backend makes it again on the same parent, so at most one lands; the backup succeeds or
    reports a store error, and either way the next backup sees one snapshot: no duplicate."""
    src = tmp_path / "src"
    _small_tree(src)
    _hub_init(hub_repo)
    touch_change(src / "dir1/f3.txt", b"late\n")
    hub_repo.add_fault(kind="commit", delay=2.5)
    try:
        run_backup(_hub_repo_api(hub_repo, timeout=1.0), {"src": src}, forked=False)
    except BackupError as e:
        assert e.exit_code in (13, 15), e
    wait_for(lambda: _commits(hub_repo) >= 2, 10, "a commit to land", every=0.02)
    time.sleep(3.0)  # the delayed commit finishes (lands or is refused) whatever happened above
    res = run_backup(_hub_repo_api(hub_repo), {"src": src}, forked=False)
    assert res.unchanged, "the late snapshot was not recognised: a duplicate was made"
    snaps = _hub_repo_api(hub_repo).snapshots()
    assert len(snaps) == 1 and _commits(hub_repo) <= 3
    dest = tmp_path / "restored"
    run_restore(_hub_repo_api(hub_repo), "latest", {"src": dest}, forked=False)
    assert fingerprint(dest, sqlite=True) == fingerprint(src, sqlite=True)


def test_hub_open_rides_out_one_transient_5xx(hub_repo: HubRepo, tmp_path: Path) -> None:
    src = tmp_path / "src"
    _small_tree(src)
    env = _hub_cli_env(hub_repo.server, tmp_path / "home")
    cli_ok(["--repo", hub_repo.address, "init"], env)
    hub_repo.add_fault(kind="info", status=502)  # the next repo-info request: the open
    proc = run_cli(["--repo", hub_repo.address, "backup", "--source", str(src)], env)
    assert proc.returncode == 0, proc.stderr


def test_hub_backup_rides_out_one_commit_5xx(hub_repo: HubRepo, tmp_path: Path) -> None:
    src = tmp_path / "src"
    _small_tree(src)
    env = _hub_cli_env(hub_repo.server, tmp_path / "home")
    cli_ok(["--repo", hub_repo.address, "init"], env)
    hub_repo.add_fault(kind="commit", status=502)  # refused before it is applied
    proc = run_cli(["--repo", hub_repo.address, "backup", "--source", str(src)], env)
    assert proc.returncode == 0, proc.stderr
    assert _commits(hub_repo) == 2


# ---------------------------------------------------------------------------- 3. racing containers

ROUNDS = int(os.environ.get("E2E_RACE_ROUNDS", "5"))


@pytest.mark.parametrize("kind", kinds("hub", "s3"))
def test_two_backup_processes_race(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Two CLI backups of different trees (different --host) start together against one repo, five
    times: each time both snapshots land, or one reports a conflict (exit 13); all restore exactly."""
    if kind == "hub":
        hub_repo: HubRepo = request.getfixturevalue("hub_repo")
        address = hub_repo.address
        make_env = lambda home: _hub_cli_env(hub_repo.server, home)  # noqa: E731
        reader = lambda: _hub_repo_api(hub_repo)  # noqa: E731
    else:
        s3: S3Server = request.getfixturevalue("s3_server")
        address = f"s3://{request.getfixturevalue('s3_shared_bucket')}/{uuid.uuid4().hex[:12]}/race"
        make_env = lambda home: _s3_cli_env(s3, home)  # noqa: E731
        reader = lambda: open_repo(open_backend(address, s3.options(retries=5)))  # noqa: E731
    cli_ok(["--repo", address, "init"], make_env(tmp_path / "home-init"))
    hosts = {"host-a": tmp_path / "a" / "openclaw", "host-b": tmp_path / "b" / "openclaw"}
    cons = [agent_tree(src, seed=host, big=256 * 1024) for host, src in hosts.items()]
    envs = {host: make_env(tmp_path / f"home-{host}") for host in hosts}
    known: set[str] = set()
    conflicts = 0
    try:
        for r in range(ROUNDS):
            expected = {}
            for host, src in hosts.items():
                touch_change(src / "agents/main/sessions/s1.jsonl", f"round {r} of {host}\n".encode() * 20)
                expected[host] = fingerprint(src, sqlite=True)
            go = tmp_path / f"go-{r}"
            procs = {
                host: spawn_cli_on_go(
                    ["--repo", address, "backup", "--source", str(src), "--host", host, "--json"],
                    envs[host],
                    go,
                    tmp_path / f"ready-{r}-{host}",
                )
                for host, src in hosts.items()
            }
            ready = lambda r=r: all((tmp_path / f"ready-{r}-{h}").exists() for h in hosts)  # noqa: E731
            wait_for(ready, 60, "both launchers", every=0.02)
            go.touch()
            results = {host: (p.wait(timeout=90), *p.communicate()) for host, p in procs.items()}
            ok = {h for h, (rc, _, _) in results.items() if rc == 0}
            for h, (rc, out, err) in results.items():
                assert rc in (0, 13), f"round {r} {h}: exit {rc}\n{out}\n{err}"
                if rc == 13:
                    conflicts += 1
                    assert any(w in err.lower() for w in ("conflict", "another writer", "kept changing")), (
                        f"round {r} {h}: exit 13 without a clear conflict message:\n{err}"
                    )
            assert ok, f"round {r}: both backups failed: {results}"
            repo = reader()
            new = [s for s in repo.snapshots() if s.id not in known]
            assert sorted(s.host for s in new) == sorted(ok), f"round {r}: new snapshots {new}, successes {ok}"
            for snap in new:
                dest = tmp_path / "restored" / f"{r}-{snap.host}"
                run_restore(repo, snap.id, {"openclaw": dest}, forked=False)
                got = fingerprint(dest, sqlite=True)
                assert got == expected[snap.host], fp_diff(expected[snap.host], got)
                known.add(snap.id)
    finally:
        for con in cons:
            con.close()
    assert_check_ok(reader())
    detail = f"{conflicts} exit-13 conflicts"
    if kind == "hub":  # the race really happened: some commits were refused (412) and re-planned
        st = hub_repo.stats()
        detail += f"; commit requests {st['requests'].get('commit')} for {st['commits']} commits"
        assert st["requests"]["commit"] > st["commits"], f"no commit ever met a conflict: {detail}"
    print(f"\n{kind} race: {len(known)} snapshots in {ROUNDS} rounds, {detail}")


# ---------------------------------------------------------------------------- 4. killed mid-upload


@pytest.mark.parametrize("during", ["lfs_upload", "commit"])
def test_hub_backup_killed_mid_publication(during: str, hub_repo: HubRepo, tmp_path: Path) -> None:
    """SIGKILL while the Hub is slowly taking an upload (or the commit): the repository stays
    readable, the earlier snapshot restores exactly, check passes, and the next backup works."""
    src = tmp_path / "src" / "openclaw"
    con = agent_tree(src, big=1024 * 1024)
    try:
        env = _hub_cli_env(hub_repo.server, tmp_path / "home")
        cli_ok(["--repo", hub_repo.address, "init"], env)
        first_fp = fingerprint(src, sqlite=True)
        cli_ok(["--repo", hub_repo.address, "backup", "--source", str(src)], env)

        for i in range(4):  # a few MB of new data
            (src / f"media/new{i}.bin").write_bytes(os.urandom(1024 * 1024))
        set_mtimes(src, 1_700_000_200 * 10**9)
        second_fp = fingerprint(src, sqlite=True)
        seen = _requests(hub_repo, during)
        hub_repo.add_fault(kind=during, delay=2.0, count=1000)
        proc = spawn_cli(["--repo", hub_repo.address, "backup", "--source", str(src)], env)
        try:
            seen_or_done = lambda: _requests(hub_repo, during) > seen or proc.poll() is not None  # noqa: E731
            wait_for(seen_or_done, 60, f"a {during}", every=0.02)
            assert proc.poll() is None, f"the backup ended before it could be killed: {proc.communicate()}"
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            hub_repo.server.clear_faults()
        time.sleep(2.5)  # let the server finish what it was doing (a delayed commit still lands)

        repo = _hub_repo_api(hub_repo)
        snaps = repo.snapshots()
        landed = len(snaps) == 2
        assert len(snaps) == (2 if during == "commit" else 1), [s.id[:8] for s in snaps]
        assert_check_ok(repo)
        for snap, expected in zip(snaps, (first_fp, second_fp), strict=False):
            dest = tmp_path / "restored" / snap.id[:8]
            run_restore(repo, snap.id, {"openclaw": dest}, forked=False)
            assert fingerprint(dest, sqlite=True) == expected, fp_diff(expected, fingerprint(dest, sqlite=True))

        # the next backup (same cache, as after a container restart with a persistent disk) works
        res = json_out(cli_ok(["--repo", hub_repo.address, "backup", "--source", str(src), "--json"], env))
        assert res["unchanged"] == landed
        touch_change(src / "openclaw.json", b'{"after": "the kill"}')
        third_fp = fingerprint(src, sqlite=True)
        cli_ok(["--repo", hub_repo.address, "backup", "--source", str(src)], env)
        repo = _hub_repo_api(hub_repo)
        assert len(repo.snapshots()) == len(snaps) + (1 if landed else 2)
        dest = tmp_path / "restored" / "latest"
        run_restore(repo, "latest", {"openclaw": dest}, forked=False)
        assert fingerprint(dest, sqlite=True) == third_fp, fp_diff(third_fp, fingerprint(dest, sqlite=True))
        assert_check_ok(repo)
    finally:
        con.close()


# ---------------------------------------------------------------------------- 5. the legacy script's files


def _hub_file(hub_repo: HubRepo, path: str) -> bytes:
    import urllib.request

    url = f"{hub_repo.server.url}/datasets/{hub_repo.repo_id}/resolve/main/{path}"
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=10) as r:
        return bytes(r.read())


def test_hub_legacy_files_survive_backups_forget_prune_and_squash(hub_repo: HubRepo, tmp_path: Path) -> None:
    from huggingface_hub import CommitOperationAdd

    # the legacy script's repository: archives, their .meta.json, latest-backup.json at the root
    legacy_src = tmp_path / "legacy-src"
    write_tree(legacy_src, {"openclaw.json": '{"legacy": true}', "agents/main/notes.md": "old notes\n"})
    legacy = LegacyRepo(tmp_path / "legacy-repo", tmp_path / "legacy-scratch")
    legacy.backup("20240101-000000", legacy_src)
    legacy.backup(
        "20240102-000000", legacy_src, backup_type="incremental", parent="openclaw-backup-20240101-000000.tar.gz"
    )
    files = {p.relative_to(legacy.root).as_posix(): p.read_bytes() for p in legacy.root.rglob("*") if p.is_file()}
    assert "latest-backup.json" in files and any(n.endswith(".tar.gz.meta.json") for n in files)
    api = hub_repo.api()
    api.create_repo(hub_repo.repo_id, repo_type="dataset", private=True)
    api.create_commit(
        hub_repo.repo_id,
        repo_type="dataset",
        operations=[CommitOperationAdd(path_in_repo=n, path_or_fileobj=data) for n, data in files.items()],
        commit_message="legacy backup",
    )

    src = tmp_path / "src"
    _small_tree(src)
    env = _hub_cli_env(hub_repo.server, tmp_path / "home")
    cli_ok(["--repo", hub_repo.address, "init"], env)
    for i in range(3):
        touch_change(src / "dir1/f1.txt", os.urandom(64 * 1024) + str(i).encode())
        cli_ok(["--repo", hub_repo.address, "backup", "--source", str(src)], env)
    cli_ok(["--repo", hub_repo.address, "forget", "--keep-last", "1"], env)
    pruned = json_out(cli_ok(["--repo", hub_repo.address, "prune", "--squash", "--max-unused", "0%", "--json"], env))
    assert pruned["squashed"] and pruned["packs_deleted"] + pruned["packs_repacked"] >= 2, pruned

    st = hub_repo.stats()
    assert st["squashes"] >= 1 and st["history"] == 2, st  # squashed, then the head re-published
    ours = [f for f in st["files"] if f.startswith("openclaw-backup/")]
    theirs = sorted(f for f in st["files"] if not f.startswith("openclaw-backup/") and f != ".gitattributes")
    assert theirs == sorted(files), "legacy files appeared or vanished"
    for name, data in files.items():
        assert _hub_file(hub_repo, name) == data, f"{name} changed"
    assert any(f.startswith("openclaw-backup/snapshots/") for f in ours)
    snaps = _hub_repo_api(hub_repo).snapshots()
    assert len(snaps) == 1
    dest = tmp_path / "restored"
    run_restore(_hub_repo_api(hub_repo), "latest", {"src": dest}, forked=False)
    assert fingerprint(dest, sqlite=True) == fingerprint(src, sqlite=True)
    assert_check_ok(_hub_repo_api(hub_repo))
