"""The TLS context of the Hub's https connections: the first one made off the main thread, started early.

Making a context loads the CA bundle (some 25 ms, most of it in OpenSSL, which releases the GIL), so
:func:`start` begins one in a thread as soon as a Hub store on an https endpoint is about to be
opened: the imports that follow run meanwhile, and the first connection (a plain GET's, or the
library's session's) takes it from :func:`context` (waiting when it is not ready yet). A later
session (after the library's ``close_session``, in a forked child) makes a fresh one, as httpx2 does
for every client: it reads the CA bundle as it is then, and no context crosses a fork. A fork waits
for a context under way to be made: OpenSSL's locks taken while it loads the bundle would stay
taken in the child, and the child's own context would then wait on them forever.

Each is the context ``httpx2.Client`` makes for itself by default — ``httpx2.create_ssl_context()``,
that is ``httpcore2.default_ssl_context()``: the same CA bundle, certificates and host names
verified, ``SSL_CERT_FILE``/``SSL_CERT_DIR`` honoured. When the settings have read those two
(:class:`~.options.HubEnvironment`, given to :func:`start`), the context is made here the way
httpcore2 makes it on Linux and the BSDs, so that a restore's reads never import ``httpx2`` (some
80 ms); otherwise (a store opened without them, or Windows and macOS, where httpcore2 asks the
system's trust store through ``truststore``) by httpx2 itself. The thread imports no module (what
it needs is imported first): two threads importing modules with circular imports at once can fail.
"""

from __future__ import annotations

import os
import re
import ssl
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, wait

from .options import HubEnvironment

#: Where httpcore2 looks for a CA bundle when OpenSSL's compiled-in paths hold none (truststore's
#: Linux fallbacks).
CA_FILE_CANDIDATES = (
    "/etc/ssl/cert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/pki/tls/cert.pem",
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/ssl/ca-bundle.pem",
)
_HASHED_NAME = re.compile(r"[0-9a-fA-F]{8}\.\d")

_lock = threading.Lock()
_early: Future[ssl.SSLContext] | None = None  # made by start(), not yet taken
_taken = False  # the early one went to the process's first session: start() has nothing left to do
_trust: HubEnvironment | None = None  # the CA settings read by the settings, when given


def _system_trust_store() -> bool:
    return sys.platform in ("win32", "darwin")  # httpcore2 uses truststore there


def _as_httpcore2_makes_it(env: HubEnvironment) -> ssl.SSLContext:
    """``httpcore2.default_ssl_context()`` on Linux and the BSDs, with ``SSL_CERT_FILE`` and
    ``SSL_CERT_DIR`` as the settings read them."""
    if env.ssl_cert_file:
        return ssl.create_default_context(cafile=env.ssl_cert_file)
    if env.ssl_cert_dir:
        return ssl.create_default_context(capath=env.ssl_cert_dir)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    paths = ssl.get_default_verify_paths()  # compiled-in paths (set_default_verify_paths would read SSL_CERT_*)
    cafile = paths.openssl_cafile if os.path.isfile(paths.openssl_cafile) else None
    capath = paths.openssl_capath if os.path.isdir(paths.openssl_capath) else None
    if capath and not cafile and not any(_HASHED_NAME.fullmatch(f) for f in os.listdir(capath)):
        capath = None
    if not cafile and not capath:
        cafile = next(filter(os.path.isfile, CA_FILE_CANDIDATES), None)
    if cafile or capath:
        ctx.load_verify_locations(cafile, capath)
    return ctx


def _maker(env: HubEnvironment | None) -> Callable[[], ssl.SSLContext]:
    """How a context is made (``httpx2`` imported here, on the caller's thread, when it makes it)."""
    if env is not None and not _system_trust_store():
        return lambda: _as_httpcore2_makes_it(env)
    import httpcore2  # noqa: F401  (httpx2 imports it on first use; here, so that a thread imports nothing)
    import httpx2

    return httpx2.create_ssl_context


def _make(into: Future[ssl.SSLContext], make: Callable[[], ssl.SSLContext]) -> None:
    try:
        into.set_result(make())
    except BaseException as e:  # raised where the context is taken (the session's creation), as before
        into.set_exception(e)


def start(env: HubEnvironment | None = None) -> None:
    """Begin making the first session's context in a background thread (nothing when one is under
    way or waiting, or when a session took one already: it is reused for every later request).
    ``env``: the CA settings as the settings read them (None: httpx2 reads them itself)."""
    global _early, _trust
    with _lock:
        if env is not None:
            _trust = env
        if _early is not None or _taken:
            return
        trust = _trust
    make = _maker(trust)
    with _lock:
        if _early is not None or _taken:
            return
        made: Future[ssl.SSLContext] = Future()
        _early = made
    threading.Thread(target=_make, args=(made, make), name="openclaw-backup-tls", daemon=True).start()


def start_for(endpoint: str | None, env: HubEnvironment | None) -> None:
    """:func:`start`, unless ``endpoint`` is plain http (None: the library's default, https)."""
    if not (endpoint or "https:").lower().startswith("http:"):
        start(env)


def context() -> ssl.SSLContext:
    """A context for a new session: the one :func:`start` made (handed over once), else a new one."""
    global _early, _taken
    with _lock:
        made, _early = _early, None
        _taken = _taken or made is not None
        trust = _trust
    return made.result() if made is not None else _maker(trust)()


def _settle_before_fork() -> None:
    made = _early
    if made is not None:
        wait([made], timeout=30.0)  # some 25 ms; bounded, so that a fork never hangs on it


def _forget_in_child() -> None:
    global _lock, _early, _taken
    _lock, _early, _taken = threading.Lock(), None, False


os.register_at_fork(before=_settle_before_fork, after_in_child=_forget_in_child)
