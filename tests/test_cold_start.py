"""A cold start from a remote store with latency (issue 14): reads in flight together, a walk down the
folders without a round trip per level, read plans that stay within their budget of unwanted bytes.

Through the real clients against the real servers (the fake Hub, SeaweedFS behind
:class:`tests.support.latency_proxy.LatencyProxy`); asserted on the servers' counters, never on
wall time (the times are bench/hub_cold_start.py's).
"""

from __future__ import annotations

import os
import random
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from openclaw_backup import forkwork
from openclaw_backup.backends import Backend, Capabilities, MemoryBackend, open_backend
from openclaw_backup.backends.wrappers import LimitedBackend, WrappedBackend
from openclaw_backup.codec import BLOB_DATA, BlobRef
from openclaw_backup.errors import IntegrityError
from openclaw_backup.pack import MAX_RANGE, MERGE_FLOOR, MERGE_WASTE, ReadBatch, pack_name, plan_reads
from openclaw_backup.repository import Repository, walk
from tests.support.hub import HubRepo
from tests.support.latency_proxy import LatencyProxy
from tests.support.processes import in_forked_child
from tests.support.repos import new_repo, open_repo, run_backup, run_restore
from tests.support.s3 import S3Server
from tests.support.trees import fingerprint, set_mtimes

pytestmark = pytest.mark.timeout(120)
needs_fork = pytest.mark.skipif(not forkwork.available(), reason="the forked worker is Linux-only")


def _files(root: Path, n: int, size: int, seed: int) -> None:
    rng = random.Random(seed)
    for i in range(n):
        p = root / f"d{i % 4}" / f"f{i:02}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rng.randbytes(size))
    set_mtimes(root, 1_700_000_000 * 10**9)


def _deep(root: Path, depth: int) -> None:
    """A folder ``depth`` levels deep with a small file at every level."""
    d = root
    for level in range(depth):
        d = d / f"level{level}"
        d.mkdir(parents=True)
        (d / "note.txt").write_text(f"level {level}\n")
    set_mtimes(root, 1_700_000_000 * 10**9)


def _hub(hub_repo: HubRepo, **options: object) -> Repository:
    return open_repo(open_backend(hub_repo.address, hub_repo.server.options(retries=5, **options)))


# ---------------------------------------------------------------------------- reads in flight


def test_hub_cold_restore_has_many_ranged_reads_in_flight(hub_repo: HubRepo, tmp_path: Path) -> None:
    """With 300 ms per request, the fake Hub sees at least 12 requests at once during a restore from
    a fresh machine (at most 8 before: the connection limit; 25-31 on an idle machine, so a loaded
    one still clears the bar), and the restore equals the source."""
    src = tmp_path / "src"
    _files(src, 48, 120_000, seed=1)
    repo = new_repo(hub_repo.open(create=True), pack_size=128 * 1024)
    run_backup(repo, {"src": src}, forked=False)
    dest = tmp_path / "restored"
    stats = _restore_far_away(hub_repo, _hub(hub_repo), dest, forked=False)
    assert fingerprint(dest) == fingerprint(src)
    assert stats["max_in_flight"] >= 12, stats


def _restore_far_away(hub_repo: HubRepo, repo: Any, dest: Path, *, forked: bool) -> dict[str, Any]:
    """Restore ``latest`` of ``repo`` into ``dest`` with 300 ms per request; the fake Hub's
    counters for the restore alone."""
    hub_repo.server.reset()
    hub_repo.server.configure(latency_ms=300)
    try:
        run_restore(repo, "latest", {"src": dest}, forked=forked)
        return hub_repo.server.stats()
    finally:
        hub_repo.server.configure(latency_ms=0)


@pytest.mark.parametrize("forked", [True, False] if forkwork.available() else [False])
def test_a_cold_restore_keeps_at_most_the_stores_reads_in_flight(
    forked: bool, hub_repo: HubRepo, tmp_path: Path
) -> None:
    """With 300 ms per request and ~100 ranged reads, the fake Hub never sees more than the store's
    connection limit at once (32), counting both processes when a worker is forked (each has half
    the reads in flight; a worker with a limit of its own would double them), and the restore
    equals the source."""
    src = tmp_path / "src"
    _files(src, 96, 120_000, seed=9)
    repo = new_repo(hub_repo.open(create=True), pack_size=128 * 1024)
    run_backup(repo, {"src": src}, forked=False)
    fresh = _hub(hub_repo)
    dest = tmp_path / "restored"
    stats = _restore_far_away(hub_repo, fresh, dest, forked=forked)
    assert fingerprint(dest) == fingerprint(src)
    assert fresh.read_parallelism == 32
    assert 12 <= stats["max_in_flight"] <= 32, stats


def test_s3_cold_restore_has_many_ranged_reads_in_flight(
    s3_server: S3Server, s3_shared_bucket: str, tmp_path: Path
) -> None:
    """The same through SeaweedFS behind a proxy that delays every request by 300 ms."""
    src = tmp_path / "src"
    _files(src, 48, 120_000, seed=2)
    address = f"s3://{s3_shared_bucket}/{uuid.uuid4().hex[:12]}/repo"
    repo = new_repo(open_backend(address, s3_server.options()), pack_size=128 * 1024)
    run_backup(repo, {"src": src}, forked=False)
    host, port = s3_server.endpoint.rsplit("/", 1)[-1].split(":")
    proxy = LatencyProxy(host, int(port), 0.300)
    endpoint = f"http://127.0.0.1:{proxy.start()}"
    try:
        fresh = open_repo(open_backend(address, s3_server.options(s3_endpoint=endpoint, retries=5)))
        dest = tmp_path / "restored"
        run_restore(fresh, "latest", {"src": dest}, forked=False)
    finally:
        proxy.stop()
    assert fingerprint(dest) == fingerprint(src)
    assert proxy.max_busy >= 12, proxy.stats()


# ---------------------------------------------------------------------------- trees at once


def test_hub_cold_restore_reads_the_trees_at_once(
    hub_repo: HubRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snapshot 14 folders deep, stored over three backups: a cold restore reads every tree of
    the repository in one burst, not one round of requests per level — at least 12 requests fewer
    than the walk level by level, which costs at least one per level."""
    src = tmp_path / "src"
    _deep(src, 14)
    repo = new_repo(hub_repo.open(create=True), pack_size=128 * 1024)
    for i in range(3):
        (src / "level0" / "level1" / f"new{i}.txt").write_text(f"backup {i}\n")
        run_backup(repo, {"src": src}, forked=False)

    def requests_of_a_cold_restore(dest: Path) -> int:
        fresh = _hub(hub_repo)
        before = hub_repo.server.stats()["requests_total"]
        run_restore(fresh, "latest", {"src": dest}, forked=False)
        assert fingerprint(dest) == fingerprint(src)
        return int(hub_repo.server.stats()["requests_total"]) - before

    at_once = requests_of_a_cold_restore(tmp_path / "at-once")
    monkeypatch.setattr(Repository, "prefetch_trees", lambda self, **kw: 0)
    by_level = requests_of_a_cold_restore(tmp_path / "by-level")
    assert at_once <= by_level - 12, (at_once, by_level)


# ---------------------------------------------------------------------------- read plans


def _wants(offsets: list[int], length: int, pack: str = "ab" * 32) -> list[tuple[bytes, BlobRef, int]]:
    return [(i.to_bytes(32, "big"), BlobRef(pack, b"d", off, length, length), i) for i, off in enumerate(offsets)]


def test_read_plan_reads_a_little_scattered_metadata_in_one_request() -> None:
    """64 trees of 200 bytes, 2 KB apart (others' trees between them): 20 % of what is wanted would
    allow no gap at all, one request per tree; the floor of the budget reads them in one."""
    wants = _wants([i * 2200 for i in range(64)], 200)
    (batch,) = plan_reads(wants, waste=MERGE_WASTE)
    assert [w[2] for w in batch.wants] == list(range(64))
    assert batch.end - batch.start - 64 * 200 <= MERGE_FLOOR


def test_read_plan_spends_at_most_its_budget_of_unwanted_bytes() -> None:
    """Wanted blobs among dead ones: what the plan reads is at most the wanted bytes plus the
    larger of 20 % of them and the floor, whatever the spacing; each read at most ``max_range``."""
    rng = random.Random(3)
    for _ in range(50):
        n, length = rng.randint(1, 300), rng.choice([200, 4_000, 60_000])
        offsets, at = [], 0
        for _ in range(n):
            at += rng.choice([0, 1, 50, 3_000, 40_000, 300_000, 2_000_000])
            offsets.append(at)
            at += length
        max_range = rng.choice([MAX_RANGE, 1 << 20])
        batches = plan_reads(_wants(offsets, length), waste=MERGE_WASTE, max_range=max_range)
        wanted = n * length
        read = sum(b.end - b.start for b in batches)
        assert read - wanted <= max(MERGE_WASTE * wanted, MERGE_FLOOR)
        assert sorted(w[2] for b in batches for w in b.wants) == list(range(n))
        assert all(b.end - b.start <= max(max_range, length) for b in batches)


@pytest.mark.parametrize("forked", [False, pytest.param(True, marks=needs_fork)])
def test_s3_partial_cold_restore_names_only_the_file_with_a_damaged_blob(
    s3_server: S3Server, s3_shared_bucket: str, tmp_path: Path, forked: bool
) -> None:
    """A flipped byte in one file's blob, read with many reads in flight (the blobs of a read decoded
    apart from the read): a ``partial`` restore restores every other file exactly and names only
    that one; without ``partial`` the restore fails."""
    src = tmp_path / "src"
    _files(src, 12, 60_000, seed=4)
    prefix = f"{uuid.uuid4().hex[:12]}/repo"
    address = f"s3://{s3_shared_bucket}/{prefix}"
    repo = new_repo(open_backend(address, s3_server.options()), pack_size=128 * 1024)
    run_backup(repo, {"src": src}, forked=False)
    repo.load_index()
    nodes = dict(walk(repo, repo.find_snapshot("latest").tree))
    ref = repo.blob_ref(bytes.fromhex(nodes["src/d1/f05.bin"].content[0]), BLOB_DATA)
    client = s3_server.client()
    key = f"{prefix}/{pack_name(ref.pack)}"
    data = bytearray(client.get_object(Bucket=s3_shared_bucket, Key=key)["Body"].read())
    data[ref.offset + ref.length // 2] ^= 1
    client.put_object(Bucket=s3_shared_bucket, Key=key, Body=bytes(data))

    fresh = open_repo(open_backend(address, s3_server.options(retries=5)))
    assert fresh.read_parallelism > 1
    with pytest.raises(IntegrityError):
        run_restore(fresh, "latest", {"src": tmp_path / "whole"}, forked=forked)
    dest = tmp_path / "partial"
    result = run_restore(fresh, "latest", {"src": dest}, forked=forked, partial=True)
    assert list(result.failed) == [str(dest / "d1/f05.bin")]
    expected = {k: v for k, v in fingerprint(src).items() if k != "d1/f05.bin"}
    assert fingerprint(dest) == expected


# ---------------------------------------------------------------------------- a forked worker reading too


class _Callers(WrappedBackend):
    """Appends the id of the process of every read to a file (a worker's own records stay in it);
    ``delay``: seconds each read takes first, as far away (a store with no latency of its own)."""

    def __init__(self, inner: Backend, log: Path, *, delay: float = 0.0) -> None:
        super().__init__(inner)
        self.log = log
        self.delay = delay

    def get(self, name: str, *, offset: int = 0, length: int | None = None) -> bytes:
        with open(self.log, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(self.delay)
        return super().get(name, offset=offset, length=length)


def _readers(log: Path) -> set[int]:
    return {int(line) for line in log.read_text().split()}


def _parent_waits_for_the_worker(monkeypatch: pytest.MonkeyPatch, started: Callable[[], bool]) -> None:
    """Once the worker is forked, the parent's first read (:meth:`.Repository.read_views`, the
    restorer's) waits until ``started()`` says the worker has begun (at most :data:`_HANDSHAKE`
    seconds): on a loaded machine the worker can start so late that the parent has taken every
    batch, and the test would then prove nothing about the worker."""
    parent, real, forked, waited = os.getpid(), Repository.read_views, [], []
    real_worker = forkwork.Worker.__init__

    def worker(self: forkwork.Worker, *args: Any) -> None:
        real_worker(self, *args)
        forked.append(True)

    def read_views(self: Repository, batch: ReadBatch[Any]) -> Any:
        if os.getpid() == parent and forked and not waited:
            deadline = time.monotonic() + _HANDSHAKE
            while not started() and time.monotonic() < deadline:
                time.sleep(0.005)
            waited.append(True)
        return real(self, batch)

    monkeypatch.setattr(Repository, "read_views", read_views)
    monkeypatch.setattr(forkwork.Worker, "__init__", worker)


_HANDSHAKE = 60.0


def _s3_address(bucket: str) -> str:
    return f"s3://{bucket}/{uuid.uuid4().hex[:12]}/repo"


@needs_fork
@pytest.mark.server
@pytest.mark.parametrize("store", ["hub", "s3", "bucket"])
def test_a_cold_restore_from_far_away_with_a_worker_is_exact(
    store: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forced to fork, a restore from the fake Hub, a fake Hub bucket or from SeaweedFS (behind a
    latency proxy) is read by two processes, the worker through a handle of its own (:meth:`.Backend.reopen`; a shared
    connection would mix up answers), and restores the source exactly."""
    src = tmp_path / "src"
    _files(src, 48, 120_000, seed=5)
    log = tmp_path / "readers"
    log.touch()
    proxy: LatencyProxy | None = None
    if store == "hub":
        hub_repo: HubRepo = request.getfixturevalue("hub_repo")
        repo = new_repo(hub_repo.open(create=True), pack_size=128 * 1024)
        run_backup(repo, {"src": src}, forked=False)
        hub_repo.server.configure(latency_ms=20)
        fresh = open_repo(open_backend(hub_repo.address, hub_repo.server.options(retries=5),
                                       hook=lambda raw: _Callers(raw, log)))  # fmt: skip
    elif store == "bucket":  # the fake bucket API of tests/support/hub.py (no server)
        callers = _Callers(request.getfixturevalue("hub_bucket_backend"), log)
        repo = new_repo(callers, pack_size=128 * 1024)
        run_backup(repo, {"src": src}, forked=False)
        callers.delay = 0.020  # as the others: with instant reads the parent could take every batch first
        fresh = open_repo(repo.backend)
    else:
        s3_server: S3Server = request.getfixturevalue("s3_server")
        address = _s3_address(request.getfixturevalue("s3_shared_bucket"))
        repo = new_repo(open_backend(address, s3_server.options()), pack_size=128 * 1024)
        run_backup(repo, {"src": src}, forked=False)
        host, port = s3_server.endpoint.rsplit("/", 1)[-1].split(":")
        proxy = LatencyProxy(host, int(port), 0.020)
        endpoint = f"http://127.0.0.1:{proxy.start()}"
        options = s3_server.options(s3_endpoint=endpoint, retries=5)
        fresh = open_repo(open_backend(address, options, hook=lambda raw: _Callers(raw, log)))
    log.write_text("")  # from here on, the restore's reads only
    _parent_waits_for_the_worker(monkeypatch, lambda: len(_readers(log) - {os.getpid()}) > 0)
    try:
        assert not fresh.nearby
        dest = tmp_path / "restored"
        run_restore(fresh, "latest", {"src": dest}, forked=True)
    finally:
        if proxy is not None:
            proxy.stop()
        elif store == "hub":
            hub_repo.server.configure(latency_ms=0)
    assert fingerprint(dest) == fingerprint(src)
    assert len(_readers(log)) == 2 and os.getpid() in _readers(log)


@needs_fork
def test_a_cold_restore_whose_worker_is_killed_fails_and_leaves_the_target_alone(
    hub_repo: HubRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    _files(src, 24, 120_000, seed=6)
    repo = new_repo(hub_repo.open(create=True), pack_size=128 * 1024)
    run_backup(repo, {"src": src}, forked=False)
    out = tmp_path / "target" / "out"
    (out / "mine.txt").parent.mkdir(parents=True)
    (out / "mine.txt").write_bytes(b"already here")
    before = fingerprint(out)
    parent, dying = os.getpid(), tmp_path / "worker-dying"
    _parent_waits_for_the_worker(monkeypatch, dying.exists)
    real = Repository.read_views  # how the restorer reads (the parent's waits for the worker)

    def read_views(self: Repository, batch: ReadBatch[Any]) -> Any:
        if os.getpid() != parent:
            dying.touch()
            os.kill(os.getpid(), signal.SIGKILL)  # the worker, at its first read
        return real(self, batch)

    monkeypatch.setattr(Repository, "read_views", read_views)
    fresh = _hub(hub_repo)
    hub_repo.server.configure(latency_ms=20)  # reads that take a while: the parent cannot take them all first
    try:
        with pytest.raises(forkwork.WorkerDied, match="signal 9"):
            run_restore(fresh, "latest", {"src": out}, forked=True)
    finally:
        hub_repo.server.configure(latency_ms=0)
    assert fingerprint(out) == before
    assert not [p for p in out.parent.iterdir() if p.name != "out"]  # no staging tree left


def test_a_store_that_cannot_be_reopened_is_read_here_only(tmp_path: Path) -> None:
    """Forced to fork from a store far away that has no :meth:`.Backend.reopen`: the worker does
    nothing, the threads here restore everything."""
    src = tmp_path / "src"
    _files(src, 24, 60_000, seed=7)
    log = tmp_path / "readers"
    log.touch()
    repo = new_repo(_Callers(_FarAway(), log), pack_size=128 * 1024)
    run_backup(repo, {"src": src}, forked=False)
    assert not repo.nearby and repo.backend.reopen() is None
    log.write_text("")
    dest = tmp_path / "restored"
    run_restore(repo, "latest", {"src": dest}, forked=True)
    assert fingerprint(dest) == fingerprint(src)
    assert _readers(log) == {os.getpid()}


class _FarAway(MemoryBackend):
    capabilities = Capabilities(atomic_batch=False, max_connections=8, transient_failures=True)


def _store(backend: Backend) -> Backend:
    while isinstance(backend, WrappedBackend):
        backend = backend.inner
    return backend


@pytest.mark.server
def test_a_reopened_s3_store_has_a_client_and_limits_of_its_own(
    s3_server: S3Server, s3_shared_bucket: str, tmp_path: Path
) -> None:
    address = _s3_address(s3_shared_bucket)
    backend = open_backend(address, s3_server.options(create=True))
    backend.put("config", b"the same store")
    fresh = backend.reopen()
    assert fresh is not None and type(fresh) is type(backend)
    assert _store(fresh)._client is not _store(backend)._client  # type: ignore[attr-defined]
    limited = [backend, fresh]
    while isinstance(limited[0], WrappedBackend):
        if isinstance(limited[0], LimitedBackend):
            assert isinstance(limited[1], LimitedBackend) and limited[0]._slots is not limited[1]._slots
        limited = [limited[0].inner, limited[1].inner]  # type: ignore[attr-defined]
    assert fresh.get("config") == b"the same store"


@needs_fork
def test_a_forked_process_makes_a_hub_session_of_its_own() -> None:
    """The Hub stores' session (one per process) is dropped in a forked child: the next call there
    opens connections of its own, never the parent's."""
    from huggingface_hub.utils import _http, get_session

    from openclaw_backup.backends import hub_client

    hub_client.ensure_bounded_session()
    ours = get_session()

    def fresh_session() -> bool:
        fresh = _http._GLOBAL_CLIENT is None and get_session() is not ours
        return fresh and isinstance(get_session(), hub_client._BoundedClient)

    assert in_forked_child(fresh_session)
    assert get_session() is ours
