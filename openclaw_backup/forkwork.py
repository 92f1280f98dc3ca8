"""Half of a job in a forked child process, the other half here, for work the GIL would serialise.

Two threads of this interpreter barely run faster than one when the work is many short calls
(decrypting, decompressing, hashing and writing thousands of blobs): the GIL changes hands at every
call. A child forked from this process has its own interpreter lock, the state read so far (index,
plan) shared copy-on-write, and nothing to coordinate with while it works, as long as the two
halves touch disjoint files.

:func:`run_split` runs ``mine`` here and ``theirs`` in the child. The child reports progress and
its outcome (what ``theirs`` returned, pickled, or the exception it raised) through a pipe; the
parent returns that value or re-raises that exception, so callers see the same typed errors as
from in-process work. If the parent fails or
is interrupted, the child is killed and reaped before the exception goes on: nothing keeps writing
behind the caller's back. The child also dies with the parent (``PR_SET_PDEATHSIG``, Linux).
Linux only (:func:`available`); callers fall back to threads elsewhere.

The child must not touch anything the parent's other threads may hold (reporters, consoles): it
only calls ``theirs`` with a progress callback, then leaves with ``os._exit``.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import pickle
import signal
import struct
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import BackupError

T = TypeVar("T")

Progress = Callable[[int], None]
_FRAME = struct.Struct("<cI")  # kind (b"P" progress, b"R" result), payload length
_PR_SET_PDEATHSIG = 1


class WorkerDied(BackupError):
    """The child ended without reporting an outcome (killed, or crashed in the interpreter)."""


def available() -> bool:
    """Linux only: elsewhere a fork of a threaded process is not dependable (macOS)."""
    return sys.platform.startswith("linux") and hasattr(os, "fork")


class TwoEnds:
    """Indices ``0 .. n-1`` dealt to two processes from opposite ends: :meth:`take_low` gives the
    next from the bottom, :meth:`take_high` the next from the top, each index once, None when all
    are dealt. Create it before :func:`run_split`: the two counters live in an anonymous file both
    sides of the fork share, guarded by a POSIX record lock (``lockf``), which the kernel drops when
    its holder dies, so a killed child cannot leave the parent waiting for the deck forever."""

    _STATE = struct.Struct("<qq")

    def __init__(self, n: int) -> None:
        self._fd = os.memfd_create("openclaw-backup-deck", os.MFD_CLOEXEC)
        os.pwrite(self._fd, self._STATE.pack(0, n - 1), 0)

    def _take(self, low: bool) -> int | None:
        fcntl.lockf(self._fd, fcntl.LOCK_EX)
        try:
            lo, hi = self._STATE.unpack(os.pread(self._fd, self._STATE.size, 0))
            if lo > hi:
                return None
            os.pwrite(self._fd, self._STATE.pack(lo + 1, hi) if low else self._STATE.pack(lo, hi - 1), 0)
            return lo if low else hi
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def take_low(self) -> int | None:
        return self._take(True)

    def take_high(self) -> int | None:
        return self._take(False)

    def close(self) -> None:
        os.close(self._fd)


def run_split(mine: Callable[[Progress], None], theirs: Callable[[Progress], T], progress: Progress) -> T:
    """Run ``theirs(progress)`` in a forked child while ``mine(progress)`` runs here; return what
    ``theirs`` returned, or raise the first failure (the parent's own before the child's).
    ``progress`` receives both halves' counts, in this process."""
    rfd, wfd = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(rfd)
        _child(theirs, wfd, parent)
    os.close(wfd)
    os.set_blocking(rfd, False)
    inbox = _Inbox(rfd, progress)

    def report(n: int) -> None:  # ours, and whatever the child has sent meanwhile
        progress(n)
        inbox.poll()

    try:
        mine(report)
    except BaseException:
        _kill(pid)
        os.close(rfd)
        raise
    try:
        os.set_blocking(rfd, True)
        inbox.drain()
    finally:
        os.close(rfd)
        _, status = os.waitpid(pid, 0)
    if inbox.error is not None:
        raise inbox.error
    if not inbox.finished:
        raise WorkerDied(f"the worker process ended without finishing its half ({_describe(status)})")
    return inbox.value


def _child(work: Callable[[Progress], Any], wfd: int, parent: int) -> None:
    code = 0
    try:
        _die_with_parent(parent)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            # The parent's handlers (the supervisor's forward signals to the agent) are not ours:
            # the parent handles these, and kills us if it gives up.
            signal.signal(sig, signal.SIG_DFL)
        last, pending = time.monotonic(), 0

        def report(n: int) -> None:
            nonlocal last, pending
            pending += n
            now = time.monotonic()
            if now - last >= 0.2:
                _send(wfd, b"P", struct.pack("<q", pending))
                last, pending = now, 0

        value: Any = None
        error: BaseException | None = None
        try:
            value = work(report)
        except BaseException as e:  # re-raised by the parent
            error = e
        if pending:
            _send(wfd, b"P", struct.pack("<q", pending))
        try:
            payload = pickle.dumps((value, error))
        except Exception:  # an exception that does not pickle: keep its message
            payload = pickle.dumps((None, BackupError(f"worker process failed: {error or value!r}")))
        _send(wfd, b"R", payload)
    except BaseException:
        code = 70
    finally:
        os._exit(code)


class _Inbox:
    """Frames from the child: progress forwarded as they come, the outcome kept."""

    def __init__(self, rfd: int, progress: Progress) -> None:
        self.rfd = rfd
        self.progress = progress
        self.buf = bytearray()
        self.finished = False
        self.value: Any = None
        self.error: BaseException | None = None

    def poll(self) -> None:
        try:
            while chunk := os.read(self.rfd, 65536):
                self._take(chunk)
        except BlockingIOError:
            pass

    def drain(self) -> None:
        while chunk := os.read(self.rfd, 65536):
            self._take(chunk)

    def _take(self, chunk: bytes) -> None:
        self.buf += chunk
        while len(self.buf) >= _FRAME.size:
            kind, n = _FRAME.unpack_from(self.buf)
            if len(self.buf) < _FRAME.size + n:
                return
            payload = bytes(self.buf[_FRAME.size : _FRAME.size + n])
            del self.buf[: _FRAME.size + n]
            if kind == b"P":
                self.progress(struct.unpack("<q", payload)[0])
            else:
                self.finished = True
                self.value, self.error = pickle.loads(payload)  # from our own child


def _send(wfd: int, kind: bytes, payload: bytes) -> None:
    data = memoryview(_FRAME.pack(kind, len(payload)) + payload)
    while data:
        data = data[os.write(wfd, data) :]


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    os.waitpid(pid, 0)


def _die_with_parent(parent: int) -> None:
    try:
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(70)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
