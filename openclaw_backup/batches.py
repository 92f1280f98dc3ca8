"""Running a job's batches in parallel — in threads, or with a forked worker process too — with the
same results either way: the one seam between the engine (archiver, restorer) and how it is
parallelised.

Words: a **batch** is a unit of work with a **cost** (bytes of work): a group of files to read, a
ranged read of a pack to restore. :func:`run_batches` calls ``work(batch, progress)`` once for every
batch and returns what each call returned, in batch order; the caller merges those results, once, in
its own process. So ``work`` reports everything through its result, never by changing state the
caller reads afterwards (in a worker process such changes stay in the worker). It reports
``progress(bytes, items)`` as it goes; those calls arrive in the caller's process. What it stores
goes through ``output`` (the pack writer); it may read the store, where a forked process can: a
store on this machine (:attr:`.Repository.nearby`), or one that ``in_worker`` — called first in a
worker, False when the worker cannot do the work, which then takes no batch — gave a connection of
its own (:meth:`.Repository.reopen_store`). A worker runs ``worker_threads`` threads (reads in
flight from a store far away); those of this process are the rest of ``workers``.

Batches are dealt from both ends of the list sorted by cost: a large batch started last would run
alone at the end, and a thread busy in long calls that release the GIL (compressing, hashing large
chunks) pairs well with one doing the Python-heavy work of many small batches.

* **Threads**: ``workers`` threads of this process, every other one from the large end.
* **Fork** (Linux, :mod:`.forkwork`): a worker process takes batches from the large end while
  ``workers - 1`` threads here take them from the small end; the two interpreters run truly in
  parallel where threads would hand the GIL back and forth. The worker never writes to the store:
  what its copy of ``output`` makes (packs) is handed over whole, without a copy, and stored here
  straight from the memory file it was made in (:class:`Output`), so the store need not be one that
  a forked process can write to and this one see. Chosen when ``fork`` is True, or None and the
  batches cost at least :data:`FORK_MIN_COST` (a fork costs a few milliseconds).

Either way the first failure is raised as it was raised (a worker's exception crosses back typed);
the other threads stop after their current batch, and a worker is killed and reaped first. A worker
that dies (killed, out of memory) fails the call with :class:`.forkwork.WorkerDied`, and a call that
returns has a result from every batch: one that went missing is an error (:class:`BatchesLost`),
never a hole in what the caller merges.
"""

from __future__ import annotations

import collections
import mmap
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol, TypeVar

from . import forkwork
from .errors import BackupError

B = TypeVar("B")
R = TypeVar("R")

#: bytes and items done, reported as the work goes
Progress = Callable[[int, int], None]

#: Batches costing at least this much (bytes of work) together are worth a worker process.
FORK_MIN_COST = 32 << 20


class Relay(Protocol):
    """How a worker's output hands over what it makes (see :class:`Output`)."""

    def buffer(self, size: int) -> mmap.mmap:
        """A buffer of ``size`` bytes to fill in place, then :meth:`ship` whole."""
        ...

    def ship(self, meta: Any, buffer: mmap.mmap, length: int) -> None:
        """Hand over the first ``length`` bytes of ``buffer`` (no copy; the buffer is closed) with
        ``meta``; returns once this process has taken them in (:meth:`Output.absorb`)."""
        ...


class Output(Protocol):
    """Where ``work`` stores what it makes (the pack writer). Around a forked run, this process
    enters :meth:`shared` (the output is being filled by two processes at once); in the worker,
    :meth:`relay` is called first: from then on the output stores nothing itself but ships what it
    makes through the relay, and :meth:`flush` ships the rest; here, :meth:`absorb` takes each in,
    from the first ``length`` bytes of the memory file ``fd`` (open while it runs)."""

    def shared(self) -> AbstractContextManager[None]: ...

    def relay(self, relay: Relay) -> None: ...

    def flush(self) -> None: ...

    def absorb(self, meta: Any, fd: int, length: int) -> None: ...


class BatchesLost(BackupError):
    """Some batches were never reported done (a fault in the parallel machinery, not in the work)."""


class _Interrupted(Exception):
    pass


def run_batches(
    batches: Sequence[B],
    work: Callable[[B, Progress], R],
    *,
    cost: Callable[[B], int],
    workers: int,
    fork: bool | None,
    progress: Progress,
    output: Output | None = None,
    in_worker: Callable[[], bool] | None = None,
    worker_threads: int = 1,
) -> list[R]:
    """Run ``work`` on every batch (see the module docstring); their results, in batch order."""
    costs = [cost(b) for b in batches]
    run = _Run(batches, sorted(range(len(batches)), key=costs.__getitem__), work, progress)
    forked = (
        workers > 1
        and len(batches) > 1
        and fork is not False
        and (fork or sum(costs) >= FORK_MIN_COST)
        and forkwork.available()
    )
    if forked:
        _forked(run, workers, output, in_worker, max(1, min(worker_threads, workers - 1)))
        run.check_done()
    else:
        deck = _Deck(len(batches))
        threads = max(1, min(workers, len(batches)))
        run.threads([deck.take_high if i % 2 == 0 else deck.take_low for i in range(threads)])
        run.check_done()
    return run.results


class _Deck:
    """Indices ``0 .. n-1`` from both ends, for the threads of this process."""

    def __init__(self, n: int) -> None:
        self._left = collections.deque(range(n))

    def take_low(self) -> int | None:
        try:
            return self._left.popleft()
        except IndexError:
            return None

    def take_high(self) -> int | None:
        try:
            return self._left.pop()
        except IndexError:
            return None


class _Run:
    """One call of :func:`run_batches`: the batches by cost, the results, the first failures."""

    def __init__(self, batches: Sequence[Any], order: list[int], work: Callable[..., Any], progress: Progress) -> None:
        self.batches, self.order, self.work, self.progress = batches, order, work, progress
        self.results: list[Any] = [None] * len(batches)
        self.done = bytearray(len(batches))  # 1 where a batch's result has arrived
        self.failures: list[BaseException] = []
        self.worker: forkwork.Worker | None = None

    def stopped(self) -> bool:
        return bool(self.failures) or (self.worker is not None and self.worker.failed)

    def do(self, k: int, progress: Progress) -> Any:
        """Work on the batch dealt as ``k`` (its place by cost)."""
        return self.work(self.batches[self.order[k]], progress)

    def loop(self, take: Callable[[], int | None]) -> None:
        while not self.stopped() and (k := take()) is not None:
            self.deliver(self.order[k], self.do(k, self.progress))

    def deliver(self, i: int, result: Any) -> None:
        self.results[i] = result
        self.done[i] = 1

    def check_done(self) -> None:
        lost = self.done.count(0)
        if lost:
            raise BatchesLost(f"{lost} of {len(self.done)} batches of work were never reported done")

    def threads(self, takes: list[Callable[[], int | None]]) -> None:
        """One thread per deal in ``takes`` (the calling one when there is one); raise the first failure."""
        if len(takes) == 1:
            try:
                self.loop(takes[0])
            except BaseException as e:
                self.failures.append(e)
                raise
        else:

            def thread(take: Callable[[], int | None]) -> None:
                try:
                    self.loop(take)
                except BaseException as e:  # raised below
                    self.failures.append(e)

            running = [threading.Thread(target=thread, args=(t,), name=f"batch-{i}", daemon=True)
                       for i, t in enumerate(takes)]  # fmt: skip
            try:
                for t in running:
                    t.start()
                for t in running:
                    t.join()
            except BaseException:
                self.failures.append(_Interrupted())  # the threads stop after their current batch
                raise
        if self.failures:
            raise self.failures[0]


def _forked(
    run: _Run, workers: int, output: Output | None, in_worker: Callable[[], bool] | None, worker_threads: int
) -> None:
    deck = forkwork.TwoEnds(len(run.batches))

    def main(channel: forkwork.Channel) -> None:  # in the worker
        reports = _Reports(channel)
        if in_worker is not None and not in_worker():
            return  # it cannot work here: the threads of the parent do every batch
        if output is not None:
            output.relay(_Relay(channel))
        _worker_threads(run, deck, reports, worker_threads if output is None else 1)
        if output is not None:
            output.flush()
        reports.flush()

    def handle(frame: forkwork.Frame, channel: forkwork.Channel) -> None:  # here, in the inbox thread
        if frame.kind == b"P":
            run.progress(*frame.meta)
        elif frame.kind == b"R":
            for i, result in frame.meta:
                run.deliver(i, result)
        elif frame.kind == b"F":
            assert output is not None and frame.file is not None
            output.absorb(frame.meta, frame.file, frame.length)
            try:
                channel.send(b"C")  # taken in: the worker goes on
            except OSError:
                pass  # the worker died: its outcome tells

    try:
        with output.shared() if output is not None else nullcontext():
            run.worker = worker = forkwork.Worker(main, handle)
            try:
                mine = workers - worker_threads
                run.threads([deck.take_low] * max(1, min(mine, len(run.batches) - 1)))
                worker.join()
            except BaseException:
                run.failures.append(_Interrupted())
                worker.kill()
                raise
    finally:
        deck.close()


def _worker_threads(run: _Run, deck: forkwork.TwoEnds, reports: _Reports, threads: int) -> None:
    """In the worker: ``threads`` threads take batches from the large end until none are left or
    one fails (the others stop after their current batch); the first failure is raised."""
    failures: list[BaseException] = []

    def loop() -> None:
        try:
            while not failures and (k := deck.take_high()) is not None:
                reports.result(run.order[k], run.do(k, reports.progress))
        except BaseException as e:  # raised below
            failures.append(e)

    if threads <= 1:
        loop()
    else:
        running = [threading.Thread(target=loop, name=f"worker-batch-{i}", daemon=True) for i in range(threads)]
        for t in running:
            t.start()
        for t in running:
            t.join()
    if failures:
        raise failures[0]


class _Reports:
    """What a worker sends back: its progress as it goes, at most every :data:`.forkwork.TICK`
    seconds, and its results once, at :meth:`flush` (the parent holds them only to merge them, at
    the end: sent early, they would sit beside its pack in the making at its peak)."""

    def __init__(self, channel: forkwork.Channel) -> None:
        self.channel = channel
        self._lock = threading.Lock()  # the worker's threads report together
        self.counts = [0, 0]
        self.done: list[tuple[int, Any]] = []
        self.last = time.monotonic()

    def progress(self, nbytes: int, items: int = 0) -> None:
        with self._lock:
            self.counts[0] += nbytes
            self.counts[1] += items
            if time.monotonic() - self.last >= forkwork.TICK:
                self._send_progress()

    def result(self, i: int, result: Any) -> None:
        with self._lock:
            self.done.append((i, result))

    def _send_progress(self) -> None:
        self.last = time.monotonic()
        if any(self.counts):
            self.channel.send(b"P", self.counts)
            self.counts = [0, 0]

    def flush(self) -> None:
        with self._lock:
            self._send_progress()
            if self.done:
                self.channel.send(b"R", self.done)
                self.done = []


class _Relay(Relay):
    """The worker's side of its output's relay: buffers in memory files, handed over whole."""

    def __init__(self, channel: forkwork.Channel) -> None:
        self.channel = channel
        self._files: dict[int, forkwork.MemoryFile] = {}

    def buffer(self, size: int) -> mmap.mmap:
        file = forkwork.MemoryFile(size)
        self._files[id(file.buffer)] = file
        return file.buffer

    def ship(self, meta: Any, buffer: mmap.mmap, length: int) -> None:
        file = self._files.pop(id(buffer))
        try:
            self.channel.hand_over(b"F", meta, file, length)
        finally:
            file.close()
        # like a store's put: done when it returns (and one pack in flight at most)
        frame = self.channel.recv()
        if frame is None or frame.kind != b"C":
            raise forkwork.WorkerDied("the parent stopped taking in what the worker made")
