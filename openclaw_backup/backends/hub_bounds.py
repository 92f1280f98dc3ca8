"""The bounds of every call to the Hub, without the Hub's client library: timeouts, retries, the
statuses retried, and the errors our own requests raise.

A cold restore from a Hub repo makes only reads (plain GETs, :mod:`.plain_get`), listings and the
head's read, which need nothing of ``huggingface_hub`` or ``httpx2`` (some 0.15 s of imports): so
this module, what :mod:`.hub_files` reads with, imports neither. :mod:`.hub_client` (the library's
session and its errors) builds on it and, once imported, adds what only it can do:

* :func:`bounded` asks it to make sure the library's session is ours (:func:`set_session_check`),
  for the library calls made inside;
* :func:`translate` asks it to translate the library's exceptions (:func:`set_library_translator`),
  which only exist once the library is imported.

The words (bounded call, replayable request) and the table of errors are :mod:`.hub_client`'s.
"""

from __future__ import annotations

import random
import re
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from email.message import Message
from typing import TypeVar

from ..errors import BackupError, QuotaError, StoreError

T = TypeVar("T")
R = TypeVar("R")

LIBRARY_NAME = "openclaw-backup"
RETRIED_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
RETRY_BASE_DELAY = 0.25
RETRY_MAX_DELAY = 8.0


def retry_delay(attempt: int, retry_after: float | None = None) -> float:
    """Seconds before try ``attempt + 2``: exponential with jitter, at most RETRY_MAX_DELAY (a
    server's shorter Retry-After is honoured)."""
    delay = min(RETRY_MAX_DELAY, RETRY_BASE_DELAY * 2**attempt) * (0.5 + random.random() / 2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, RETRY_MAX_DELAY))
    return delay


class HubStatusError(Exception):
    """A response huggingface_hub would have retried after a sleep; raised instead (inside hub_call)."""

    def __init__(self, status: int, retry_after: float | None, where: str, server_message: str) -> None:
        super().__init__(f"HTTP {status} from {where}" + (f": {server_message}" if server_message else ""))
        self.status = status
        self.retry_after = retry_after
        self.server_message = server_message


class HubTransportError(Exception):
    """A network failure or timeout (inside hub_call), raised instead of the library's retry-with-sleep.
    ``untrusted``: the server's TLS certificate did not verify — no retry can change that."""

    def __init__(self, message: str, *, untrusted: bool = False) -> None:
        super().__init__(message)
        self.untrusted = untrusted


UNTRUSTED_HINT = (
    "the server's TLS certificate does not verify against the CA certificates here; name the ones to "
    "trust with SSL_CERT_FILE (or SSL_CERT_DIR), as for huggingface_hub"
)


def untrusted(e: BaseException) -> bool:
    """Whether ``e`` (or what caused it) is a TLS certificate that did not verify."""
    return any(isinstance(c, ssl.SSLCertVerificationError) for c in _causes(e))


@dataclass(frozen=True)
class Bound:
    """The bounds of the requests made inside :func:`bounded`."""

    timeout: float
    attempts: int = 1


BOUND: ContextVar[Bound | None] = ContextVar("openclaw_backup_hf_bound", default=None)


def retry_after(headers: Mapping[str, str] | Message) -> float | None:
    """The seconds a server asks us to wait (``Retry-After``, or ``RateLimit``'s ``t=``), or None."""
    value = headers.get("Retry-After", "").strip()
    if value.isdigit():
        return float(value)
    match = re.search(r"\bt\s*=\s*(\d+)", headers.get("RateLimit", ""))
    return float(match.group(1)) if match else None


def send_bounded(
    attempts: int,
    send: Callable[[], R],
    *,
    failure: type[Exception],
    describe: Callable[[Exception], str],
    refusal: Callable[[R], HubStatusError | None],
) -> R:
    """``send()`` up to ``attempts`` times, as every request inside :func:`hub_call` is made: a
    ``failure`` (the transport's) or an answer ``refusal`` turns into an error (a status retried)
    waits (:func:`retry_delay`, or the server's Retry-After) and tries again; the last
    attempt's is raised (a failure as :class:`HubTransportError` with ``describe``'s message), and a
    429 at once (a quota is the caller's to reschedule, never slept on here)."""
    for attempt in range(attempts):
        last = attempt >= attempts - 1
        try:
            answer = send()
        except failure as e:
            refused = untrusted(e)  # a certificate that did not verify will not the next time
            if last or refused:
                raise HubTransportError(describe(e), untrusted=refused) from e
            time.sleep(retry_delay(attempt))
            continue
        error = refusal(answer)
        if error is None:
            return answer
        if last or error.status == 429:
            raise error
        time.sleep(retry_delay(attempt, error.retry_after))
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------------------------
# What the library's side adds once imported

_session_check: Callable[[], None] | None = None
_library_translator: Callable[[BaseException, str], BackupError | None] | None = None


def set_session_check(check: Callable[[], None]) -> None:
    """Run ``check`` on entering every :func:`bounded` block (:mod:`.hub_client`: the library's
    session is ours)."""
    global _session_check
    _session_check = check


def set_library_translator(translator: Callable[[BaseException, str], BackupError | None]) -> None:
    """Translate the library's exceptions with ``translator`` (None: not one of them)."""
    global _library_translator
    _library_translator = translator


@contextmanager
def bounded(timeout: float, attempts: int = 1) -> Iterator[None]:
    """Mark the Hub calls made inside as bounded, replayable requests tried up to ``attempts`` times."""
    check = _session_check
    if check is not None:
        check()
    token = BOUND.set(Bound(timeout, max(1, attempts)))
    try:
        yield
    finally:
        BOUND.reset(token)


def _causes(e: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or (None if cur.__suppress_context__ else cur.__context__)


def _own(exc: BaseException, what: str) -> BackupError | None:
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
        if exc.untrusted:
            return StoreError(f"{what}: {exc}", hint=UNTRUSTED_HINT)
        return StoreError(f"{what}: {exc}", transient=True)
    return None


def translate(e: BaseException, what: str) -> BackupError:
    """Map an exception raised by a Hub call (ours, or huggingface_hub's/httpx2's) to our typed errors."""
    library = _library_translator
    for exc in _causes(e):
        found = _own(exc, what) or (library(exc, what) if library is not None else None)
        if found is not None:
            return found
        if isinstance(exc, (TimeoutError, ConnectionError)):
            return StoreError(f"{what}: {type(exc).__name__}", transient=True)
    first = str(e).splitlines()[0][:300] if str(e) else ""
    return StoreError(f"{what}: {type(e).__name__}: {first}")


def hub_call(timeout: float, what: str, fn: Callable[[], T], *, attempts: int = 1) -> T:
    """Run ``fn`` (Hub calls) bounded by ``timeout`` per request (replayable ones tried up to
    ``attempts`` times), translating errors."""
    with bounded(timeout, attempts):
        try:
            return fn()
        except BackupError:
            raise
        except Exception as e:
            raise translate(e, what) from e
