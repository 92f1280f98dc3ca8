"""The storage contract (openclaw_backup.backends.base), run against every backend kind."""

from __future__ import annotations

import threading

import pytest

from openclaw_backup.backends.base import Backend
from openclaw_backup.errors import ConflictError, NotFoundError, UsageError
from tests.conftest import BACKEND_KINDS


@pytest.fixture(params=BACKEND_KINDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    b: Backend = request.getfixturevalue(f"{request.param}_backend")
    return b


def publish_puts(b: Backend, objects: dict[str, bytes]) -> str:
    for name, data in objects.items():
        b.put(name, data)
    head = b.read_head()
    return b.publish(head=b"h-" + ",".join(sorted(objects)).encode(), expect=head.version if head else None)


def test_missing_object_raises_not_found(backend: Backend) -> None:
    with pytest.raises(NotFoundError):
        backend.get("data/00/missing")
    with pytest.raises(NotFoundError):
        backend.size("data/00/missing")


def test_put_get_list_roundtrip(backend: Backend) -> None:
    objs = {"config": b"cfg", "data/ab/abcdef": bytes(range(256)) * 40, "snapshots/s1": b"", "index/i1": b"x"}
    publish_puts(backend, objs)
    for name, data in objs.items():
        assert backend.get(name) == data
        assert backend.size(name) == len(data)
    assert backend.list() == sorted(objs)
    assert backend.list("data/") == ["data/ab/abcdef"]
    assert backend.list("nothing/") == []


def test_ranged_reads_and_short_read(backend: Backend) -> None:
    data = bytes(range(256)) * 10
    publish_puts(backend, {"data/00/obj": data})
    assert backend.get("data/00/obj", offset=10, length=20) == data[10:30]
    assert backend.get("data/00/obj", offset=2550) == data[2550:]
    assert backend.get("data/00/obj", offset=2550, length=100) == data[2550:]  # short read


def test_repeated_put_is_harmless(backend: Backend) -> None:
    backend.put("data/01/same", b"abc")
    backend.put("data/01/same", b"abc")
    publish_puts(backend, {})
    assert backend.get("data/01/same") == b"abc"


def test_invalid_names_refused(backend: Backend) -> None:
    for bad in ["../x", "/abs", "a//b", "a/./b", "head", "", "sp ace", "a/../b"]:
        with pytest.raises(UsageError):
            backend.put(bad, b"x")


def test_head_compare_and_swap(backend: Backend) -> None:
    assert backend.read_head() is None
    v1 = backend.publish(head=b"one", expect=None)
    head = backend.read_head()
    assert head is not None and head.data == b"one" and head.version == v1
    with pytest.raises(ConflictError):
        backend.publish(head=b"two", expect=None)
    v2 = backend.publish(head=b"two", expect=v1)
    assert v2 != v1
    with pytest.raises(ConflictError):
        backend.publish(head=b"three", expect=v1)  # stale version
    head = backend.read_head()
    assert head is not None and head.data == b"two"
    assert "head" not in backend.list()


def test_publish_deletes_after_head(backend: Backend) -> None:
    publish_puts(backend, {"data/aa/old": b"old", "data/aa/keep": b"keep"})
    head = backend.read_head()
    assert head is not None
    backend.publish(head=b"new", expect=head.version, deletes=["data/aa/old", "data/aa/never-existed"])
    assert backend.list("data/") == ["data/aa/keep"]


def test_conflicting_publish_deletes_nothing(backend: Backend) -> None:
    publish_puts(backend, {"data/aa/old": b"old"})
    with pytest.raises(ConflictError):
        backend.publish(head=b"x", expect="not-the-version", deletes=["data/aa/old"])
    assert backend.get("data/aa/old") == b"old"


def test_concurrent_publishers_exactly_one_wins(backend: Backend) -> None:
    v0 = backend.publish(head=b"base", expect=None)
    results: list[str] = []
    lock = threading.Lock()

    def attempt(i: int) -> None:
        try:
            backend.publish(head=b"w%d" % i, expect=v0)
            outcome = "won"
        except ConflictError:
            outcome = "lost"
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["lost", "lost", "lost", "won"]


def test_delete_unpublished(backend: Backend) -> None:
    publish_puts(backend, {"data/bb/garbage": b"g", "data/bb/live": b"l"})
    backend.delete_unpublished(["data/bb/garbage", "data/bb/absent"])
    assert backend.list("data/") == ["data/bb/live"]
