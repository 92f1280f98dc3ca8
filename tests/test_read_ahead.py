"""Reads made together ahead of the code that wants them (:func:`.wrappers.reading_ahead`): a cold
restore from a store far away waits for 2 rounds of requests before its first data read (the
config, the key files' listing, the head and the listings of the snapshots and index files; the
key file, the snapshots and index files listed, and the damage listing), and every read made
ahead is checked, and fails, where it is used, as if made there — one that no code used fails
unseen. What the open reads ahead for the block after it: ``test_read_next.py``.

The rounds are counted on a real server with latency (the fake Hub, SeaweedFS behind a latency
proxy) as the longest chain of storage calls each of which started after the one before it ended:
observable, not wall time.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from openclaw_backup.backends import Backend, BackendOptions, Capabilities, LocalBackend, MemoryBackend, open_backend
from openclaw_backup.backends.wrappers import Read, ReadAhead, WrappedBackend, reading_ahead
from openclaw_backup.commands import _common
from openclaw_backup.errors import (
    DamagedRepositoryError,
    IntegrityError,
    RepositoryNotFoundError,
    StoreError,
    WrongPasswordError,
)
from openclaw_backup.repo_config import RepoConfig
from openclaw_backup.repository import Repository
from tests.support.cli import main_cli
from tests.support.faults import Counting, FailAlways, FailOnce
from tests.support.hub import HubRepo
from tests.support.latency_proxy import LatencyProxy
from tests.support.repos import HOST, PASSWORD, WEAK, new_repo, open_repo, run_backup
from tests.support.s3 import S3Server
from tests.support.trees import fingerprint, set_mtimes

T = TypeVar("T")
LATENCY = 0.2  # seconds per request: calls made together overlap, calls made one after the other do not


class _FarAway(MemoryBackend):
    """A store in memory that says it is far away (so reads are made ahead)."""

    capabilities = Capabilities(atomic_batch=False, max_connections=8, transient_failures=True)


class _Timeline(WrappedBackend):
    """Records when every call to the store started and ended (``(start, end, what)``)."""

    def __init__(self, inner: Backend, calls: list[tuple[float, float, str]]) -> None:
        super().__init__(inner)
        self.calls = calls
        self._lock = threading.Lock()

    def _timed(self, what: str, call: Callable[[], T]) -> T:
        start = time.monotonic()
        try:
            return call()
        finally:
            with self._lock:
                self.calls.append((start, time.monotonic(), what))

    def get(self, name: str, *, offset: int = 0, length: int | None = None) -> bytes:
        return self._timed(f"get {name}", lambda: self.inner.get(name, offset=offset, length=length))

    def list(self, prefix: str = "") -> list[str]:
        return self._timed(f"list {prefix}", lambda: self.inner.list(prefix))

    def size(self, name: str) -> int:
        return self._timed(f"size {name}", lambda: self.inner.size(name))

    def read_head(self) -> Any:
        return self._timed("read head", self.inner.read_head)


def rounds(calls: list[tuple[float, float, str]]) -> int:
    """The longest chain of calls each of which started after the one before it had ended."""
    calls = sorted(calls)
    depth: list[int] = []
    for start, _, _ in calls:
        depth.append(1 + max((d for (_, end, _), d in zip(calls, depth, strict=False) if end <= start), default=0))
    return max(depth, default=0)


def _source(root: Path) -> None:
    for i in range(12):
        p = root / f"d{i % 3}" / f"f{i:02}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(bytes([i]) * 30_000 + uuid.uuid4().bytes)
    set_mtimes(root, 1_700_000_000 * 10**9)


def _cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, address: str) -> None:
    for k in ("OPENCLAW_BACKUP_CONFIG", "OPENCLAW_BACKUP_STATE_DIR"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OPENCLAW_BACKUP_REPOSITORY", address)
    monkeypatch.setenv("OPENCLAW_BACKUP_PASSWORD", PASSWORD)
    monkeypatch.setenv("OPENCLAW_BACKUP_CACHE_DIR", str(tmp_path / "fresh-cache"))  # a cold start
    monkeypatch.setenv("OPENCLAW_BACKUP_TEST_WEAK_KDF", "1")
    monkeypatch.setenv("OPENCLAW_BACKUP_HOST", HOST)


@pytest.mark.server
@pytest.mark.parametrize(
    ("store", "command"),
    [("hub", "restore"), ("s3", "restore"), ("hub", "ls"), ("s3", "ls"), ("hub", "snapshots")],
)
def test_a_cold_restore_waits_for_two_rounds_before_its_first_data_read(
    store: str, command: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``restore latest`` (``ls latest``, ``snapshots``) from a fresh machine (the CLI, no local
    cache), 200 ms per request, two snapshots and their index files: the storage calls made before
    the first read of a pack (the trees) form a chain of at most 2 rounds — the config, the key
    files' listing, the head and the listings of the snapshots and index files; the key file, the
    snapshots and index files listed and the damage listing — where each read waiting for the one
    before made 7. ``snapshots`` makes those 2 rounds and no more."""
    src = tmp_path / "src"
    _source(src)
    proxy: LatencyProxy | None = None
    if store == "hub":
        hub_repo: HubRepo = request.getfixturevalue("hub_repo")
        address, options = hub_repo.address, hub_repo.server.options(retries=5)
        repo = new_repo(hub_repo.open(create=True), pack_size=128 * 1024)
    else:
        s3_server: S3Server = request.getfixturevalue("s3_server")
        address = f"s3://{request.getfixturevalue('s3_shared_bucket')}/{uuid.uuid4().hex[:12]}/repo"
        repo = new_repo(open_backend(address, s3_server.options()), pack_size=128 * 1024)
        host, port = s3_server.endpoint.rsplit("/", 1)[-1].split(":")
        proxy = LatencyProxy(host, int(port), LATENCY)
        options = s3_server.options(s3_endpoint=f"http://127.0.0.1:{proxy.start()}", retries=5)
    run_backup(repo, {"src": src}, forked=False)
    (src / "d0" / "new.txt").write_text("second backup\n")
    run_backup(repo, {"src": src}, forked=False)

    calls: list[tuple[float, float, str]] = []

    def timed_store(address: str, _: BackendOptions) -> Backend:
        return open_backend(address, options, hook=lambda raw: _Timeline(raw, calls))

    monkeypatch.setattr(_common, "open_backend", timed_store)
    _cli_env(monkeypatch, tmp_path, address)
    if store == "hub":
        hub_repo.server.configure(latency_ms=int(LATENCY * 1000))
    argv = {"restore": ["restore", "latest", "--target", str(tmp_path / "out"), "--yes"],
            "ls": ["ls", "latest"], "snapshots": ["snapshots"]}[command]  # fmt: skip
    try:
        code, out, err = main_cli(argv)
    finally:
        if proxy is not None:
            proxy.stop()
        else:
            hub_repo.server.configure(latency_ms=0)
    assert code == 0, err + out
    if command == "restore":
        assert fingerprint(tmp_path / "out" / "src") == fingerprint(src)
    elif command == "ls":
        assert "src/d0/new.txt" in out
    else:
        assert "2 snapshot(s)" in out
    data = [start for start, _, what in calls if what.startswith("get data/")]
    assert bool(data) == (command != "snapshots")
    opening = [c for c in calls if not data or c[0] < min(data)]
    assert {"list snapshots/", "read head", "get config"} <= {what for _, _, what in opening}
    assert rounds(opening) <= 2, sorted(opening)
    assert sum(what.startswith("get snapshots/") for _, _, what in calls) == 2  # each read once


# ---------------------------------------------------------------------------- what a read made ahead answers


def test_each_read_made_ahead_answers_its_call_once_and_a_failed_one_is_made_again() -> None:
    store = _FarAway()
    store.put("config", b"c")
    store.put("keys/a", b"a")
    counted = Counting(FailOnce(store, methods="get", names="keys/a"))
    with reading_ahead(counted, [Read("get", "config"), Read("get", "keys/a"), Read("list", "keys/")]) as ahead:
        assert isinstance(ahead, ReadAhead)
        assert ahead.get("config") == b"c" and ahead.list("keys/") == ["keys/a"]
        assert ahead.get("keys/a") == b"a"  # its read ahead failed: made again, now
        assert ahead.get("config") == b"c"  # a second call reads the store
    assert [c[:2] for c in counted.calls].count(("get", "config")) == 2
    assert [c[:2] for c in counted.calls].count(("get", "keys/a")) == 2


def test_a_read_made_ahead_that_fails_fails_where_it_is_used_or_not_at_all() -> None:
    store = _FarAway()
    store.put("config", b"c")
    failing = FailAlways(store, methods="get", names="keys/*")
    with reading_ahead(failing, [Read("get", "config"), Read("get", "keys/x")]) as ahead:
        assert ahead.get("config") == b"c"  # keys/x failed ahead: unseen, nothing asked for it
    with reading_ahead(failing, [Read("get", "config"), Read("get", "keys/x")]) as ahead, pytest.raises(StoreError):
        ahead.get("keys/x")  # as without reading ahead


def test_a_listing_made_ahead_answers_no_call_after_a_read_of_the_head() -> None:
    """What a listing made before the head was read found is not news after it."""
    store = _FarAway()
    counted = Counting(store)
    with reading_ahead(counted, [Read("list", "damaged/"), Read("get", "config")]) as ahead:
        time.sleep(0.05)  # both made
        store.put("damaged/" + "ab" * 32, b"record")  # a damage record, then a new head
        ahead.read_head()
        assert ahead.list("damaged/") == ["damaged/" + "ab" * 32]
    assert counted.count("list") == 2


def test_a_store_on_this_machine_reads_nothing_ahead(tmp_path: Path) -> None:
    """There a thread costs more than a read: the block gets the store itself."""
    for store in (LocalBackend(tmp_path / "r"), MemoryBackend()):
        with reading_ahead(store, [Read("get", "config"), Read("head")]) as ahead:
            assert ahead is store
    with reading_ahead(_FarAway(), [Read("head")]) as ahead:
        assert not isinstance(ahead, ReadAhead)  # one read: nothing to make together


# ---------------------------------------------------------------------------- opening, as before


def _far_repo() -> tuple[_FarAway, Repository]:
    store = _FarAway()
    return store, new_repo(store)


def _copy(store: _FarAway, *, head: bool = True) -> _FarAway:
    """Another store holding the same objects (and, with ``head``, the same head)."""
    out = _FarAway()
    out.objects = dict(store.objects)
    out.head = store.head if head else None
    return out


def test_opening_from_far_away_reads_each_object_once() -> None:
    store, repo = _far_repo()
    repo.add_key("another password", kdf=WEAK)
    counted = Counting(store)
    opened = open_repo(counted)
    assert opened.backend is counted and opened.id == repo.id
    made = [c[:2] for c in counted.calls]
    assert len(made) == len(set(made))  # nothing read twice
    assert {("get", "config"), ("list", "keys/"), ("read_head", "head")} < set(made)
    keys = {name for op, name in made if name.startswith("keys/") and op == "get"}
    assert keys and keys <= set(store.list("keys/"))  # those not yet read when one opened: not read


def test_a_head_read_ahead_is_as_old_as_its_read_not_its_use() -> None:
    """The open reads the head ahead, before the key files and the password's derivation, and
    uses it after them: a head "fresh enough" for a later ``refresh(max_age=...)`` is dated from
    when it was asked for (a stale head only costs a conflict, but it must not pass for fresh)."""
    store, _ = _far_repo()

    class _SlowKeys(WrappedBackend):
        def get(self, name: str, *, offset: int = 0, length: int | None = None) -> bytes:
            if name.startswith("keys/"):
                time.sleep(0.3)  # the key file arrives (or the derivation ends) well after the head
            return self.inner.get(name, offset=offset, length=length)

    counted = Counting(_SlowKeys(store))
    repo = open_repo(counted)
    assert counted.count("read_head") == 1
    repo.refresh(max_age=0.2)  # the head was read >= 0.3 s ago, though used just now: read again
    assert counted.count("read_head") == 2


def test_a_key_file_that_cannot_be_read_fails_only_when_it_is_needed() -> None:
    """Every key file is read ahead; one that fails is reported only when the keys before it did
    not open with the password, as when they were read one by one."""
    store, repo = _far_repo()
    repo.add_key("another password", kdf=WEAK)
    first, second = store.list("keys/")
    opens_first = PASSWORD if repo.current_key_names(PASSWORD) == [first] else "another password"
    other = "another password" if opens_first == PASSWORD else PASSWORD
    failing = FailAlways(store, methods="get", names=second)
    assert open_repo(failing, password=opens_first).id == repo.id
    with pytest.raises(StoreError, match="injected"):
        open_repo(failing, password=other)
    with pytest.raises(WrongPasswordError):
        open_repo(store, password="not a password of this repository")


def test_opening_from_far_away_fails_as_before() -> None:
    with pytest.raises(RepositoryNotFoundError):
        open_repo(_FarAway())
    store, _ = _far_repo()
    lost_config = _copy(store, head=True)
    del lost_config.objects["config"]
    with pytest.raises(DamagedRepositoryError, match="config file is lost"):
        open_repo(lost_config)
    with pytest.raises(StoreError, match="injected"):
        open_repo(FailAlways(store, methods="get", names="config"))
    tampered = _copy(store)
    config = RepoConfig.from_bytes(store.get("config"))
    tampered.objects["config"] = dataclasses.replace(config, pack_size=config.pack_size + 1).to_bytes()
    with pytest.raises(IntegrityError, match="does not match what its head vouches for"):
        open_repo(tampered)


def test_a_lost_head_from_far_away_is_an_error_unless_repairing() -> None:
    store, _ = _far_repo()
    headless = _copy(store, head=False)
    with pytest.raises(DamagedRepositoryError, match="head is lost"):
        open_repo(headless)
    opened = Repository.open(headless, password=PASSWORD, need_head=False)
    assert opened.snapshot_ids() == []


def test_a_restore_from_far_away_reads_the_damage_records_ahead_and_honours_them(tmp_path: Path) -> None:
    """Two damage records, a fresh machine: the listing is made with the snapshots and the index
    files, the records together after it, and the index vouches for no place they name."""
    src = tmp_path / "src"
    _source(src)
    store, repo = _far_repo()
    run_backup(repo, {"src": src}, forked=False)
    repo.load_index()
    (first, ref1), (second, ref2) = list(repo.index.items())[:2]
    repo.record_damage([(first, ref1.pack)], found_by="test")
    repo.record_damage([(second, ref2.pack)], found_by="test")
    counted = Counting(store)
    fresh = open_repo(counted, cache_dir=tmp_path / "cache")
    with fresh.reading_ahead(snapshot="latest", index=True):
        assert fresh.find_snapshot("latest").id == repo.find_snapshot("latest").id
        fresh.load_index()
    assert not fresh.is_indexed(first) and not fresh.is_indexed(second)
    assert counted.count("list") == 2  # keys/ and damaged/, each once
    made = [name for method, name, _ in counted.calls if method == "get"]
    assert len(made) == len(set(made))  # every object read once
    assert sum(name.startswith("damaged/") for name in made) == 2


def test_a_warm_open_from_far_away_uses_the_remembered_config_while_the_head_vouches_for_it(tmp_path: Path) -> None:
    store, _ = _far_repo()
    cache = tmp_path / "cache"
    config = open_repo(store, cache_dir=cache).config  # remembered
    counted = Counting(store)
    open_repo(counted, cache_dir=cache)
    assert ("get", "config") not in [c[:2] for c in counted.calls]
    (memo,) = (cache / "locations").iterdir()
    memo.write_bytes(dataclasses.replace(config, pack_size=config.pack_size + 1).to_bytes())  # not vouched for
    counted = Counting(store)
    assert open_repo(counted, cache_dir=cache).config == config
    assert [c[:2] for c in counted.calls].count(("get", "config")) == 1
    assert memo.read_bytes() == store.get("config")
