"""The TLS context of the Hub session: made once per process, off the main thread, started early.

Making it loads the CA bundle (some 25 ms, most of it in OpenSSL, which releases the GIL), so
:func:`start` begins it in a thread as soon as a Hub store is about to be opened: the imports of the
Hub client that follow run meanwhile. :func:`context` returns it, waiting when it is not ready yet
(and making it in the calling thread when nothing started it).

It is the context ``httpx2.Client`` makes for itself by default — ``httpx2.create_ssl_context()``:
the same CA bundle, ``SSL_CERT_FILE``/``SSL_CERT_DIR`` honoured, certificates and host names
verified — made once instead of once per client. The thread imports no module (this module imports
what it needs first): two threads importing modules with circular imports at once can fail. A
forked child makes its own: an OpenSSL context is not carried across a fork (a lock a parent thread
held at the fork would never be released in the child).
"""

from __future__ import annotations

import os
import ssl
import threading
from concurrent.futures import Future

import httpcore2  # noqa: F401  (httpx2 imports it on first use; here, so that the thread imports nothing)
import httpx2

_lock = threading.Lock()
_made: Future[ssl.SSLContext] | None = None


def _make(into: Future[ssl.SSLContext]) -> None:
    try:
        into.set_result(httpx2.create_ssl_context())
    except BaseException as e:  # raised again where the context is asked for (the client's creation)
        into.set_exception(e)


def start() -> None:
    """Begin making the context in a background thread (once per process; later calls do nothing)."""
    global _made
    with _lock:
        if _made is not None:
            return
        made: Future[ssl.SSLContext] = Future()
        _made = made
    threading.Thread(target=_make, args=(made,), name="openclaw-backup-tls", daemon=True).start()


def context() -> ssl.SSLContext:
    """The process's context (see the module docstring)."""
    global _made
    with _lock:
        made = _made
        if made is None:
            made = Future()
            _make(made)
            _made = made
    return made.result()


def _forget_in_child() -> None:
    global _lock, _made
    _lock, _made = threading.Lock(), None


os.register_at_fork(after_in_child=_forget_in_child)
