"""A repository in a Hugging Face Hub dataset (or model) repo: one commit per publication.

Words used here (the address is parsed in :mod:`.options`, the Hub calls are bounded and
translated by :mod:`.hub_client`):

* **publication** — exactly ONE ``create_commit`` carrying every staged object, the head file
  ``<prefix>/head`` and the deletes, with ``parent_commit`` = the expected head version. The head
  version is the branch's commit id, so a concurrent writer gets HTTP 412 → :class:`ConflictError`.
* **staged object** — one ``put`` uploaded to LFS storage (``preupload_lfs_files``) and waiting for
  the next publication; it is not in the repo's tree (so not listed or readable) until then.

Uploads go through the plain LFS protocol (the bytes are handed over as a buffer, which makes the
client skip ``hf_xet``), so every byte travels through the bounded session; the Hub accepts LFS
uploads on Xet-backed repos.
"""

from __future__ import annotations

import builtins
import copy
import io
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from ..errors import BackupError, ConflictError, NotFoundError, RepositoryNotFoundError, StoreError, UsageError
from .base import HEAD_NAME, Backend, Capabilities, Head, check_name
from .hub_bounds import bounded, hub_call, retry_delay, translate
from .hub_files import RepoFiles, library_errors, load_library
from .options import DEFAULT_PREFIX, BackendOptions, HfAddress, HubEnvironment

if TYPE_CHECKING:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

T = TypeVar("T")

COMMIT_TITLE = "openclaw-backup: publish"
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")
_PATHS_INFO_BATCH = 500
_PUBLISH_ATTEMPTS = 3  # commits that did not land (5xx, dropped answer) are made again


class _NotLanded(StoreError):
    """A commit failed transiently and is known not to be on the branch: safe to make again."""


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
        max_connections=32,  # ranged reads of a restore in flight together: each waits a round trip
    )

    def __init__(
        self,
        endpoint: str | None,
        repo_id: str,
        *,
        repo_type: str = "dataset",
        prefix: str = DEFAULT_PREFIX,
        revision: str = "main",
        token: str | None = None,
        timeout: float = 60.0,
        retries: int = 1,
        env: HubEnvironment | None = None,
    ) -> None:
        self._attempts = max(1, retries)
        self._files = RepoFiles(
            endpoint, repo_id, repo_type=repo_type, token=token, timeout=timeout, attempts=self._attempts, env=env
        )
        self.repo_id = repo_id
        self.repo_type = repo_type
        self.prefix = prefix.strip("/")
        self.revision = revision
        self._timeout = timeout
        self.location = f"hf://{repo_type}s/{repo_id}/{self.prefix}"
        self._staged: dict[str, CommitOperationAdd] = {}
        self._lock = threading.Lock()  # guards _staged
        self._publish_lock = threading.Lock()  # one publication at a time per instance

    # -- helpers --------------------------------------------------------------------------
    @property
    def _api(self) -> HfApi:
        """The HfApi, made on first use: reads and listings (all a restore does) need none."""
        return self._files.api

    def _path(self, name: str) -> str:
        return f"{self.prefix}/{check_name(name)}"

    @property
    def _head_path(self) -> str:
        return f"{self.prefix}/{HEAD_NAME}"

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        return hub_call(self._timeout, f"{self.location}: {what}", fn, attempts=self._attempts)

    def _branch_sha(self) -> str | None:
        """The branch's commit id, or None when the branch has no commit yet."""
        return self._files.branch_commit(self.revision)

    def _head_at(self, rev: str | None) -> bytes | None:
        """The head file's bytes at commit ``rev`` (an unknown commit means the head moved)."""
        if rev is None:
            return None
        try:
            return self._files.read(self._head_path, rev)
        except library_errors().RevisionNotFoundError as e:
            raise ConflictError(f"{self.location}: commit {rev} is not in the repository (the head moved)") from e

    def _existing(self, paths: Sequence[str], rev: str | None) -> list[str]:
        """Those of ``paths`` that are files at ``rev`` (a missing revision means the head moved)."""
        load_library(writes=True)
        from huggingface_hub.hf_api import RepoFile

        found: list[str] = []
        if not paths:
            return found
        try:
            for i in range(0, len(paths), _PATHS_INFO_BATCH):
                batch = list(paths[i : i + _PATHS_INFO_BATCH])
                infos = self._api.get_paths_info(self.repo_id, batch, revision=rev, repo_type=self.repo_type)
                found += [f.path for f in infos if isinstance(f, RepoFile)]
        except library_errors().RevisionNotFoundError as e:
            raise ConflictError(f"{self.location}: commit {rev} is not in the repository (the head moved)") from e
        return found

    # -- repository -------------------------------------------------------------------------
    def ensure_repo(self, *, create: bool, private: bool) -> None:
        """Create the repo (``private``) when missing and ``create``. Without ``create`` nothing is
        asked: the first read of a missing repo (or one the token cannot see) raises
        :class:`RepositoryNotFoundError` anyway, and an unchanged backup stays within 3 requests."""
        if not create:
            return
        try:
            self._call("open", lambda: self._api.repo_info(self.repo_id, repo_type=self.repo_type, expand="sha"))
        except RepositoryNotFoundError:
            if not create:
                raise
            self._call(
                "create repository",
                lambda: self._api.create_repo(self.repo_id, repo_type=self.repo_type, private=private, exist_ok=True),
            )

    def squash_history(self) -> bool:
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
        return True

    # -- the contract ------------------------------------------------------------------------
    def get(self, name: str, *, offset: int = 0, length: int | None = None) -> bytes:
        path = self._path(name)
        if length is not None and length <= 0:
            self.size(name)  # existence
            return b""

        def fetch() -> bytes:
            data = self._files.read(path, self.revision, offset=offset, length=length)
            if data is None:
                raise NotFoundError(f"{name}: no such object in {self.location}")
            return data

        return self._call(f"read {name}", fetch)

    def size(self, name: str) -> int:
        load_library(writes=True)
        from huggingface_hub.hf_api import RepoFile

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
                paths = self._files.list(folder, self.revision)
            except library_errors().RevisionNotFoundError:
                return []
            skip = len(self.prefix) + 1
            return [p[skip:] for p in paths]

        names = self._call("list", walk)
        return sorted(n for n in names if n != HEAD_NAME and n.startswith(prefix) and _valid_name(n))

    def put(self, name: str, data: bytes) -> None:
        load_library(writes=True)  # writes only: the commit API takes a while to import
        from huggingface_hub import CommitOperationAdd

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
        """One request: the head file on the branch, with the commit it came from (X-Repo-Commit);
        two (the branch's commit, then the file at it) when the answer does not name the commit."""

        def current() -> tuple[bytes | None, str | None]:
            try:
                return self._files.read_current(self._head_path, self.revision)
            except library_errors().RevisionNotFoundError:
                return None, None

        data, sha = self._call("read head", current)
        if data is not None and sha is not None and _SHA_RE.match(sha):
            return Head(sha, data)
        sha = self._call("read head", self._branch_sha)
        if sha is None:
            return None
        data = self._call("read head", lambda: self._files.read(self._head_path, sha))
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
            attempts = max(_PUBLISH_ATTEMPTS, self._attempts)
            for attempt in range(attempts):
                try:
                    version = self._commit(parent, head, list(staged.values()), existing)
                    break
                except _NotLanded:
                    # Known not to be on the branch (when its outcome is unknown, we do not repeat
                    # it). Same parent: if the first lands late after all, at most one of the two
                    # can land, and the loser's 412 makes the caller re-plan.
                    if attempt == attempts - 1:
                        raise
                    time.sleep(retry_delay(attempt + 1))
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

    def reopen(self) -> HfRepoBackend:
        """The same repo, prefix and revision, nothing staged. Its calls go through the process's
        Hub session, which a forked process drops (:mod:`.hub_client`): there, it shares no
        connection with this one."""
        fresh = copy.copy(self)
        fresh._staged = {}
        fresh._lock, fresh._publish_lock = threading.Lock(), threading.Lock()
        return fresh

    def close(self) -> None:
        with self._lock:
            self._staged.clear()  # their uploads become unreferenced LFS objects, never files

    # -- the one commit -----------------------------------------------------------------------
    def _commit(
        self, parent: str | None, head: bytes | None, adds: Sequence[CommitOperationAdd], deletes: Sequence[str]
    ) -> str:
        """Make one commit on ``parent``; on an unknown outcome find out whether it landed."""
        load_library(writes=True)
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete

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
            with bounded(self._timeout, self._attempts):  # replayable requests only: never the commit itself
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
            err = translate(e, what)
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
        url = f"{self._files.endpoint}/api/{self.repo_type}s/{self.repo_id}/commits/{self.revision}"

        def look() -> str | None:
            load_library()
            from huggingface_hub.utils import get_session, hf_raise_for_status

            response = get_session().get(url, headers=self._files.headers())  # the first page: newest
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


def open_hf_repo(address: HfAddress, options: BackendOptions) -> HfRepoBackend:
    """Open the dataset/model repo of ``address`` (the ``hf`` scheme's factory for repos).

    A missing repo raises :class:`RepositoryNotFoundError`, or is created when ``options.create``
    (private unless ``options.private`` is False).
    """
    backend = HfRepoBackend(
        options.hf_endpoint,
        address.repo_id,
        repo_type=address.kind,
        prefix=address.prefix,
        token=options.token,
        timeout=options.timeout,
        retries=options.retries,
        env=options.hub_env,
    )
    backend.ensure_repo(create=options.create, private=options.private)
    return backend
