"""Cross-cutting behaviour as wrappers around a backend, composed in one place.

:class:`WrappedBackend` forwards every call; subclasses override what they change, so one wrapper
serves each concern and :func:`openclaw_backup.backends.open_backend` composes them, innermost
first: the store, then an optional test hook (fault injection, see ``tests/support/faults.py``), then
:class:`LimitedBackend` (at most ``capabilities.max_connections`` calls at once), then
:class:`LoggingBackend` (one ``logging`` record per call, on the ``openclaw_backup.storage``
logger; the CLI shows them with ``-v``), then :class:`RetryingBackend`.

Retry policy: only :class:`~openclaw_backup.errors.StoreError` with ``transient=True`` is retried,
with exponential backoff and jitter. A :class:`~openclaw_backup.errors.QuotaError` is never slept
on here (a commit quota can mean an hour): it surfaces at once so the caller can reschedule.
``publish`` is retried only by the backend itself, which knows how to tell whether a lost
publication landed (the Hub and S3 backends do); a retry here would risk a duplicate.

One wrapper is not composed there: :func:`reading_ahead` lends a block of code a :class:`ReadAhead`
around the store, which makes the reads the block will make together, up front (the repository's
opening and a restore's first reads: one round trip for reads that do not depend on one another).
"""

from __future__ import annotations

import copy
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Literal, NamedTuple, TypeVar

from ..errors import StoreError
from .base import Backend, Head

T = TypeVar("T")


def retry_transient(
    fn: Callable[[], T],
    *,
    attempts: int,
    base_delay: float = 0.2,
    max_delay: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn``, retrying transient :class:`StoreError` with exponential backoff and jitter."""
    for attempt in range(max(1, attempts)):
        try:
            return fn()
        except StoreError as e:
            if not e.transient or attempt >= attempts - 1:
                raise
            sleep(min(max_delay, base_delay * 2**attempt) * (0.5 + random.random() / 2))
    raise AssertionError("unreachable")


class WrappedBackend(Backend):
    """Forwards every operation of the interface to ``inner``, the optional ones included.

    Anything else of the store (its root, its client) is reached through ``inner``, never through
    the wrapper: a wrapper is a :class:`Backend`, not a proxy.
    """

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.capabilities = inner.capabilities
        self.location = inner.location

    def get(self, name: str, *, offset: int = 0, length: int | None = None) -> bytes:
        return self.inner.get(name, offset=offset, length=length)

    def size(self, name: str) -> int:
        return self.inner.size(name)

    def list(self, prefix: str = "") -> list[str]:
        return self.inner.list(prefix)

    def put(self, name: str, data: bytes) -> None:
        self.inner.put(name, data)

    def put_file(self, name: str, fd: int, length: int) -> None:
        self.inner.put_file(name, fd, length)

    def read_head(self) -> Head | None:
        return self.inner.read_head()

    def publish(self, *, head: bytes, expect: str | None, deletes: Sequence[str] = ()) -> str:
        return self.inner.publish(head=head, expect=expect, deletes=deletes)

    def delete_unpublished(self, names: Sequence[str]) -> None:
        self.inner.delete_unpublished(names)

    def close(self) -> None:
        self.inner.close()

    def squash_history(self) -> bool:
        return self.inner.squash_history()

    def remove_stale_temporaries(self, *, older_than: float) -> int:
        return self.inner.remove_stale_temporaries(older_than=older_than)

    def reopen(self) -> Backend | None:
        """This wrapper (its settings) around a reopened inner store, or None when it cannot be."""
        inner = self.inner.reopen()
        if inner is None:
            return None
        fresh = copy.copy(self)
        fresh.inner = inner
        fresh._reopened()
        return fresh

    def _reopened(self) -> None:
        """Make the state of a copy made by :meth:`reopen` its own (locks, counters)."""


class LimitedBackend(WrappedBackend):
    """At most ``limit`` calls in flight at once (a store's connection limit, a rate limit)."""

    def __init__(self, inner: Backend, *, limit: int) -> None:
        super().__init__(inner)
        self._limit = max(1, limit)
        self._slots = threading.BoundedSemaphore(self._limit)

    def _reopened(self) -> None:
        self._slots = threading.BoundedSemaphore(self._limit)  # its own connections, its own limit

    def _limited(self, fn: Callable[[], T]) -> T:
        with self._slots:
            return fn()

    def get(self, name: str, *, offset: int = 0, length: int | None = None) -> bytes:
        return self._limited(lambda: self.inner.get(name, offset=offset, length=length))

    def size(self, name: str) -> int:
        return self._limited(lambda: self.inner.size(name))

    def list(self, prefix: str = "") -> list[str]:
        return self._limited(lambda: self.inner.list(prefix))

    def put(self, name: str, data: bytes) -> None:
        self._limited(lambda: self.inner.put(name, data))

    def put_file(self, name: str, fd: int, length: int) -> None:
        self._limited(lambda: self.inner.put_file(name, fd, length))

    def read_head(self) -> Head | None:
        return self._limited(self.inner.read_head)

    def publish(self, *, head: bytes, expect: str | None, deletes: Sequence[str] = ()) -> str:
        return self._limited(lambda: self.inner.publish(head=head, expect=expect, deletes=deletes))


class LoggingBackend(WrappedBackend):
    """One DEBUG record per call (operation, object, bytes, seconds, outcome); never object contents."""

    def __init__(self, inner: Backend, *, logger: logging.Logger | None = None) -> None:
        super().__init__(inner)
        self.log = logger or logging.getLogger("openclaw_backup.storage")

    def _logged(self, op: str, name: str, fn: Callable[[], T], *, sent: int = 0) -> T:
        if not self.log.isEnabledFor(logging.DEBUG):
            return fn()
        start = time.monotonic()
        try:
            out = fn()
        except Exception as e:
            self.log.debug("%s %s %s: failed after %.3fs: %s", self.location, op, name, time.monotonic() - start, e)
            raise
        size = len(out) if isinstance(out, (bytes, bytearray)) else sent
        self.log.debug("%s %s %s: %d bytes in %.3fs", self.location, op, name, size, time.monotonic() - start)
        return out

    def get(self, name: str, *, offset: int = 0, length: int | None = None) -> bytes:
        return self._logged("get", name, lambda: self.inner.get(name, offset=offset, length=length))

    def size(self, name: str) -> int:
        return self._logged("size", name, lambda: self.inner.size(name))

    def list(self, prefix: str = "") -> list[str]:
        return self._logged("list", prefix or "/", lambda: self.inner.list(prefix))

    def put(self, name: str, data: bytes) -> None:
        self._logged("put", name, lambda: self.inner.put(name, data), sent=len(data))

    def put_file(self, name: str, fd: int, length: int) -> None:
        self._logged("put", name, lambda: self.inner.put_file(name, fd, length), sent=length)

    def read_head(self) -> Head | None:
        return self._logged("read", "head", self.inner.read_head)

    def publish(self, *, head: bytes, expect: str | None, deletes: Sequence[str] = ()) -> str:
        what = f"head ({len(deletes)} deletes)"
        return self._logged("publish", what, lambda: self.inner.publish(head=head, expect=expect, deletes=deletes))


class RetryingBackend(WrappedBackend):
    """Retries idempotent calls on transient store errors (``attempts`` tries in all)."""

    def __init__(
        self,
        inner: Backend,
        *,
        attempts: int = 5,
        base_delay: float = 0.2,
        max_delay: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(inner)
        self.attempts = max(1, attempts)
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._sleep = sleep

    def _retry(self, fn: Callable[[], T]) -> T:
        return retry_transient(
            fn, attempts=self.attempts, base_delay=self.base_delay, max_delay=self.max_delay, sleep=self._sleep
        )

    def get(self, name: str, *, offset: int = 0, length: int | None = None) -> bytes:
        return self._retry(lambda: self.inner.get(name, offset=offset, length=length))

    def size(self, name: str) -> int:
        return self._retry(lambda: self.inner.size(name))

    def list(self, prefix: str = "") -> list[str]:
        return self._retry(lambda: self.inner.list(prefix))

    def put(self, name: str, data: bytes) -> None:
        self._retry(lambda: self.inner.put(name, data))

    def put_file(self, name: str, fd: int, length: int) -> None:
        self._retry(lambda: self.inner.put_file(name, fd, length))  # read at offsets: the same bytes again

    def read_head(self) -> Head | None:
        return self._retry(self.inner.read_head)


class Read(NamedTuple):
    """A read a block of code will make: ``get`` of a whole object, ``list`` of a prefix, or the ``head``."""

    op: Literal["get", "list", "head"]
    name: str = ""


@contextmanager
def reading_ahead(backend: Backend, reads: Iterable[Read]) -> Iterator[Backend]:
    """``backend`` for a block of code that will make ``reads`` (each at most once, in any order, or
    not at all): from a store far away they are all made now, together — one round trip where the
    block would wait for one each — and the block's call that makes one of them gets its answer
    (:class:`ReadAhead`). When the block ends, what is still in flight is waited for and what no
    call took is dropped unseen. On a store on this machine (no failures a retry may cure) or for a
    single read the block gets ``backend`` itself: there a thread costs more than it saves."""
    ahead = read_ahead(backend, reads)
    if ahead is None:
        yield backend
        return
    try:
        yield ahead
    finally:
        ahead.close()


def read_ahead(backend: Backend, reads: Iterable[Read]) -> ReadAhead | None:
    """A :class:`ReadAhead` around ``backend`` making ``reads`` — for the caller to :meth:`~ReadAhead.close`
    when the code that wants them is done — or None where :func:`reading_ahead` gives the store itself."""
    wanted = list(dict.fromkeys(reads))
    if len(wanted) < 2 or not backend.capabilities.transient_failures:
        return None
    ahead = ReadAhead(backend)
    ahead.start(wanted)
    return ahead


def _make(backend: Backend, read: Read) -> Any:
    if read.op == "get":
        return backend.get(read.name)
    if read.op == "list":
        return backend.list(read.name)
    return backend.read_head()


class ReadAhead(WrappedBackend):
    """``inner``, with reads made ahead of the calls that want them (see :func:`reading_ahead`),
    until :meth:`close`; up to one fewer at once than ``capabilities.max_connections``, so that a
    call reading something else (the key file, while the snapshots are read) never waits for a
    connection behind them.

    Each read made ahead answers the first call that makes it, once, and only as the store answered
    it: a read ahead that failed is made again by its call, which fails (or not) as it would have
    without this wrapper. A listing made ahead answers no call after a read of the head that
    reached the store (or one :meth:`head_read_elsewhere` reports), and none is started after one:
    what a listing made before the head found is not news after it (a damage record written before
    the head was published must be in a listing made under that head)."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        # one connection fewer than the store's: a call wanting something else never queues behind them
        width = max(1, inner.capabilities.max_connections - 1)
        self._pool: ThreadPoolExecutor | None = ThreadPoolExecutor(max_workers=width, thread_name_prefix="read-ahead")
        self._pending: dict[Read, Future[Any]] = {}
        self._started: set[Read] = set()
        self._made_ahead: list[Future[Any]] = []
        self._lock = threading.Lock()
        self._head_read = False  # a read of the head reached the store: no listing made ahead answers

    def _reopened(self) -> None:
        self._pool = None  # a forked process reads for itself
        self._pending, self._started, self._made_ahead = {}, set(), []
        self._lock = threading.Lock()

    def start(self, reads: Iterable[Read], *, again: bool = True) -> None:
        """Make ``reads`` ahead (those not already in flight for a call; without ``again``, none
        made ahead before either); nothing once closed, and no listing after a read of the head
        reached the store. (The reads are handed to the threads outside the lock: a call that
        wants none of them does not wait for threads to be started.)"""
        todo: list[tuple[Read, Future[Any]]] = []
        with self._lock:
            pool = self._pool
            for read in reads:
                if pool is None or read in self._pending or (read.op == "list" and self._head_read):
                    continue
                if not again and read in self._started:
                    continue
                self._started.add(read)
                future: Future[Any] = Future()
                self._pending[read] = future
                self._made_ahead.append(future)
                todo.append((read, future))
        for read, future in todo:
            try:
                pool.submit(self._make, read, future)  # type: ignore[union-attr]
            except RuntimeError:  # closed meanwhile
                future.cancel()

    def _make(self, read: Read, future: Future[Any]) -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(_make(self.inner, read))
        except BaseException as e:  # the call that takes it raises it (or reads again)
            future.set_exception(e)

    def then(self, after: Sequence[Read], follow: Callable[[list[Any]], Iterable[Read]]) -> None:
        """When every read of ``after`` (made ahead: see :meth:`start`) has answered without an
        error, make ahead the reads ``follow(their answers)`` names — in the thread that saw the
        last answer, while the caller goes on. Nothing when one failed, was not made ahead, or
        ``follow`` raises (reading ahead is only ever a head start)."""
        with self._lock:
            futures = [self._pending.get(read) for read in after]
        if not futures or any(f is None for f in futures):
            return
        made = [f for f in futures if f is not None]
        left = [len(made)]
        count = threading.Lock()

        def answered(_: Future[Any]) -> None:
            with count:
                left[0] -= 1
                if left[0]:
                    return
            if any(f.cancelled() or f.exception() is not None for f in made):
                return
            try:
                reads = list(follow([f.result() for f in made]))
            except Exception:
                return
            self.start(reads, again=False)  # not what a call made meanwhile

        for future in made:
            future.add_done_callback(answered)

    def drop(self, reads: Iterable[Read]) -> None:
        """Answer no call with ``reads`` made ahead (they go on, unseen, until :meth:`close`)."""
        with self._lock:
            for read in reads:
                self._pending.pop(read, None)

    def head_read_elsewhere(self) -> None:
        """The head was read around this wrapper: from now on, as after a read of the head through
        it, no listing made ahead answers a call."""
        with self._lock:
            self._head_read = True
            self._pending = {read: f for read, f in self._pending.items() if read.op != "list"}

    def close(self) -> None:
        """Wait for what is in flight, and drop what no call took, unseen (queued reads are not made)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            self._pending = {}
            made, self._made_ahead = self._made_ahead, []
        for future in made:
            future.cancel()  # those never started (running ones were waited for)

    def _made(self, read: Read) -> Future[Any] | None:
        """The read made ahead, answered without an error (waited for); None when there is none."""
        with self._lock:
            future = self._pending.pop(read, None)
        if future is None or future.cancelled() or future.exception() is not None:
            return None  # the call makes the read itself, and reports as ever
        return future

    def get(self, name: str, *, offset: int = 0, length: int | None = None) -> bytes:
        made = self._made(Read("get", name)) if offset == 0 and length is None else None
        return made.result() if made is not None else self.inner.get(name, offset=offset, length=length)

    def list(self, prefix: str = "") -> list[str]:
        made = self._made(Read("list", prefix))
        return made.result() if made is not None else self.inner.list(prefix)

    def read_head(self) -> Head | None:
        made = self._made(Read("head"))
        if made is not None:
            return made.result()
        self.head_read_elsewhere()
        return self.inner.read_head()
