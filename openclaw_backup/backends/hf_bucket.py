"""A Hugging Face storage bucket (``hf://buckets/<ns>/<name>[/<prefix>]``) guarded by a single-writer lease.

Buckets are mutable, non-versioned Xet storage: a delete frees space at once, but the native API
(``batch_bucket_files``, huggingface_hub ≥ 1.x) has **no compare-and-swap**. So this backend
declares ``compare_and_swap=False`` and serialises writers with a lease instead of trusting the last
writer.

Layout under ``<prefix>/``: objects by name, ``head`` (the head, wrapped in an envelope that carries
a random publication id — the head *version* — so a version never repeats even when the bytes do),
and ``.leases/<holder>`` (one small JSON file per would-be writer: holder id, host, pid, expiry).

The lease protocol (restic's lock files, adapted):

1. **Acquire** (first ``put``/``publish``/``delete_unpublished``): write our own lease file, list
   ``.leases/``, and read the others. If any other lease is live (its expiry, plus a clock-skew
   allowance, is in the future) we delete ours and raise :class:`LockedError`. Then our lease is
   re-read to verify it landed.
2. **Heartbeat**: every ``publish`` (and a ``put`` once a third of the TTL has passed) re-checks the
   other leases, checks that ours is still there, and rewrites it with a new expiry.
3. **Publish**: under the lease, read the head and compare its version with ``expect`` (else
   :class:`ConflictError`), write the new head, then delete the names asked for (best effort:
   a failed delete leaves unreferenced garbage, never a missing object).
4. **Release** on :meth:`close`.

What that guarantees, honestly: two writers whose write-then-list steps overlap both see each
other's lease and both back off (at least one of them lists after the other's write), so *as long
as the bucket's listing is read-after-write consistent* at most one writer proceeds; a writer that
finds a live lease never writes the head. It does **not** protect against: a holder that stalls for
longer than the TTL without a call (its lease expires and another writer may take over; the stalled
holder notices at its next heartbeat and raises ConflictError, but anything it uploaded meanwhile
may have been pruned), clocks skewed by more than the allowance, or a writer that ignores leases
(the legacy script, another tool). Where a true compare-and-swap is needed, use the Hub's S3
gateway for buckets (``s3://`` with ``If-Match``).

Uploads go through ``hf_xet`` (the bucket API requires it); those transfers run in Xet's own network
stack, so ``options.timeout`` bounds the Hub API calls around them but not the Xet transfer itself.
"""

from __future__ import annotations

import copy
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any
from urllib.parse import quote

from huggingface_hub import errors as hf_errors

from ..errors import BackupError, ConflictError, IntegrityError, LockedError, NotFoundError, RepositoryNotFoundError
from .base import HEAD_NAME, Backend, Capabilities, Head, check_name
from .hub_client import ensure_bounded_session, hub_call, hub_headers, make_api
from .hub_files import http_get
from .options import BackendOptions, HfAddress

LEASE_DIR = ".leases"
DEFAULT_LEASE_TTL = 600.0
CLOCK_SKEW = 60.0
_ENVELOPE = b"openclaw-backup head v1 "
_BATCH = 1000

ReadRange = Callable[[str, int, "int | None"], "bytes | None"]


class HfBucketBackend(Backend):
    """Objects under ``<prefix>/`` of a Hub bucket; single writer by lease (see the module docstring).

    ``api`` is an :class:`huggingface_hub.HfApi` (or anything with its ``bucket_info``,
    ``create_bucket``, ``batch_bucket_files``, ``get_bucket_paths_info`` and ``list_bucket_tree``).
    ``read_range(path, offset, length)`` returns bytes or None when missing; by default a ranged
    GET of the bucket's resolve URL. ``clock``/``monotonic`` are injectable for tests.
    """

    capabilities = Capabilities(
        compare_and_swap=False,
        atomic_batch=False,
        frees_space_on_delete=True,
        consistent_listing=True,
        ranged_reads=True,
        max_connections=4,
    )

    def __init__(
        self,
        api: Any,
        bucket_id: str,
        *,
        prefix: str = "openclaw-backup",
        token: str | None = None,
        timeout: float = 60.0,
        retries: int = 1,
        lease_ttl: float = DEFAULT_LEASE_TTL,
        holder: str | None = None,
        read_range: ReadRange | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        ensure_bounded_session()
        self._api = api
        self.bucket_id = bucket_id
        self.prefix = prefix.strip("/")
        self._token = token
        self._timeout = timeout
        self._attempts = max(1, retries)
        self.lease_ttl = lease_ttl
        self.holder = holder or f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(6)}"
        self._read_range = read_range or self._http_read
        self._clock = clock
        self._monotonic = monotonic
        self.location = f"hf://buckets/{bucket_id}/{self.prefix}"
        self._lease_lock = threading.Lock()
        self._publish_lock = threading.Lock()
        self._renewed: float | None = None  # monotonic time of our last lease write; None = not held

    # -- plumbing -------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        return hub_call(self._timeout, f"{self.location}: {what}", fn, attempts=self._attempts)

    def _path(self, name: str) -> str:
        return f"{self.prefix}/{check_name(name)}"

    @property
    def _lease_path(self) -> str:
        return f"{self.prefix}/{LEASE_DIR}/{self.holder}"

    def _http_read(self, path: str, offset: int, length: int | None) -> bytes | None:
        url = f"{self._api.endpoint}/buckets/{self.bucket_id}/resolve/{quote(path)}"
        try:
            return http_get(url, hub_headers(self._token), offset=offset, length=length)
        except (hf_errors.BucketNotFoundError, hf_errors.RepositoryNotFoundError):
            raise
        except hf_errors.HfHubHTTPError as e:
            if e.response is not None and e.response.status_code == 404:
                return None
            raise

    def _read(self, what: str, path: str, offset: int = 0, length: int | None = None) -> bytes | None:
        result: bytes | None = self._call(what, lambda: self._read_range(path, offset, length))
        return result

    def _upload(self, what: str, path: str, data: bytes) -> None:
        self._call(what, lambda: self._api.batch_bucket_files(self.bucket_id, add=[(bytes(data), path)]))

    def _sizes(self, paths: Sequence[str]) -> dict[str, int]:
        def info() -> dict[str, int]:
            return {f.path: int(f.size) for f in self._api.get_bucket_paths_info(self.bucket_id, list(paths))}

        return self._call("stat", info) if paths else {}

    def _delete(self, paths: Sequence[str]) -> None:
        for i in range(0, len(paths), _BATCH):
            batch = list(paths[i : i + _BATCH])
            self._call("delete", partial(self._api.batch_bucket_files, self.bucket_id, delete=batch))

    def _tree(self, folder: str) -> list[str]:
        def walk() -> list[str]:
            try:
                entries = list(self._api.list_bucket_tree(self.bucket_id, folder, recursive=True))
            except hf_errors.RemoteEntryNotFoundError:
                return []
            return [e.path for e in entries if getattr(e, "type", "file") == "file"]

        result: list[str] = self._call("list", walk)
        return result

    # -- bucket ---------------------------------------------------------------------------
    def ensure_bucket(self, *, create: bool, private: bool) -> None:
        """Check that the bucket exists; create it (``private``) when missing and ``create``."""
        try:
            self._call("open", lambda: self._api.bucket_info(self.bucket_id))
        except RepositoryNotFoundError:
            if not create:
                raise
            self._call("create bucket", lambda: self._api.create_bucket(self.bucket_id, private=private, exist_ok=True))

    # -- the lease ------------------------------------------------------------------------
    def _write_lease(self) -> None:
        now = self._clock()
        lease = {
            "holder": self.holder,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "acquired": now,
            "expires": now + self.lease_ttl,
        }
        self._upload("write lease", self._lease_path, json.dumps(lease, sort_keys=True).encode())

    def _live_others(self) -> list[dict[str, Any]]:
        now = self._clock()
        live = []
        for path in self._tree(f"{self.prefix}/{LEASE_DIR}"):
            if path == self._lease_path:
                continue
            raw = self._read("read lease", path)
            if raw is None:
                continue  # released meanwhile
            try:
                lease = json.loads(raw)
                expires = float(lease["expires"])
            except (ValueError, KeyError, TypeError):
                lease, expires = {"holder": path.rsplit("/", 1)[-1], "path": path}, float("inf")  # unreadable: live
            if expires + CLOCK_SKEW > now:
                live.append({**lease, "path": path})
        return live

    def _refuse(self, others: list[dict[str, Any]]) -> LockedError:
        other = others[0]
        until = (
            time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(other.get("expires", 0))))
            if other.get("expires")
            else "(unknown)"
        )
        return LockedError(
            f"{self.location} is leased by {other.get('holder')} on {other.get('host', '?')} until {until}",
            hint=f"another backup or prune is running; retry later, or delete {other['path']} if that process is gone",
        )

    def _ensure_lease(self, *, heartbeat: bool) -> None:
        """Acquire the lease, or renew it when due (always when ``heartbeat``)."""
        with self._lease_lock:
            if self._renewed is None:
                self._write_lease()
                others = self._live_others()
                if others:
                    self._release_quietly()
                    raise self._refuse(others)
                mine = self._read("verify lease", self._lease_path)
                if mine is None or json.loads(mine).get("holder") != self.holder:
                    self._release_quietly()
                    raise LockedError(f"{self.location}: our lease did not read back; another writer raced us")
                self._renewed = self._monotonic()
                return
            elapsed = self._monotonic() - self._renewed
            if elapsed >= self.lease_ttl:
                self._renewed = None
                raise ConflictError(
                    f"{self.location}: our lease lapsed ({elapsed:.0f} s without a heartbeat); another writer may "
                    "have changed the bucket since",
                    hint="run the command again",
                )
            if not heartbeat and elapsed < self.lease_ttl / 3:
                return
            others = self._live_others()
            if others:
                self._renewed = None
                raise self._refuse(others)
            if self._read("verify lease", self._lease_path) is None:
                self._renewed = None
                raise ConflictError(f"{self.location}: our lease was removed by another process", hint="run it again")
            self._write_lease()
            self._renewed = self._monotonic()

    def _release_quietly(self) -> None:
        try:
            self._delete([self._lease_path])
        except BackupError:
            pass  # it expires on its own
        self._renewed = None

    # -- the contract ---------------------------------------------------------------------
    def get(self, name: str, *, offset: int = 0, length: int | None = None) -> bytes:
        path = self._path(name)
        if length is not None and length <= 0:
            self.size(name)
            return b""
        data = self._read(f"read {name}", path, offset, length)
        if data is None:
            raise NotFoundError(f"{name}: no such object in {self.location}")
        return data

    def size(self, name: str) -> int:
        path = self._path(name)
        sizes = self._sizes([path])
        if path not in sizes:
            raise NotFoundError(f"{name}: no such object in {self.location}")
        return sizes[path]

    def list(self, prefix: str = "") -> list[str]:
        folder = self.prefix + ("/" + prefix.rsplit("/", 1)[0] if "/" in prefix else "")
        skip = len(self.prefix) + 1
        names = [p[skip:] for p in self._tree(folder) if p.startswith(self.prefix + "/")]
        return sorted(n for n in names if n != HEAD_NAME and not n.startswith(".") and n.startswith(prefix))

    def put(self, name: str, data: bytes) -> None:
        path = self._path(name)
        self._ensure_lease(heartbeat=False)
        self._upload(f"upload {name}", path, data)

    def read_head(self) -> Head | None:
        raw = self._read("read head", f"{self.prefix}/{HEAD_NAME}")
        if raw is None:
            return None
        if not raw.startswith(_ENVELOPE) or raw[len(_ENVELOPE) + 32 : len(_ENVELOPE) + 33] != b"\n":
            raise IntegrityError(f"{self.location}: the head file is not an openclaw-backup head")
        version = raw[len(_ENVELOPE) : len(_ENVELOPE) + 32].decode("ascii", "replace")
        return Head(version, raw[len(_ENVELOPE) + 33 :])

    def publish(self, *, head: bytes, expect: str | None, deletes: Sequence[str] = ()) -> str:
        paths = [self._path(n) for n in dict.fromkeys(deletes)]
        with self._publish_lock:
            self._ensure_lease(heartbeat=True)
            current = self.read_head()
            if (current.version if current else None) != expect:
                raise ConflictError(f"{self.location}: the head moved while we worked (another writer)")
            version = secrets.token_hex(16)
            self._upload("write head", f"{self.prefix}/{HEAD_NAME}", _ENVELOPE + version.encode() + b"\n" + head)
            try:
                existing = self._sizes(paths)
                self._delete([p for p in paths if p in existing])
            except BackupError:
                pass  # the head is replaced; what is left is unreferenced garbage for a later prune
            return version

    def delete_unpublished(self, names: Sequence[str]) -> None:
        paths = [self._path(n) for n in dict.fromkeys(names)]
        self._ensure_lease(heartbeat=True)
        existing = self._sizes(paths)
        self._delete([p for p in paths if p in existing])

    def reopen(self) -> HfBucketBackend:
        """The same bucket and prefix, holding no lease (it only reads). Its calls go through the
        process's Hub session, which a forked process drops (:mod:`.hub_client`): there, it shares
        no connection with this one."""
        fresh = copy.copy(self)
        fresh._lease_lock, fresh._publish_lock = threading.Lock(), threading.Lock()
        fresh._renewed = None  # never released (or renewed) by the copy
        if self._read_range == self._http_read:
            fresh._read_range = fresh._http_read
        return fresh

    def close(self) -> None:
        with self._lease_lock:
            if self._renewed is not None:
                self._release_quietly()


def open_hf_bucket(address: HfAddress, options: BackendOptions) -> HfBucketBackend:
    """Open the bucket of ``address`` (the ``hf`` scheme's factory for buckets).

    A missing bucket raises :class:`RepositoryNotFoundError`, or is created when ``options.create``
    (private unless ``options.private`` is False).
    """
    bucket = HfBucketBackend(
        make_api(options),
        address.repo_id,
        prefix=address.prefix,
        token=options.token,
        timeout=options.timeout,
        retries=options.retries,
    )
    bucket.ensure_bucket(create=options.create, private=options.private)
    return bucket
