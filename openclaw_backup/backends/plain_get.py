"""Plain GETs over kept-alive connections of the standard library (``http.client``): the reads that
carry a restore's bytes, without an HTTP client stack's layers per piece of a body.

Words used here:

* **plain GET** — :meth:`GetPool.get`: one GET (its redirects followed) whose body arrives whole as
  one ``bytes``: ``http.client`` reads a body of known length straight into the bytes object it
  returns, where ``httpx2``/``httpcore2``/``h11`` hand it over in pieces (each a pass through their
  layers, a copy into h11's buffer and out, a join at the end). A cold restore's ~170 ranged reads
  (156 MB) cost some 0.3 s of CPU through that stack.
* **origin** — scheme, host and port of a URL. A redirect to another origin (the Hub's ``resolve``
  sends large files to a CDN or storage bridge) is followed with the same headers **except**
  ``Authorization``, which never leaves the origin it was meant for (as ``httpx2`` does); once
  dropped it stays dropped for the rest of the redirects.
* **kept-alive connection** — one ``HTTPConnection`` per origin per request in flight, handed back
  to the pool when its answer was read whole and the server keeps it open. An idle connection the
  server closed meanwhile is seen before it is used (its socket is readable) and dropped; one that
  fails before any byte of its answer came is replaced by a new one once (a GET is safe to send
  again), without counting as a failure.

What this module promises, and what it leaves to its caller (:mod:`.hub_client`):

* It never returns a short body: a body of declared length (``Content-Length``, or chunked) that
  ends early raises :class:`TransportFailure`, like every network error and timeout (``timeout``
  bounds each connect and each wait for bytes). Retries and their backoff, error statuses and their
  translation are the caller's; an error's body is read when it is small (a server's message),
  else the connection is closed unread.
* It reads no environment and knows no proxy: the caller asks, per URL, whether its own client
  would go through a proxy (``direct``), and this module raises :class:`NotDirect` for a URL that
  would (a redirect included), for the caller to send the request its usual way instead.
* A forked child drops the pool's connections (they are the parent's): its first GET connects anew.
"""

from __future__ import annotations

import http.client
import os
import re
import select
import ssl
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import Message
from urllib.parse import urljoin, urlsplit

REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 20  # httpx2's default
ERROR_BODY_MAX = 65536  # an error answer's body is read when at most this long (its message)
IDLE_PER_ORIGIN = 64  # idle connections kept per origin at most (a restore has 32 reads in flight)


class TransportFailure(Exception):
    """A network failure, a timeout, or a body that ended before its declared length."""


class NotDirect(Exception):
    """The URL (or a redirect's) goes through a proxy: the caller sends the request its own way."""


@dataclass(frozen=True)
class Answer:
    """The last answer of a plain GET: its ``status``, ``headers`` (case-insensitive ``get``),
    ``body`` (whole for a success or a redirect; an error's when small, else ``b""``), the
    ``url`` that gave it (after redirects), and the headers of the redirects that led to it, in
    order (``redirects``)."""

    status: int
    headers: Message
    body: bytes
    url: str
    redirects: tuple[Message, ...] = ()


Origin = tuple[str, str, int]


def _origin(url: str) -> tuple[Origin, str]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise TransportFailure(f"cannot GET {scheme}://{parts.hostname or ''}: not an http(s) URL")
    port = parts.port or (443 if scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return (scheme, parts.hostname, port), target


def _idle_and_alive(conn: http.client.HTTPConnection) -> bool:
    """An idle kept-alive connection is usable while its socket has nothing to read: a readable one
    was closed by the server (or holds bytes nobody asked for)."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


class GetPool:
    """Kept-alive connections by origin, and plain GETs over them. Thread-safe: a connection serves
    one request at a time. ``tls`` makes (or hands over) the TLS context of https connections, once
    per pool: connections opened together wait for the first one's call rather than each making a
    context (loading the CA certificates: some 25 ms of CPU each)."""

    def __init__(self, tls: Callable[[], ssl.SSLContext]) -> None:
        self._tls = tls
        self._context: ssl.SSLContext | None = None
        self._idle: dict[Origin, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()  # the idle connections
        self._tls_lock = threading.Lock()  # the context's making (not held with ``_lock``)
        _POOLS.add(self)

    def _forget_in_child(self) -> None:
        self._lock = threading.Lock()
        self._tls_lock = threading.Lock()
        self._idle = {}  # the parent's sockets: this process's copies close when collected
        self._context = None

    def close(self) -> None:
        """Close the idle connections (a connection in use is closed when its request ends)."""
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()

    def _take(self, origin: Origin) -> http.client.HTTPConnection | None:
        while True:
            with self._lock:
                conns = self._idle.get(origin)
                conn = conns.pop() if conns else None
            if conn is None or _idle_and_alive(conn):
                return conn
            conn.close()

    def _give(self, origin: Origin, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            conns = self._idle.setdefault(origin, [])
            if len(conns) < IDLE_PER_ORIGIN:
                conns.append(conn)
                return
        conn.close()

    def _connect(self, origin: Origin, timeout: float) -> http.client.HTTPConnection:
        scheme, host, port = origin
        if scheme == "http":
            return http.client.HTTPConnection(host, port, timeout=timeout)
        with self._tls_lock:
            if self._context is None:
                self._context = self._tls()
            context = self._context
        return http.client.HTTPSConnection(host, port, timeout=timeout, context=context)

    def get(
        self,
        url: str,
        headers: Mapping[str, str],
        *,
        timeout: float,
        direct: Callable[[str], bool] = lambda url: True,
    ) -> Answer:
        """GET ``url`` with ``headers`` (redirects followed, see the module docstring). Raises
        :class:`TransportFailure` or :class:`NotDirect`; any status is an :class:`Answer`."""
        sent = dict(headers)
        redirects: list[Message] = []
        for _ in range(MAX_REDIRECTS + 1):
            if not direct(url):
                raise NotDirect(url)
            origin, target = _origin(url)
            status, answer_headers, body = self._exchange(origin, target, sent, timeout)
            location = answer_headers.get("Location")
            if status not in REDIRECTS or not location:
                return Answer(status, answer_headers, body, url, tuple(redirects))
            redirects.append(answer_headers)
            following = urljoin(url, location)
            if _origin(following)[0] != origin:
                sent = {k: v for k, v in sent.items() if k.lower() != "authorization"}
            url = following
        raise TransportFailure(f"more than {MAX_REDIRECTS} redirects from {_where(url)}")

    def _exchange(
        self, origin: Origin, target: str, headers: dict[str, str], timeout: float
    ) -> tuple[int, Message, bytes]:
        for fresh in (False, True):
            conn = None if fresh else self._take(origin)
            reused = conn is not None
            if conn is None:
                conn = self._connect(origin, timeout)
            else:
                conn.timeout = timeout
                if conn.sock is not None:
                    conn.sock.settimeout(timeout)
            try:
                conn.request("GET", target, headers=headers)
                response = conn.getresponse()
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                if reused and not isinstance(e, TimeoutError):
                    continue  # the server closed it as we sent: once more on a new connection
                raise TransportFailure(f"GET {origin[1]}{_path(target)}: {type(e).__name__}: {e}") from e
            try:
                status = response.status
                if 200 <= status < 300 or status in REDIRECTS:
                    body = response.read()  # a declared length read whole, or IncompleteRead
                    _check_range(status, response.msg, body)
                elif response.length is not None and response.length <= ERROR_BODY_MAX:
                    body = response.read()
                else:  # a large error body, or one of no declared length: its start at most
                    body = response.read(ERROR_BODY_MAX) if response.length is None else b""
                    response.close()
                    conn.close()
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                raise TransportFailure(f"GET {origin[1]}{_path(target)}: {type(e).__name__}: {e}") from e
            if response.will_close or conn.sock is None or not response.isclosed():
                conn.close()
            else:
                self._give(origin, conn)
            return status, response.msg, body
        raise AssertionError("unreachable")


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/")


def _check_range(status: int, headers: Message, body: bytes) -> None:
    """A part (206) is as long as its ``Content-Range`` says, whatever delimited its body (a body
    that ends where the connection closed is checked only so)."""
    if status != 206:
        return
    m = _CONTENT_RANGE.match(headers.get("Content-Range", ""))
    if m is not None:
        expected = int(m.group(2)) - int(m.group(1)) + 1
        if len(body) != expected:
            raise http.client.IncompleteRead(body, max(0, expected - len(body)))


def _path(target: str) -> str:
    return target.split("?", 1)[0]  # no query: it may carry signatures


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}{parts.path}"


_POOLS: weakref.WeakSet[GetPool] = weakref.WeakSet()


def _forget_pools_in_child() -> None:
    for pool in list(_POOLS):
        pool._forget_in_child()


os.register_at_fork(after_in_child=_forget_pools_in_child)
