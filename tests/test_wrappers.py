"""The wrappers composed by open_backend: concurrency limit, logging, retries, the test hook."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import pytest

from openclaw_backup.backends import SCHEMES, open_backend, open_raw_backend, scheme_of
from openclaw_backup.backends.base import Backend, Capabilities
from openclaw_backup.backends.memory import MemoryBackend
from openclaw_backup.backends.wrappers import LimitedBackend, LoggingBackend, RetryingBackend, WrappedBackend
from openclaw_backup.errors import QuotaError, StoreError


class SlowCounting(WrappedBackend):
    """Records the most calls it ever saw in flight at once."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self.now = self.peak = 0
        self._lock = threading.Lock()

    def get(self, name: str, *, offset: int = 0, length: int | None = None) -> bytes:
        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        time.sleep(0.05)
        with self._lock:
            self.now -= 1
        return self.inner.get(name, offset=offset, length=length)


def test_limited_backend_bounds_calls_in_flight() -> None:
    mem = MemoryBackend()
    mem.put("data/00/x", b"x")
    counting = SlowCounting(mem)
    limited = LimitedBackend(counting, limit=2)
    threads = [threading.Thread(target=limited.get, args=("data/00/x",)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counting.peak == 2


def test_logging_backend_records_calls_without_contents(caplog: pytest.LogCaptureFixture) -> None:
    b = LoggingBackend(MemoryBackend())
    with caplog.at_level(logging.DEBUG, logger="openclaw_backup.storage"):
        b.put("data/00/secret", b"the secret contents")
        assert b.get("data/00/secret") == b"the secret contents"
        with pytest.raises(Exception):  # noqa: B017 - any failure is logged, then raised
            b.get("data/00/missing")
    text = caplog.text
    assert "put data/00/secret: 19 bytes" in text and "get data/00/secret: 19 bytes" in text
    assert "get data/00/missing: failed" in text
    assert "the secret contents" not in text


class FlakyOnce(WrappedBackend):
    def __init__(self, inner: Backend, error: Exception) -> None:
        super().__init__(inner)
        self.error: Exception | None = error
        self.calls = 0

    def get(self, name: str, *, offset: int = 0, length: int | None = None) -> bytes:
        self.calls += 1
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        return self.inner.get(name, offset=offset, length=length)


def test_retrying_backend_retries_transient_errors_but_not_quota() -> None:
    mem = MemoryBackend()
    mem.put("data/00/x", b"x")
    flaky = FlakyOnce(mem, StoreError("blip", transient=True))
    assert RetryingBackend(flaky, attempts=3, sleep=lambda s: None).get("data/00/x") == b"x"
    assert flaky.calls == 2
    quota = FlakyOnce(mem, QuotaError("slow down", retry_after=3600))
    start = time.monotonic()
    with pytest.raises(QuotaError):
        RetryingBackend(quota, attempts=3).get("data/00/x")
    assert quota.calls == 1 and time.monotonic() - start < 1


def test_open_backend_puts_the_hook_under_the_other_wrappers(tmp_path: Path) -> None:
    seen: list[Backend] = []

    def hook(b: Backend) -> Backend:
        seen.append(b)
        return WrappedBackend(b)

    b = open_backend(str(tmp_path / "repo"), hook=hook)
    b.put("data/00/x", b"x")
    assert b.get("data/00/x") == b"x"
    assert len(seen) == 1 and type(seen[0]).__name__ == "LocalBackend"
    assert isinstance(b, LoggingBackend) and isinstance(b.inner, LimitedBackend)


def test_optional_operations_reach_the_store_through_every_wrapper(tmp_path: Path) -> None:
    b = open_backend(str(tmp_path / "repo"))
    b.put("data/00/x", b"x")
    stale = tmp_path / "repo" / "data" / "00" / ".tmp-killed"
    stale.write_bytes(b"partial")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    assert b.remove_stale_temporaries(older_than=3600) == 1 and not stale.exists()
    assert b.squash_history() is False  # a directory keeps no history: the no-op default
    assert not hasattr(b, "root")  # wrappers are backends, not proxies of the store's other attributes


class Remote(MemoryBackend):
    capabilities = Capabilities(max_connections=2)  # fails transiently, like a network store


def test_scheme_registry_and_retries_by_capability(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SCHEMES, "remote", lambda address, options: Remote())
    assert scheme_of("remote://x") == "remote" and scheme_of("memory:") == "memory" and scheme_of("/a:b") == ""
    remote = open_backend("remote://anything")
    assert isinstance(remote, RetryingBackend) and isinstance(open_raw_backend("remote://x"), Remote)
    local = open_backend("memory:")
    assert isinstance(local, LoggingBackend) and not isinstance(local, RetryingBackend)
