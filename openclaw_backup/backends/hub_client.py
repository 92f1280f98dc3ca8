"""The Hub client shared by the Hub backends: one bounded HTTP session, error translation, and the calls.

Words used here:

* **bounded call** — every call to the Hub made by this package runs inside :func:`hub_call`: each
  HTTP request gets ``options.timeout`` as its connect/read/write timeout, and the responses that
  ``huggingface_hub`` would retry *with a sleep* (408, 429, 5xx, network errors; a 429 on the
  commit quota can ask for an hour) are handled here instead: a 429 raises at once (a quota
  surfaces as :class:`QuotaError` with ``retry_after`` within seconds, for the caller to
  reschedule); a transient failure (408, 5xx, network, timeout) of a **replayable request** is sent
  again, up to ``attempts`` tries with bounded exponential backoff (:func:`retry_delay`), then raises.
* **replayable request** — one that does the same thing when sent twice: GET, HEAD, the LFS upload
  PUT (content-addressed), and the POSTs that only ask or announce (preupload, paths-info, the LFS
  batch and verify calls). A commit and a super-squash are never replayed here: a commit whose
  answer was lost is resolved by its caller through the commit's nonce (:mod:`.hf_repo`).
* **repo files** — the files of one repo read by path: :mod:`.hub_files` (``RepoFiles``), whose
  reads are plain GETs (:mod:`.plain_get`) bounded and retried as this module's session's requests.

huggingface_hub 2.4 has no per-call switch for its backoff (``http_backoff`` is called inside
``preupload_lfs_files``, the LFS batch/upload and the tree pagination), so this module installs, once
per process, an ``httpx2.Client`` subclass as the library's session (``set_client_factory``). The
subclass only changes requests made inside :func:`hub_call` (a context variable marks them); other
users of ``huggingface_hub`` in the process keep the library's behaviour (its request hook runs on
every request: ``HF_HUB_OFFLINE``, request ids). The session's TLS context comes from
:mod:`.hub_tls` (the first one made in a thread, while these modules import); the plain GETs
of :mod:`.hub_files` use the same.

The bounds themselves (the context variable, the retry loop, our own errors, :func:`hub_call`) are
:mod:`.hub_bounds`', which imports neither the library nor ``httpx2``: a restore's reads need
neither, and this module is imported only by what does (a write, an error status to raise as the
library raises it, a proxy). Importing it registers with :mod:`.hub_bounds` the check that the
library's session is ours and the translation of the library's exceptions.

How errors are translated (``raise … from`` keeps the original)::

    HTTP 429 (our client)              → QuotaError(retry_after=Retry-After)
    HTTP 408/5xx, network, timeout     → StoreError(transient=True)
    HTTP 412 on a commit               → ConflictError
    RepositoryNotFound / 401 on a repo → RepositoryNotFoundError (create it, or fix the token)
    RevisionNotFound / EntryNotFound   → NotFoundError
    HTTP 401/403 otherwise, other 4xx  → StoreError(transient=False)
    a TLS certificate that fails       → StoreError(transient=False), hint SSL_CERT_FILE (not retried)

The token goes to the Hub only (through the library, or in a plain GET's header); it never appears
in a message (URLs are shown without their query, where pre-signed upload URLs carry signatures).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from typing import TYPE_CHECKING, Any, TypeVar

import httpx2
from huggingface_hub import errors as hf_errors
from huggingface_hub.utils import (
    build_hf_headers,
    close_session,
    get_session,
    set_client_factory,
)

from .. import __version__
from ..errors import BackupError, ConflictError, NotFoundError, QuotaError, RepositoryNotFoundError, StoreError
from .hub_bounds import (
    BOUND,
    LIBRARY_NAME,
    RETRIED_STATUSES,
    RETRY_BASE_DELAY,
    RETRY_MAX_DELAY,
    HubStatusError,
    HubTransportError,
    bounded,
    hub_call,
    retry_delay,
    send_bounded,
    set_library_translator,
    set_session_check,
    translate,
)
from .hub_bounds import retry_after as _retry_after
from .hub_tls import context as tls_context
from .options import BackendOptions

if TYPE_CHECKING:
    from huggingface_hub import HfApi

T = TypeVar("T")

__all__ = [
    "LIBRARY_NAME", "RETRY_BASE_DELAY", "RETRY_MAX_DELAY", "HubStatusError", "HubTransportError", "bounded",
    "ensure_bounded_session", "hub_call", "hub_headers", "make_api", "replayable", "retry_delay", "send_bounded",
    "translate_error",
]  # fmt: skip

_RETRIED_STATUSES = RETRIED_STATUSES
_REPLAYABLE_POST = re.compile(r"/(preupload|paths-info)/|/info/lfs/objects/|/verify$")


# --------------------------------------------------------------------------------------------
# Bounded calls: per-request timeouts and no sleeping inside huggingface_hub


def _where(request: httpx2.Request) -> str:
    return f"{request.method} {request.url.host}{request.url.path}"  # no query: it may carry signatures


def _server_message(response: httpx2.Response) -> str:
    message = response.headers.get("X-Error-Message", "")
    length = response.headers.get("Content-Length", "")
    if not message and length.isdigit() and int(length) < 65536:  # never read an unbounded body
        try:
            response.read()
            payload = json.loads(response.content or b"{}")
            message = str(payload.get("error", "")) if isinstance(payload, dict) else ""
        except (ValueError, httpx2.HTTPError):
            message = ""
    return message.splitlines()[0][:300] if message else ""


def replayable(request: httpx2.Request) -> bool:
    """Whether sending ``request`` twice does no more than sending it once (see the module docstring)."""
    if request.method in ("GET", "HEAD", "PUT"):
        return True
    return request.method == "POST" and bool(_REPLAYABLE_POST.search(request.url.path))


class _BoundedClient(httpx2.Client):
    """The library's session, changed only for requests made inside :func:`hub_call`."""

    def send(self, request: httpx2.Request, **kwargs: Any) -> httpx2.Response:
        bound = BOUND.get()
        if bound is None:
            return super().send(request, **kwargs)
        request.extensions = {**request.extensions, "timeout": httpx2.Timeout(bound.timeout).as_dict()}
        attempts = bound.attempts if replayable(request) else 1
        if attempts > 1:
            request.read()  # a streamed body (an upload's file object) becomes bytes that can be sent again

        def refusal(response: httpx2.Response) -> HubStatusError | None:
            if response.status_code not in _RETRIED_STATUSES:
                return None
            try:
                return HubStatusError(
                    response.status_code, _retry_after(response.headers), _where(request), _server_message(response)
                )
            finally:
                response.close()

        return send_bounded(
            attempts,
            lambda: super(_BoundedClient, self).send(request, **kwargs),
            failure=httpx2.TransportError,
            describe=lambda e: f"{_where(request)}: {type(e).__name__}: {e}",
            refusal=refusal,
        )


def _client_factory() -> httpx2.Client:
    from huggingface_hub.utils import _http as hf_http  # the library's own request hook (offline mode, ids)

    hook = getattr(hf_http, "hf_request_event_hook", None)
    client = _BoundedClient(
        event_hooks={"request": [hook] if hook else []},
        follow_redirects=True,
        timeout=None,
        # a restore's ranged reads in flight together each keep their connection for the next
        limits=httpx2.Limits(max_connections=100, max_keepalive_connections=64),
        verify=tls_context(),  # the context httpx2 would make; the first one made early, off this thread
    )
    _read_in_larger_pieces()
    return client


READ_PIECE = 512 << 10  # bytes a connection takes from its socket per call at most (httpcore2's own: 64 KiB)


def _read_in_larger_pieces() -> None:
    """Let a connection take up to :data:`READ_PIECE` bytes from its socket per call. Each call
    costs a pass through h11 and the stream layers and a hand-back of the GIL (many reads are in
    flight, each in a thread): the 139 ranged reads (154 MB) of a cold restore of the bench took
    0.48 s of CPU in 16 threads at 64 KiB (~2,400 calls), 0.30 s at 512 KiB (as little as at 1 MiB,
    with half the transient buffer). Only the size of a read changes (httpcore2's connections read
    what the socket holds, up to that size); imported here, once httpx2 has loaded it."""
    import httpcore2

    connection = getattr(httpcore2, "HTTP11Connection", None)
    if connection is not None and getattr(connection, "READ_NUM_BYTES", READ_PIECE) < READ_PIECE:
        connection.READ_NUM_BYTES = READ_PIECE


class _DropXetFallbackWarning(logging.Filter):
    """We hand uploads over as buffers on purpose (plain LFS); the library warns about it every time."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "binary IO buffer is not supported by Xet" not in record.getMessage()


_INSTALL_LOCK = threading.Lock()
_installed = False
_quieted = False


def ensure_bounded_session() -> None:
    """Install the bounded session as huggingface_hub's client factory (once per process).

    The first install makes no session: the library's default one (and its TLS context) would be
    made only to be thrown away; ours is made by the first request."""
    global _installed
    with _INSTALL_LOCK:
        if not _installed:
            set_client_factory(_client_factory)  # also closes a session made before, if any
            _installed = True
        elif not isinstance(get_session(), _BoundedClient):  # someone replaced the factory since
            set_client_factory(_client_factory)


def _quiet_library() -> None:
    """Before the first HfApi call (once per process): the library's own progress bars off (our
    reporter shows progress; its bars would break --json and double it), and its warning about
    uploads handed over as buffers dropped. Plain reads and listings show neither, so a restore
    never imports the library's progress-bar modules."""
    global _quieted
    with _INSTALL_LOCK:
        if _quieted:
            return
        from huggingface_hub.utils import disable_progress_bars

        logging.getLogger("huggingface_hub._commit_api").addFilter(_DropXetFallbackWarning())
        disable_progress_bars()
        _quieted = True


def _drop_session_in_child() -> None:
    # The parent's connections are not ours: the next call makes a new session (huggingface_hub
    # registers the same; ours does not depend on it). Closing it here closes only our copies of
    # its sockets: the parent's connections stay open.
    close_session()


os.register_at_fork(after_in_child=_drop_session_in_child)


def _ours_installed() -> bool:
    """Whether the library makes its session with our factory — asked without making the session
    (a forked child's plain GETs need none); by the session itself where the library hides it."""
    from huggingface_hub.utils import _http as hf_http

    factory = getattr(hf_http, "_GLOBAL_CLIENT_FACTORY", None)
    if factory is None:
        return isinstance(get_session(), _BoundedClient)
    return factory is _client_factory


def _library_error(exc: BaseException, what: str) -> BackupError | None:
    """Our typed error for one of huggingface_hub's or httpx2's exceptions, None for any other."""
    if isinstance(exc, hf_errors.BucketNotFoundError):
        return RepositoryNotFoundError(f"{what}: bucket not found", hint="check the address and token")
    if isinstance(exc, hf_errors.RepositoryNotFoundError):
        return RepositoryNotFoundError(
            f"{what}: repository not found (or the token cannot see it)",
            hint="check the address and the HF token, or let the tool create the repository",
        )
    if isinstance(exc, hf_errors.RevisionNotFoundError):
        return NotFoundError(f"{what}: branch or commit not found")
    if isinstance(exc, hf_errors.RemoteEntryNotFoundError):
        return NotFoundError(f"{what}: no such file")
    if isinstance(exc, hf_errors.HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else 0
        detail = f"HTTP {status}" + (f": {exc.server_message.splitlines()[0]}" if exc.server_message else "")
        if status in (409, 412):
            return ConflictError(f"{what}: the branch moved (another writer committed first)")
        if status == 429:
            ra = _retry_after(exc.response.headers) if exc.response is not None else None
            return QuotaError(f"{what}: rate limited ({detail})", retry_after=ra)
        if status in (401, 403):
            return StoreError(f"{what}: not allowed ({detail})", hint="the token needs write access to the repo")
        return StoreError(f"{what}: {detail}", transient=status >= 500 or status == 408)
    if isinstance(exc, hf_errors.OfflineModeIsEnabled):
        return StoreError(f"{what}: huggingface_hub is in offline mode (HF_HUB_OFFLINE)")
    if isinstance(exc, httpx2.TransportError):
        return StoreError(f"{what}: {type(exc).__name__}", transient=True)
    return None


def translate_error(e: BaseException, what: str) -> BackupError:
    """Map an exception raised by huggingface_hub/httpx2 (or our session) to our typed errors."""
    return translate(e, what)


def _check_session() -> None:
    if not _ours_installed():  # someone replaced the library's client factory
        ensure_bounded_session()


set_library_translator(_library_error)
set_session_check(_check_session)


def hub_headers(token: str | None) -> dict[str, str]:
    """The headers of a direct request to the Hub (authorisation and user agent)."""
    return build_hf_headers(token=token, library_name=LIBRARY_NAME, library_version=__version__)


def make_api(options: BackendOptions) -> HfApi:
    """The HfApi for ``options``, with the bounded session installed."""
    ensure_bounded_session()
    return _new_api(options.hf_endpoint, options.token)


def _new_api(endpoint: str | None, token: str | None) -> HfApi:
    """An HfApi (its module imported now, the library's own bars and warning quieted first)."""
    from huggingface_hub import HfApi

    _quiet_library()
    return HfApi(endpoint=endpoint, token=token, library_name=LIBRARY_NAME)
