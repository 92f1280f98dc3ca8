"""The TLS context of the Hub session: the first one made off the main thread, started early.

Making a context loads the CA bundle (some 25 ms, most of it in OpenSSL, which releases the GIL), so
:func:`start` begins one in a thread as soon as a Hub store is about to be opened: the imports of the
Hub client that follow run meanwhile, and the session made for the first request takes it from
:func:`context` (waiting when it is not ready yet). A later session (after the library's
``close_session``, in a forked child) makes a fresh one, as httpx2 does for every client: it reads
the CA bundle as it is then, and no context crosses a fork. A fork waits for a context under way
to be made: OpenSSL's locks taken while it loads the bundle would stay taken in the child, and the
child's own context would then wait on them forever.

Each is the context ``httpx2.Client`` makes for itself by default — ``httpx2.create_ssl_context()``:
the same CA bundle, ``SSL_CERT_FILE``/``SSL_CERT_DIR`` honoured, certificates and host names
verified. The thread imports no module (this module imports what it needs first): two threads
importing modules with circular imports at once can fail.
"""

from __future__ import annotations

import os
import ssl
import threading
from concurrent.futures import Future, wait

import httpcore2  # noqa: F401  (httpx2 imports it on first use; here, so that the thread imports nothing)
import httpx2

_lock = threading.Lock()
_early: Future[ssl.SSLContext] | None = None  # made by start(), not yet taken
_taken = False  # the early one went to the process's first session: start() has nothing left to do


def _make(into: Future[ssl.SSLContext]) -> None:
    try:
        into.set_result(httpx2.create_ssl_context())
    except BaseException as e:  # raised where the context is taken (the session's creation), as before
        into.set_exception(e)


def start() -> None:
    """Begin making the first session's context in a background thread (nothing when one is under
    way or waiting, or when a session took one already: it is reused for every later request)."""
    global _early
    with _lock:
        if _early is not None or _taken:
            return
        made: Future[ssl.SSLContext] = Future()
        _early = made
    threading.Thread(target=_make, args=(made,), name="openclaw-backup-tls", daemon=True).start()


def context() -> ssl.SSLContext:
    """A context for a new session: the one :func:`start` made (handed over once), else a new one."""
    global _early, _taken
    with _lock:
        made, _early = _early, None
        _taken = _taken or made is not None
    return made.result() if made is not None else httpx2.create_ssl_context()


def _settle_before_fork() -> None:
    made = _early
    if made is not None:
        wait([made], timeout=30.0)  # some 25 ms; bounded, so that a fork never hangs on it


def _forget_in_child() -> None:
    global _lock, _early, _taken
    _lock, _early, _taken = threading.Lock(), None, False


os.register_at_fork(before=_settle_before_fork, after_in_child=_forget_in_child)
