"""The files of a Hub dataset/model repo read by path (:class:`RepoFiles`), and the reads under it.

Words used here (the session, the bounds and the error translation are :mod:`.hub_client`'s):

* **repo files** — :class:`RepoFiles`: the files of one dataset/model repo read by path at a
  revision (a branch or a commit id). It serves the repo backend (:mod:`.hf_repo`, objects under a
  prefix) and the legacy view (:mod:`openclaw_backup.legacy_hub`, the legacy script's files at the
  root) alike. It makes its ``HfApi`` on first use (by a write): ``huggingface_hub.hf_api`` and the
  commit API take a tenth of a second to import, and a restore needs neither.
* **file read** — :func:`http_get`: one GET of a resolve URL (ranged when a part is asked). Inside
  :func:`.hub_client.hub_call` it is a **plain GET** (:mod:`.plain_get`: ``http.client`` kept-alive
  connections, the body read whole into one bytes object), bounded and retried exactly as the
  session's requests are (the same timeout, attempts, backoff, statuses retried, and the same
  errors: a network failure → ``HubTransportError``, a retried status → ``HubStatusError``, any
  other error status raised by the library's ``hf_raise_for_status``). The session's own request is
  used outside a bounded call, in offline mode (the library refuses it), and for a URL its
  client would send through a proxy (``HTTP(S)_PROXY``/``ALL_PROXY``/``NO_PROXY``, read by
  ``httpx2``; the session is asked, once per origin). Redirects are followed either way, and
  ``Authorization`` never goes to another origin. A cold restore's data reads cost a third less CPU
  so (docs/performance.md). Listings and ``read_current`` (which needs the redirect's headers) go
  through the session.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import quote, urlsplit

import httpx2
from huggingface_hub import constants as hf_constants
from huggingface_hub import errors as hf_errors
from huggingface_hub.utils import get_session, hf_raise_for_status, paginate

from ..errors import StoreError
from .hub_client import (
    _BOUND,
    _RETRIED_STATUSES,
    HubStatusError,
    _Bound,
    _new_api,
    _retry_after,
    ensure_bounded_session,
    hub_call,
    hub_headers,
    send_bounded,
)
from .hub_tls import context as tls_context
from .plain_get import Answer, GetPool, NotDirect, TransportFailure

if TYPE_CHECKING:
    from huggingface_hub import HfApi

T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# Reads of files: plain GETs (see plain_get), or the library's session


def _session_tls() -> ssl.SSLContext:
    """The TLS context of the session (the plain GETs verify as it does; no second CA bundle load)."""
    pool = getattr(getattr(get_session(), "_transport", None), "_pool", None)
    context = getattr(pool, "_ssl_context", None)
    return context if isinstance(context, ssl.SSLContext) else tls_context()


_PLAIN = GetPool(_session_tls)
# origin -> no proxy between us and it. Kept in a forked child: the answer depends only on the
# environment, which the child shares, so its plain GETs need no session of their own (a session
# there would make a TLS context, some 25 ms of CPU, for nothing).
_direct_origins: dict[str, bool] = {}


def _direct(url: str) -> bool:
    """Whether the session would send a request to ``url`` straight to its host (no proxy from the
    environment, ``HTTP(S)_PROXY``/``ALL_PROXY``/``NO_PROXY``, as ``httpx2`` reads it). Asked of the
    session itself, once per origin: this package reads no environment."""
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc}"
    known = _direct_origins.get(origin)
    if known is None:
        session = get_session()
        transport = getattr(session, "_transport", None)
        finder = getattr(session, "_transport_for_url", None)
        known = transport is not None and finder is not None and finder(httpx2.URL(url)) is transport
        _direct_origins[origin] = known
    return known


def _answer_message(answer: Answer) -> str:
    message = answer.headers.get("X-Error-Message", "")
    if not message and answer.body:
        try:
            payload = json.loads(answer.body)
            message = str(payload.get("error", "")) if isinstance(payload, dict) else ""
        except ValueError:
            message = ""
    return message.splitlines()[0][:300] if message else ""


def _plain_get(url: str, headers: dict[str, str], bound: _Bound) -> Answer:
    """One plain GET of ``url`` bounded and retried as the session's requests are (:func:`.send_bounded`)."""

    def refusal(answer: Answer) -> HubStatusError | None:
        if answer.status not in _RETRIED_STATUSES:
            return None
        parts = httpx2.URL(answer.url)
        where = f"GET {parts.host}{parts.path}"  # no query: it may carry signatures
        return HubStatusError(answer.status, _retry_after(answer.headers), where, _answer_message(answer))

    return send_bounded(
        bound.attempts,
        lambda: _PLAIN.get(url, headers, timeout=bound.timeout, direct=_direct),
        failure=TransportFailure,
        describe=str,
        refusal=refusal,
    )


def http_get(url: str, headers: dict[str, str], *, offset: int = 0, length: int | None = None) -> bytes:
    """GET ``url`` (a resolve URL) with a Range header when a part is asked; 416 → ``b""``.

    Inside :func:`hub_call`, a plain GET (:mod:`.plain_get`: the body read whole into one bytes
    object, no client stack per piece), bounded and retried as the session's requests are; the
    session's own request otherwise, or when a proxy is configured for the URL, or in offline mode
    (the library then refuses it). An error status is raised as the library raises it
    (``hf_raise_for_status``) either way."""
    request_headers = {**headers, "Accept-Encoding": "identity"}
    ranged = offset > 0 or length is not None
    if ranged:
        request_headers["Range"] = f"bytes={offset}-" + (str(offset + length - 1) if length is not None else "")
    bound = _BOUND.get()
    answer: Answer | None = None
    if bound is not None and not hf_constants.is_offline_mode():
        try:
            answer = _plain_get(url, request_headers, bound)
        except NotDirect:
            answer = None
    if answer is not None and (200 <= answer.status < 300 or answer.status == 416):
        status, data = answer.status, answer.body
    else:
        if answer is None:
            response = get_session().get(url, headers=request_headers)
        else:  # an error (or a redirect without a place), raised as the library raises it
            response = httpx2.Response(
                answer.status,
                headers=list(answer.headers.items()),
                content=answer.body,
                request=httpx2.Request("GET", url),
            )
        status = response.status_code
        if status == 416:
            return b""
        hf_raise_for_status(response)
        data = response.content
    if status == 416:
        return b""
    if ranged and status == 200:  # the server ignored the range
        data = data[offset : None if length is None else offset + length]
    return data


def resolve_url(endpoint: str, repo_id: str, path: str, *, repo_type: str, revision: str) -> str:
    """The URL a file of a repo is read from at ``revision``: what ``huggingface_hub.hf_hub_url``
    returns for the same arguments (that function's module imports the library's download and
    cache machinery, which nothing here uses)."""
    prefix = hf_constants.REPO_TYPES_URL_PREFIXES.get(repo_type, "")
    return f"{endpoint}/{prefix}{repo_id}/resolve/{quote(revision, safe='')}/{quote(path)}"


# --------------------------------------------------------------------------------------------
# The files of a repo


class RepoFiles:
    """The files of one Hub dataset/model repo, read by path at a revision.

    The methods are plain Hub calls: run them inside :func:`hub_call` (or :meth:`call`), which bounds
    and translates them; the library's own exceptions that callers tell apart (a missing revision,
    a missing folder) are documented per method.

    Reads are plain GETs of resolve URLs (:func:`http_get`); listings are requests on the library's
    session (the tree API through ``huggingface_hub.utils.paginate``, as ``HfApi.list_repo_tree``
    makes them); the
    :attr:`api` (``HfApi``, whose module takes a tenth of a second to import) is made on first use,
    so a restore never makes one.
    """

    def __init__(
        self,
        endpoint: str | None,
        repo_id: str,
        *,
        repo_type: str,
        token: str | None,
        timeout: float,
        attempts: int = 1,
    ) -> None:
        ensure_bounded_session()
        self._endpoint = endpoint
        self.endpoint = endpoint if endpoint is not None else hf_constants.ENDPOINT  # as HfApi has it
        self._api: HfApi | None = None
        self.repo_id = repo_id
        self.repo_type = repo_type
        self.token = token
        self.timeout = timeout
        self.attempts = attempts
        self.location = f"hf://{repo_type}s/{repo_id}"

    @property
    def api(self) -> HfApi:
        """The HfApi of this repo's endpoint and token (made on first use; two threads racing make
        two equal ones, which is harmless)."""
        api = self._api
        if api is None:
            api = self._api = _new_api(self._endpoint, self.token)
        return api

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """:func:`hub_call` with this repo's timeout, ``what`` prefixed with its location."""
        return hub_call(self.timeout, f"{self.location}: {what}", fn, attempts=self.attempts)

    def branch_commit(self, branch: str) -> str | None:
        """The branch's commit id, or None when the branch has no commit yet."""
        try:
            info = self.api.repo_info(
                self.repo_id,
                repo_type=self.repo_type,
                revision=branch,
                expand="sha",  # only the commit id, not the whole file list
            )
        except hf_errors.RevisionNotFoundError:
            return None
        if not info.sha:
            raise StoreError(f"{self.location}: the Hub did not say which commit {branch} is")
        return str(info.sha)

    def _url(self, path: str, revision: str | None) -> str:
        revision = revision if revision is not None else hf_constants.DEFAULT_REVISION
        return resolve_url(self.endpoint, self.repo_id, path, repo_type=self.repo_type, revision=revision)

    def read(self, path: str, revision: str | None, *, offset: int = 0, length: int | None = None) -> bytes | None:
        """The file's bytes (or ``length`` from ``offset``; a short read at the end), None when missing.

        An unknown ``revision`` raises ``huggingface_hub.errors.RevisionNotFoundError``.
        """
        try:
            return http_get(self._url(path, revision), hub_headers(self.token), offset=offset, length=length)
        except hf_errors.RemoteEntryNotFoundError:
            return None

    def read_current(self, path: str, branch: str) -> tuple[bytes | None, str | None]:
        """The file's bytes on ``branch`` (None when missing) and the commit id they were served
        from, in ONE request: the Hub names the commit in ``X-Repo-Commit`` (on the redirect, when
        the bytes come from a CDN). The id is None when no response carried it.

        An unknown ``branch`` raises ``huggingface_hub.errors.RevisionNotFoundError``.
        """
        headers = {**hub_headers(self.token), "Accept-Encoding": "identity"}
        response = get_session().get(self._url(path, branch), headers=headers)
        commit = next(
            (r.headers["X-Repo-Commit"] for r in (response, *response.history) if r.headers.get("X-Repo-Commit")),
            None,
        )
        try:
            hf_raise_for_status(response)
        except hf_errors.RemoteEntryNotFoundError:
            return None, commit
        return response.content, commit

    def list(self, folder: str | None, revision: str) -> list[str]:
        """Paths of the files under ``folder`` (the whole repo when None), recursively; [] when missing.

        The requests ``HfApi.list_repo_tree(recursive=True)`` makes (same URL, parameters, headers
        and pagination), without importing ``huggingface_hub.hf_api``. An unknown ``revision``
        raises ``huggingface_hub.errors.RevisionNotFoundError``.
        """
        where = "/" + quote(folder, safe="") if folder else ""
        url = f"{self.endpoint}/api/{self.repo_type}s/{self.repo_id}/tree/{quote(revision, safe='')}{where}"
        try:
            entries = paginate(url, params={"recursive": True, "expand": False}, headers=hub_headers(self.token))
            return [str(e["path"]) for e in entries if e.get("type") == "file"]
        except hf_errors.RemoteEntryNotFoundError:
            return []
