"""A repository in a local directory: the embedded default, with no account and no network.

Every object is written to a temporary file in its final folder, fsynced, renamed into place and
the folder fsynced, so a crash leaves either no object or the whole object (temporary files start
with ``.tmp-`` and are never listed). The head is the file ``head``; it is replaced by the same
atomic rename while holding an exclusive ``flock`` on ``lock``, after checking that the file still
has the expected version (the SHA-256 of its bytes). Deletes named by a publication happen after
the new head is durable.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ..errors import ConflictError, LockedError, NotFoundError, StoreError
from .base import HEAD_NAME, Backend, Capabilities, Head, check_name

LOCK_NAME = "lock"
#: Seconds of waiting for the lock before saying so (on :data:`WAIT_LOG`, which the CLI shows).
LOCK_SAY_AFTER = 1.0
WAIT_LOG = logging.getLogger("openclaw_backup.wait")
_TMP_PREFIX = ".tmp-"


def _version(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` so a crash leaves the old file or the new one, never a mix."""

    def fill(fd: int) -> None:
        view = memoryview(data).cast("B")  # bytes, whatever the buffer's item size: os.write counts bytes
        while view:
            view = view[os.write(fd, view) :]

    _atomic(path, fill, mode)


def _copy_from(src: int, length: int) -> Callable[[int], None]:
    """A filler that copies the first ``length`` bytes of ``src`` in the kernel (``sendfile``)."""

    def fill(fd: int) -> None:
        done = 0
        while done < length:
            n = os.sendfile(fd, src, done, length - done)
            if n <= 0:
                raise OSError(errno.EIO, f"the source ended after {done} of {length} bytes")
            done += n

    return fill


def _atomic(path: Path, fill: Callable[[int], None], mode: int) -> None:
    tmp = path.with_name(f"{_TMP_PREFIX}{secrets.token_hex(8)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        fill(fd)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


class LocalBackend(Backend):
    """See the module docstring. ``lock_timeout`` bounds the wait for another process's publish."""

    capabilities = Capabilities(atomic_batch=False, max_connections=4, transient_failures=False)

    def __init__(self, root: str | os.PathLike[str], *, lock_timeout: float = 30.0) -> None:
        self.root = Path(root)
        self.location = str(self.root)
        self.lock_timeout = lock_timeout

    def _path(self, name: str) -> Path:
        return self.root / check_name(name)

    def get(self, name: str, *, offset: int = 0, length: int | None = None) -> bytes:
        try:
            with open(self._path(name), "rb") as f:
                if offset:
                    f.seek(offset)
                return f.read() if length is None else f.read(length)
        except FileNotFoundError:
            raise NotFoundError(f"{name}: no such object in {self.location}") from None
        except OSError as e:
            raise StoreError(f"cannot read {name}: {e.strerror}") from e

    def size(self, name: str) -> int:
        try:
            return self._path(name).stat().st_size
        except FileNotFoundError:
            raise NotFoundError(f"{name}: no such object in {self.location}") from None

    def list(self, prefix: str = "") -> list[str]:
        out: list[str] = []
        base = self.root
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = os.path.relpath(dirpath, base)
            for fn in filenames:
                if fn.startswith(".") or (rel == "." and fn in (HEAD_NAME, LOCK_NAME)):
                    continue
                name = fn if rel == "." else f"{rel}/{fn}"
                if name.startswith(prefix):
                    out.append(name)
        return sorted(out)

    def put(self, name: str, data: bytes) -> None:
        self._put(name, lambda path: atomic_write(path, data))

    def put_file(self, name: str, fd: int, length: int) -> None:
        self._put(name, lambda path: _atomic(path, _copy_from(fd, length), 0o600))

    def _put(self, name: str, write: Callable[[Path], None]) -> None:
        path = self._path(name)
        try:
            if path.exists():
                return  # content-addressed: same name, same bytes
            path.parent.mkdir(parents=True, exist_ok=True)
            write(path)
        except OSError as e:
            raise StoreError(f"cannot write {name}: {e.strerror}", transient=e.errno == errno.ENOSPC) from e

    def read_head(self) -> Head | None:
        try:
            data = (self.root / HEAD_NAME).read_bytes()
        except FileNotFoundError:
            return None
        return Head(_version(data), data)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self.lock_timeout
        said = False
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not said and time.monotonic() >= deadline - self.lock_timeout + LOCK_SAY_AFTER:
                        said = True  # the CLI shows this logger's records: a silent wait looks like a hang
                        WAIT_LOG.info("waiting for %s: another process holds its lock (up to %.0f s)",
                                      self.location, self.lock_timeout)  # fmt: skip
                    if time.monotonic() >= deadline:
                        raise LockedError(
                            f"{self.location} is locked by another process",
                            hint="wait for the other backup to finish, or stop it",
                        ) from None
                    time.sleep(0.02)
            yield
        finally:
            os.close(fd)  # releases the flock

    def publish(self, *, head: bytes, expect: str | None, deletes: Sequence[str] = ()) -> str:
        with self._locked():
            current = self.read_head()
            if (current.version if current else None) != expect:
                raise ConflictError("the repository head moved while we worked (another writer)")
            atomic_write(self.root / HEAD_NAME, head)
        self._delete(deletes)
        return _version(head)

    def _delete(self, names: Sequence[str]) -> None:
        dirs: set[Path] = set()
        for name in names:
            path = self._path(name)
            try:
                path.unlink()
                dirs.add(path.parent)
            except FileNotFoundError:
                pass
        for d in dirs:
            fsync_dir(d)

    def delete_unpublished(self, names: Sequence[str]) -> None:
        self._delete(names)

    def remove_stale_temporaries(self, *, older_than: float) -> int:
        """Remove ``.tmp-*`` files of writes killed mid-way, older than ``older_than`` seconds.

        A live writer's temporary file is younger than that (a write takes seconds), so it is kept.
        Returns how many were removed.
        """
        limit = time.time() - older_than
        removed = 0
        for dirpath, _dirnames, filenames in os.walk(self.root):
            for fn in filenames:
                if not fn.startswith(_TMP_PREFIX):
                    continue
                path = os.path.join(dirpath, fn)
                try:
                    if os.lstat(path).st_mtime < limit:
                        os.unlink(path)
                        removed += 1
                except FileNotFoundError:
                    pass
        return removed
