"""The files of a Hub dataset/model repo read by path (:class:`RepoFiles`), and the reads under it.

Words used here (the bounds are :mod:`.hub_bounds`', the library's session and the translation of
its errors :mod:`.hub_client`'s):

* **repo files** — :class:`RepoFiles`: the files of one dataset/model repo read by path at a
  revision (a branch or a commit id). It serves the repo backend (:mod:`.hf_repo`, objects under a
  prefix) and the legacy view (:mod:`openclaw_backup.legacy_hub`, the legacy script's files at the
  root) alike. It makes its ``HfApi`` on first use (by a write): ``huggingface_hub.hf_api`` and the
  commit API take a tenth of a second to import, and a restore needs neither.
* **plain GET** — one request of :mod:`.plain_get` (``http.client`` kept-alive connections, the
  body read whole into one bytes object), made inside :func:`.hub_bounds.hub_call`, bounded and
  retried exactly as the library's session's requests are there (the same timeout, attempts,
  backoff, statuses retried, and the same errors: a network failure → ``HubTransportError``, a
  retried status → ``HubStatusError``). Any other error status is raised as the library raises it
  (``hf_raise_for_status``, the library imported then). Redirects are followed, and
  ``Authorization`` never goes to another origin. A file's read (:func:`http_get`, ranged when a
  part is asked), the head's read (:meth:`RepoFiles.read_current`: the commit id from the answer's
  or a redirect's ``X-Repo-Commit``) and a listing's pages (:meth:`RepoFiles.list`, the tree API and
  its ``Link`` header) are plain GETs.
* **lean read** — with the :class:`~.options.HubEnvironment` the settings read (the token the
  library would send, offline mode, proxies), the plain GETs, their URLs and headers need nothing of
  ``huggingface_hub`` nor ``httpx2``: a cold restore imports neither (some 0.15 s before its first
  request) unless a status has to be raised as the library raises it. The library's session is used
  instead outside a bounded call, in offline mode (the library's hook refuses the request), and for
  a URL its client would send through a proxy (``HTTP(S)_PROXY``/``ALL_PROXY``/``NO_PROXY``, read by
  ``httpx2``; the session is asked, once per origin, when a proxy is configured); the library builds
  the headers when only it knows the token (a refreshable OAuth login). A lean read's user agent
  names this tool and Python, without the library's telemetry (its version, torch, an AI agent).
"""

from __future__ import annotations

import builtins
import json
import re
import ssl
import sys
import threading
from collections.abc import Callable
from email.message import Message
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, unquote, urljoin, urlsplit

from .. import __version__
from ..errors import StoreError
from .hub_bounds import (
    BOUND,
    LIBRARY_NAME,
    RETRIED_STATUSES,
    Bound,
    HubStatusError,
    hub_call,
    retry_after,
    send_bounded,
)
from .hub_tls import context as tls_context
from .options import HubEnvironment
from .plain_get import Answer, GetPool, NotDirect, TransportFailure

if TYPE_CHECKING:
    import httpx2
    from huggingface_hub import HfApi

T = TypeVar("T")

DEFAULT_REVISION = "main"  # huggingface_hub.constants.DEFAULT_REVISION
#: The URL prefix of each kind of repo (huggingface_hub.constants.REPO_TYPES_URL_PREFIXES).
REPO_TYPES_URL_PREFIXES = {"dataset": "datasets/", "space": "spaces/", "kernel": "kernels/"}


# --------------------------------------------------------------------------------------------
# The library, when something needs it


class _Never(Exception):
    """Matches no exception that was raised (see :func:`library_errors`)."""


class _NoLibrary:
    def __getattr__(self, name: str) -> type[Exception]:
        return _Never


def library_errors() -> Any:
    """``huggingface_hub.errors`` once imported, else a stand-in whose every class matches nothing:
    an exception of the library's can only have been raised once it is imported (use in ``except``
    clauses, evaluated only when an exception arrives)."""
    return sys.modules.get("huggingface_hub.errors") or _NoLibrary()


_import_lock = threading.Lock()
_loaded: set[str] = set()


def load_library(*, writes: bool = False) -> None:
    """Import the library's side (:mod:`.hub_client`: ``huggingface_hub``, ``httpx2``, the
    translation of their errors; with ``writes``, ``HfApi`` and the commit API too) once, one thread
    at a time: a store's calls run in many threads, and two threads importing a package with
    circular imports at once can fail. Every use of the library by the Hub stores begins with it."""
    part = "writes" if writes else "reads"
    if part in _loaded:
        return
    with _import_lock:
        if "reads" not in _loaded:
            import httpx2  # noqa: F401
            from huggingface_hub import constants, errors, utils  # noqa: F401

            from .hub_client import translate_error  # noqa: F401  (registers the translation of the library's errors)

            _loaded.add("reads")
        if writes and "writes" not in _loaded:
            from huggingface_hub import hf_api  # noqa: F401  (HfApi, the commit operations)

            _loaded.add("writes")


def _session() -> httpx2.Client:
    """The library's session, ours (bounded) installed first; imports the library."""
    load_library()
    from huggingface_hub.utils import get_session

    from .hub_client import ensure_bounded_session

    ensure_bounded_session()
    return get_session()


def _library_offline() -> bool:
    load_library()
    from huggingface_hub import constants

    return constants.is_offline_mode()


def _raise_as_library(answer: Answer, url: str) -> None:
    """Raise the answer's error status as the library raises it (``hf_raise_for_status``; nothing
    for a status it does not raise). Imports the library (and :mod:`.hub_client`, which translates
    its errors)."""
    load_library()
    import httpx2
    from huggingface_hub.utils import hf_raise_for_status

    response = httpx2.Response(
        answer.status,
        headers=list(answer.headers.items()),
        content=answer.body,
        request=httpx2.Request("GET", url),
    )
    hf_raise_for_status(response)


# --------------------------------------------------------------------------------------------
# Reads of files: plain GETs (see plain_get), or the library's session


def _session_tls() -> ssl.SSLContext:
    """The TLS context of the library's session when the library is in use (the plain GETs verify
    as it does; no second CA bundle load), else :mod:`.hub_tls`' (the one made early)."""
    if "huggingface_hub.utils._http" in sys.modules:
        pool = getattr(getattr(_session(), "_transport", None), "_pool", None)
        context = getattr(pool, "_ssl_context", None)
        if isinstance(context, ssl.SSLContext):
            return context
    return tls_context()


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
        session = _session()
        import httpx2

        transport = getattr(session, "_transport", None)
        finder = getattr(session, "_transport_for_url", None)
        known = transport is not None and finder is not None and finder(httpx2.URL(url)) is transport
        _direct_origins[origin] = known
    return known


def _no_proxy(url: str) -> bool:
    return True


def _direct_policy(env: HubEnvironment | None) -> Callable[[str], bool]:
    """No proxy configured (the settings say so): every URL is direct; else ask the session."""
    return _no_proxy if env is not None and not env.proxied else _direct


def _answer_message(answer: Answer) -> str:
    message = answer.headers.get("X-Error-Message", "")
    if not message and answer.body:
        try:
            payload = json.loads(answer.body)
            message = str(payload.get("error", "")) if isinstance(payload, dict) else ""
        except ValueError:
            message = ""
    return message.splitlines()[0][:300] if message else ""


def _plain_get(url: str, headers: dict[str, str], bound: Bound, direct: Callable[[str], bool]) -> Answer:
    """One plain GET of ``url`` bounded and retried as the session's requests are (:func:`.send_bounded`)."""

    def refusal(answer: Answer) -> HubStatusError | None:
        if answer.status not in RETRIED_STATUSES:
            return None
        parts = urlsplit(answer.url)
        where = f"GET {parts.hostname}{unquote(parts.path)}"  # no query: it may carry signatures
        return HubStatusError(answer.status, retry_after(answer.headers), where, _answer_message(answer))

    return send_bounded(
        bound.attempts,
        lambda: _PLAIN.get(url, headers, timeout=bound.timeout, direct=direct),
        failure=TransportFailure,
        describe=str,
        refusal=refusal,
    )


def _plain(url: str, headers: dict[str, str], env: HubEnvironment | None) -> Answer | None:
    """A plain GET of ``url`` when one may be made (inside a bounded call, not offline, no proxy
    for it), else None: the library's session makes the request."""
    bound = BOUND.get()
    if bound is None or (env.offline if env is not None else _library_offline()):
        return None
    try:
        return _plain_get(url, headers, bound, _direct_policy(env))
    except NotDirect:
        return None


def _entry_missing(answer: Answer) -> bool:
    """Whether the answer says the file or folder asked for is not there: what the library raises as
    ``RemoteEntryNotFoundError`` (an error status with ``X-Error-Code: EntryNotFound``, whatever
    the status) — told without it, as a restore meets it (a folder with nothing in it yet)."""
    return answer.status >= 400 and answer.headers.get("X-Error-Code") == "EntryNotFound"


def http_get(
    url: str,
    headers: dict[str, str],
    *,
    offset: int = 0,
    length: int | None = None,
    env: HubEnvironment | None = None,
) -> bytes:
    """GET ``url`` (a resolve URL) with a Range header when a part is asked; 416 → ``b""``.

    Inside :func:`hub_call`, a plain GET (the module docstring); the session's own request
    otherwise, or when a proxy is configured for the URL, or in offline mode (the library then
    refuses it). An error status is raised as the library raises it (``hf_raise_for_status``)
    either way. ``env``: the environment as the settings read it (None: the library reads it)."""
    data = _get(url, headers, offset=offset, length=length, env=env, missing_ok=False)
    assert data is not None  # missing_ok=False: a missing file raised
    return data


def _get(
    url: str,
    headers: dict[str, str],
    *,
    offset: int,
    length: int | None,
    env: HubEnvironment | None,
    missing_ok: bool,
) -> bytes | None:
    """:func:`http_get`; with ``missing_ok``, None for a plain GET's answer that the file is not
    there (:func:`_entry_missing`) rather than the library's error."""
    request_headers = {**headers, "Accept-Encoding": "identity"}
    ranged = offset > 0 or length is not None
    if ranged:
        request_headers["Range"] = f"bytes={offset}-" + (str(offset + length - 1) if length is not None else "")
    answer = _plain(url, request_headers, env)
    if answer is not None and (200 <= answer.status < 300 or answer.status == 416):
        status, data = answer.status, answer.body
    elif answer is not None:  # an error (or a redirect without a place), raised as the library raises it
        if missing_ok and _entry_missing(answer):
            return None
        _raise_as_library(answer, url)
        status, data = answer.status, answer.body
    else:
        session = _session()
        from huggingface_hub.utils import hf_raise_for_status

        response = session.get(url, headers=request_headers)
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


def lean_headers(token: str | None) -> dict[str, str]:
    """The headers of a lean read: the user agent, and the token when there is one."""
    headers = {"user-agent": f"{LIBRARY_NAME}/{__version__}; python/{sys.version.split()[0]}"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return headers


_LINK = re.compile(r"<([^>]*)>\s*;([^,]*)")


def next_page(headers: Message) -> str | None:
    """The ``rel="next"`` URL of a ``Link`` header (GitHub's pagination, as the Hub's tree API
    sends it), or None."""
    for target, params in _LINK.findall(headers.get("Link", "")):
        rels = [p.split("=", 1)[1].strip().strip('"') for p in params.split(";") if p.strip().startswith("rel=")]
        if "next" in rels:
            return target
    return None


def resolve_url(endpoint: str, repo_id: str, path: str, *, repo_type: str, revision: str) -> str:
    """The URL a file of a repo is read from at ``revision``: what ``huggingface_hub.hf_hub_url``
    returns for the same arguments (that function's module imports the library's download and
    cache machinery, which nothing here uses)."""
    prefix = REPO_TYPES_URL_PREFIXES.get(repo_type, "")
    return f"{endpoint}/{prefix}{repo_id}/resolve/{quote(revision, safe='')}/{quote(path)}"


# --------------------------------------------------------------------------------------------
# The files of a repo


class RepoFiles:
    """The files of one Hub dataset/model repo, read by path at a revision.

    The methods are plain Hub calls: run them inside :func:`hub_call` (or :meth:`call`), which bounds
    and translates them; the library's own exceptions that callers tell apart (a missing revision,
    a missing folder) are documented per method.

    Reads, the head's read and listings are plain GETs (the module docstring), lean when ``env``
    (the settings' :class:`~.options.HubEnvironment`) is given; the :attr:`api` (``HfApi``, whose
    module takes a tenth of a second to import) is made on first use, so a restore never makes one.
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
        env: HubEnvironment | None = None,
    ) -> None:
        self._endpoint = endpoint
        if endpoint is None:
            load_library()
            from huggingface_hub import constants

            endpoint = constants.ENDPOINT  # as HfApi has it
        self.endpoint: str = endpoint
        self._api: HfApi | None = None
        self.repo_id = repo_id
        self.repo_type = repo_type
        self.token = token
        self.timeout = timeout
        self.attempts = attempts
        self.env = env
        self.location = f"hf://{repo_type}s/{repo_id}"
        self._lean_headers = lean_headers(token) if env is not None and env.token_settled else None

    @property
    def api(self) -> HfApi:
        """The HfApi of this repo's endpoint and token (made on first use; two threads racing make
        two equal ones, which is harmless)."""
        api = self._api
        if api is None:
            load_library(writes=True)
            from .hub_client import _new_api, ensure_bounded_session

            ensure_bounded_session()
            api = self._api = _new_api(self._endpoint, self.token)
        return api

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """:func:`hub_call` with this repo's timeout, ``what`` prefixed with its location."""
        return hub_call(self.timeout, f"{self.location}: {what}", fn, attempts=self.attempts)

    def headers(self) -> dict[str, str]:
        """The headers of a request to the Hub: the lean ones when the token is settled, else the
        library's (which finds the token itself)."""
        if self._lean_headers is not None:
            return dict(self._lean_headers)
        load_library()
        from .hub_client import hub_headers

        return hub_headers(self.token)

    def branch_commit(self, branch: str) -> str | None:
        """The branch's commit id, or None when the branch has no commit yet."""
        try:
            info = self.api.repo_info(
                self.repo_id,
                repo_type=self.repo_type,
                revision=branch,
                expand="sha",  # only the commit id, not the whole file list
            )
        except library_errors().RevisionNotFoundError:
            return None
        if not info.sha:
            raise StoreError(f"{self.location}: the Hub did not say which commit {branch} is")
        return str(info.sha)

    def _url(self, path: str, revision: str | None) -> str:
        revision = revision if revision is not None else DEFAULT_REVISION
        return resolve_url(self.endpoint, self.repo_id, path, repo_type=self.repo_type, revision=revision)

    def read(self, path: str, revision: str | None, *, offset: int = 0, length: int | None = None) -> bytes | None:
        """The file's bytes (or ``length`` from ``offset``; a short read at the end), None when missing.

        An unknown ``revision`` raises ``huggingface_hub.errors.RevisionNotFoundError``.
        """
        try:
            url = self._url(path, revision)
            return _get(url, self.headers(), offset=offset, length=length, env=self.env, missing_ok=True)
        except library_errors().RemoteEntryNotFoundError:
            return None

    def read_current(self, path: str, branch: str) -> tuple[bytes | None, str | None]:
        """The file's bytes on ``branch`` (None when missing) and the commit id they were served
        from, in ONE request: the Hub names the commit in ``X-Repo-Commit`` (on the redirect, when
        the bytes come from a CDN). The id is None when no response carried it.

        An unknown ``branch`` raises ``huggingface_hub.errors.RevisionNotFoundError``.
        """
        url = self._url(path, branch)
        headers = {**self.headers(), "Accept-Encoding": "identity"}
        answer = _plain(url, headers, self.env) if self.env is not None else None
        if answer is not None:
            commit = next((h["X-Repo-Commit"] for h in (answer.headers, *answer.redirects) if h.get("X-Repo-Commit")),
                          None)  # fmt: skip
            if 200 <= answer.status < 300:
                return answer.body, commit
            if _entry_missing(answer):
                return None, commit
            try:
                _raise_as_library(answer, url)
            except library_errors().RemoteEntryNotFoundError:
                return None, commit
            return answer.body, commit
        session = _session()
        from huggingface_hub.utils import hf_raise_for_status

        response = session.get(url, headers=headers)
        commit = next(
            (r.headers["X-Repo-Commit"] for r in (response, *response.history) if r.headers.get("X-Repo-Commit")),
            None,
        )
        try:
            hf_raise_for_status(response)
        except library_errors().RemoteEntryNotFoundError:
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
            return [str(e["path"]) for e in self._entries(url) if e.get("type") == "file"]
        except library_errors().RemoteEntryNotFoundError:
            return []

    def _entries(self, url: str) -> builtins.list[dict[str, Any]]:
        """Every entry of a paginated listing (the first page's parameters are ``HfApi``'s)."""
        headers = self.headers()
        page = f"{url}?recursive=true&expand=false"
        answer = _plain(page, headers, self.env) if self.env is not None else None
        if answer is None:
            return _paginate(url, {"recursive": True, "expand": False}, headers)
        entries: builtins.list[dict[str, Any]] = []
        while True:
            if not entries and _entry_missing(answer):
                return []  # no such folder
            if not 200 <= answer.status < 300:
                _raise_as_library(answer, page)
            entries += json.loads(answer.body)
            following = next_page(answer.headers)
            if following is None:
                return entries
            page = urljoin(answer.url, following)
            answer = _plain(page, headers, self.env)
            if answer is None:  # the next page's host goes through a proxy: the library's way
                return entries + _paginate(page, {}, headers)


def _paginate(url: str, params: dict[str, Any], headers: dict[str, str]) -> list[dict[str, Any]]:
    """Every entry of a listing from ``url`` on, read the library's way (its session, ours installed
    before its first request)."""
    _session()
    from huggingface_hub.utils import paginate

    return list(paginate(url, params=params, headers=headers))
