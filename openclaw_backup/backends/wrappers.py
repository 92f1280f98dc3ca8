"""Cross-cutting behaviour as wrappers around a backend: retries now; fault injection lives in tests.

:class:`WrappedBackend` forwards every call; subclasses override what they change, so one wrapper
serves each concern and :func:`openclaw_backup.backends.open_backend` composes them.

Retry policy: only :class:`~openclaw_backup.errors.StoreError` with ``transient=True`` is retried,
with exponential backoff and jitter. A :class:`~openclaw_backup.errors.QuotaError` is never slept
on here (a commit quota can mean an hour): it surfaces at once so the caller can reschedule.
``publish`` is retried only by the backend itself, which knows how to tell whether a lost
publication landed (the Hub and S3 backends do); a retry here would risk a duplicate.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from ..errors import StoreError
from .base import Backend, Head

T = TypeVar("T")


def retry_transient(
    fn: Callable[[], T],
    *,
    attempts: int,
    base_delay: float = 0.2,
    max_delay: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn``, retrying transient :class:`StoreError` with exponential backoff and jitter."""
    for attempt in range(max(1, attempts)):
        try:
            return fn()
        except StoreError as e:
            if not e.transient or attempt >= attempts - 1:
                raise
            sleep(min(max_delay, base_delay * 2**attempt) * (0.5 + random.random() / 2))
    raise AssertionError("unreachable")


class WrappedBackend(Backend):
    """Forwards everything to ``inner``."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.capabilities = inner.capabilities
        self.location = inner.location

    def get(self, name: str, *, offset: int = 0, length: int | None = None) -> bytes:
        return self.inner.get(name, offset=offset, length=length)

    def size(self, name: str) -> int:
        return self.inner.size(name)

    def list(self, prefix: str = "") -> list[str]:
        return self.inner.list(prefix)

    def put(self, name: str, data: bytes) -> None:
        self.inner.put(name, data)

    def read_head(self) -> Head | None:
        return self.inner.read_head()

    def publish(self, *, head: bytes, expect: str | None, deletes: Sequence[str] = ()) -> str:
        return self.inner.publish(head=head, expect=expect, deletes=deletes)

    def delete_unpublished(self, names: Sequence[str]) -> None:
        self.inner.delete_unpublished(names)

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> object:
        # Backend-specific extras (e.g. a Hub repo's history squash) stay reachable.
        return getattr(self.inner, name)


class RetryingBackend(WrappedBackend):
    """Retries idempotent calls on transient store errors (``attempts`` tries in all)."""

    def __init__(
        self,
        inner: Backend,
        *,
        attempts: int = 5,
        base_delay: float = 0.2,
        max_delay: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(inner)
        self.attempts = max(1, attempts)
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._sleep = sleep

    def _retry(self, fn: Callable[[], T]) -> T:
        return retry_transient(
            fn, attempts=self.attempts, base_delay=self.base_delay, max_delay=self.max_delay, sleep=self._sleep
        )

    def get(self, name: str, *, offset: int = 0, length: int | None = None) -> bytes:
        return self._retry(lambda: self.inner.get(name, offset=offset, length=length))

    def size(self, name: str) -> int:
        return self._retry(lambda: self.inner.size(name))

    def list(self, prefix: str = "") -> list[str]:
        return self._retry(lambda: self.inner.list(prefix))

    def put(self, name: str, data: bytes) -> None:
        self._retry(lambda: self.inner.put(name, data))

    def read_head(self) -> Head | None:
        return self._retry(self.inner.read_head)
