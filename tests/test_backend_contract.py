"""The storage contract (openclaw_backup.backends.base), run against every backend kind.

Each test takes only the backend (``tests/test_hf_backend.py`` also runs them on a bucket of its
own and on a live bucket), and checks one promise of the contract's docstrings: not-found, short
reads and random ranges; a repeated put; the caller's buffer (any bytes-like object) free for reuse
once ``put`` returns; ``put_file`` from a file's first bytes; listings longer than a store's page;
objects of a publication visible no later than it (and not before it where the store batches);
compare-and-swap with staged objects kept across a conflict; deletes after the head; and only the
package's typed errors escaping.
"""

from __future__ import annotations

import array
import os
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from openclaw_backup.backends.base import Backend
from openclaw_backup.errors import BackupError, ConflictError, NotFoundError, UsageError
from tests.support.backends import kinds

#: More names than the longest page of a listing (S3's ListObjectsV2 and the Hub's tree: 1000),
#: and than a batch of deletes (S3's DeleteObjects and a bucket batch: 1000; Hub paths-info: 500).
LONG_LISTING = 1010


@pytest.fixture(params=kinds())
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


def test_put_does_not_keep_the_callers_buffer(backend: Backend) -> None:
    buffer = bytearray(b"A" * 5000)
    backend.put("data/10/reused", buffer)
    buffer[:] = b"B" * 5000  # the caller reuses its buffer at once
    shared = bytearray(b"C" * 300)
    backend.put("data/10/view", memoryview(shared)[100:200])
    shared[:] = b"D" * 300
    publish_puts(backend, {})
    assert backend.get("data/10/reused") == b"A" * 5000
    assert backend.get("data/10/view") == b"C" * 100


def test_bytes_like_inputs(backend: Backend) -> None:
    words = array.array("I", range(1000))  # a multi-byte format: 4000 bytes, 1000 items
    objects = {
        "data/11/bytearray": bytearray(b"\x00\x01\xfe\xff" * 700),
        "data/11/memoryview": memoryview(b"0123456789" * 300),
        "data/11/slice": memoryview(b"0123456789" * 300)[7:2007],
        "data/11/words": memoryview(words),
    }
    publish_puts(backend, objects)
    for name, data in objects.items():
        expected = bytes(data)
        assert backend.get(name) == expected, name
        assert backend.size(name) == len(expected), name
        assert backend.get(name, offset=3, length=10) == expected[3:13], name


def test_put_file_stores_the_first_bytes_of_a_file(backend: Backend) -> None:
    """``put_file``: the first ``length`` bytes of the file, wherever its position; the file stays
    the caller's (open, free to change once the call returns)."""
    data = bytes(range(256)) * 40
    fd = os.memfd_create("contract", os.MFD_CLOEXEC)
    try:
        os.write(fd, data + b"not this")
        backend.put_file("data/12/file", fd, len(data))  # the position is at the end
        backend.put_file("data/12/empty", fd, 0)
        os.pwrite(fd, b"X" * 100, 0)
        os.fstat(fd)  # still open
    finally:
        os.close(fd)
    publish_puts(backend, {})
    assert backend.get("data/12/file") == data
    assert backend.get("data/12/empty") == b""


def test_random_byte_ranges(backend: Backend) -> None:
    rng = random.Random(20240611)
    data = rng.randbytes(9_973)
    publish_puts(backend, {"data/12/obj": data})
    n = len(data)
    ranges: list[tuple[int, int | None]] = [(0, n), (0, None), (n - 1, 1), (n - 1, None), (n, None), (n, 5)]
    ranges += [(n + 100, 10), (5, 0), (0, 1)]
    for _ in range(30):
        offset = rng.randrange(0, n + 50)
        ranges.append((offset, rng.choice([None, rng.randrange(0, 3000)])))
    for offset, length in ranges:
        got = backend.get("data/12/obj", offset=offset, length=length)
        assert got == data[offset : None if length is None else offset + length], (offset, length)


def test_listing_longer_than_a_page(backend: Backend) -> None:
    names = [f"data/{i % 7:02x}/{i:06d}" for i in range(LONG_LISTING)]
    with ThreadPoolExecutor(max(1, min(4, backend.capabilities.max_connections))) as pool:
        list(pool.map(lambda n: backend.put(n, n.encode()), names))
    head = backend.read_head()
    version = backend.publish(head=b"long", expect=head.version if head else None)
    assert backend.list() == sorted(names)
    assert backend.list("data/03/") == sorted(n for n in names if n.startswith("data/03/"))
    assert backend.list("data/0") == sorted(names)  # a string prefix, not a folder
    backend.publish(head=b"short", expect=version, deletes=names[: LONG_LISTING - 3])
    assert backend.list() == sorted(names[LONG_LISTING - 3 :])


def test_objects_of_a_publication_are_visible_by_it(backend: Backend) -> None:
    v0 = backend.publish(head=b"h0", expect=None)
    v1 = backend.publish(head=b"h1", expect=v0)
    backend.put("data/13/staged", b"staged bytes")
    if backend.capabilities.atomic_batch:  # it becomes visible together with its head, not before
        assert backend.list("data/") == []
        with pytest.raises(NotFoundError):
            backend.get("data/13/staged")
    with pytest.raises(ConflictError):
        backend.publish(head=b"stale", expect=v0)  # a conflict keeps staged objects staged
    head = backend.read_head()
    assert head is not None and head.version == v1 and head.data == b"h1"
    backend.publish(head=b"h2", expect=v1)  # the re-planned publication carries them
    assert backend.list("data/") == ["data/13/staged"]
    assert backend.get("data/13/staged") == b"staged bytes"
    assert backend.size("data/13/staged") == 12


def test_list_prefix_is_a_string_prefix(backend: Backend) -> None:
    publish_puts(backend, {"data/ab/x": b"1", "data/ac/y": b"2", "data/b/z": b"3", "index/i": b"4"})
    assert backend.list("data/a") == ["data/ab/x", "data/ac/y"]
    assert backend.list("d") == ["data/ab/x", "data/ac/y", "data/b/z"]
    assert backend.list("data/ab/x") == ["data/ab/x"]
    assert backend.list("data/ab/xx") == []


HOSTILE_NAMES = ["", "/", "../x", "a//b", "head", "sp ace", "é", "a\x00b", "x/../../etc", "\\", "a/" * 40]


def test_only_typed_errors_escape(backend: Backend) -> None:
    """Hostile but possible calls fail with a BackupError (or succeed), never with anything else."""
    version = publish_puts(backend, {"data/14/x": b"x" * 100})
    calls = []
    for name in [*HOSTILE_NAMES, "data/14/missing"]:
        calls += [
            lambda n=name: backend.get(n),
            lambda n=name: backend.get(n, offset=5, length=5),
            lambda n=name: backend.size(n),
            lambda n=name: backend.put(n, b"y"),
            lambda n=name: backend.delete_unpublished([n]),
            lambda n=name: backend.list(n),
        ]
    for expect in ["", "not-a-version", "0" * 40, "0" * 32, '"etag"', version + "x"]:
        calls.append(lambda e=expect: backend.publish(head=b"never", expect=e))
    for call in calls:
        try:
            call()
        except BackupError:
            pass
    head = backend.read_head()
    assert head is not None and head.data == b"h-data/14/x"  # no stale or foreign version was accepted
    assert backend.get("data/14/x") == b"x" * 100


def test_publish_against_a_wrong_version_is_a_conflict(backend: Backend) -> None:
    version = publish_puts(backend, {"data/16/x": b"x"})
    for expect in ["", "not-a-version", "0" * 40, "0" * 32, '"etag"', version + "x", None]:
        with pytest.raises(ConflictError):
            backend.publish(head=b"never", expect=expect)
    head = backend.read_head()
    assert head is not None and head.version == version and head.data == b"h-data/16/x"


def test_invalid_names_are_refused_by_every_operation(backend: Backend) -> None:
    for bad in HOSTILE_NAMES:
        for call in (backend.get, backend.size, lambda n: backend.put(n, b"x")):
            with pytest.raises(UsageError):
                call(bad)


def test_close_is_idempotent(backend: Backend) -> None:
    publish_puts(backend, {"data/15/x": b"x"})
    backend.close()
    backend.close()


def test_optional_maintenance_keeps_the_repository(backend: Backend) -> None:
    publish_puts(backend, {"data/17/x": b"x" * 10, "index/i": b"i"})
    before = backend.read_head()
    assert before is not None
    squashed = backend.squash_history()
    assert isinstance(squashed, bool)
    if backend.capabilities.frees_space_on_delete:
        assert not squashed  # nothing is kept that a squash would free
    assert backend.remove_stale_temporaries(older_than=0.0) >= 0
    head = backend.read_head()
    assert head is not None and head.data == before.data
    assert squashed or head.version == before.version
    assert backend.list() == ["data/17/x", "index/i"]
    assert backend.get("data/17/x") == b"x" * 10
