"""The Hub backends: the repo backend through the real huggingface_hub client against the fake Hub
(tests.support.hubserver), the bucket backend against an in-memory fake of the bucket API, and a live bucket
run when ``OPENCLAW_TEST_HF_BUCKET`` is set (then errors fail, never skip).

The contract suite (tests/test_backend_contract.py) runs on the ``hub`` kind by itself; here are the
Hub-specific promises: one commit per publication, CAS by parent commit, quotas and 5xx surfacing
fast and typed, lost answers reported once, ranged reads, and the legacy files left alone.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Callable

import pytest
from huggingface_hub import CommitOperationAdd, HfApi

from openclaw_backup.backends import BackendOptions, open_backend, open_hf
from openclaw_backup.backends.base import Backend
from openclaw_backup.backends.hf_bucket import HfBucketBackend
from openclaw_backup.backends.hf_repo import HfRepoBackend
from openclaw_backup.backends.options import DEFAULT_PREFIX, parse_hf_address
from openclaw_backup.errors import (
    ConflictError,
    LockedError,
    NotFoundError,
    QuotaError,
    RepositoryNotFoundError,
    StoreError,
    UsageError,
)
from openclaw_backup.legacy_hub import open_legacy_view
from tests import test_backend_contract as contract
from tests.support.hub import TOKEN, FakeBucketApi, HubRepo, HubServer

# Read at import: the autouse _clean_env fixture removes OPENCLAW_*/HF_* before each test runs.
LIVE_BUCKET = os.environ.get("OPENCLAW_TEST_HF_BUCKET")
LIVE_TOKEN = os.environ.get("HF_TOKEN") or os.environ.get("HUGGINGFACE_HUB_TOKEN")
LIVE_ENDPOINT = os.environ.get("HF_ENDPOINT")

CONTRACT_TESTS = [getattr(contract, n) for n in sorted(dir(contract)) if n.startswith("test_")]


def commits(repo: HubRepo) -> int:
    return int(repo.stats()["commits"])


# ---------------------------------------------------------------------------------------------
# Addresses


def test_address_parsing() -> None:
    a = parse_hf_address("hf://datasets/alice/agent-backups")
    assert (a.kind, a.repo_id, a.prefix) == ("dataset", "alice/agent-backups", DEFAULT_PREFIX)
    a = parse_hf_address("hf://models/org/m/some/where/")
    assert (a.kind, a.repo_id, a.prefix) == ("model", "org/m", "some/where")
    assert parse_hf_address("hf://buckets/alice/b").kind == "bucket"
    for bad in ["hf://alice/x", "hf://datasets/alice", "hf://spaces/a/b", "s3://x/y", "hf://datasets/a/b/../c"]:
        with pytest.raises(UsageError):
            parse_hf_address(bad)


# ---------------------------------------------------------------------------------------------
# The repo backend through the real client


def test_one_publish_is_one_commit(hub_backend: HfRepoBackend, hub_repo: HubRepo) -> None:
    before = commits(hub_repo)
    objects = {f"data/{i:02x}/obj{i}": os.urandom(3000 + i) for i in range(5)} | {"config": b"c"}
    for name, data in objects.items():
        hub_backend.put(name, data)
    assert commits(hub_repo) == before, "put must not commit"
    version = hub_backend.publish(head=b"head-1", expect=None, deletes=["data/00/never-existed"])
    stats = hub_repo.stats()
    assert stats["commits"] == before + 1
    assert stats["head"] == version
    assert set(stats["files"]) >= {f"{DEFAULT_PREFIX}/{n}" for n in objects} | {f"{DEFAULT_PREFIX}/head"}
    head = hub_backend.read_head()
    assert head is not None and head.version == version and head.data == b"head-1"
    # Unchanged: publishing the same head with nothing staged makes no commit and keeps the version.
    assert hub_backend.publish(head=b"head-1", expect=version) == version
    assert commits(hub_repo) == before + 1


def test_repo_created_private_when_missing(hub_repo: HubRepo) -> None:
    before = hub_repo.server.stats()["requests_total"]
    missing = hub_repo.open(create=False)  # asks nothing: the first read finds out
    assert hub_repo.server.stats()["requests_total"] == before
    with pytest.raises(RepositoryNotFoundError):
        missing.read_head()
    with pytest.raises(RepositoryNotFoundError):
        missing.get("config")
    backend = hub_repo.open(create=True)
    assert hub_repo.stats()["private"] is True
    assert backend.read_head() is None
    hub_repo.open(create=True)  # exists: fine


def test_concurrent_publish_gets_412_and_keeps_staged(hub_repo: HubRepo) -> None:
    a, b = hub_repo.open(create=True), hub_repo.open()
    v0 = a.publish(head=b"base", expect=None)
    b.put("data/bb/from-b", b"b" * 500)
    a.put("data/aa/from-a", b"a" * 500)
    v1 = a.publish(head=b"a-wins", expect=v0)
    before = hub_repo.stats()["requests"].get("commit", 0)
    with pytest.raises(ConflictError):
        b.publish(head=b"b-loses", expect=v0)
    assert hub_repo.stats()["requests"]["commit"] == before + 1  # the 412 came from the commit itself
    head = b.read_head()
    assert head is not None and head.version == v1 and head.data == b"a-wins"
    b.publish(head=b"b-replanned", expect=v1)  # the staged object is carried by the retry
    assert b.get("data/bb/from-b") == b"b" * 500 and b.get("data/aa/from-a") == b"a" * 500


def test_commit_quota_429_is_quota_error_within_seconds(hub_backend: HfRepoBackend, hub_repo: HubRepo) -> None:
    v0 = hub_backend.publish(head=b"one", expect=None)
    hub_repo.server.set_quota(hub_repo.key, commits_per_hour=commits(hub_repo))
    try:
        hub_backend.put("data/cc/x", b"x" * 300)
        start = time.monotonic()
        with pytest.raises(QuotaError) as info:
            hub_backend.publish(head=b"two", expect=v0)
        assert time.monotonic() - start < 10.0
        assert info.value.retry_after is not None and info.value.retry_after > 60
        assert "commit quota" in info.value.message
        assert hub_repo.stats()["requests"]["commit"] == 2  # tried once, not retried
    finally:
        hub_repo.server.set_quota(hub_repo.key, None)
    assert hub_backend.publish(head=b"two", expect=v0) != v0  # staged object kept for the retry
    assert hub_backend.get("data/cc/x") == b"x" * 300


def test_429_inside_the_clients_backoff_does_not_sleep(hub_backend: HfRepoBackend, hub_repo: HubRepo) -> None:
    # preupload/LFS batch go through huggingface_hub's http_backoff, which would sleep Retry-After.
    hub_repo.add_fault("preupload", status=429, retry_after=3600, count=10)
    start = time.monotonic()
    with pytest.raises(QuotaError) as info:
        hub_backend.put("data/dd/x", b"y" * 300)
    assert time.monotonic() - start < 10.0
    assert info.value.retry_after == 3600


def test_5xx_on_get_is_transient_and_retried_by_the_wrapper(hub_backend: HfRepoBackend, hub_repo: HubRepo) -> None:
    hub_backend.put("data/ee/x", b"z" * 1000)
    hub_backend.publish(head=b"h", expect=None)
    hub_repo.add_fault("resolve", status=503)
    start = time.monotonic()
    with pytest.raises(StoreError) as info:
        hub_backend.get("data/ee/x")
    assert info.value.transient and time.monotonic() - start < 5.0
    assert hub_backend.get("data/ee/x") == b"z" * 1000
    hub_repo.add_fault("resolve", status=502, count=2)
    wrapped = open_backend(hub_repo.address, hub_repo.server.options(retries=3))
    assert wrapped.get("data/ee/x") == b"z" * 1000


@pytest.mark.parametrize("lose", ["drop", "500"])
def test_lost_commit_answer_is_success_exactly_once(hub_backend: HfRepoBackend, hub_repo: HubRepo, lose: str) -> None:
    v0 = hub_backend.publish(head=b"base", expect=None)
    hub_backend.put("data/ff/x", b"f" * 700)
    before = commits(hub_repo)
    hub_repo.add_fault("commit", lose=lose)
    version = hub_backend.publish(head=b"after-lost-answer", expect=v0)
    assert commits(hub_repo) == before + 1, "applied once, never twice"
    head = hub_backend.read_head()
    assert head is not None and head.version == version and head.data == b"after-lost-answer"
    assert hub_backend.get("data/ff/x") == b"f" * 700


def test_commit_that_did_not_land_is_made_again(hub_backend: HfRepoBackend, hub_repo: HubRepo) -> None:
    """A 503 on the commit (known not to have landed) is repeated inside publish: one commit results."""
    v0 = hub_backend.publish(head=b"base", expect=None)
    hub_backend.put("data/ab/x", b"q" * 400)
    before = commits(hub_repo)
    hub_repo.add_fault("commit", status=503)
    hub_backend.publish(head=b"next", expect=v0)
    assert commits(hub_repo) == before + 1
    assert hub_backend.get("data/ab/x") == b"q" * 400


def test_commit_failing_every_time_is_transient_and_retryable(hub_backend: HfRepoBackend, hub_repo: HubRepo) -> None:
    v0 = hub_backend.publish(head=b"base", expect=None)
    hub_backend.put("data/ab/x", b"q" * 400)
    hub_repo.add_fault("commit", status=503, count=3)
    with pytest.raises(StoreError) as info:
        hub_backend.publish(head=b"next", expect=v0)
    assert info.value.transient
    hub_backend.publish(head=b"next", expect=v0)
    assert hub_backend.get("data/ab/x") == b"q" * 400


def test_timed_out_commit_that_lands_later_is_never_duplicated(hub_repo: HubRepo) -> None:
    backend = hub_repo.open(create=True, timeout=1.0)
    v0 = backend.publish(head=b"base", expect=None)
    before = commits(hub_repo)
    hub_repo.add_fault("commit", delay=2.0)
    start = time.monotonic()
    try:  # not found on the branch yet, so publish makes it again on the same parent
        backend.publish(head=b"slow", expect=v0)
    except (StoreError, ConflictError) as e:
        assert not isinstance(e, StoreError) or e.transient
    assert time.monotonic() - start < 8.0
    time.sleep(3.0)  # let the delayed commit finish, whichever way
    assert commits(hub_repo) == before + 1  # at most one of two commits on the same parent lands
    with pytest.raises(ConflictError):  # and a blind retry cannot make a second one
        backend.publish(head=b"slow", expect=v0)
    head = backend.read_head()
    assert head is not None and head.data == b"slow"


def test_ranged_get_transfers_only_the_range(hub_backend: HfRepoBackend, hub_repo: HubRepo) -> None:
    data = os.urandom(1 << 20)
    hub_backend.put("data/12/big", data)
    hub_backend.publish(head=b"h", expect=None)
    before = hub_repo.stats()["bytes_downloaded"]
    assert hub_backend.get("data/12/big", offset=1000, length=100) == data[1000:1100]
    assert hub_repo.stats()["bytes_downloaded"] - before == 100
    assert hub_backend.size("data/12/big") == len(data)


def test_legacy_files_are_untouched(hub_repo: HubRepo) -> None:
    backend = hub_repo.open(create=True)
    api = hub_repo.api()
    legacy = {"latest-backup.json": b'{"latest": "backups/full-1.tar.gz"}', "backups/full-1.tar.gz": os.urandom(4096)}
    api.create_commit(
        hub_repo.repo_id,
        [CommitOperationAdd(path, data) for path, data in legacy.items()],
        commit_message="legacy backup",
        repo_type="dataset",
    )
    backend.put("data/01/a", b"a" * 200)
    backend.put("data/01/b", b"b" * 200)
    v1 = backend.publish(head=b"h1", expect=None)
    assert backend.list() == ["data/01/a", "data/01/b"]
    backend.publish(head=b"h2", expect=v1, deletes=["data/01/a", "latest-backup.json"])
    backend.delete_unpublished(["data/01/b"])
    assert backend.list() == []
    files = hub_repo.stats()["files"]
    assert {"latest-backup.json", "backups/full-1.tar.gz", f"{DEFAULT_PREFIX}/head"} <= set(files)
    assert not any(f.startswith(f"{DEFAULT_PREFIX}/data/") for f in files)
    for path, data in legacy.items():
        with open(api.hf_hub_download(hub_repo.repo_id, path, repo_type="dataset"), "rb") as f:
            assert f.read() == data
    # The legacy reader's view of the root (used by the migration) sees them and only them there.
    view = open_legacy_view(hub_repo.address + "/ignored-prefix", hub_repo.server.options())
    assert view.list("backups/") == ["backups/full-1.tar.gz"]
    assert view.get("latest-backup.json") == legacy["latest-backup.json"]
    with pytest.raises(NotFoundError):
        view.get("backups/missing.tar.gz")


def test_listing_follows_pagination_and_prefixes(hub_backend: HfRepoBackend, hub_server: HubServer) -> None:
    names = [f"data/{i % 3:02x}/o{i:03d}" for i in range(12)] + ["index/i1", "snapshots/s1"]
    for name in names:
        hub_backend.put(name, name.encode() * 10)
    hub_backend.publish(head=b"h", expect=None)
    hub_server.configure(page_size=4)
    try:
        assert hub_backend.list() == sorted(names)
        assert hub_backend.list("data/01/") == sorted(n for n in names if n.startswith("data/01/"))
        assert hub_backend.list("data/0") == sorted(n for n in names if n.startswith("data/"))
        assert hub_backend.list("nothing/here/") == []
    finally:
        hub_server.configure(page_size=1000)


def test_squash_history_frees_deleted_objects(hub_backend: HfRepoBackend, hub_repo: HubRepo) -> None:
    v = hub_backend.publish(head=b"h0", expect=None)
    for i in range(3):
        hub_backend.put(f"data/0{i}/pack", os.urandom(20_000))
        v = hub_backend.publish(head=b"h%d" % (i + 1), expect=v)
    v = hub_backend.publish(head=b"h4", expect=v, deletes=["data/00/pack", "data/01/pack"])
    before = hub_repo.stats()
    assert before["stored_bytes"] >= 60_000  # deleting freed nothing: the history keeps it
    hub_backend.squash_history()
    after = hub_repo.stats()
    assert after["history"] == 1 and after["stored_bytes"] < before["stored_bytes"] - 39_000
    head = hub_backend.read_head()
    assert head is not None and head.data == b"h4" and head.version != v
    assert hub_backend.list() == ["data/02/pack"]


def test_network_timeout_is_transient_and_bounded(hub_repo: HubRepo) -> None:
    backend = hub_repo.open(create=True, timeout=1.0)
    hub_repo.add_fault("tree", delay=3.0)
    start = time.monotonic()
    with pytest.raises(StoreError) as info:
        backend.list()
    assert info.value.transient and time.monotonic() - start < 2.5


def test_missing_object_and_missing_head(hub_backend: HfRepoBackend) -> None:
    assert hub_backend.read_head() is None
    with pytest.raises(NotFoundError):
        hub_backend.get("data/00/none", offset=5, length=5)
    with pytest.raises(ConflictError):
        hub_backend.publish(head=b"x", expect="0" * 40)  # a well-formed but unknown commit


# ---------------------------------------------------------------------------------------------
# The bucket backend against a fake of the bucket methods it calls


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def bucket_backend(fake: FakeBucketApi, *, clock: Clock | None = None, ttl: float = 600.0) -> HfBucketBackend:
    clock = clock or Clock()
    backend = HfBucketBackend(
        fake,
        "tester/bucket",
        prefix="p",
        read_range=fake.reader("tester/bucket"),
        lease_ttl=ttl,
        clock=clock,
        monotonic=clock,
    )
    backend.ensure_bucket(create=True, private=True)
    return backend


@pytest.mark.parametrize("case", CONTRACT_TESTS, ids=lambda f: f.__name__)
def test_bucket_backend_passes_the_contract(case: Callable[[Backend], None]) -> None:
    backend = bucket_backend(FakeBucketApi())
    case(backend)
    backend.close()


def test_bucket_missing_and_created_private() -> None:
    fake = FakeBucketApi()
    backend = HfBucketBackend(fake, "tester/bucket", read_range=fake.reader("tester/bucket"))
    with pytest.raises(RepositoryNotFoundError):
        backend.ensure_bucket(create=False, private=True)
    backend.ensure_bucket(create=True, private=True)
    assert fake.private["tester/bucket"] is True
    assert not backend.capabilities.compare_and_swap


def test_bucket_lease_excludes_a_second_writer_until_released() -> None:
    fake, clock = FakeBucketApi(), Clock()
    a, b = bucket_backend(fake, clock=clock), bucket_backend(fake, clock=clock)
    v0 = a.publish(head=b"a0", expect=None)
    a.put("data/00/x", b"x")
    with pytest.raises(LockedError) as info:
        b.publish(head=b"b1", expect=v0)
    assert a.holder in info.value.message
    with pytest.raises(LockedError):
        b.put("data/00/y", b"y")
    assert not [p for p in fake.buckets["tester/bucket"] if b.holder in p], "a refused writer leaves no lease"
    a.close()
    assert b.publish(head=b"b1", expect=v0) != v0
    assert "p/head" in fake.buckets["tester/bucket"] and b.list() == ["data/00/x"]


def test_bucket_stale_lease_is_ignored_and_a_lapsed_holder_must_replan() -> None:
    fake, clock = FakeBucketApi(), Clock()
    a, b = bucket_backend(fake, clock=clock, ttl=100), bucket_backend(fake, clock=clock, ttl=100)
    v0 = a.publish(head=b"a0", expect=None)
    clock.now += 100 + 61  # a crashed or stalled: its lease expired (TTL + skew allowance)
    v1 = b.publish(head=b"b1", expect=v0)
    with pytest.raises((ConflictError, LockedError)):
        a.publish(head=b"a1", expect=v0)  # a's lease lapsed: it must not write the head
    head = b.read_head()
    assert head is not None and head.version == v1 and head.data == b"b1"


def test_bucket_heartbeat_keeps_the_lease() -> None:
    fake, clock = FakeBucketApi(), Clock()
    a, b = bucket_backend(fake, clock=clock, ttl=100), bucket_backend(fake, clock=clock, ttl=100)
    v = a.publish(head=b"a0", expect=None)
    for _ in range(5):  # 5 × 60 s > TTL, but every publish renews the lease
        clock.now += 60
        v = a.publish(head=b"a%d" % clock.now, expect=v)
    with pytest.raises(LockedError):
        b.publish(head=b"b", expect=v)


@pytest.mark.parametrize("interleave", ["write-only", "full-attempt"])
def test_bucket_racing_acquisitions_never_give_two_holders(interleave: str) -> None:
    fake, clock = FakeBucketApi(), Clock()
    a, b = bucket_backend(fake, clock=clock), bucket_backend(fake, clock=clock)
    outcomes: dict[str, str] = {}

    def b_moves(path: str) -> None:
        if path.endswith(a.holder) and "b" not in outcomes:
            outcomes["b"] = "pending"
            if interleave == "write-only":  # b writes its lease between a's write and a's listing
                b._write_lease()
                return
            try:
                b.put("data/00/b", b"b")
                outcomes["b"] = "holds"
            except LockedError:
                outcomes["b"] = "refused"

    fake.on_upload = b_moves
    try:
        a.put("data/00/a", b"a")
        outcomes["a"] = "holds"
    except LockedError:
        outcomes["a"] = "refused"
    fake.on_upload = None
    assert list(outcomes.values()).count("holds") <= 1, outcomes
    # b listed after a's write and saw it / a listed after b's write and saw it: that one backs off.
    expected = {"a": "refused", "b": "pending"} if interleave == "write-only" else {"a": "holds", "b": "refused"}
    assert outcomes == expected


# ---------------------------------------------------------------------------------------------
# A live bucket (only when asked for; then it must pass)


@pytest.mark.skipif(not LIVE_BUCKET, reason="set OPENCLAW_TEST_HF_BUCKET=<ns>/<bucket> and HF_TOKEN to run live")
def test_bucket_live() -> None:
    options = BackendOptions(token=LIVE_TOKEN, hf_endpoint=LIVE_ENDPOINT, create=True, timeout=60.0)
    root = f"openclaw-backup-test-{uuid.uuid4().hex[:10]}"
    for i, case in enumerate(CONTRACT_TESTS):
        if case is contract.test_concurrent_publishers_exactly_one_wins:
            continue  # same-instance serialisation is covered by the fake; spare the live quota
        backend = open_hf(f"hf://buckets/{LIVE_BUCKET}/{root}/{i}", options)
        assert isinstance(backend, HfBucketBackend)
        try:
            case(backend)
        finally:
            backend.close()
    api = HfApi(endpoint=LIVE_ENDPOINT, token=LIVE_TOKEN)
    leftovers = [f.path for f in api.list_bucket_tree(LIVE_BUCKET, root, recursive=True) if f.type == "file"]
    if leftovers:
        api.batch_bucket_files(LIVE_BUCKET, delete=leftovers)


# ---------------------------------------------------------------------------------------------
# The fake Hub itself: what it refuses


def test_model_repo_address(hub_server: HubServer, hub_repo: HubRepo) -> None:
    repo = HubRepo(hub_server, hub_repo.repo_id, repo_type="model", prefix="backups/agent")
    backend = repo.open(create=True)
    backend.put("data/00/x", b"m" * 100)
    version = backend.publish(head=b"h", expect=None)
    assert backend.get("data/00/x", offset=10, length=5) == b"m" * 5
    assert repo.stats()["head"] == version and "backups/agent/head" in repo.stats()["files"]
    backend.close()


def test_fake_hub_refuses_bad_uploads_and_unknown_objects(hub_repo: HubRepo) -> None:
    import json
    import urllib.error
    import urllib.request

    hub_repo.open(create=True)
    base = hub_repo.server.url
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(method: str, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        req = urllib.request.Request(url, data=body, method=method, headers=headers)
        try:
            with opener.open(req, timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    data = b"the real bytes"
    oid = hashlib.sha256(data).hexdigest()
    batch = {"operation": "upload", "objects": [{"oid": oid, "size": len(data)}], "hash_algo": "sha256"}
    status, body = call(
        "POST", f"{base}/datasets/{hub_repo.repo_id}.git/info/lfs/objects/batch", json.dumps(batch).encode(), auth
    )
    assert status == 200
    href = json.loads(body)["objects"][0]["actions"]["upload"]["href"]
    assert call("PUT", href, b"other bytes, same len", {})[0] == 400  # size/sha256 checked
    assert call("PUT", href.split("?")[0] + "?size=14&sig=forged", data, {})[0] == 403
    assert call("PUT", href, data, {})[0] == 200
    commit = b"\n".join(
        json.dumps(line).encode()
        for line in [
            {"key": "header", "value": {"summary": "x"}},
            {"key": "lfsFile", "value": {"path": "a.bin", "algo": "sha256", "oid": "0" * 64, "size": 1}},
        ]
    )
    ndjson = {**auth, "Content-Type": "application/x-ndjson"}
    assert call("POST", f"{base}/api/datasets/{hub_repo.repo_id}/commit/main", commit, ndjson)[0] == 422
    assert hub_repo.stats()["commits"] == 0  # refused as a whole
    assert call("GET", f"{base}/api/datasets/{hub_repo.repo_id}", b"", {})[0] == 401  # private, no token
    hub_repo.api().delete_repo(hub_repo.repo_id, repo_type="dataset")
    with pytest.raises(RepositoryNotFoundError):
        hub_repo.open(create=False).read_head()
