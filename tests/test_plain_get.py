"""The Hub's file reads as plain GETs (:mod:`openclaw_backup.backends.plain_get` under
:func:`.hub_files.http_get`): redirects to another host keep no ``Authorization``, a body that ends
early is sent again or raised as a transient store error (never a short read returned), a kept-alive
connection the server closed is replaced without costing an attempt, and a proxy configured in the
environment is used (the request goes through the library's session). Real servers on 127.0.0.1
(the standard library's), no mocks."""

from __future__ import annotations

import os
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from huggingface_hub.utils import close_session

from openclaw_backup.backends import hub_files
from openclaw_backup.backends.hub_client import hub_call
from openclaw_backup.backends.plain_get import GetPool
from openclaw_backup.errors import NotFoundError, StoreError
from tests.support.processes import in_forked_child
from tests.support.tls import TlsFront, self_signed

pytestmark = pytest.mark.timeout(60)

BODY = bytes(range(256)) * 64  # 16 KiB


@dataclass
class Seen:
    """What a server was asked: per request, its path and headers (lower-case names)."""

    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    connections: int = 0


Answer = Callable[[BaseHTTPRequestHandler, int], None]  # (handler, index of the request) -> answers


@dataclass
class Server:
    url: str
    seen: Seen


@pytest.fixture
def serve() -> Iterator[Callable[[Answer], Server]]:
    servers: list[ThreadingHTTPServer] = []

    def start(answer: Answer) -> Server:
        seen = Seen()
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with lock:
                    seen.connections += 1

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                with lock:
                    seen.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                    index = len(seen.requests) - 1
                answer(self, index)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return Server(f"http://127.0.0.1:{server.server_address[1]}", seen)

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def ranged(
    handler: BaseHTTPRequestHandler, *, cut: int | None = None, close: bool = False, no_length: bool = False
) -> None:
    """Answer a ranged GET of BODY (206); ``cut``: send only that many bytes of it, then close;
    ``no_length``: no Content-Length, the body ends where the connection closes."""
    spec = handler.headers.get("Range", "")
    start, _, end = spec.removeprefix("bytes=").partition("-")
    lo, hi = (int(start), int(end) + 1) if spec else (0, len(BODY))
    part = BODY[lo:hi]
    handler.send_response(206 if spec else 200)
    if no_length:
        handler.send_header("Connection", "close")
        close = True
    else:
        handler.send_header("Content-Length", str(len(part)))
    if spec:
        handler.send_header("Content-Range", f"bytes {lo}-{hi - 1}/{len(BODY)}")
    handler.end_headers()
    handler.wfile.write(part[:cut] if cut is not None else part)
    handler.wfile.flush()
    if cut is not None or close:
        handler.close_connection = True


def read(url: str, *, offset: int = 0, length: int | None = None, attempts: int = 1, token: str = "hf_secret") -> bytes:
    headers = {"authorization": f"Bearer {token}", "user-agent": "test"}
    return hub_call(
        5.0, "read", lambda: hub_files.http_get(url, headers, offset=offset, length=length), attempts=attempts
    )


def test_a_redirect_to_another_host_keeps_the_range_and_drops_the_authorization(
    serve: Callable[[Answer], Server],
) -> None:
    cdn = serve(lambda h, i: ranged(h))

    def resolve(h: BaseHTTPRequestHandler, i: int) -> None:
        if h.path.startswith("/here"):  # a redirect within the same origin keeps the token
            h.send_response(307)
            h.send_header("Location", "/there" + h.path.removeprefix("/here"))
            h.send_header("Content-Length", "0")
            h.end_headers()
        elif h.path.startswith("/there"):
            ranged(h)
        else:
            h.send_response(302)
            h.send_header("Location", f"{cdn.url}/blob?sig=abc")
            h.send_header("Content-Length", "0")
            h.end_headers()

    hub = serve(resolve)
    assert read(f"{hub.url}/resolve/main/x", offset=100, length=1000) == BODY[100:1100]
    assert [path for path, _ in cdn.seen.requests] == ["/blob?sig=abc"]
    (_, sent), (_, asked) = cdn.seen.requests[0], hub.seen.requests[0]
    assert asked["authorization"] == "Bearer hf_secret" and "authorization" not in sent
    assert sent["range"] == "bytes=100-1099" and sent["accept-encoding"] == "identity"
    assert read(f"{hub.url}/here/y", offset=5, length=10) == BODY[5:15]
    assert [(p, h.get("authorization")) for p, h in hub.seen.requests[1:]] == [
        ("/here/y", "Bearer hf_secret"),
        ("/there/y", "Bearer hf_secret"),
    ]


@pytest.mark.parametrize("no_length", [False, True], ids=["content-length", "close-delimited"])
@pytest.mark.parametrize("cut", [0, 1000])
def test_a_body_that_ends_early_is_sent_again_or_a_transient_error_never_a_short_read(
    serve: Callable[[Answer], Server], cut: int, no_length: bool
) -> None:
    short_first = serve(lambda h, i: ranged(h, cut=cut if i == 0 else None, no_length=no_length))
    assert read(f"{short_first.url}/f", offset=0, length=len(BODY), attempts=2) == BODY
    assert len(short_first.seen.requests) == 2
    always_short = serve(lambda h, i: ranged(h, cut=cut, no_length=no_length))
    with pytest.raises(StoreError) as caught:
        read(f"{always_short.url}/f", offset=0, length=len(BODY), attempts=3)
    assert caught.value.transient and len(always_short.seen.requests) == 3


def test_a_kept_alive_connection_the_server_closed_is_replaced_without_costing_an_attempt(
    serve: Callable[[Answer], Server],
) -> None:
    """The server closes each connection after its answer without saying so: the pool sees the
    idle connection closed and connects anew; one attempt per read is enough."""
    server = serve(lambda h, i: ranged(h, close=True))
    for i in range(4):
        assert read(f"{server.url}/f", offset=i, length=100, attempts=1) == BODY[i : i + 100]
    assert len(server.seen.requests) == 4 and server.seen.connections == 4
    kept = serve(lambda h, i: ranged(h))
    for i in range(4):
        assert read(f"{kept.url}/f", offset=i, length=100) == BODY[i : i + 100]
    assert kept.seen.connections == 1  # kept alive: one connection for every read


def test_error_statuses_are_the_library_s(serve: Callable[[Answer], Server]) -> None:
    """A missing file is the library's EntryNotFound (a NotFoundError here); a 5xx is retried, then
    a transient error; a large error body is not read."""

    flaky = iter(range(1000))

    def answer(h: BaseHTTPRequestHandler, i: int) -> None:
        if "/missing/" in h.path:
            body = b'{"error": "Entry not found"}'
            h.send_response(404)
            h.send_header("X-Error-Code", "EntryNotFound")
            h.send_header("X-Error-Message", "Entry not found")
        elif next(flaky) % 2 == 0:
            body = b"x" * 200_000
            h.send_response(503)
        else:
            ranged(h)
            return
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    server = serve(answer)
    files = hub_files.RepoFiles(server.url, "ns/name", repo_type="dataset", token="hf_x", timeout=5, attempts=2)
    assert files.call("read", lambda: files.read("missing/x", "main")) is None
    with pytest.raises(NotFoundError):
        hub_call(5.0, "read", lambda: _missing(server.url))
    assert read(f"{server.url}/flaky", offset=1, length=2, attempts=2) == BODY[1:3]
    with pytest.raises(StoreError) as caught:
        read(f"{server.url}/flaky", offset=1, length=2, attempts=1)
    assert caught.value.transient and "HTTP 503" in caught.value.message


def _missing(url: str) -> bytes:
    from huggingface_hub import errors as hf_errors

    try:
        return hub_files.http_get(f"{url}/missing/y", {})
    except hf_errors.RemoteEntryNotFoundError as e:
        raise NotFoundError("missing") from e


def test_a_proxy_in_the_environment_is_used(serve: Callable[[Answer], Server], monkeypatch: pytest.MonkeyPatch) -> None:
    """``HTTP_PROXY`` set: the read goes to the proxy (through the library's session, which reads
    it), never straight to the host."""
    origin = serve(lambda h, i: ranged(h))
    proxy = serve(lambda h, i: ranged(h))  # answers as the proxy would, having fetched the file
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("http_proxy", proxy.url)
    close_session()  # the next session reads the environment
    hub_files._direct_origins.clear()
    try:
        assert read(f"{origin.url}/resolve/main/z", offset=3, length=30) == BODY[3:33]
    finally:
        monkeypatch.undo()
        close_session()
        hub_files._direct_origins.clear()
    assert origin.seen.requests == []
    assert [p for p, _ in proxy.seen.requests] == [f"{origin.url}/resolve/main/z"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_forked_child_reads_on_connections_of_its_own_and_makes_no_session(
    serve: Callable[[Answer], Server],
) -> None:
    """The parent's kept-alive connection is not the child's (each connects anew), and the child's
    plain GETs make no session (no TLS context, no client) of their own."""
    from huggingface_hub.utils import _http as hf_http

    server = serve(lambda h, i: ranged(h))
    assert read(f"{server.url}/f", offset=0, length=10) == BODY[:10]

    def child_reads() -> bool:
        ok = read(f"{server.url}/f", offset=10, length=10) == BODY[10:20]
        return ok and hf_http._GLOBAL_CLIENT is None

    assert in_forked_child(child_reads)
    assert read(f"{server.url}/f", offset=20, length=10) == BODY[20:30]
    assert server.seen.connections == 2  # the parent's one, kept alive, and the child's


def test_https_connections_opened_together_make_one_tls_context(
    serve: Callable[[Answer], Server], tmp_path: Path
) -> None:
    """Six first GETs at once over https: the pool's TLS context is made once (the others wait for
    it), not once per connection — each making loads the CA certificates."""
    server = serve(lambda handler, i: ranged(handler))
    cert, key = self_signed(tmp_path)
    front = TlsFront(("127.0.0.1", int(server.url.rsplit(":", 1)[1])), cert, key)
    made: list[int] = []

    def make() -> ssl.SSLContext:
        made.append(1)
        time.sleep(0.2)  # a slow CA load: every first connection is waiting by now
        return ssl.create_default_context(cafile=str(cert))

    pool = GetPool(make)
    start = threading.Barrier(6)

    def first_get(_: int) -> bytes:
        start.wait()
        return pool.get(f"https://127.0.0.1:{front.port}/f", {}, timeout=10).body

    try:
        with ThreadPoolExecutor(6) as threads:
            assert list(threads.map(first_get, range(6))) == [BODY] * 6
    finally:
        pool.close()
        front.close()
    assert made == [1]
    assert front.handshakes == 6
