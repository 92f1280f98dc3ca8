"""An in-memory backend for tests: the reference implementation of the storage contract."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence

from ..errors import ConflictError, NotFoundError
from .base import Backend, Capabilities, Head, check_name


class MemoryBackend(Backend):
    """Objects in a dict; the head compare-and-swapped under a lock. Thread-safe."""

    # puts are visible at once
    capabilities = Capabilities(atomic_batch=False, max_connections=8, transient_failures=False)

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.head: Head | None = None
        self.location = "memory:"
        self._lock = threading.Lock()
        self._serial = 0

    def get(self, name: str, *, offset: int = 0, length: int | None = None) -> bytes:
        with self._lock:
            try:
                data = self.objects[check_name(name)]
            except KeyError:
                raise NotFoundError(f"{name}: no such object") from None
        end = len(data) if length is None else offset + length
        return data[offset:end]

    def size(self, name: str) -> int:
        return len(self.get(name))

    def list(self, prefix: str = "") -> list[str]:
        with self._lock:
            return sorted(n for n in self.objects if n.startswith(prefix))

    def put(self, name: str, data: bytes) -> None:
        with self._lock:
            self.objects[check_name(name)] = bytes(data)

    def read_head(self) -> Head | None:
        with self._lock:
            return self.head

    def publish(self, *, head: bytes, expect: str | None, deletes: Sequence[str] = ()) -> str:
        with self._lock:
            current = self.head.version if self.head else None
            if current != expect:
                raise ConflictError(f"head moved (expected {expect}, found {current})")
            self._serial += 1
            version = hashlib.sha256(b"%d:" % self._serial + head).hexdigest()[:16]
            self.head = Head(version, bytes(head))
            for name in deletes:
                self.objects.pop(name, None)
            return version
