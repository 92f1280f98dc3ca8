"""Resumable uploads across processes (issue 14): a backup whose commit the Hub refuses keeps its
packs in the local cache, and the next ``backup`` — a new process — adopts them instead of
uploading that data again; and nothing about that can make the repository name a pack it lacks.

Every backup here is a separate CLI process through the real ``huggingface_hub`` client against
the fake Hub; figures are the server's byte and request counters, never wall time.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

import pytest

from openclaw_backup.backends import open_backend
from openclaw_backup.errors import QuotaError
from openclaw_backup.repo_staging import KEEP_AGE, KEEP_DIR
from openclaw_backup.repository import Repository
from tests.support.cli import cli_env, cli_ok, hub_env, json_out, run_cli
from tests.support.hub import TOKEN, HubRepo
from tests.support.repos import assert_check_ok, local_repo, new_repo, open_repo, run_backup, run_restore
from tests.support.trees import fingerprint, set_mtimes

pytestmark = pytest.mark.timeout(300)
QUOTA_EXIT = 14
NEW_FILE = 300_000


class Agent:
    """One machine backing up ``src`` to a Hub repo with the CLI, one process per command."""

    def __init__(self, hub_repo: HubRepo, tmp_path: Path) -> None:
        self.hub = hub_repo
        self.src = tmp_path / "src"
        self.home = tmp_path / "home"
        self.env = cli_env(self.home, **hub_env(hub_repo.server.url, TOKEN))
        self.rng = random.Random(1414)
        for i in range(2):
            p = self.src / f"d{i}" / f"f{i}.bin"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(self.rng.randbytes(200_000))
        set_mtimes(self.src, 1_700_000_000 * 10**9)
        self.cli("init")

    def cli(self, *args: str) -> Any:
        return cli_ok(["--repo", self.hub.address, *args], self.env)

    def backup(self, *, refused: bool = False) -> dict[str, Any]:
        """One ``backup`` process; ``refused``: the commit quota refuses it (exit 14)."""
        commits = self.hub.stats()["commits"]
        self.hub.server.set_quota(self.hub.key, commits if refused else None)
        try:
            proc = run_cli(["--repo", self.hub.address, "backup", "--source", str(self.src), "--json"], self.env)
        finally:
            self.hub.server.set_quota(self.hub.key, None)
        if refused:
            assert proc.returncode == QUOTA_EXIT, f"exit {proc.returncode}: {proc.stderr}"
            assert self.hub.stats()["commits"] == commits
            return {"stderr": proc.stderr}
        assert proc.returncode in (0, 3), f"exit {proc.returncode}: {proc.stderr}"
        return {**json_out(proc), "stderr": proc.stderr, "exit": proc.returncode}

    def change(self, name: str) -> None:
        (self.src / name).write_bytes(self.rng.randbytes(NEW_FILE))

    def repo(self) -> Repository:
        return open_repo(open_backend(self.hub.address, self.hub.server.options(retries=5)))

    @property
    def kept(self) -> Path:
        repo_id = Repository.peek_id(open_backend(self.hub.address, self.hub.server.options()))
        return self.home / "xdg-cache" / "openclaw-backup" / repo_id / KEEP_DIR

    def kept_packs(self) -> list[Path]:
        return sorted(p for p in self.kept.glob("*") if not p.name.startswith("."))

    def assert_whole(self, tmp_path: Path) -> Repository:
        """The repository checks clean, holds no file the head does not name (no orphaned snapshot,
        no unindexed pack) and its latest snapshot restores equal to the sources."""
        repo = self.repo()
        repo.load_index()
        assert_check_ok(repo)
        snaps = set(repo.snapshot_ids())
        assert {n.rsplit("/", 1)[-1] for n in repo.backend.list("snapshots/")} == snaps
        assert repo.list_packs() == set(repo.indexed_packs())
        (root,) = repo.find_snapshot("latest").roots
        dest = tmp_path / f"restored-{len(list(tmp_path.glob('restored-*')))}"
        run_restore(repo, "latest", {root: dest}, forked=False)
        assert fingerprint(dest) == fingerprint(self.src)
        return repo


def test_refused_backups_in_separate_processes_upload_the_data_once(hub_repo: HubRepo, tmp_path: Path) -> None:
    """The agent keeps writing; the commit quota refuses six backups in a row, each a new process,
    then one lands. Each refused process uploads only what is new since the last one: everything
    uploaded is at most 1.4x what the repository stores in the end (about 3.5x if every process
    uploaded anew), and the snapshot restores equal to the sources."""
    agent = Agent(hub_repo, tmp_path)
    agent.backup()
    before = hub_repo.stats()
    stored_before = agent.repo().load_index().summary().stored_bytes
    for i in range(6):
        agent.change(f"new{i}.bin")
        agent.backup(refused=True)
        assert len(agent.kept_packs()) == i + 1  # what every refused attempt uploaded, kept
    agent.change("new6.bin")
    out = agent.backup()
    assert out["snapshot"] and not out["unchanged"]
    after = hub_repo.stats()
    uploaded = after["bytes_uploaded"] - before["bytes_uploaded"]
    repo = agent.assert_whole(tmp_path)
    stored = repo.load_index().summary().stored_bytes - stored_before
    assert stored >= 7 * NEW_FILE
    requests = sum(after["requests"].values()) - sum(before["requests"].values())
    print(f"\nuploaded {uploaded} for {stored} stored: {uploaded / stored:.2f}x; {requests} requests for 7 processes")
    assert uploaded <= 1.4 * stored, f"uploaded {uploaded} bytes for {stored} stored ({uploaded / stored:.2f}x)"
    assert len(repo.snapshot_ids()) == 2  # the first and the one that landed: no duplicate
    assert agent.kept_packs() == []  # committed: no longer kept


def test_a_backup_failed_by_transient_errors_is_resumed_by_the_next_process(hub_repo: HubRepo, tmp_path: Path) -> None:
    """Every commit answers 500 until the backup gives up (a transient failure after its retries):
    the next process commits what the failed one uploaded without sending its bytes again."""
    agent = Agent(hub_repo, tmp_path)
    agent.backup()
    agent.change("new.bin")
    hub_repo.add_fault("commit", status=500, count=10**6)
    try:
        proc = run_cli(["--repo", hub_repo.address, "backup", "--source", str(agent.src)], agent.env)
    finally:
        hub_repo.server.clear_faults()
    assert proc.returncode not in (0, 3), proc.stderr
    (kept,) = agent.kept_packs()
    size = kept.stat().st_size
    before = hub_repo.stats()["bytes_uploaded"]
    assert agent.backup()["snapshot"]
    assert hub_repo.stats()["bytes_uploaded"] - before < size // 2  # the index, snapshot, trees, head
    repo = agent.assert_whole(tmp_path)
    assert kept.name in repo.indexed_packs()


def test_a_kept_pack_the_hub_dropped_is_uploaded_again(hub_repo: HubRepo, tmp_path: Path) -> None:
    """The Hub forgot the refused backup's uploads (never committed) before the next process
    adopted them: the kept bytes are uploaded again, so the commit still carries every pack."""
    agent = Agent(hub_repo, tmp_path)
    agent.backup()
    agent.change("new.bin")
    agent.backup(refused=True)
    (kept,) = agent.kept_packs()
    size = kept.stat().st_size
    assert hub_repo.server.drop_pending(hub_repo.key) >= 1
    before = hub_repo.stats()["bytes_uploaded"]
    agent.backup()
    assert hub_repo.stats()["bytes_uploaded"] - before >= size  # sent again
    repo = agent.assert_whole(tmp_path)
    assert kept.name in repo.indexed_packs()
    assert agent.kept_packs() == []


def test_a_prune_between_the_refused_backup_and_the_next(hub_repo: HubRepo, tmp_path: Path) -> None:
    """Between the refused backup and the next, every snapshot is forgotten and a prune deletes
    all the data (what the refused backup deduplicated against too): the next process adopts the
    kept pack, stores again what the prune took, and the snapshot restores exactly."""
    agent = Agent(hub_repo, tmp_path)
    first = agent.backup()["snapshot"]
    agent.change("new.bin")
    agent.backup(refused=True)
    (kept,) = agent.kept_packs()
    size = kept.stat().st_size
    agent.cli("forget", first[:12])
    agent.cli("prune")
    assert agent.repo().load_index().summary().stored_bytes == 0  # the prune took everything
    before = hub_repo.stats()["bytes_uploaded"]
    out = agent.backup()
    assert out["snapshot"]
    uploaded = hub_repo.stats()["bytes_uploaded"] - before
    repo = agent.assert_whole(tmp_path)
    assert kept.name in repo.indexed_packs()  # adopted: new.bin's data was not uploaded again
    assert uploaded < size + 2 * 200_000 + 50_000, uploaded


def test_a_tampered_kept_pack_is_never_used(hub_repo: HubRepo, tmp_path: Path) -> None:
    """A kept pack whose bytes changed in the cache is found by the verification on adoption:
    removed with a warning, its data stored anew from the sources, nothing of it used."""
    agent = Agent(hub_repo, tmp_path)
    agent.backup()
    agent.change("new.bin")
    agent.backup(refused=True)
    (kept,) = agent.kept_packs()
    data = bytearray(kept.read_bytes())
    data[len(data) // 3] ^= 0x01
    kept.write_bytes(bytes(data))
    out = agent.backup()
    assert out["snapshot"]
    assert "damaged" in out["stderr"] and kept.name[:8] in out["stderr"], out["stderr"]
    repo = agent.assert_whole(tmp_path)
    assert kept.name not in repo.indexed_packs()
    assert agent.kept_packs() == []


def test_stores_where_uploads_are_visible_at_once_keep_nothing(tmp_path: Path) -> None:
    """A folder (like S3 or a bucket) shows an upload at once, and a failed backup deletes what it
    stored: nothing is kept in the cache for a later process."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.bin").write_bytes(random.Random(5).randbytes(100_000))
    cache = tmp_path / "cache"
    repo = local_repo(tmp_path / "repo", cache_dir=cache)
    assert run_backup(repo, {"src": src}, forked=False).snapshot_id
    assert not list(cache.rglob(KEEP_DIR))


def test_kept_packs_committed_obsolete_or_foreign_are_removed_unused(hub_repo: HubRepo, tmp_path: Path) -> None:
    """Housekeeping of the kept packs, each process a new repository object on the same cache: one
    an index already lists (its commit landed after all) is removed; one older than the age limit
    is removed and its data stored anew; a name that is no pack and a copy killed half-way go too."""
    src = tmp_path / "src"
    src.mkdir()
    rng = random.Random(7)
    (src / "a.bin").write_bytes(rng.randbytes(150_000))
    cache = tmp_path / "cache"

    def process() -> Repository:
        return open_repo(open_backend(hub_repo.address, hub_repo.server.options(retries=5)), cache_dir=cache)

    def refused() -> list[Path]:
        hub_repo.server.set_quota(hub_repo.key, hub_repo.stats()["commits"])
        try:
            with pytest.raises(QuotaError):
                run_backup(process(), {"src": src}, forked=False)
        finally:
            hub_repo.server.set_quota(hub_repo.key, None)
        kept = [p for p in folder.iterdir() if p.name not in before]
        assert kept
        return kept

    repo = new_repo(open_backend(hub_repo.address, hub_repo.server.options(create=True)), cache_dir=cache)
    folder = cache / repo.id / KEEP_DIR
    run_backup(repo, {"src": src}, forked=False)
    assert not list(folder.iterdir())  # committed: not kept
    before: set[str] = set()
    (src / "b.bin").write_bytes(rng.randbytes(150_000))
    landed = {p: p.read_bytes() for p in refused()}
    assert run_backup(process(), {"src": src}, forked=False).snapshot_id
    assert not list(folder.iterdir())
    for p, data in landed.items():
        p.write_bytes(data)  # as if the process died between its commit and the clean-up
    before = {p.name for p in landed}
    (src / "c.bin").write_bytes(rng.randbytes(150_000))
    old = refused()
    for p in old:
        os.utime(p, (time.time() - KEEP_AGE - 60,) * 2)
    (folder / "not-a-pack").write_bytes(b"x")
    (folder / ".tmp-killed").write_bytes(b"half")
    os.utime(folder / ".tmp-killed", (time.time() - 7200,) * 2)
    repo = process()
    assert run_backup(repo, {"src": src}, forked=False).snapshot_id
    assert sorted(p.name for p in folder.iterdir()) == []
    assert not {p.name for p in old} & set(repo.indexed_packs())  # never adopted: c.bin stored anew
    assert before <= set(repo.indexed_packs())
    check = open_repo(open_backend(hub_repo.address, hub_repo.server.options(retries=5)))
    assert_check_ok(check)
    assert check.list_packs() == set(check.indexed_packs())
    dest = tmp_path / "restored"
    run_restore(check, "latest", {"src": dest}, forked=False)
    assert fingerprint(dest) == fingerprint(src)
