"""Hugging Face Hub storage: a dataset (or model) repository, and the Hub plumbing shared with buckets.

Words used here:

* **address** — ``hf://datasets/<ns>/<name>[/<prefix>]``, ``hf://models/<ns>/<name>[/<prefix>]`` or
  ``hf://buckets/<ns>/<name>[/<prefix>]``. Objects live under ``<prefix>/`` (default
  ``openclaw-backup``), so a repository shared with the legacy script's ``backups/`` and
  ``latest-backup.json`` is never touched outside that folder.
* **publication** — on a repo, exactly ONE ``create_commit`` carrying every staged object, the head
  file ``<prefix>/head`` and the deletes, with ``parent_commit`` = the expected head version. The head
  version is the branch's commit id, so a concurrent writer gets HTTP 412 → :class:`ConflictError`.
* **bounded call** — every call to the Hub made by this package runs inside :func:`hub_call`: each
  HTTP request gets ``options.timeout`` as its connect/read/write timeout, and the responses that
  ``huggingface_hub`` would retry *with a sleep* (408, 429, 5xx, network errors; a 429 on the
  commit quota can ask for an hour) raise at once instead. The retry policy lives in
  :mod:`.wrappers`; a quota surfaces as :class:`QuotaError` with ``retry_after`` within seconds.

huggingface_hub 2.4 has no per-call switch for its backoff (``http_backoff`` is called inside
``preupload_lfs_files``, the LFS batch/upload and the tree pagination), so this module installs, once
per process, an ``httpx2.Client`` subclass as the library's session (``set_client_factory``). The
subclass only changes requests made inside :func:`hub_call` (a context variable marks them); other
users of ``huggingface_hub`` in the process keep the library's behaviour.

Uploads go through the plain LFS protocol (the bytes are handed over as a buffer, which makes the
client skip ``hf_xet``), so every byte travels through the bounded session; the Hub accepts LFS
uploads on Xet-backed repos.

How errors are translated (``raise … from`` keeps the original)::

    HTTP 429 (our client)              → QuotaError(retry_after=Retry-After)
    HTTP 408/5xx, network, timeout     → StoreError(transient=True)
    HTTP 412 on a commit               → ConflictError
    RepositoryNotFound / 401 on a repo → RepositoryNotFoundError (create it, or fix the token)
    RevisionNotFound / EntryNotFound   → NotFoundError
    HTTP 401/403 otherwise, other 4xx  → StoreError(transient=False)

The token is handed to ``huggingface_hub`` only; it never appears in a message (URLs are shown
without their query, where pre-signed upload URLs carry signatures).
"""

from __future__ import annotations

import builtins
import io
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import httpx2
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, hf_hub_url
from huggingface_hub import errors as hf_errors
from huggingface_hub.hf_api import RepoFile
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status, set_client_factory

from .. import __version__
from ..errors import (
    BackupError,
    ConflictError,
    NotFoundError,
    QuotaError,
    RepositoryNotFoundError,
    StoreError,
    UsageError,
)
from .base import HEAD_NAME, Backend, Capabilities, Head, check_name

if TYPE_CHECKING:
    from . import BackendOptions

T = TypeVar("T")

DEFAULT_PREFIX = "openclaw-backup"
COMMIT_TITLE = "openclaw-backup: publish"
LIBRARY_NAME = "openclaw-backup"
_RETRIED_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_PART_RE = re.compile(r"^[A-Za-z0-9._-]+$")
_PATHS_INFO_BATCH = 500
_PUBLISH_ATTEMPTS = 3  # commits that did not land (5xx, dropped answer) are made again

# --------------------------------------------------------------------------------------------
# Addresses


@dataclass(frozen=True)
class HfAddress:
    """A parsed ``hf://`` address: ``kind`` is ``dataset``, ``model`` or ``bucket``."""

    kind: str
    repo_id: str
    prefix: str

    def __str__(self) -> str:
        return f"hf://{self.kind}s/{self.repo_id}/{self.prefix}"


def parse_hf_address(address: str) -> HfAddress:
    """Parse ``hf://{datasets,models,buckets}/<ns>/<name>[/<prefix>]``; ``UsageError`` otherwise."""
    usage = f"{address!r}: expected hf://datasets/<namespace>/<name>[/<prefix>] (or hf://models/…, hf://buckets/…)"
    if not address.startswith("hf://"):
        raise UsageError(usage)
    parts = address[len("hf://") :].strip("/").split("/")
    if len(parts) < 3 or parts[0] not in ("datasets", "models", "buckets"):
        raise UsageError(usage, hint="Spaces are rebuilt on every commit: keep backups in a dataset repo")
    kind, namespace, name, rest = parts[0][:-1], parts[1], parts[2], parts[3:]
    if not (_ID_RE.match(namespace) and _ID_RE.match(name)):
        raise UsageError(f"{address!r}: invalid namespace or name")
    if any(not _PART_RE.match(p) or p in (".", "..") for p in rest):
        raise UsageError(f"{address!r}: invalid prefix (letters, digits, '.', '_', '-' and '/')")
    return HfAddress(kind, f"{namespace}/{name}", "/".join(rest) or DEFAULT_PREFIX)


# --------------------------------------------------------------------------------------------
# Bounded calls: per-request timeouts and no sleeping inside huggingface_hub


class HubStatusError(Exception):
    """A response huggingface_hub would have retried after a sleep; raised instead (inside hub_call)."""

    def __init__(self, status: int, retry_after: float | None, where: str, server_message: str) -> None:
        super().__init__(f"HTTP {status} from {where}" + (f": {server_message}" if server_message else ""))
        self.status = status
        self.retry_after = retry_after
        self.server_message = server_message


class _NotLanded(StoreError):
    """A commit failed transiently and is known not to be on the branch: safe to make again."""


class HubTransportError(Exception):
    """A network failure or timeout (inside hub_call), raised instead of the library's retry-with-sleep."""


@dataclass(frozen=True)
class _Bound:
    timeout: float


_BOUND: ContextVar[_Bound | None] = ContextVar("openclaw_backup_hf_bound", default=None)


def _where(request: httpx2.Request) -> str:
    return f"{request.method} {request.url.host}{request.url.path}"  # no query: it may carry signatures


def _retry_after(headers: httpx2.Headers) -> float | None:
    value = headers.get("Retry-After", "").strip()
    if value.isdigit():
        return float(value)
    match = re.search(r"\bt\s*=\s*(\d+)", headers.get("RateLimit", ""))
    return float(match.group(1)) if match else None


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


class _BoundedClient(httpx2.Client):
    """The library's session, changed only for requests made inside :func:`hub_call`."""

    def send(self, request: httpx2.Request, **kwargs: Any) -> httpx2.Response:
        bound = _BOUND.get()
        if bound is None:
            return super().send(request, **kwargs)
        request.extensions = {**request.extensions, "timeout": httpx2.Timeout(bound.timeout).as_dict()}
        try:
            response = super().send(request, **kwargs)
        except httpx2.TransportError as e:
            raise HubTransportError(f"{_where(request)}: {type(e).__name__}: {e}") from e
        if response.status_code in _RETRIED_STATUSES:
            try:
                error = HubStatusError(
                    response.status_code, _retry_after(response.headers), _where(request), _server_message(response)
                )
            finally:
                response.close()
            raise error
        return response


def _client_factory() -> httpx2.Client:
    from huggingface_hub.utils import _http as hf_http  # the library's own request hook (offline mode, ids)

    hook = getattr(hf_http, "hf_request_event_hook", None)
    return _BoundedClient(event_hooks={"request": [hook] if hook else []}, follow_redirects=True, timeout=None)


class _DropXetFallbackWarning(logging.Filter):
    """We hand uploads over as buffers on purpose (plain LFS); the library warns about it every time."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "binary IO buffer is not supported by Xet" not in record.getMessage()


_INSTALL_LOCK = threading.Lock()
_installed = False


def ensure_bounded_session() -> None:
    """Install the bounded session as huggingface_hub's client factory (once per process)."""
    global _installed
    with _INSTALL_LOCK:
        if not isinstance(get_session(), _BoundedClient):
            set_client_factory(_client_factory)
        if not _installed:
            logging.getLogger("huggingface_hub._commit_api").addFilter(_DropXetFallbackWarning())
            _installed = True


@contextmanager
def bounded(timeout: float) -> Iterator[None]:
    """Mark the Hub calls made inside as bounded (see the module docstring)."""
    if not isinstance(get_session(), _BoundedClient):  # someone replaced the library's client factory
        ensure_bounded_session()
    token = _BOUND.set(_Bound(timeout))
    try:
        yield
    finally:
        _BOUND.reset(token)


def _causes(e: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or (None if cur.__suppress_context__ else cur.__context__)


def translate_error(e: BaseException, what: str) -> BackupError:
    """Map an exception raised by huggingface_hub/httpx2 (or our session) to our typed errors."""
    for exc in _causes(e):
        if isinstance(exc, BackupError):
            return exc
        if isinstance(exc, HubStatusError):
            if exc.status == 429:
                label = "commit quota exhausted" if "commit" in exc.server_message.lower() else "rate limited"
                wait = f"retry after {exc.retry_after:.0f} s" if exc.retry_after is not None else "retry later"
                return QuotaError(
                    f"{what}: {label} (HTTP 429), {wait}",
                    retry_after=exc.retry_after,
                    hint="the Hub allows about 128 commits per hour per repository; back up less often",
                )
            return StoreError(f"{what}: {exc}", transient=True)
        if isinstance(exc, HubTransportError):
            return StoreError(f"{what}: {exc}", transient=True)
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
        if isinstance(exc, (httpx2.TransportError, TimeoutError, ConnectionError)):
            return StoreError(f"{what}: {type(exc).__name__}", transient=True)
    first = str(e).splitlines()[0][:300] if str(e) else ""
    return StoreError(f"{what}: {type(e).__name__}: {first}")


def hub_call(timeout: float, what: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` (Hub calls) bounded by ``timeout`` per request, translating errors."""
    with bounded(timeout):
        try:
            return fn()
        except BackupError:
            raise
        except Exception as e:
            raise translate_error(e, what) from e


def http_get(url: str, headers: dict[str, str], *, offset: int = 0, length: int | None = None) -> bytes:
    """GET ``url`` (a resolve URL) with a Range header when a part is asked; 416 → ``b""``."""
    request_headers = {**headers, "Accept-Encoding": "identity"}
    ranged = offset > 0 or length is not None
    if ranged:
        request_headers["Range"] = f"bytes={offset}-" + (str(offset + length - 1) if length is not None else "")
    response = get_session().get(url, headers=request_headers)
    if response.status_code == 416:
        return b""
    hf_raise_for_status(response)
    data = response.content
    if ranged and response.status_code == 200:  # the server ignored the range
        data = data[offset : None if length is None else offset + length]
    return data


# --------------------------------------------------------------------------------------------
# The repo backend


class HfRepoBackend(Backend):
    """Objects under ``<prefix>/`` of a Hub dataset/model repo; one commit per publication.

    ``put`` uploads the bytes to LFS storage at once (``preupload_lfs_files``) and stages the
    addition; staged objects are not readable before the publication. ``publish`` makes exactly
    one ``create_commit`` (staged adds + ``<prefix>/head`` + deletes that exist) with
    ``parent_commit=expect``: HTTP 412 → :class:`ConflictError`, staged objects stay staged. The
    head version is the branch's commit id, so any commit to the branch (also the legacy script's)
    moves it. When a commit's answer is lost (network, 5xx, timeout), the branch's latest commits are
    read back: the commit carries a random nonce in its title, and if it landed the publication is
    reported as landed — never made twice. Deleting files frees no storage until
    :meth:`squash_history`.
    """

    capabilities = Capabilities(
        compare_and_swap=True,
        atomic_batch=True,
        frees_space_on_delete=False,
        consistent_listing=True,
        ranged_reads=True,
        max_connections=4,
    )

    def __init__(
        self,
        api: HfApi,
        repo_id: str,
        *,
        repo_type: str = "dataset",
        prefix: str = DEFAULT_PREFIX,
        revision: str = "main",
        token: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        ensure_bounded_session()
        self._api = api
        self.repo_id = repo_id
        self.repo_type = repo_type
        self.prefix = prefix.strip("/")
        self.revision = revision
        self._token = token
        self._timeout = timeout
        self.location = f"hf://{repo_type}s/{repo_id}/{self.prefix}"
        self._staged: dict[str, CommitOperationAdd] = {}
        self._lock = threading.Lock()  # guards _staged
        self._publish_lock = threading.Lock()  # one publication at a time per instance

    # -- helpers --------------------------------------------------------------------------
    def _path(self, name: str) -> str:
        return f"{self.prefix}/{check_name(name)}"

    @property
    def _head_path(self) -> str:
        return f"{self.prefix}/{HEAD_NAME}"

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        return hub_call(self._timeout, f"{self.location}: {what}", fn)

    def _headers(self) -> dict[str, str]:
        return build_hf_headers(token=self._token, library_name=LIBRARY_NAME, library_version=__version__)

    def _branch_sha(self) -> str | None:
        """The branch's commit id, or None when the branch has no commit yet."""
        try:
            info = self._api.repo_info(
                self.repo_id,
                repo_type=self.repo_type,
                revision=self.revision,
                expand="sha",  # only the commit id, not the whole file list
            )
        except hf_errors.RevisionNotFoundError:
            return None
        if not info.sha:
            raise StoreError(f"{self.location}: the Hub did not say which commit {self.revision} is")
        return str(info.sha)

    def _read_file(self, path: str, rev: str | None, *, offset: int = 0, length: int | None = None) -> bytes | None:
        url = hf_hub_url(self.repo_id, path, repo_type=self.repo_type, revision=rev, endpoint=self._api.endpoint)
        try:
            return http_get(url, self._headers(), offset=offset, length=length)
        except hf_errors.RemoteEntryNotFoundError:
            return None

    def _head_at(self, rev: str | None) -> bytes | None:
        """The head file's bytes at commit ``rev`` (an unknown commit means the head moved)."""
        if rev is None:
            return None
        try:
            return self._read_file(self._head_path, rev)
        except hf_errors.RevisionNotFoundError as e:
            raise ConflictError(f"{self.location}: commit {rev} is not in the repository (the head moved)") from e

    def _existing(self, paths: Sequence[str], rev: str | None) -> list[str]:
        """Those of ``paths`` that are files at ``rev`` (a missing revision means the head moved)."""
        found: list[str] = []
        if not paths:
            return found
        try:
            for i in range(0, len(paths), _PATHS_INFO_BATCH):
                batch = list(paths[i : i + _PATHS_INFO_BATCH])
                infos = self._api.get_paths_info(self.repo_id, batch, revision=rev, repo_type=self.repo_type)
                found += [f.path for f in infos if isinstance(f, RepoFile)]
        except hf_errors.RevisionNotFoundError as e:
            raise ConflictError(f"{self.location}: commit {rev} is not in the repository (the head moved)") from e
        return found

    # -- repository -------------------------------------------------------------------------
    def ensure_repo(self, *, create: bool, private: bool) -> None:
        """Check that the repo exists; create it (``private``) when missing and ``create``."""
        try:
            self._call("open", lambda: self._api.repo_info(self.repo_id, repo_type=self.repo_type, expand="sha"))
        except RepositoryNotFoundError:
            if not create:
                raise
            self._call(
                "create repository",
                lambda: self._api.create_repo(self.repo_id, repo_type=self.repo_type, private=private, exist_ok=True),
            )

    def squash_history(self) -> None:
        """Make the branch's history one commit so the Hub can free deleted objects' storage.

        The squash keeps the branch's current tree (so a commit racing it is kept) and changes the
        head version, so a concurrent publisher gets a conflict and re-plans.
        """
        self._call(
            "squash history",
            lambda: self._api.super_squash_history(
                self.repo_id,
                branch=self.revision,
                repo_type=self.repo_type,
                commit_message="openclaw-backup: squash history",
            ),
        )

    # -- the contract ------------------------------------------------------------------------
    def get(self, name: str, *, offset: int = 0, length: int | None = None) -> bytes:
        path = self._path(name)
        if length is not None and length <= 0:
            self.size(name)  # existence
            return b""

        def fetch() -> bytes:
            data = self._read_file(path, self.revision, offset=offset, length=length)
            if data is None:
                raise NotFoundError(f"{name}: no such object in {self.location}")
            return data

        return self._call(f"read {name}", fetch)

    def size(self, name: str) -> int:
        path = self._path(name)

        def info() -> int:
            for f in self._api.get_paths_info(self.repo_id, [path], revision=self.revision, repo_type=self.repo_type):
                if isinstance(f, RepoFile) and f.path == path:
                    return int(f.size)
            raise NotFoundError(f"{name}: no such object in {self.location}")

        return self._call(f"size of {name}", info)

    def list(self, prefix: str = "") -> list[str]:
        folder = self.prefix + ("/" + prefix.rsplit("/", 1)[0] if "/" in prefix else "")

        def walk() -> list[str]:
            try:
                entries = list(
                    self._api.list_repo_tree(
                        self.repo_id, folder, recursive=True, revision=self.revision, repo_type=self.repo_type
                    )
                )
            except (hf_errors.RemoteEntryNotFoundError, hf_errors.RevisionNotFoundError):
                return []
            skip = len(self.prefix) + 1
            return [e.path[skip:] for e in entries if isinstance(e, RepoFile)]

        names = self._call("list", walk)
        return sorted(n for n in names if n != HEAD_NAME and n.startswith(prefix) and _valid_name(n))

    def put(self, name: str, data: bytes) -> None:
        path = self._path(name)
        with self._lock:
            if name in self._staged:
                return  # content-addressed: same name, same bytes
        op = CommitOperationAdd(path_in_repo=path, path_or_fileobj=io.BytesIO(bytes(data)))
        self._call(
            f"upload {name}",
            lambda: self._api.preupload_lfs_files(
                self.repo_id, additions=[op], repo_type=self.repo_type, revision=self.revision, free_memory=True
            ),
        )
        with self._lock:
            self._staged.setdefault(name, op)

    def read_head(self) -> Head | None:
        sha = self._call("read head", self._branch_sha)
        if sha is None:
            return None
        data = self._call("read head", lambda: self._read_file(self._head_path, sha))
        return None if data is None else Head(sha, data)

    def publish(self, *, head: bytes, expect: str | None, deletes: Sequence[str] = ()) -> str:
        delete_names = list(dict.fromkeys(check_name(n) for n in deletes))
        head = bytes(head)
        with self._publish_lock:
            if expect is None:
                parent = self._call("publish", self._branch_sha)
                if self._call("publish", lambda: self._head_at(parent)) is not None:
                    raise ConflictError(f"{self.location}: a head already exists (another writer came first)")
            elif not _SHA_RE.match(expect):
                raise ConflictError(f"{self.location}: head version {expect!r} is not a commit id (the head moved)")
            else:
                parent = expect
            doomed = set(delete_names)
            with self._lock:
                staged = {n: op for n, op in self._staged.items() if n not in doomed}
            existing = self._call("publish", lambda: self._existing([self._path(n) for n in delete_names], parent))
            if not staged and not existing and parent is not None:
                unchanged = self._call("publish", lambda: self._head_at(parent)) == head
                if unchanged:  # nothing to commit: keep the version, but only if it is still current
                    if self._call("publish", self._branch_sha) != parent:
                        raise ConflictError(f"{self.location}: the head moved while we worked (another writer)")
                    return parent
            for attempt in range(_PUBLISH_ATTEMPTS):
                try:
                    version = self._commit(parent, head, list(staged.values()), existing)
                    break
                except _NotLanded:
                    # Known not to be on the branch (when its outcome is unknown, we do not repeat
                    # it). Same parent: if the first lands late after all, at most one of the two
                    # can land, and the loser's 412 makes the caller re-plan.
                    if attempt == _PUBLISH_ATTEMPTS - 1:
                        raise
                    time.sleep(0.5 * 2**attempt)
            with self._lock:
                for n, op in staged.items():
                    if self._staged.get(n) is op:
                        del self._staged[n]
                for n in delete_names:
                    self._staged.pop(n, None)
            return version

    def delete_unpublished(self, names: Sequence[str]) -> None:
        checked = [check_name(n) for n in names]
        with self._lock:
            for n in checked:
                self._staged.pop(n, None)
        with self._publish_lock:
            rev = self._call("delete", self._branch_sha)
            if rev is None:
                return
            existing = self._call("delete", lambda: self._existing([self._path(n) for n in checked], rev))
            if existing:
                self._commit(rev, None, [], existing)  # the head file stays as it is

    def close(self) -> None:
        with self._lock:
            self._staged.clear()  # their uploads become unreferenced LFS objects, never files

    # -- the one commit -----------------------------------------------------------------------
    def _commit(
        self, parent: str | None, head: bytes | None, adds: Sequence[CommitOperationAdd], deletes: Sequence[str]
    ) -> str:
        """Make one commit on ``parent``; on an unknown outcome find out whether it landed."""
        additions = [*adds]
        if head is not None:
            head_op = CommitOperationAdd(path_in_repo=self._head_path, path_or_fileobj=io.BytesIO(head))
            self._call(
                "publish: upload head",
                lambda: self._api.preupload_lfs_files(
                    self.repo_id, additions=[head_op], repo_type=self.repo_type, revision=self.revision
                ),
            )
            additions.append(head_op)
        for op in additions:
            # Staged at put time against an older tree: never let the client drop an add as
            # "unchanged" (a concurrent prune may have deleted that file since).
            op._remote_oid = None
        ops: builtins.list[CommitOperationAdd | CommitOperationDelete] = [*additions]
        ops += [CommitOperationDelete(path_in_repo=p, is_folder=False) for p in deletes]
        nonce = secrets.token_hex(8)
        title = f"{COMMIT_TITLE} {nonce}"
        what = f"{self.location}: publish"
        try:
            with bounded(self._timeout):
                info = self._api.create_commit(
                    self.repo_id,
                    operations=ops,
                    commit_message=title,
                    repo_type=self.repo_type,
                    revision=self.revision,
                    parent_commit=parent,
                )
            return str(info.oid)
        except Exception as e:
            err = translate_error(e, what)
            if not (isinstance(err, StoreError) and err.transient):
                raise err from e
            landed = self._find_commit(nonce)
            if landed is None:
                raise _NotLanded(
                    f"{err.message}; the commit is not on the branch",
                    transient=True,
                    hint="if it lands late, the next publication meets a conflict and re-plans; nothing is lost",
                ) from e
            return landed

    def _find_commit(self, nonce: str) -> str | None:
        """After a lost answer: the id of our commit (found by its nonce) if it landed, else None."""
        url = f"{self._api.endpoint}/api/{self.repo_type}s/{self.repo_id}/commits/{self.revision}"

        def look() -> str | None:
            response = get_session().get(url, headers=self._headers())  # the first page: newest commits
            hf_raise_for_status(response)
            for item in response.json():
                if nonce in str(item.get("title", "")):
                    return str(item["id"])
            return None

        try:
            return self._call("publish: did the commit land?", look)
        except BackupError as e:
            raise StoreError(
                f"{self.location}: the answer to our commit was lost and the branch cannot be read back ({e.message})",
                transient=True,
                hint="run the command again: the commit either landed whole or not at all",
            ) from e


def _valid_name(name: str) -> bool:
    try:
        check_name(name)
    except UsageError:
        return False
    return True


# --------------------------------------------------------------------------------------------
# The legacy script's files


class HfLegacyView:
    """Read-only view of a repo's root at one commit, where the legacy script's files live.

    It serves :mod:`openclaw_backup.legacy` (``get`` and ``list`` of root paths such as
    ``latest-backup.json`` and ``backups/…``). The branch is resolved once, when the view is made, so a
    legacy writer committing meanwhile cannot hand us a chain from two different states.
    """

    def __init__(self, api: HfApi, repo_id: str, *, repo_type: str, token: str | None, timeout: float) -> None:
        self._reader = HfRepoBackend(api, repo_id, repo_type=repo_type, prefix="", token=token, timeout=timeout)
        self.location = f"hf://{repo_type}s/{repo_id}"
        sha = self._reader._call("open legacy files", self._reader._branch_sha)
        if sha is None:
            raise NotFoundError(f"{self.location}: the repository has no commit yet")
        self.revision = sha

    def get(self, name: str) -> bytes:
        if not name or name.startswith("/") or any(p in ("", ".", "..") for p in name.split("/")):
            raise UsageError(f"invalid legacy path {name!r}")
        reader = self._reader
        data = reader._call(f"read {name}", lambda: reader._read_file(name, self.revision))
        if data is None:
            raise NotFoundError(f"{name}: no such file in {self.location}")
        return data

    def list(self, prefix: str = "") -> list[str]:
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else None
        reader = self._reader

        def walk() -> list[str]:
            try:
                entries = reader._api.list_repo_tree(
                    reader.repo_id, folder, recursive=True, revision=self.revision, repo_type=reader.repo_type
                )
                return [e.path for e in entries if isinstance(e, RepoFile)]
            except hf_errors.RemoteEntryNotFoundError:
                return []

        return sorted(p for p in reader._call("list legacy files", walk) if p.startswith(prefix))


def open_legacy_view(address: str, options: BackendOptions) -> HfLegacyView:
    """The legacy files at the root of the repo named by ``address`` (its prefix is ignored).

    Raises :class:`RepositoryNotFoundError` for a missing repo (never creates one) and
    :class:`NotFoundError` for a bucket (the legacy script only wrote repos).
    """
    parsed = parse_hf_address(address)
    if parsed.kind == "bucket":
        raise NotFoundError(f"{address}: the legacy script never wrote to buckets")
    return HfLegacyView(
        make_api(options), parsed.repo_id, repo_type=parsed.kind, token=options.token, timeout=options.timeout
    )


# --------------------------------------------------------------------------------------------
# Opening


def make_api(options: BackendOptions) -> HfApi:
    """The HfApi for ``options`` (a BackendOptions), with the bounded session installed."""
    ensure_bounded_session()
    return HfApi(endpoint=options.hf_endpoint, token=options.token, library_name=LIBRARY_NAME)


def open_hf(address: str, options: BackendOptions) -> Backend:
    """Open an ``hf://`` address with ``options`` (:class:`~openclaw_backup.backends.BackendOptions`).

    A missing repo or bucket raises :class:`RepositoryNotFoundError`, or is created private when
    ``options.create`` (visibility from ``options.private``).
    """
    parsed = parse_hf_address(address)
    api = make_api(options)
    if parsed.kind == "bucket":
        from .hf_bucket import HfBucketBackend

        bucket = HfBucketBackend(
            api, parsed.repo_id, prefix=parsed.prefix, token=options.token, timeout=options.timeout
        )
        bucket.ensure_bucket(create=options.create, private=options.private)
        return bucket
    backend = HfRepoBackend(
        api,
        parsed.repo_id,
        repo_type=parsed.kind,
        prefix=parsed.prefix,
        token=options.token,
        timeout=options.timeout,
    )
    backend.ensure_repo(create=options.create, private=options.private)
    return backend
