"""The state of the fake Hub: repositories, commits, LFS objects, test knobs and counters.

Words used here:

* **repo key** — ``"<type>s/<namespace>/<name>"`` (``datasets/alice/backups``), how the control API
  and the counters name a repository.
* **entry** — one file of a commit's tree: a *regular* file (its bytes live in the commit, its oid
  is the git blob sha1) or an *LFS* file (a pointer to an uploaded object named by its sha256).
* **LFS object** — bytes uploaded through the LFS batch API. It is *pending* until a commit
  references it; a super-squash drops committed objects that no reachable commit references
  (pending ones stay: a concurrent writer may be about to commit them).

Everything is guarded by one lock (:attr:`HubState.lock`), so a commit is applied atomically: all its
operations or none. Commit metadata lives in memory; LFS bytes live in ``data_dir`` when one is given.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import random
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

GITATTRIBUTES = b"*.bin filter=lfs diff=lfs merge=lfs -text\n*.tar.gz filter=lfs diff=lfs merge=lfs -text\n"
QUOTA_WINDOW = 3600.0


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class Entry:
    """A file in a tree. ``sha256`` is set for LFS files, ``content`` for regular ones."""

    size: int
    oid: str
    sha256: str | None = None
    content: bytes | None = None

    @property
    def is_lfs(self) -> bool:
        return self.sha256 is not None

    @property
    def etag(self) -> str:
        return self.sha256 if self.sha256 is not None else self.oid

    @staticmethod
    def regular(data: bytes) -> Entry:
        return Entry(size=len(data), oid=git_blob_oid(data), content=bytes(data))

    @staticmethod
    def lfs(sha256: str, size: int) -> Entry:
        return Entry(size=size, oid=git_blob_oid(lfs_pointer(sha256, size)), sha256=sha256)


@dataclass
class Commit:
    id: str
    parent: str | None
    tree: dict[str, Entry]
    title: str
    message: str
    date: str


class BlobStore:
    """LFS bytes by (repo key, sha256): on disk under ``root`` or in memory."""

    def __init__(self, root: Path | None) -> None:
        self.root = root
        self._mem: dict[str, bytes] = {}
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _key(repo_key: str, oid: str) -> str:
        return hashlib.sha256(f"{repo_key}\0{oid}".encode()).hexdigest()

    def put(self, repo_key: str, oid: str, data: bytes) -> None:
        key = self._key(repo_key, oid)
        if self.root is None:
            self._mem[key] = bytes(data)
            return
        tmp = self.root / f".tmp-{key}-{threading.get_ident()}"
        tmp.write_bytes(data)
        tmp.replace(self.root / key)

    def get(self, repo_key: str, oid: str) -> bytes:
        key = self._key(repo_key, oid)
        if self.root is None:
            return self._mem[key]
        return (self.root / key).read_bytes()

    def get_range(self, repo_key: str, oid: str, start: int, end: int) -> bytes:
        """Bytes ``start`` to ``end`` of an object, reading only those (a ranged read of a large
        pack costs what it returns, as on the real Hub's storage)."""
        key = self._key(repo_key, oid)
        if self.root is None:
            return self._mem[key][start:end]
        with open(self.root / key, "rb") as f:
            f.seek(start)
            return f.read(end - start)

    def delete(self, repo_key: str, oid: str) -> None:
        key = self._key(repo_key, oid)
        if self.root is None:
            self._mem.pop(key, None)
        else:
            (self.root / key).unlink(missing_ok=True)


@dataclass
class RepoCounters:
    requests: dict[str, int] = field(default_factory=dict)
    commits: int = 0
    squashes: int = 0
    bytes_uploaded: int = 0
    bytes_downloaded: int = 0


@dataclass
class Repo:
    type: str  # "model" | "dataset" | "space"
    id: str  # "namespace/name"
    private: bool
    created: str
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)
    lfs: dict[str, int] = field(default_factory=dict)  # sha256 -> size of stored objects
    committed_lfs: set[str] = field(default_factory=set)  # objects some commit has referenced
    commit_times: deque[float] = field(default_factory=deque)
    counters: RepoCounters = field(default_factory=RepoCounters)

    @property
    def key(self) -> str:
        return f"{self.type}s/{self.id}"

    def resolve(self, rev: str) -> Commit | None:
        """A branch name or a full commit id → the commit, else None."""
        sha = self.branches.get(rev, rev)
        return self.commits.get(sha)

    def reachable(self) -> list[str]:
        seen: list[str] = []
        for head in self.branches.values():
            sha: str | None = head
            while sha is not None and sha not in seen:
                seen.append(sha)
                sha = self.commits[sha].parent
        return seen

    def history(self, head: str) -> list[Commit]:
        out: list[Commit] = []
        sha: str | None = head
        while sha is not None:
            commit = self.commits[sha]
            out.append(commit)
            sha = commit.parent
        return out


@dataclass
class Fault:
    """One injected failure, consumed by the next ``count`` matching requests.

    ``kind`` names a request kind (``commit``, ``resolve``, ``preupload``, ``lfs_batch``,
    ``lfs_upload``, ``tree``, ``paths_info``, ``info``, …) or ``*``. ``status`` answers with that
    HTTP status (``retry_after`` adds the header); ``drop`` closes the connection without an answer;
    ``lose`` (commits only: ``"drop"`` or a status such as ``"500"``) applies the commit first and
    then loses the answer; ``delay`` sleeps before handling. ``probability`` (0..1) makes the fault
    hit each matching request with that chance (drawn from a generator seeded with ``seed``), a
    miss consuming nothing: ``{"kind": "*", "probability": 0.15, "status": 500, "count": 10**9}``
    fails 15 % of all requests, reproducibly for a given seed and request order.
    """

    id: int
    kind: str
    count: int = 1
    status: int | None = None
    retry_after: int | None = None
    drop: bool = False
    lose: str | None = None
    delay: float = 0.0
    repo: str | None = None
    probability: float | None = None
    seed: int = 0
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def matches(self, kind: str, repo_key: str | None) -> bool:
        if not (self.count > 0 and self.kind in (kind, "*") and (self.repo is None or self.repo == repo_key)):
            return False
        return self.probability is None or self.rng.random() < self.probability


@dataclass
class Config:
    regular_below: int = 64  # files smaller than this are "regular" (inline), larger ones LFS
    page_size: int = 1000
    expand_page_size: int = 50
    commits_page_size: int = 50
    latency_ms: int = 0  # added before answering every Hub request (not the control API)


class HubState:
    """All repositories plus the test knobs. Hold :attr:`lock` while reading or changing anything."""

    def __init__(self, data_dir: Path | None, *, user: str = "tester", tokens: frozenset[str] = frozenset()) -> None:
        self.lock = threading.RLock()
        self.user = user
        self.tokens = tokens
        self.blobs = BlobStore(data_dir / "lfs" if data_dir is not None else None)
        self.repos: dict[str, Repo] = {}
        self.faults: list[Fault] = []
        self.quotas: dict[str, int] = {}  # repo key or "*" -> commits per hour
        self.config = Config()
        self.requests: dict[str, int] = {}
        self.bytes_uploaded = 0
        self.bytes_downloaded = 0
        self.faults_injected = 0
        self.in_flight = 0  # Hub requests being answered now …
        self.max_in_flight = 0  # … and the most at once (since the last reset)
        self._ids = itertools.count(1)
        self._secret = secrets.token_bytes(16)

    # -- identities -------------------------------------------------------------------------
    def token_ok(self, token: str | None) -> bool:
        return bool(token) and (not self.tokens or token in self.tokens)

    def sign(self, repo_key: str, oid: str, size: int) -> str:
        """The signature of a pre-signed LFS upload URL."""
        return hmac.new(self._secret, f"{repo_key}:{oid}:{size}".encode(), "sha256").hexdigest()[:32]

    def new_commit_id(self, *parts: str) -> str:
        seed = "\0".join((*parts, str(next(self._ids)), str(time.time_ns())))
        return hashlib.sha1(seed.encode()).hexdigest()

    # -- repositories ---------------------------------------------------------------------
    def create_repo(self, repo_type: str, repo_id: str, *, private: bool) -> Repo:
        repo = Repo(type=repo_type, id=repo_id, private=private, created=now_iso())
        initial = Commit(
            id=self.new_commit_id(repo.key, "initial"),
            parent=None,
            tree={".gitattributes": Entry.regular(GITATTRIBUTES)},
            title="initial commit",
            message="",
            date=now_iso(),
        )
        repo.commits[initial.id] = initial
        repo.branches["main"] = initial.id
        self.repos[repo.key] = repo
        return repo

    def delete_repo(self, key: str) -> bool:
        repo = self.repos.pop(key, None)
        if repo is None:
            return False
        for oid in repo.lfs:
            self.blobs.delete(key, oid)
        return True

    def store_lfs(self, repo: Repo, oid: str, data: bytes) -> None:
        self.blobs.put(repo.key, oid, data)
        repo.lfs[oid] = len(data)

    def drop_pending(self, repo: Repo) -> int:
        """Forget the LFS objects no commit references (uploads never committed); how many."""
        pending = [oid for oid in repo.lfs if oid not in repo.committed_lfs]
        for oid in pending:
            del repo.lfs[oid]
            self.blobs.delete(repo.key, oid)
        return len(pending)

    def read_entry(self, repo: Repo, entry: Entry) -> bytes:
        if entry.content is not None:
            return entry.content
        assert entry.sha256 is not None
        return self.blobs.get(repo.key, entry.sha256)

    def read_entry_range(self, repo: Repo, entry: Entry, start: int, end: int) -> bytes:
        """Bytes ``start`` to ``end`` of a file; thread-safe without :attr:`lock` for an LFS file
        (its object never changes while a commit names it)."""
        if entry.content is not None:
            return entry.content[start:end]
        assert entry.sha256 is not None
        return self.blobs.get_range(repo.key, entry.sha256, start, end)

    def squash(self, repo: Repo, branch: str, message: str) -> str:
        head = repo.commits[repo.branches[branch]]
        new = Commit(self.new_commit_id(repo.key, "squash"), None, dict(head.tree), message, "", now_iso())
        repo.commits[new.id] = new
        repo.branches[branch] = new.id
        keep = set(repo.reachable())
        for sha in [s for s in repo.commits if s not in keep]:
            del repo.commits[sha]
        referenced = {e.sha256 for sha in keep for e in repo.commits[sha].tree.values() if e.sha256}
        for oid in [o for o in repo.lfs if o in repo.committed_lfs and o not in referenced]:
            del repo.lfs[oid]
            repo.committed_lfs.discard(oid)
            self.blobs.delete(repo.key, oid)
        repo.counters.squashes += 1
        return new.id

    # -- quota ---------------------------------------------------------------------------
    def quota_retry_after(self, repo: Repo) -> int | None:
        """Seconds until the next commit is allowed, or None when the quota has room."""
        limit = self.quotas.get(repo.key, self.quotas.get("*"))
        now = time.monotonic()
        while repo.commit_times and now - repo.commit_times[0] >= QUOTA_WINDOW:
            repo.commit_times.popleft()
        if limit is None or len(repo.commit_times) < limit:
            return None
        return max(1, int(QUOTA_WINDOW - (now - repo.commit_times[0])) + 1)

    # -- faults --------------------------------------------------------------------------
    def add_fault(self, spec: dict[str, Any]) -> Fault:
        allowed = {"kind", "count", "status", "retry_after", "drop", "lose", "delay", "repo", "probability", "seed"}
        unknown = set(spec) - allowed
        if unknown or "kind" not in spec:
            raise ValueError(f"bad fault spec (unknown {sorted(unknown)}, kind required)")
        fault = Fault(id=next(self._ids), **spec)
        self.faults.append(fault)
        return fault

    def take_fault(self, kind: str, repo_key: str | None, *, lose: bool) -> Fault | None:
        """Consume one use of the first matching fault (``lose`` selects lose-the-answer faults)."""
        for fault in self.faults:
            if (fault.lose is not None) == lose and fault.matches(kind, repo_key):
                self.faults_injected += 1
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    # -- counters ------------------------------------------------------------------------
    def count_request(self, kind: str, repo: Repo | None) -> None:
        self.requests[kind] = self.requests.get(kind, 0) + 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if repo is not None:
            repo.counters.requests[kind] = repo.counters.requests.get(kind, 0) + 1

    def repo_stats(self, repo: Repo) -> dict[str, Any]:
        reachable = repo.reachable()
        regular = {e.oid: e.size for sha in reachable for e in repo.commits[sha].tree.values() if e.content is not None}
        head = repo.commits[repo.branches["main"]] if "main" in repo.branches else None
        c = repo.counters
        return {
            "private": repo.private,
            "commits": c.commits,
            "squashes": c.squashes,
            "history": len(repo.history(repo.branches["main"])) if head else 0,
            "head": head.id if head else None,
            "files": sorted(head.tree) if head else [],
            "lfs_objects": len(repo.lfs),
            "stored_bytes": sum(repo.lfs.values()) + sum(regular.values()),
            "head_bytes": sum(e.size for e in head.tree.values()) if head else 0,  # the files of the head's tree
            "requests": dict(c.requests),
            "bytes_uploaded": c.bytes_uploaded,
            "bytes_downloaded": c.bytes_downloaded,
        }

    def stats(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "requests_total": sum(self.requests.values()),
            "faults_injected": self.faults_injected,
            "max_in_flight": self.max_in_flight,
            "bytes_uploaded": self.bytes_uploaded,
            "bytes_downloaded": self.bytes_downloaded,
            "repos": {key: self.repo_stats(repo) for key, repo in self.repos.items()},
        }

    def reset_knobs(self) -> None:
        self.faults.clear()
        self.quotas.clear()
        self.config = Config()
        self.requests.clear()
        self.faults_injected = 0
        self.bytes_uploaded = 0
        self.bytes_downloaded = 0
        self.max_in_flight = 0
