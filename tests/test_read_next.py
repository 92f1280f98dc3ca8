"""What the open reads ahead for the block after it (``Repository.open(snapshot=..., index=...)``,
then ``repo.reading_ahead(...)``): the listings of ``snapshots/`` and ``index/`` in its first
round, what they list read while the key file is read and the password derived, the damage
listing once the head has arrived.

Only what the head names is taken; a listed file nothing names is dropped unseen, one deleted
before its read fails unseen (its caller reads it again, as ever), a forget or prune meanwhile is
handled as without reading ahead, a damage listing made under an older head answers nothing, and
a listing of more files than the bound reads none ahead. Real repositories in a store in memory
that says it is far away (so reads are made ahead); the rounds on real servers are counted in
``test_read_ahead.py``.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from openclaw_backup.backends import Backend, BackendOptions, Capabilities, MemoryBackend, open_backend
from openclaw_backup.backends.wrappers import WrappedBackend
from openclaw_backup.commands import _common
from openclaw_backup.errors import WrongPasswordError
from openclaw_backup.prune import prune
from openclaw_backup.repo_access import READ_NEXT_AT_MOST
from openclaw_backup.reporter import Reporter
from openclaw_backup.repository import Repository
from openclaw_backup.restorer import RestoreOptions, restore
from openclaw_backup.snapshot import Snapshot
from tests.support.cli import main_cli
from tests.support.faults import Counting, Interleave, Slow
from tests.support.hub import HubRepo
from tests.support.repos import HOST, PASSWORD, new_repo, open_repo, run_backup
from tests.support.trees import fingerprint, make_tree


class _FarAway(MemoryBackend):
    """A store in memory that says it is far away (so reads are made ahead)."""

    capabilities = Capabilities(atomic_batch=False, max_connections=8, transient_failures=True)


def _history(tmp_path: Path, versions: int = 3) -> tuple[_FarAway, Path, list[str]]:
    """A repository with ``versions`` snapshots of a changing tree (each its own index file)."""
    store = _FarAway()
    repo = new_repo(store, pack_size=64 * 1024)
    src = tmp_path / "src" / "home"
    ids = []
    for version in range(versions):
        make_tree(src, version, files=3, size=20_000)
        sid = run_backup(repo, {"home": src}, forked=False).snapshot_id
        assert sid
        ids.append(sid)
    return store, src, ids


def _open(store: Any, cache: Path | None = None, ref: str = "latest", *, password: str = PASSWORD) -> Repository:
    return Repository.open(store, password=password, cache_dir=cache, snapshot=ref, index=True)


def _restore(repo: Repository, ref: str, dest: Path) -> Snapshot:
    """What ``restore REF --target`` does after opening: the block, then the restore."""
    with repo.reading_ahead(snapshot=ref, index=True):
        snap = repo.find_snapshot(ref)
        repo.load_index()
    restore(repo, snap, RestoreOptions({"home": dest}), reporter=Reporter())
    return snap


def _gets(counted: Counting, prefix: str) -> list[str]:
    return [name for method, name, _ in counted.calls if method == "get" and name.startswith(prefix)]


def _leftover(store: _FarAway, kind: str, n: int = 0) -> str:
    """An unreferenced content-named file (what a crashed backup leaves): listed, named by no head."""
    name = f"{kind}/{n:064x}"
    store.put(name, b"left behind")
    return name


def test_the_open_reads_what_is_listed_and_the_block_takes_what_the_head_names(tmp_path: Path) -> None:
    store, src, ids = _history(tmp_path)
    junk = [_leftover(store, "snapshots"), _leftover(store, "index")]
    counted = Counting(store)
    repo = _open(counted)
    snap = _restore(repo, "latest", tmp_path / "out")
    assert snap.id == ids[-1]
    assert fingerprint(tmp_path / "out") == fingerprint(src)
    assert sorted(_gets(counted, "snapshots/")) == sorted([f"snapshots/{i}" for i in ids] + junk[:1])  # each once
    assert sorted(_gets(counted, "index/")) == sorted([f"index/{i}" for i in repo.index_names()] + junk[1:])
    listed = [name for method, name, _ in counted.calls if method == "list"]
    assert sorted(listed) == ["damaged/", "index/", "keys/", "snapshots/"]  # each once
    assert repo.backend is counted and [s.id for s in repo.snapshots()] == ids  # the leftover is no snapshot
    assert counted.list("snapshots/") and counted.count("list") == 5  # a later listing asks the store


def test_an_open_told_nothing_lists_nothing_more() -> None:
    store = _FarAway()
    new_repo(store)
    counted = Counting(store)
    open_repo(counted)
    assert sorted(name for method, name, _ in counted.calls if method == "list") == ["keys/"]


def test_a_prefix_reads_ahead_only_the_snapshots_it_matches(tmp_path: Path) -> None:
    store, _, ids = _history(tmp_path)
    counted = Counting(store)
    repo = _open(counted, ref=ids[0][:10])
    assert _restore(repo, ids[0][:10], tmp_path / "out").id == ids[0]
    assert _gets(counted, "snapshots/") == [f"snapshots/{ids[0]}"]


def test_a_listing_of_more_files_than_the_bound_reads_none_of_them_ahead(tmp_path: Path) -> None:
    """A repository of thousands of snapshots is not read whole before the head says which are
    wanted: past the bound, the block reads what the head names (the index files, within it, are
    still read ahead)."""
    store, _, ids = _history(tmp_path, versions=2)
    junk = {_leftover(store, "snapshots", n) for n in range(READ_NEXT_AT_MOST)}
    counted = Counting(store)
    repo = _open(counted)
    time.sleep(0.2)  # whatever the open would read ahead is read by now
    assert not set(_gets(counted, "snapshots/")) & junk
    assert _restore(repo, "latest", tmp_path / "out").id == ids[-1]
    assert sorted(_gets(counted, "snapshots/")) == sorted(f"snapshots/{i}" for i in ids)


def test_what_the_local_cache_holds_is_not_read_ahead(tmp_path: Path) -> None:
    store, _, _ = _history(tmp_path, versions=2)
    cache = tmp_path / "cache"
    _restore(_open(store, cache), "latest", tmp_path / "first")
    counted = Counting(store)
    _restore(_open(counted, cache), "latest", tmp_path / "second")
    assert _gets(counted, "snapshots/") == [] and _gets(counted, "index/") == []


def test_a_listed_file_deleted_before_its_read_fails_unseen(tmp_path: Path) -> None:
    """Listed, then deleted (a crashed backup's leftover cleaned up) before the read ahead reaches
    it: the read fails, nothing asks for it, the restore is whole."""
    store, src, ids = _history(tmp_path)
    junk = _leftover(store, "snapshots")
    racing = Counting(Interleave(store, methods="get", names=junk, action=lambda: store.objects.pop(junk)))
    repo = _open(racing)
    assert _restore(repo, "latest", tmp_path / "out").id == ids[-1]
    assert fingerprint(tmp_path / "out") == fingerprint(src)
    assert _gets(racing, junk) == [junk]


def test_a_forget_between_the_listing_and_the_read_is_handled_as_without_reading_ahead(tmp_path: Path) -> None:
    """The open's head names a snapshot that a forget removes before the read ahead reaches it:
    that read fails unseen, the block's read of it fails again, the head is read again and the
    snapshot is skipped as forgotten — and the damage listing made under the older head answers
    nothing (listed again)."""
    store, src, ids = _history(tmp_path)
    gone = ids[0]
    racing = Counting(
        Interleave(
            Slow(store, methods="list", names="snapshots/", delay=0.2),  # the head arrives first
            methods="get",
            names=f"snapshots/{gone}",
            action=lambda: open_repo(store).forget_snapshots([gone]),
        )
    )
    repo = _open(racing)
    assert gone in repo.snapshot_ids()  # the head the open read still names it
    assert _restore(repo, "latest", tmp_path / "out").id == ids[-1]
    assert fingerprint(tmp_path / "out") == fingerprint(src)
    assert gone not in repo.snapshot_ids()
    assert _gets(racing, f"snapshots/{gone}") == [f"snapshots/{gone}"] * 2  # ahead, then by its caller
    assert racing.count("read_head") == 2
    assert [name for method, name, _ in racing.calls if method == "list"].count("damaged/") == 2


def test_a_prune_between_the_listing_and_the_use_is_handled_as_without_reading_ahead(tmp_path: Path) -> None:
    """A forget and a prune (index files replaced, packs repacked) after the open listed
    ``index/`` and before its reads of the listed files: the restore of the snapshot kept is whole."""
    store, src, ids = _history(tmp_path)
    keeper = open_repo(store)
    keeper.forget_snapshots(ids[:-1])
    pruned: list[Any] = []

    def prune_once() -> None:
        if not pruned:
            pruned.append(prune(open_repo(store), reporter=Reporter(), max_unused=0.0))

    slow_listing = Slow(store, methods="list", names="index/", delay=0.2)  # the head arrives first
    racing = Counting(Interleave(slow_listing, methods="get", names="index/*", action=prune_once))
    repo = _open(racing)
    assert _restore(repo, "latest", tmp_path / "out").id == ids[-1]
    assert pruned and pruned[0].packs_repacked + pruned[0].packs_deleted > 0
    assert fingerprint(tmp_path / "out") == fingerprint(src)


def test_a_damage_listing_made_under_an_older_head_answers_nothing(tmp_path: Path) -> None:
    """The open lists the damage records after its read of the head; a record written (and a
    head published) after that, then a read of the head around the block's store: the block lists
    again, and the index vouches for no place the record names."""
    store, _, _ = _history(tmp_path, versions=1)
    writer = open_repo(store)
    writer.load_index()
    (bid, ref), *_ = list(writer.index.items())
    repo = _open(store)
    time.sleep(0.2)  # the open's damage listing is made, and finds nothing
    writer.record_damage([(bid, ref.pack)], found_by="test")
    repo.refresh()  # through the plain store, not the block's
    with repo.reading_ahead(snapshot="latest", index=True):
        repo.find_snapshot("latest")
        repo.load_index()
    assert not repo.is_indexed(bid)


def test_the_open_reads_nothing_on_once_it_fails() -> None:
    """A wrong password: the reads the open began are stopped and waited for, none left running."""
    store = _FarAway()
    new_repo(store)

    class _SlowGets(WrappedBackend):
        def get(self, name: str, *, offset: int = 0, length: int | None = None) -> bytes:
            if not name.startswith("keys/"):
                time.sleep(0.1)
            return self.inner.get(name, offset=offset, length=length)

    with pytest.raises(WrongPasswordError):
        _open(_SlowGets(store), password="not the password")
    assert not [t for t in threading.enumerate() if t.name.startswith("read-ahead")]


@pytest.mark.server
def test_a_forget_on_the_hub_between_the_listing_and_the_read_leaves_the_restore_whole(
    hub_repo: HubRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``restore latest`` through the CLI from the Hub test server, fresh machine: another
    machine forgets the oldest snapshot (its document deleted in the same commit as the head)
    after the open listed ``snapshots/`` and read the head, just before the open's read of that
    document — which finds it gone (404), unseen. The restore takes the latest, whole."""
    src = tmp_path / "src" / "home"
    repo = new_repo(hub_repo.open(create=True), pack_size=64 * 1024)
    ids = []
    for version in range(2):
        make_tree(src, version, files=3, size=20_000)
        ids.append(run_backup(repo, {"home": src}, forked=False).snapshot_id)
    gone = f"snapshots/{ids[0]}"

    def forget_oldest() -> None:
        open_repo(hub_repo.open()).forget_snapshots([ids[0]])

    counted: list[Counting] = []

    def hook(raw: Backend) -> Backend:
        slow = Slow(raw, methods="list", names="snapshots/", delay=0.3)  # the head is read first
        counted.append(Counting(Interleave(slow, methods="get", names=gone, action=forget_oldest)))
        return counted[-1]

    def hooked(address: str, _: BackendOptions) -> Backend:
        return open_backend(address, hub_repo.server.options(retries=5), hook=hook)

    monkeypatch.setattr(_common, "open_backend", hooked)
    for k in ("OPENCLAW_BACKUP_CONFIG", "OPENCLAW_BACKUP_STATE_DIR"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OPENCLAW_BACKUP_REPOSITORY", hub_repo.address)
    monkeypatch.setenv("OPENCLAW_BACKUP_PASSWORD", PASSWORD)
    monkeypatch.setenv("OPENCLAW_BACKUP_CACHE_DIR", str(tmp_path / "fresh-cache"))
    monkeypatch.setenv("OPENCLAW_BACKUP_TEST_WEAK_KDF", "1")
    monkeypatch.setenv("OPENCLAW_BACKUP_HOST", HOST)
    code, out, err = main_cli(["restore", "latest", "--target", str(tmp_path / "out"), "--yes"])
    assert code == 0, err + out
    assert fingerprint(tmp_path / "out" / "home") == fingerprint(src)
    assert ids[0] not in open_repo(hub_repo.open()).snapshot_ids()
    (store,) = counted
    assert [name for method, name, _ in store.calls if method == "get" and name == gone] == [gone] * 2
