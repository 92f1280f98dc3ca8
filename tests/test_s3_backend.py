"""S3-specific behaviour beyond the contract suite, against the real SeaweedFS of ``tests.support.s3``."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import botocore.exceptions as bex
import pytest

from openclaw_backup.backends import open_raw_backend
from openclaw_backup.backends.s3 import S3Backend, open_s3
from openclaw_backup.errors import (
    ConflictError,
    NotFoundError,
    QuotaError,
    RepositoryNotFoundError,
    StoreError,
    UsageError,
)
from tests.support.s3 import S3Server

REPO_ROOT = Path(__file__).resolve().parent.parent


def fresh(server: S3Server, bucket: str, **options: Any) -> S3Backend:
    return open_s3(f"s3://{bucket}/{uuid.uuid4().hex[:12]}", server.options(**options))


class ClientProxy:
    """Wraps an S3 client; ``put_object`` goes through ``hook(real_put, **kwargs)``."""

    def __init__(self, real: Any, hook: Any) -> None:
        self._real = real
        self._hook = hook

    def put_object(self, **kwargs: Any) -> Any:
        return self._hook(self._real.put_object, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _client_error(status: int, code: str, headers: dict[str, str] | None = None) -> bex.ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": code},
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers or {}},
    }
    return bex.ClientError(response, "PutObject")


# -- conditional writes ----------------------------------------------------------------------


def _race_to_create(backends: list[S3Backend]) -> dict[int, str]:
    """Every backend tries to create the head at once; returns who won and who lost."""
    barrier = threading.Barrier(len(backends))
    outcomes: dict[int, str] = {}

    def race(i: int) -> None:
        barrier.wait()
        try:
            backends[i].publish(head=b"writer-%d" % i, expect=None)
            outcomes[i] = "won"
        except ConflictError:
            outcomes[i] = "lost"

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(backends))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def test_conditional_create_of_head_is_exclusive_across_threads(s3_server: S3Server, s3_shared_bucket: str) -> None:
    # SeaweedFS serialises conditional writes with a per-object lock whose contenders poll once a
    # second, so a round with n racers can take up to n-1 seconds: keep n small.
    for _ in range(3):
        address = f"s3://{s3_shared_bucket}/{uuid.uuid4().hex[:12]}"
        backends = [open_s3(address, s3_server.options()) for _ in range(4)]  # one client each
        outcomes = _race_to_create(backends)
        winners = [i for i, o in outcomes.items() if o == "won"]
        assert len(winners) == 1 and len(outcomes) == len(backends)
        head = backends[0].read_head()
        assert head is not None and head.data == b"writer-%d" % winners[0]
        for b in backends:
            b.close()


_RACER = """
import json, sys, time
from openclaw_backup.backends import BackendOptions
from openclaw_backup.backends.s3 import open_s3
from openclaw_backup.errors import ConflictError
endpoint, key, secret, bucket, start, tag, *prefixes = sys.argv[1:]
opts = BackendOptions(s3_endpoint=endpoint, s3_region="us-east-1", s3_access_key=key, s3_secret_key=secret)
backends = [open_s3(f"s3://{bucket}/{p}", opts) for p in prefixes]
time.sleep(max(0.0, float(start) - time.time()))
won = []
for p, b in zip(prefixes, backends):
    try:
        b.publish(head=tag.encode(), expect=None)
        won.append(p)
    except ConflictError:
        pass
print(json.dumps(won))
"""


def test_conditional_create_of_head_is_exclusive_across_processes(s3_server: S3Server, s3_shared_bucket: str) -> None:
    prefixes = [uuid.uuid4().hex[:12] for _ in range(30)]
    start = time.time() + 2.0  # both processes past their imports, then racing prefix by prefix
    args = [s3_server.endpoint, s3_server.access_key, s3_server.secret_key, s3_shared_bucket, str(start)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, *args, tag, *prefixes], stdout=subprocess.PIPE, cwd=REPO_ROOT, text=True
        )
        for tag in ("proc-a", "proc-b")
    ]
    won = {}
    for tag, p in zip(("proc-a", "proc-b"), procs, strict=True):
        out, _ = p.communicate(timeout=30)
        assert p.returncode == 0
        won[tag] = set(json.loads(out))
    assert not won["proc-a"] & won["proc-b"]
    assert won["proc-a"] | won["proc-b"] == set(prefixes)
    for prefix in prefixes[:5]:
        head = open_s3(f"s3://{s3_shared_bucket}/{prefix}", s3_server.options()).read_head()
        assert head is not None and head.data.decode() in {t for t, w in won.items() if prefix in w}


def test_stale_if_match_is_a_conflict_and_deletes_nothing(s3_backend: S3Backend) -> None:
    s3_backend.put("data/aa/keep", b"k")
    v1 = s3_backend.publish(head=b"one", expect=None)
    v2 = s3_backend.publish(head=b"two", expect=v1)
    with pytest.raises(ConflictError):
        s3_backend.publish(head=b"three", expect=v1, deletes=["data/aa/keep"])
    with pytest.raises(ConflictError):
        s3_backend.publish(head=b"three", expect='"0123456789abcdef0123456789abcdef"')
    head = s3_backend.read_head()
    assert head is not None and (head.version, head.data) == (v2, b"two")
    assert s3_backend.list() == ["data/aa/keep"]


def test_expecting_a_head_that_does_not_exist_is_a_conflict(s3_backend: S3Backend) -> None:
    with pytest.raises(ConflictError):
        s3_backend.publish(head=b"x", expect='"0123456789abcdef0123456789abcdef"')
    assert s3_backend.read_head() is None


def test_put_never_overwrites_an_existing_object(s3_backend: S3Backend) -> None:
    s3_backend.put("data/aa/x", b"first")
    s3_backend.put("data/aa/x", b"second")  # content-addressed names: a 412 is success
    assert s3_backend.get("data/aa/x") == b"first"


# -- lost responses of the head write ----------------------------------------------------------


def test_lost_response_of_a_landed_head_write_is_reported_as_landed(s3_backend: S3Backend) -> None:
    v1 = s3_backend.publish(head=b"one", expect=None)
    real = s3_backend._client

    def land_then_lose(put: Any, **kwargs: Any) -> Any:
        put(**kwargs)
        raise bex.ReadTimeoutError(endpoint_url="http://s3.invalid")

    s3_backend._client = ClientProxy(real, land_then_lose)
    try:
        version = s3_backend.publish(head=b"two", expect=v1)
    finally:
        s3_backend._client = real
    head = s3_backend.read_head()
    assert head is not None and (head.version, head.data) == (version, b"two")


def test_head_write_that_never_arrived_is_resent_conditionally(s3_backend: S3Backend) -> None:
    v1 = s3_backend.publish(head=b"one", expect=None)
    real = s3_backend._client
    calls: list[dict[str, Any]] = []

    def fail_first(put: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        if len(calls) == 1:
            raise bex.EndpointConnectionError(endpoint_url="http://s3.invalid")
        return put(**kwargs)

    s3_backend._client = ClientProxy(real, fail_first)
    try:
        version = s3_backend.publish(head=b"two", expect=v1)
    finally:
        s3_backend._client = real
    assert len(calls) == 2 and all(c["IfMatch"] == v1 for c in calls)
    head = s3_backend.read_head()
    assert head is not None and (head.version, head.data) == (version, b"two")


def test_lost_head_write_when_another_writer_landed_is_a_conflict(s3_backend: S3Backend) -> None:
    v1 = s3_backend.publish(head=b"one", expect=None)
    real = s3_backend._client

    def other_writer_wins(put: Any, **kwargs: Any) -> Any:
        put(**{**kwargs, "Body": b"theirs"})
        raise bex.ConnectionClosedError(endpoint_url="http://s3.invalid")

    s3_backend._client = ClientProxy(real, other_writer_wins)
    try:
        with pytest.raises(ConflictError):
            s3_backend.publish(head=b"ours", expect=v1, deletes=["data/00/x"])
    finally:
        s3_backend._client = real
    head = s3_backend.read_head()
    assert head is not None and head.data == b"theirs"


def test_head_write_answered_without_an_etag_reads_the_version_back(s3_backend: S3Backend) -> None:
    real = s3_backend._client

    def no_etag(put: Any, **kwargs: Any) -> Any:
        put(**kwargs)
        return {}

    s3_backend._client = ClientProxy(real, no_etag)
    try:
        version = s3_backend.publish(head=b"one", expect=None)
    finally:
        s3_backend._client = real
    head = s3_backend.read_head()
    assert head is not None and head.version == version


def test_a_store_ignoring_conditions_is_refused_at_initialisation(s3_server: S3Server, s3_shared_bucket: str) -> None:
    backend = fresh(s3_server, s3_shared_bucket)
    real = backend._client

    def drop_conditions(put: Any, **kwargs: Any) -> Any:
        kwargs.pop("IfNoneMatch", None)
        kwargs.pop("IfMatch", None)
        return put(**kwargs)

    backend._client = ClientProxy(real, drop_conditions)
    with pytest.raises(StoreError, match="ignores conditional writes"):
        backend.check_conditional_writes()
    backend._client = real
    backend.check_conditional_writes()  # the real store passes
    assert backend.list() == []  # the probe is gone (and never listed)


# -- buckets, credentials, endpoints -----------------------------------------------------------


def test_missing_bucket_is_repository_not_found_and_create_makes_it(s3_server: S3Server) -> None:
    bucket = s3_server.new_bucket(create=False)
    address = f"s3://{bucket}/repo"
    missing = open_raw_backend(address, s3_server.options())
    with pytest.raises(RepositoryNotFoundError) as err:
        missing.read_head()
    assert bucket in err.value.message and err.value.hint
    for call in (lambda: missing.get("config"), lambda: missing.list(), lambda: missing.put("config", b"c")):
        with pytest.raises(RepositoryNotFoundError):
            call()
    created = open_raw_backend(address, s3_server.options(create=True))
    assert created.read_head() is None and created.list() == []
    v = created.publish(head=b"h", expect=None)
    head = missing.read_head()  # the first handle sees the bucket now
    assert head is not None and head.version == v
    open_s3(address, s3_server.options(create=True))  # an existing bucket is fine


def test_wrong_secret_is_a_clear_store_error(s3_server: S3Server, s3_shared_bucket: str) -> None:
    backend = open_s3(f"s3://{s3_shared_bucket}/repo", s3_server.options(s3_secret_key="not-the-secret"))
    for call in (backend.read_head, backend.list, lambda: backend.put("config", b"c")):
        with pytest.raises(StoreError) as err:
            call()
        assert type(err.value) is StoreError and not err.value.transient
        assert "access denied" in err.value.message and "SignatureDoesNotMatch" in err.value.message
        assert err.value.hint and "access key and secret" in err.value.hint
        assert s3_server.secret_key not in err.value.message + err.value.hint
    with pytest.raises(StoreError) as err:
        backend.put("config", b"c")
    assert isinstance(err.value.__cause__, bex.ClientError)  # a write goes through botocore


def test_unreachable_endpoint_is_a_transient_store_error(s3_server: S3Server) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once we leave: connection refused
    backend = open_s3("s3://b/repo", s3_server.options(s3_endpoint=f"http://127.0.0.1:{port}", timeout=2.0))
    with pytest.raises(StoreError) as err:
        backend.read_head()
    assert err.value.transient


def test_error_mapping_of_throttling_and_server_errors(s3_backend: S3Backend) -> None:
    slow = s3_backend._error(_client_error(503, "SlowDown"), "writing x")
    assert isinstance(slow, StoreError) and slow.transient
    blip = s3_backend._error(_client_error(429, "TooManyRequests", {"retry-after": "2"}), "writing x")
    assert isinstance(blip, StoreError) and blip.transient
    quota = s3_backend._error(_client_error(429, "TooManyRequests", {"retry-after": "3600"}), "writing x")
    assert isinstance(quota, QuotaError) and quota.retry_after == 3600
    server = s3_backend._error(_client_error(500, "InternalError"), "writing x")
    assert isinstance(server, StoreError) and server.transient
    bad = s3_backend._error(_client_error(400, "InvalidArgument"), "writing x")
    assert isinstance(bad, StoreError) and not bad.transient


def test_addresses() -> None:
    from openclaw_backup.backends.s3 import S3Address

    assert S3Address.parse("s3://bkt") == S3Address("bkt", "")
    assert S3Address.parse("s3://bkt/a/b/") == S3Address("bkt", "a/b")
    for bad in ("s3://", "s3:///x", "s3://bkt/a/../b", "s3://bkt/a//b", "file:///x"):
        with pytest.raises(UsageError):
            S3Address.parse(bad)


def test_repository_at_the_bucket_root(s3_server: S3Server) -> None:
    backend = open_s3(f"s3://{s3_server.new_bucket(create=False)}", s3_server.options(create=True))
    backend.put("config", b"c")
    backend.publish(head=b"h", expect=None)
    assert backend.list() == ["config"]


# -- reads and listings ------------------------------------------------------------------------


def test_ranged_get(s3_backend: S3Backend) -> None:
    data = bytes(range(256)) * 16
    s3_backend.put("data/00/obj", data)
    assert s3_backend.get("data/00/obj", offset=100, length=1) == data[100:101]
    assert s3_backend.get("data/00/obj", offset=1000, length=2000) == data[1000:3000]
    assert s3_backend.get("data/00/obj", offset=4000) == data[4000:]
    assert s3_backend.get("data/00/obj", offset=4000, length=500) == data[4000:]  # short read
    assert s3_backend.get("data/00/obj", offset=len(data), length=10) == b""  # starts at the end
    assert s3_backend.get("data/00/obj", offset=10, length=0) == b""
    s3_backend.put("data/00/empty", b"")
    assert s3_backend.get("data/00/empty", offset=0, length=10) == b""
    with pytest.raises(NotFoundError):
        s3_backend.get("data/00/missing", offset=5, length=5)
    with pytest.raises(NotFoundError):
        s3_backend.get("data/00/missing", offset=5, length=0)


def test_list_paginates_and_batch_delete(s3_server: S3Server, s3_backend: S3Backend) -> None:
    names = [f"data/{i % 7:02x}/{i:06d}" for i in range(1010)]  # > 1000: two list pages
    client, root = s3_server.client(), s3_backend.root  # seeded directly: this test is about listing
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: client.put_object(Bucket=s3_backend.bucket, Key=root + n, Body=b"x"), names))
    v = s3_backend.publish(head=b"h", expect=None)
    plain = s3_backend._plain
    assert plain is not None  # explicit credentials, region and endpoint: plain S3 reads
    plain_pages: list[object] = []
    real_page = plain.list_page
    plain.list_page = lambda *a, **kw: plain_pages.append(a) or real_page(*a, **kw)  # type: ignore[method-assign]
    assert s3_backend.list() == sorted(names)
    assert len(plain_pages) >= 2  # really paginated
    pages: list[object] = []
    s3_backend._client.meta.events.register("after-call.s3.ListObjectsV2", lambda **kw: pages.append(kw))
    s3_backend._plain = None  # and the same through botocore
    assert s3_backend.list() == sorted(names)
    assert len(pages) >= 2
    s3_backend._plain = plain
    assert s3_backend.list("data/03/") == sorted(n for n in names if n.startswith("data/03/"))
    s3_backend.publish(head=b"h2", expect=v, deletes=names[:1005])  # two DeleteObjects batches
    assert s3_backend.list() == sorted(names[1005:])  # every delete landed
    s3_backend.delete_unpublished([*names[1005:], "data/00/never-existed"])
    assert s3_backend.list() == []
