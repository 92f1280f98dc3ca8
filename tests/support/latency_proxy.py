"""A TCP proxy on 127.0.0.1 that adds a latency to every HTTP request passing through it.

Used by bench/hub_cold_start.py and the cold-start tests to put SeaweedFS's S3 behind a latency
per request, as the Hub test server's ``latency_ms`` does. It knows nothing of HTTP: on each
connection, the first bytes the client sends after the server last answered (a new request on a
kept-alive connection) wait ``latency`` seconds before they are passed on; the rest of a request's
body and every answer pass at once. Bytes pass unchanged, so signed requests (S3 SigV4 signs the
Host header) still verify.

It stands in for a network, so it should cost the machine as little as a network would: each
connection has two blocking threads, and answers (the bulk of the bytes) move from socket to socket
through a pipe with ``os.splice`` on Linux, never entering Python. The asyncio proxy it replaced
cost ~0.19 CPU s per cold restore of the bench (154 MB), on the same two cores as the restore it
measured.

Counters: ``requests`` (requests delayed), ``bytes_down`` (server to client), ``max_busy`` (most
connections waiting on a request at once); :meth:`LatencyProxy.cpu_seconds`, the CPU its threads used.
"""

from __future__ import annotations

import fcntl
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

_CHUNK = 1 << 20
_SPLICE = hasattr(os, "splice")


class LatencyProxy:
    """``LatencyProxy(target_host, target_port, latency).start()`` → ``port``; ``stop()`` ends it."""

    def __init__(self, host: str, port: int, latency: float) -> None:
        self.target = (host, port)
        self.latency = latency
        self.port = 0
        self.requests = 0
        self.bytes_down = 0
        self.busy = 0
        self.max_busy = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._threads: dict[int, threading.Thread] = {}  # native id → thread still running
        self._sockets: set[socket.socket] = set()
        self._cpu_done = 0.0  # CPU of the threads that ended

    def start(self) -> int:
        listener = socket.create_server(("127.0.0.1", 0))
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._spawn(self._accept, listener)
        return self.port

    def stop(self) -> None:
        """Close the listener and every connection, then wait for the threads."""
        self._stopping.set()
        with self._lock:
            sockets = list(self._sockets)
            if self._listener is not None:
                sockets.append(self._listener)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + 10
        while True:
            with self._lock:
                threads = list(self._threads.values())
            if not threads or time.monotonic() > deadline:
                break
            threads[0].join(max(0.0, deadline - time.monotonic()))
        for sock in sockets:
            sock.close()

    def cpu_seconds(self) -> float:
        """CPU time of the proxy's threads so far, ended ones included (Linux; the ended ones' only
        elsewhere): they run in the process that started it, whose own CPU time includes it."""
        from tests.support.processes import cpu_seconds

        with self._lock:
            live = list(self._threads)
            total = self._cpu_done
        return total + sum(cpu_seconds(f"/proc/self/task/{tid}/stat") for tid in live)

    def stats(self) -> dict[str, int]:
        return {"requests": self.requests, "bytes_down": self.bytes_down, "max_busy": self.max_busy}

    # -- threads -------------------------------------------------------------------------------

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        started = threading.Event()

        def run() -> None:
            with self._lock:
                self._threads[threading.get_native_id()] = threading.current_thread()
            started.set()
            try:
                target(*args)
            finally:
                with self._lock:
                    self._threads.pop(threading.get_native_id(), None)
                    self._cpu_done += time.thread_time()

        threading.Thread(target=run, daemon=True).start()
        started.wait()

    def _accept(self, listener: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets.update((client, upstream))
            state = _Connection(client, upstream)
            self._spawn(self._requests, state)
            self._spawn(self._answers, state)

    def _requests(self, c: _Connection) -> None:
        """Client → server: the first bytes of each new request wait ``latency``."""
        try:
            while data := c.client.recv(_CHUNK):
                with self._lock:
                    new = c.answered
                    if new:
                        c.answered = False
                        c.waiting = True
                        self.requests += 1
                        self.busy += 1
                        self.max_busy = max(self.max_busy, self.busy)
                if new and self._stopping.wait(self.latency):
                    break
                c.upstream.sendall(data)
            c.upstream.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            self._end(c)

    def _answers(self, c: _Connection) -> None:
        """Server → client, through a pipe with ``os.splice`` where there is one."""
        pipe = os.pipe() if _SPLICE else None
        if pipe is not None and hasattr(fcntl, "F_SETPIPE_SZ"):
            try:
                fcntl.fcntl(pipe[1], fcntl.F_SETPIPE_SZ, _CHUNK)
            except OSError:
                pass  # beyond /proc/sys/fs/pipe-max-size: the default pipe moves less per call
        try:
            while True:
                if pipe is not None:
                    n = os.splice(c.upstream.fileno(), pipe[1], _CHUNK)
                else:
                    data = c.upstream.recv(_CHUNK)
                    n = len(data)
                if n == 0:
                    break
                with self._lock:
                    if c.waiting:
                        c.waiting = False
                        self.busy -= 1
                    c.answered = True
                    self.bytes_down += n
                if pipe is None:
                    c.client.sendall(data)
                    continue
                left = n
                while left:
                    left -= os.splice(pipe[0], c.client.fileno(), left)
            c.client.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            if pipe is not None:
                os.close(pipe[0])
                os.close(pipe[1])
            self._end(c)

    def _end(self, c: _Connection) -> None:
        """The second of the pair to end closes both sockets."""
        with self._lock:
            c.ended += 1
            if c.ended < 2:
                return
            if c.waiting:
                c.waiting = False
                self.busy -= 1
            self._sockets.difference_update((c.client, c.upstream))
        for sock in (c.client, c.upstream):
            sock.close()


class _Connection:
    __slots__ = ("answered", "client", "ended", "upstream", "waiting")

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.answered = True
        self.waiting = False
        self.ended = 0
