"""A forked worker process beside this one, for work the GIL would serialise.

Two threads of this interpreter barely run faster than one when the work is many short calls
(decrypting, decompressing, hashing and writing thousands of blobs): the GIL changes hands at every
call. A child forked from this process has its own interpreter lock, the state read so far (index,
plan) shared copy-on-write, and nothing to coordinate with while it works.

Words: the **worker** is the forked child. The **channel** links the two processes: an ``AF_UNIX``
``SOCK_SEQPACKET`` socket pair carrying **frames** — a kind (one byte), a small pickled ``meta``
and, for bulk bytes, ``data``: an anonymous memory file (``memfd``, :class:`MemoryFile`) that the
sender filled in place and whose descriptor travels with the frame (``SCM_RIGHTS``), so megabytes
cross without a copy and without being streamed through the socket; the receiver reads them from
that descriptor (a store on this machine copies them straight into its file: they are never mapped
into the receiver, whose memory then does not hold them).

:class:`Worker` forks; the child runs ``main(channel)`` and sends its **outcome** (what ``main``
returned, pickled, or the exception it raised); the parent's **inbox** thread hands every other
frame to a handler as it arrives. :meth:`Worker.join` returns that value or re-raises that
exception, so callers see the same typed errors as from in-process work. If the parent fails or is
interrupted, :meth:`Worker.kill` kills and reaps the child before the exception goes on: nothing
keeps working behind the caller's back; a handler that fails kills it too. The child also dies with
the parent (``PR_SET_PDEATHSIG``), and ignores the signals a user or a supervisor sends (Ctrl-C,
``SIGTERM``, ``SIGHUP``): the parent decides. The child must not touch anything the parent's other threads may
hold (reporters, consoles, a store's connections): it talks to the parent through the channel only,
and leaves with ``os._exit``.

:func:`run_split` runs one function here and one in a worker; :class:`TwoEnds` deals indices to
both processes. Linux only (:func:`available`); :mod:`.batches` falls back to threads elsewhere.
"""

from __future__ import annotations

import array
import ctypes
import fcntl
import mmap
import os
import pickle
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import BackupError

T = TypeVar("T")

Progress = Callable[[int], None]
_HEAD = struct.Struct("<cBq")  # kind, flags, data length
_META_IN_FD, _DATA_IN_FD = 1, 2
_INLINE = 32 * 1024  # a larger meta travels in a memfd too (a packet must fit the socket buffer)
_PR_SET_PDEATHSIG = 1
_PARENTS_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
TICK = 0.2  # seconds between the progress reports of a worker


class WorkerDied(BackupError):
    """The child ended without reporting an outcome (killed, or crashed in the interpreter)."""


def available() -> bool:
    """Linux only: elsewhere a fork of a threaded process is not dependable (macOS), and there is
    no ``memfd``."""
    return sys.platform.startswith("linux") and hasattr(os, "fork") and hasattr(os, "memfd_create")


class Frame:
    """One frame received: ``kind``, ``meta`` and, for bulk bytes, ``file``: the descriptor of the
    memory file that came with it (its first ``length`` bytes are the data), or None.
    :meth:`release` closes it, and so frees the memory once the sender has too."""

    __slots__ = ("file", "kind", "length", "meta")

    def __init__(self, kind: bytes, meta: Any, file: int | None, length: int) -> None:
        self.kind, self.meta, self.file, self.length = kind, meta, file, length

    def release(self) -> None:
        if self.file is not None:
            os.close(self.file)
            self.file = None


class MemoryFile:
    """An anonymous memory file and a writable mapping of it (``buffer``): filled in place, then
    handed over whole (:meth:`Channel.hand_over`), without a copy."""

    def __init__(self, size: int) -> None:
        self.fd = os.memfd_create("openclaw-backup-buffer", os.MFD_CLOEXEC)
        try:
            os.ftruncate(self.fd, size)
            self.buffer = mmap.mmap(self.fd, size)
        except BaseException:
            os.close(self.fd)
            raise

    def close(self) -> None:
        _unmap(self.buffer)
        os.close(self.fd)


class Channel:
    """One end of the link between a parent and its worker. :meth:`send` is thread-safe."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._lock = threading.Lock()

    def send(self, kind: bytes, meta: Any = None) -> None:
        """Send a frame without data."""
        self._send(kind, meta, -1, 0)

    def hand_over(self, kind: bytes, meta: Any, data: MemoryFile, length: int) -> None:
        """Send a frame with the first ``length`` bytes of ``data`` as its data, without a copy (the
        caller still closes ``data``: the receiver's mapping keeps the memory)."""
        self._send(kind, meta, data.fd, length)

    def _send(self, kind: bytes, meta: Any, fd: int, length: int) -> None:
        body = pickle.dumps(meta, protocol=pickle.HIGHEST_PROTOCOL)
        flags, fds, once = 0, [], -1
        try:
            if len(body) > _INLINE:
                fds.append(once := _memfd())
                _fill(once, body)
                flags, body = flags | _META_IN_FD, b""
            if fd >= 0:
                fds.append(fd)
                flags |= _DATA_IN_FD
            ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
            with self._lock:
                self.sock.sendmsg([_HEAD.pack(kind, flags, length), body], ancillary)
        finally:
            if once >= 0:
                os.close(once)

    def recv(self) -> Frame | None:
        """The next frame; None when the other end is closed."""
        while True:
            try:
                msg, ancillary, _, _ = self.sock.recvmsg(
                    _INLINE + _HEAD.size + 1024, socket.CMSG_SPACE(2 * 4), socket.MSG_CMSG_CLOEXEC
                )
                break
            except ConnectionResetError:
                # The other end closed with frames it had not read (answers it needed no more).
                # Reported once, before what it sent last: read on, to those and then the end.
                continue
        if not msg:
            return None
        fds = array.array("i")
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
        try:
            kind, flags, length = _HEAD.unpack_from(msg)
            if flags & _META_IN_FD:  # read in pieces: never a second copy of it whole here
                with open(fds[0], "rb", closefd=False) as f:
                    meta = pickle.load(f)  # from our own child, or our own parent
            else:
                meta = pickle.loads(msg[_HEAD.size :])
            if not flags & _DATA_IN_FD:
                return Frame(kind, meta, None, 0)
            return Frame(kind, meta, fds.pop(), length)  # the frame's own, closed by its release
        finally:
            for fd in fds:
                os.close(fd)

    def close(self) -> None:
        self.sock.close()


def _memfd() -> int:
    return os.memfd_create("openclaw-backup-frame", os.MFD_CLOEXEC)


def _fill(fd: int, data: bytes) -> None:
    view = memoryview(data)
    done = 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], done)


def _unmap(m: mmap.mmap) -> None:
    try:
        m.close()  # unmapped now, not whenever the collector gets to it
    except BufferError:
        pass  # a view of it is still alive (held by a traceback): unmapped with it


class Worker:
    """A forked child running ``main(channel)``, seen from the parent (see the module docstring).

    ``handle(frame, channel)`` receives every frame the child sends but its outcome, in the inbox
    thread (``channel`` to answer on); the frame is released when it returns.
    """

    def __init__(self, main: Callable[[Channel], Any], handle: Callable[[Frame, Channel], None]) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        parent = os.getpid()
        # Held back here until the child has let go of this process's handlers (a Ctrl-C that
        # arrives meanwhile is this process's: delivered when unblocked).
        held = signal.pthread_sigmask(signal.SIG_BLOCK, _PARENTS_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:  # the child: never returns
                ours.close()
                _child(main, Channel(theirs), parent, held)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
        theirs.close()
        self.pid = pid
        self.channel = Channel(ours)
        self.finished = False
        self.value: Any = None
        self.error: BaseException | None = None  # the child's, or its handler's
        self._status: int | None = None
        self._inbox = threading.Thread(target=self._receive, args=(handle,), name="worker-inbox", daemon=True)
        try:
            self._inbox.start()
        except BaseException:
            self.kill()
            raise

    @property
    def failed(self) -> bool:
        """The child or a handler failed, or the child is gone without an outcome."""
        return self.error is not None or (not self._inbox.is_alive() and not self.finished)

    def _receive(self, handle: Callable[[Frame, Channel], None]) -> None:
        try:
            while (frame := self.channel.recv()) is not None:
                try:
                    if frame.kind == b"E":
                        self.value, self.error = frame.meta
                        self.finished = True
                    else:
                        handle(frame, self.channel)
                finally:
                    frame.release()
        except BaseException as e:  # a handler failed (or a frame did not unpickle): stop the child
            if self.error is None:
                self.error = e
            _signal(self.pid)

    def join(self) -> Any:
        """Wait for the child's outcome; return its value or raise its (or a handler's) error."""
        self._inbox.join()
        self._reap()
        if self.error is not None:
            raise self.error
        if not self.finished:
            assert self._status is not None
            raise WorkerDied(f"the worker process ended without finishing its work ({_describe(self._status)})")
        return self.value

    def kill(self) -> None:
        """Kill the child and reap it (idempotent)."""
        if self._status is None:  # never a process that has been reaped: its pid may be another's
            _signal(self.pid)
        if self._inbox.ident is not None:
            self._inbox.join()
        self._reap()

    def _reap(self) -> None:
        if self._status is None:
            _, self._status = os.waitpid(self.pid, 0)
            self.channel.close()


def run_split(mine: Callable[[Progress], None], theirs: Callable[[Progress], T], progress: Progress) -> T:
    """Run ``theirs(progress)`` in a worker while ``mine(progress)`` runs here; return what
    ``theirs`` returned, or raise the first failure (the parent's own before the child's).
    ``progress`` receives both halves' counts, in this process."""

    def main(channel: Channel) -> T:
        last, pending = time.monotonic(), 0

        def report(n: int) -> None:
            nonlocal last, pending
            pending += n
            if time.monotonic() - last >= TICK:
                channel.send(b"P", pending)
                last, pending = time.monotonic(), 0

        try:
            return theirs(report)
        finally:
            if pending:
                channel.send(b"P", pending)

    worker = Worker(main, lambda frame, channel: progress(frame.meta))
    try:
        mine(progress)
    except BaseException:
        worker.kill()
        raise
    return worker.join()


class TwoEnds:
    """Indices ``0 .. n-1`` dealt from opposite ends: :meth:`take_low` gives the next from the
    bottom, :meth:`take_high` the next from the top, each index once, None when all are dealt — to
    threads of both processes. Create it before the fork: the two counters live in an anonymous
    file both sides share, guarded by a POSIX record lock (``lockf``), which the kernel drops when
    its holder dies, so a killed child cannot leave the parent waiting for the deck forever (and by
    a thread lock: record locks do not exclude threads of one process)."""

    _STATE = struct.Struct("<qq")

    def __init__(self, n: int) -> None:
        self._fd = os.memfd_create("openclaw-backup-deck", os.MFD_CLOEXEC)
        os.pwrite(self._fd, self._STATE.pack(0, n - 1), 0)
        self._threads = threading.Lock()

    def _take(self, low: bool) -> int | None:
        with self._threads:
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


def _child(main: Callable[[Channel], Any], channel: Channel, parent: int, mask: set[int | signal.Signals]) -> None:
    code = 0
    try:
        for sig in _PARENTS_SIGNALS:
            # The parent's handlers (the CLI's Ctrl-C, the supervisor's forward signals to the
            # agent) are not ours, and a signal to the whole process group (Ctrl-C in a terminal)
            # is the parent's to act on: it kills us if it gives up, and we die with it.
            signal.signal(sig, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        _die_with_parent(parent)
        value: Any = None
        error: BaseException | None = None
        try:
            value = main(channel)
        except BaseException as e:  # re-raised by the parent
            error = e
        try:
            channel.send(b"E", (value, error))
        except Exception:  # an outcome that does not pickle: keep its message
            channel.send(b"E", (None, BackupError(f"worker process failed: {error or value!r}")))
    except BaseException:
        code = 70
    finally:
        os._exit(code)


def _signal(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


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
