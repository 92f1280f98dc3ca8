"""The seam for parallel work (openclaw_backup.batches): threads and a forked worker give the same
merged results; the worker never writes to the store (what it makes is handed over and stored here),
so a backup with a worker is the same on any store, even one kept in this process's memory; errors
cross typed, and the worker is gone when the call returns."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from openclaw_backup import batches, forkwork
from openclaw_backup.backends.base import Capabilities
from openclaw_backup.backends.local import LocalBackend
from openclaw_backup.backends.memory import MemoryBackend
from openclaw_backup.errors import IntegrityError, StoreError
from openclaw_backup.maintenance import check
from openclaw_backup.pack import ReadBatch, pack_name
from openclaw_backup.reporter import Reporter
from openclaw_backup.repository import Repository, walk
from tests.support.repos import PACK_SIZE, new_repo, run_backup, run_restore
from tests.support.trees import fingerprint, sample_state, write

needs_fork = pytest.mark.skipif(not forkwork.available(), reason="the forked worker is Linux-only")


def _children() -> set[int]:
    """This process's children, zombies included (a worker killed but not reaped is one)."""
    out: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                out.update(int(pid) for pid in f.read().split())
        except FileNotFoundError:
            pass  # a thread that has just ended
    return out


def _memfds() -> set[str]:
    """The anonymous memory files this process holds open."""
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:"):
                out.add(fd)
    return out


@pytest.fixture(autouse=True)
def _no_worker_left() -> Any:
    before, files = _children(), _memfds()
    yield
    assert _children() <= before, "a worker process was left behind"
    assert _memfds() <= files, "a memory file was left open"


class _Gate:
    """Holds this process's threads at their first batch until the forked worker has begun one (at
    most 30 s): on a loaded machine they could otherwise do every batch before the worker starts."""

    def __init__(self) -> None:
        self.parent = os.getpid()
        self.read, self.write = os.pipe()
        self.opened = threading.Event()

    def __call__(self) -> None:
        if os.getpid() != self.parent:
            os.write(self.write, b"w")
        elif not self.opened.is_set():
            select.select([self.read], [], [], 30)
            self.opened.set()

    def close(self) -> None:
        os.close(self.read)
        os.close(self.write)


@pytest.fixture
def gate() -> Iterator[_Gate]:
    g = _Gate()
    yield g
    g.close()


def _square(n: int, progress: batches.Progress, gate: Callable[[], None] = lambda: None) -> tuple[int, int, int]:
    gate()
    time.sleep(0.001)
    progress(n, 1)
    return n * n, os.getpid(), threading.get_ident()


@pytest.mark.parametrize("fork", [False, pytest.param(True, marks=needs_fork)])
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_threads_and_fork_give_the_same_results_in_batch_order(fork: bool, workers: int, gate: _Gate) -> None:
    items = [7, 1, 300, 42, 5, 1000, 9, 64, 3, 128] * 20
    seen = [0, 0]

    def progress(nbytes: int, n: int) -> None:
        seen[0] += nbytes
        seen[1] += n

    held = gate if fork and workers > 1 else (lambda: None)
    out = batches.run_batches(items, lambda n, p: _square(n, p, held), cost=lambda n: n, workers=workers,
                              fork=fork, progress=progress)  # fmt: skip
    assert [r[0] for r in out] == [n * n for n in items]
    assert seen == [sum(items), len(items)]  # every count arrived here
    pids = {r[1] for r in out}
    assert os.getpid() in pids
    assert len(pids) == (2 if fork and workers > 1 else 1)


def test_small_work_stays_in_threads_unless_told() -> None:
    out = batches.run_batches([1, 2, 3], _square, cost=lambda n: n, workers=2, fork=None, progress=lambda b, n: None)
    assert {r[1] for r in out} == {os.getpid()}


@pytest.mark.parametrize("fork", [False, pytest.param(True, marks=needs_fork)])
@pytest.mark.parametrize("where", ["small end", "large end"])
def test_an_error_in_a_batch_is_raised_typed(fork: bool, where: str) -> None:
    bad = 1 if where == "small end" else 100  # the large end: the worker's first batch when forked

    def work(n: int, progress: batches.Progress) -> int:
        if n == bad:
            raise IntegrityError(f"blob {n}: authentication failed", hint="run check")
        return n

    with pytest.raises(IntegrityError, match="authentication failed") as err:
        batches.run_batches(list(range(1, 101)), work, cost=lambda n: n, workers=2, fork=fork,
                            progress=lambda b, n: None)  # fmt: skip
    assert err.value.hint == "run check"


class _Relayed:
    """An output that stores numbers; in a worker it ships them here in buffers of three."""

    def __init__(self) -> None:
        self.stored: list[int] = []
        self.relay_to: batches.Relay | None = None
        self.run: list[int] = []
        self.fail = False
        self.sharing = 0
        self.absorbing: threading.Event | None = None  # set when a relayed run arrives here

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        self.sharing += 1
        yield

    def put(self, n: int) -> None:
        if self.relay_to is None:
            self.stored.append(n)
            return
        self.run.append(n)
        if len(self.run) == 3:
            self.flush()

    def relay(self, relay: batches.Relay) -> None:
        self.relay_to = relay

    def flush(self) -> None:
        if self.relay_to is not None and self.run:
            buf = self.relay_to.buffer(4096)
            data = b"".join(n.to_bytes(4, "little") for n in self.run)
            buf[: len(data)] = data
            self.relay_to.ship(len(self.run), buf, len(data))  # taken in here when it returns
            self.run = []

    def absorb(self, meta: Any, fd: int, length: int) -> None:
        if self.absorbing is not None:
            self.absorbing.set()
        if self.fail:
            raise StoreError("cannot write: no space left on device", transient=False)
        data = os.pread(fd, length, 0)
        self.stored += [int.from_bytes(data[i : i + 4], "little") for i in range(0, 4 * meta, 4)]


@pytest.mark.parametrize("fork", [False, pytest.param(True, marks=needs_fork)])
def test_what_a_worker_stores_is_relayed_and_absorbed_here(fork: bool, gate: _Gate) -> None:
    output = _Relayed()

    def work(n: int, progress: batches.Progress) -> int:
        if fork:
            gate()
        time.sleep(0.002)
        output.put(n)
        return os.getpid()

    pids = batches.run_batches(list(range(1, 101)), work, cost=lambda n: n, workers=2, fork=fork,
                               progress=lambda b, n: None, output=output)  # fmt: skip
    assert sorted(output.stored) == list(range(1, 101))
    assert len(set(pids)) == (2 if fork else 1)
    assert output.sharing == (1 if fork else 0)


@needs_fork
def test_an_output_that_fails_here_stops_the_worker_and_is_raised() -> None:
    output = _Relayed()
    output.fail = True  # at the first run the worker relays
    output.absorbing = relayed = threading.Event()

    def work(n: int, progress: batches.Progress) -> int:
        if output.relay_to is None and not relayed.wait(30):  # here: let the worker relay first
            relayed.set()  # (else this thread may do every batch before the worker starts)
        output.put(n)
        return n

    with pytest.raises(StoreError, match="no space left"):
        batches.run_batches(list(range(1, 1001)), work, cost=lambda n: n, workers=2, fork=True,
                            progress=lambda b, n: None, output=output)  # fmt: skip


def _state(root: Path) -> None:
    sample_state(root)
    big = os.urandom(2_000_000)
    for name in ("a.bin", "b.bin"):
        write(root / "media" / name, big)
    for i in range(200):
        write(root / "cache" / f"{i:03}.js", b"module.exports = %d;\n" % (i % 7) * (i + 1))


@needs_fork
def test_a_memory_store_backs_up_and_restores_with_a_worker_as_with_threads(tmp_path: Path) -> None:
    """A store that a forked process could not write to (its objects live in this process): the
    worker hands over what it stores, so the snapshot is the same as from threads (and a restore's
    worker reads the store as it was when forked)."""
    src = tmp_path / "src"
    _state(src)
    snapshots = {}
    for fork in (False, True):
        repo = new_repo(MemoryBackend())
        res = run_backup(repo, {"s": src}, fork=fork)
        assert res.snapshot_id and not res.warnings, res.warnings
        assert res.stats["bytes_added"] == sum(len(v) for k, v in repo.backend.objects.items()  # type: ignore[attr-defined]
                                               if k.startswith("data/"))  # fmt: skip
        assert not check(repo, read_data=True, reporter=Reporter()).problems
        repo.load_index()
        tree = repo.find_snapshot(res.snapshot_id).tree
        snapshots[fork] = {path: (n.type, n.size, n.mtime_ns, n.mode, n.sqlite, n.sqlite_info)
                           for path, n in walk(repo, tree)}  # fmt: skip
        out = tmp_path / f"out-{fork}" / "s"
        run_restore(repo, "latest", {"s": out})
        assert fingerprint(out) == fingerprint(src)
    assert snapshots[True] == snapshots[False]


class _FarAway(MemoryBackend):
    """A store that says it is reached over a network: a worker must not use it, and by default
    nothing forks for it. Records which process each call came from."""

    capabilities = Capabilities(atomic_batch=False, max_connections=8, transient_failures=True)

    def __init__(self) -> None:
        super().__init__()
        self.callers: set[int] = set()

    def get(self, name: str, *, offset: int = 0, length: int | None = None) -> bytes:
        self.callers.add(os.getpid())
        return super().get(name, offset=offset, length=length)

    def put(self, name: str, data: bytes) -> None:
        self.callers.add(os.getpid())
        super().put(name, data)


@needs_fork
def test_a_store_far_away_is_only_ever_touched_here(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _state(src)
    backend = _FarAway()
    repo = new_repo(backend)
    assert not repo.nearby and new_repo(MemoryBackend()).nearby
    res = run_backup(repo, {"s": src}, fork=True)  # a worker reads files; what it stores is stored here
    assert res.snapshot_id and not res.warnings
    out = tmp_path / "out" / "s"
    run_restore(repo, "latest", {"s": out})  # asked to fork, but the worker would read the store: threads
    assert fingerprint(out) == fingerprint(src)
    assert backend.callers == {os.getpid()}


# ---------------------------------------------------------------------------- a worker that dies


def _die_in_the_worker(parent: int) -> None:
    if os.getpid() != parent:
        os.kill(os.getpid(), signal.SIGKILL)


@needs_fork
def test_a_killed_worker_fails_the_call(gate: _Gate) -> None:
    parent = os.getpid()

    def work(n: int, progress: batches.Progress) -> int:
        gate()
        time.sleep(0.001)
        if n == 90:  # the worker takes the large end
            _die_in_the_worker(parent)
        return n

    with pytest.raises(forkwork.WorkerDied, match="signal 9"):
        batches.run_batches(list(range(1, 101)), work, cost=lambda n: n, workers=2, fork=True,
                            progress=lambda b, n: None)  # fmt: skip


@needs_fork
def test_results_a_worker_never_reported_fail_the_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever goes wrong in the machinery, a call never returns with holes where results go."""
    real = batches._Reports.result
    monkeypatch.setattr(batches._Reports, "result", lambda self, i, r: real(self, i, r) if i % 2 else None)
    with pytest.raises(batches.BatchesLost, match="never reported done"):
        batches.run_batches(list(range(1, 101)), _square, cost=lambda n: n, workers=2, fork=True,
                            progress=lambda b, n: None)  # fmt: skip


@pytest.mark.parametrize("fork", [False, pytest.param(True, marks=needs_fork)])
@pytest.mark.parametrize("workers", [2, 3])
def test_an_interrupt_here_stops_everything_and_goes_on(fork: bool, workers: int) -> None:
    """Ctrl-C while batches run: raised as it came, no worker or memory file left (the fixture)."""
    parent = os.getpid()
    output = _Relayed()

    def work(n: int, progress: batches.Progress) -> int:
        time.sleep(0.002)
        output.put(n)
        if n == 20 and os.getpid() == parent:
            raise KeyboardInterrupt
        return n

    with pytest.raises(KeyboardInterrupt):
        batches.run_batches(list(range(1, 101)), work, cost=lambda n: n, workers=workers, fork=fork,
                            progress=lambda b, n: None, output=output)  # fmt: skip


@needs_fork
def test_a_backup_whose_worker_is_killed_fails_and_publishes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from openclaw_backup.archiver import Archiver

    src = tmp_path / "src"
    _state(src)
    repo = new_repo()
    parent, real = os.getpid(), Archiver._read_file

    def read_file(self: Archiver, e: Any, progress: batches.Progress) -> Any:
        if e.path.endswith("b.bin"):  # a large file: dealt to the worker
            _die_in_the_worker(parent)
        return real(self, e, progress)

    monkeypatch.setattr(Archiver, "_read_file", read_file)
    with pytest.raises(forkwork.WorkerDied, match="signal 9"):
        run_backup(repo, {"s": src}, fork=True)
    assert not repo.refresh().snapshots
    monkeypatch.undo()
    res = run_backup(repo, {"s": src}, fork=True)  # and the next one stores everything
    out = tmp_path / "out" / "s"
    run_restore(repo, res.snapshot_id, {"s": out})
    assert fingerprint(out) == fingerprint(src)


@needs_fork
def test_a_restore_whose_worker_is_killed_fails_and_leaves_the_target_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    _state(src)
    repo = new_repo()
    run_backup(repo, {"s": src})
    out = tmp_path / "out" / "s"
    write(out / "mine.txt", b"already here")
    before = fingerprint(out)
    parent, real = os.getpid(), Repository.read_views  # how the restorer reads

    def read_views(self: Repository, batch: ReadBatch[Any]) -> Any:
        _die_in_the_worker(parent)  # at its first read
        return real(self, batch)

    monkeypatch.setattr(Repository, "read_views", read_views)
    with pytest.raises(forkwork.WorkerDied, match="signal 9"):
        run_restore(repo, "latest", {"s": out})
    assert fingerprint(out) == before


@pytest.mark.parametrize("fork", [False, pytest.param(True, marks=needs_fork)])
def test_a_read_that_yields_less_than_planned_fails_the_restore(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fork: bool
) -> None:
    """A file whose blobs did not all arrive is never left unfinished behind a restore that succeeds."""
    src = tmp_path / "src"
    _state(src)
    repo = new_repo()
    run_backup(repo, {"s": src})
    real = Repository.read_views  # how the restorer reads

    def read_views(self: Repository, batch: ReadBatch[Any]) -> Any:
        return list(real(self, batch))[:-1] if len(batch.wants) > 3 else real(self, batch)

    monkeypatch.setattr(Repository, "read_views", read_views)
    with pytest.raises(IntegrityError, match="not completely restored"):
        run_restore(repo, "latest", {"s": tmp_path / "out" / "s"}, fork=fork)


@needs_fork
def test_a_ctrl_c_to_the_whole_group_is_the_callers_to_act_on(gate: _Gate) -> None:
    """A terminal's Ctrl-C reaches the worker too: it is the caller's signal (its handler, or the
    supervisor's, decides; the worker is killed if the caller gives up), so the worker goes on."""
    parent, signalled = os.getpid(), []

    def work(n: int, progress: batches.Progress) -> int:
        gate()
        time.sleep(0.002)
        if os.getpid() == parent and n == 10:
            for pid in _children():
                os.kill(pid, signal.SIGINT)
                os.kill(pid, signal.SIGTERM)
                signalled.append(pid)
        return os.getpid()

    pids = batches.run_batches(list(range(1, 101)), work, cost=lambda n: n, workers=2, fork=True,
                               progress=lambda b, n: None)  # fmt: skip
    assert signalled and set(signalled) & set(pids)  # the worker was signalled, and did its share


@pytest.mark.parametrize("fork", [False, pytest.param(True, marks=needs_fork)])
@pytest.mark.parametrize("damage", ["flip", "delete"])
def test_a_partial_restore_names_the_same_files_with_a_worker_as_with_threads(
    tmp_path: Path, fork: bool, damage: str
) -> None:
    """The failures of a partial restore cross back from the worker: exactly the files with data in
    the damaged blob (or lost pack) are named and absent, everything else is restored exactly."""
    src = tmp_path / "src"
    _state(src)
    repo = new_repo(LocalBackend(tmp_path / "repo"), pack_size=PACK_SIZE)
    run_backup(repo, {"s": src})
    repo.load_index()
    files = {path: node for path, node in walk(repo, repo.find_snapshot("latest").tree) if node.type == "file"}
    content = files["s/media/a.bin"].content
    bid = bytes.fromhex(content[len(content) // 2])
    ref = repo.locate(bid)
    assert ref is not None
    pack = tmp_path / "repo" / pack_name(ref.pack)
    if damage == "flip":
        data = bytearray(pack.read_bytes())
        data[ref.offset + ref.length // 2] ^= 0x01
        pack.write_bytes(bytes(data))
        lost = {bid}
    else:
        pack.unlink()
        lost = {b for b, r in repo.index.items() if r.pack == ref.pack}
    failed = {p for p, n in files.items() if lost & {bytes.fromhex(c) for c in n.content}}
    assert {"s/media/a.bin", "s/media/b.bin"} <= failed  # the same content: both
    out = tmp_path / "out" / "s"
    res = run_restore(repo, "latest", {"s": out}, forked=fork, partial=True)
    assert set(res.failed) == {f"{out}{p[1:]}" for p in failed}
    expected = {k: v for k, v in fingerprint(src).items() if f"s/{k}" not in failed}
    assert fingerprint(out) == expected  # every other file exactly; never half a file
