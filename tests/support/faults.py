"""Fault injection for the reliability suite, the checks that follow a fault, and the scenario ledger.

**Wrappers.** Each fault is a :class:`~openclaw_backup.backends.wrappers.WrappedBackend` around a
REAL backend that changes one behaviour (restic's test backends; borg's failing chunker). Which
calls it hits is a :class:`Trigger`:

* ``methods`` — backend methods (``get size list put read_head publish delete_unpublished``);
* ``names`` — an ``fnmatch`` pattern on the object name (``data/*``, ``index/*``, ``keys/*``,
  ``config``; the head is ``head``; a ``list`` call is matched by its prefix);
* ``script`` — what happens to the 1st, 2nd, … matching call, one character each, borg-style:
  ``.`` passes, ``X`` faults; a trailing ``+`` repeats the last character forever. ``"X"`` is
  "fail once", ``"..X"`` "the third call", ``"X+"`` "always". After the script, calls pass.

=====================  ==========================================================================
wrapper                fault
=====================  ==========================================================================
:class:`FailOnce`      a transient ``StoreError`` instead of the call (``script="X"``)
:class:`FailAlways`    a ``StoreError`` on every matching call (permanent unless ``transient``)
:class:`LostResponse`  the call lands on the store, then a transient ``StoreError`` (answer lost)
:class:`FlipByte`      ``get``/``read_head`` return the bytes with one bit flipped
:class:`Truncate`      ``get``/``read_head`` return the bytes cut short
:class:`StaleListing`  ``list`` misses fresh objects (written through this wrapper, or ``fresh``)
:class:`RateLimited`   a ``QuotaError`` with ``retry_after`` (a 429 with ``Retry-After``)
:class:`Slow`          the call sleeps first
:class:`Interleave`    another process acts (a callback) just before the call
:class:`Counting`      no fault: records every call (to count writes, to see what happened)
=====================  ==========================================================================

**Checks.** :func:`verify_store` is what every scenario ends with: on the underlying real backend,
``check(read_data=True)`` is ok and every snapshot the head names restores byte-exact to the
fingerprint of the tree it was taken from.

**Ledger.** Tests record each scenario (and any data loss) through the ``reliability`` fixture;
the ``pytest_terminal_summary`` hook prints ``reliability: N scenarios run, M data lost``. This
module is a pytest plugin (``pytest_plugins = [..., "tests.support.faults"]``); under xdist the workers'
counts are summed on the controller.
"""

from __future__ import annotations

import fnmatch
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from openclaw_backup.backends.base import Backend, Head
from openclaw_backup.backends.wrappers import WrappedBackend
from openclaw_backup.errors import BackupError, QuotaError, StoreError
from openclaw_backup.maintenance import check
from openclaw_backup.reporter import Reporter
from openclaw_backup.repository import Repository
from openclaw_backup.restorer import RestoreOptions, restore
from tests.support.repos import PASSWORD
from tests.support.trees import Fingerprint, digest, fingerprint

__all__ = [
    "Counting",
    "FailAlways",
    "FailOnce",
    "FaultyBackend",
    "FlipByte",
    "Interleave",
    "Ledger",
    "LostResponse",
    "RateLimited",
    "Slow",
    "StaleListing",
    "StoreReport",
    "Trigger",
    "Truncate",
    "reliability_fixture",
    "verify_store",
]

# ---------------------------------------------------------------------------- triggers


@dataclass
class Trigger:
    """Which calls a fault hits (see the module docstring)."""

    methods: tuple[str, ...] = ("get",)
    names: str = "*"
    script: str = "X"

    def fires(self, n: int) -> bool:
        """Whether the ``n``-th matching call (1-based) is faulted."""
        script = self.script
        forever = script.endswith("+")
        if forever:
            script = script[:-1]
        if n <= len(script):
            return script[n - 1] == "X"
        return forever and bool(script) and script[-1] == "X"


def script_for(nth: int = 1, times: int | None = 1) -> str:
    """``nth``-th matching call faults, ``times`` times in a row (None: from then on, always)."""
    return "." * (nth - 1) + ("X+" if times is None else "X" * times)


_UNSET: Any = object()


class FaultyBackend(WrappedBackend):
    """Base of the fault wrappers: matches calls against the trigger and counts them.

    Every wrapper takes the trigger as ``methods``, ``names``, ``nth`` and ``times`` (or a whole
    ``script``); a subclass states what it hits when not told: ``METHODS``, and ``TIMES``, how many
    matching calls in a row fault from the ``nth`` on (None: every one). Subclasses override
    :meth:`_fault` (what happens to a faulted call: ``call`` performs the real one). ``calls``
    records every call as ``(method, name, faulted)``; ``injected`` counts faults.
    """

    METHODS: tuple[str, ...] = ("get",)
    TIMES: int | None = 1

    def __init__(
        self,
        inner: Backend,
        *,
        methods: Sequence[str] | str | None = None,
        names: str = "*",
        script: str | None = None,
        nth: int = 1,
        times: int | None = _UNSET,
    ) -> None:
        super().__init__(inner)
        methods = self.METHODS if methods is None else (methods,) if isinstance(methods, str) else tuple(methods)
        if script is None:
            script = script_for(nth, self.TIMES if times is _UNSET else times)
        self.trigger = Trigger(methods, names, script)
        self.calls: list[tuple[str, str, bool]] = []
        self.injected = 0
        self._matched = 0
        self._lock = threading.Lock()

    def _dispatch(self, method: str, name: str, call: Callable[[], Any]) -> Any:
        with self._lock:
            hit = False
            if method in self.trigger.methods and fnmatch.fnmatchcase(name, self.trigger.names):
                self._matched += 1
                hit = self.trigger.fires(self._matched)
            self.calls.append((method, name, hit))
            if hit:
                self.injected += 1
        return self._fault(method, name, call) if hit else call()

    def _fault(self, method: str, name: str, call: Callable[[], Any]) -> Any:
        return call()

    def count(self, *methods: str) -> int:
        return sum(1 for m, _, _ in self.calls if m in methods)

    # -- the contract, routed through _dispatch --------------------------------------------------

    def get(self, name: str, *, offset: int = 0, length: int | None = None) -> bytes:
        return self._dispatch("get", name, lambda: self.inner.get(name, offset=offset, length=length))

    def size(self, name: str) -> int:
        return self._dispatch("size", name, lambda: self.inner.size(name))

    def list(self, prefix: str = "") -> list[str]:
        return self._dispatch("list", prefix, lambda: self.inner.list(prefix))

    def put(self, name: str, data: bytes) -> None:
        self._dispatch("put", name, lambda: self.inner.put(name, data))

    def read_head(self) -> Head | None:
        return self._dispatch("read_head", "head", self.inner.read_head)

    def publish(self, *, head: bytes, expect: str | None, deletes: Sequence[str] = ()) -> str:
        return self._dispatch("publish", "head", lambda: self.inner.publish(head=head, expect=expect, deletes=deletes))

    def delete_unpublished(self, names: Sequence[str]) -> None:
        self._dispatch("delete_unpublished", ",".join(names), lambda: self.inner.delete_unpublished(names))


class Counting(FaultyBackend):
    """No fault at all; records calls (``count("put", "publish")`` = number of writes)."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner, methods=(), script="")


class FailOnce(FaultyBackend):
    """The ``nth`` matching call raises a transient ``StoreError`` and does not happen."""

    def _fault(self, method: str, name: str, call: Callable[[], Any]) -> Any:
        raise StoreError(f"injected: {method} {name} failed (connection reset)", transient=True)


class FailAlways(FaultyBackend):
    """Every matching call (from the ``nth`` on) raises ``StoreError`` (permanent unless ``transient``)."""

    TIMES = None

    def __init__(self, inner: Backend, *, transient: bool = False, **trigger: Any) -> None:
        super().__init__(inner, **trigger)
        self.transient = transient

    def _fault(self, method: str, name: str, call: Callable[[], Any]) -> Any:
        raise StoreError(f"injected: {method} {name} refused (disk full / access denied)", transient=self.transient)


class LostResponse(FaultyBackend):
    """The call lands on the store, then its answer is lost: a transient ``StoreError`` after ``inner``."""

    METHODS = ("put", "publish")

    def _fault(self, method: str, name: str, call: Callable[[], Any]) -> Any:
        call()
        raise StoreError(f"injected: {method} {name} timed out (the request may have landed)", transient=True)


def _flip(data: bytes, at: float | int) -> bytes:
    if not data:
        return data
    i = at if isinstance(at, int) else int(len(data) * at)
    i = min(max(i, 0), len(data) - 1)
    out = bytearray(data)
    out[i] ^= 0x01
    return bytes(out)


class _ReadFault(FaultyBackend):
    """Base of faults that change what ``get`` / ``read_head`` return."""

    METHODS = ("get", "read_head")
    TIMES = None

    def _change(self, data: bytes) -> bytes:
        raise NotImplementedError

    def _fault(self, method: str, name: str, call: Callable[[], Any]) -> Any:
        result = call()
        if isinstance(result, Head):
            return Head(result.version, self._change(result.data))
        if isinstance(result, bytes | bytearray):
            return self._change(bytes(result))
        return result


class FlipByte(_ReadFault):
    """Reads return the bytes with the low bit of one byte flipped (``at``: index or fraction)."""

    def __init__(self, inner: Backend, *, at: float | int = 0.5, **trigger: Any) -> None:
        super().__init__(inner, **trigger)
        self.at = at

    def _change(self, data: bytes) -> bytes:
        return _flip(data, self.at)


class Truncate(_ReadFault):
    """Reads return only the first ``keep`` of the bytes (a fraction, or a byte count)."""

    def __init__(self, inner: Backend, *, keep: float | int = 0.5, **trigger: Any) -> None:
        super().__init__(inner, **trigger)
        self.keep = keep

    def _change(self, data: bytes) -> bytes:
        n = self.keep if isinstance(self.keep, int) else int(len(data) * self.keep)
        return data[: max(0, min(n, len(data) - 1))] if data else data


class StaleListing(FaultyBackend):
    """``list`` misses fresh objects: those put through this wrapper and those named in ``fresh``.

    ``settle()`` makes everything visible (the listing caught up).
    """

    METHODS = ("list",)
    TIMES = None

    def __init__(self, inner: Backend, *, fresh: Iterable[str] = (), **trigger: Any) -> None:
        super().__init__(inner, **trigger)
        self.fresh: set[str] = set(fresh)

    def put(self, name: str, data: bytes) -> None:
        super().put(name, data)
        with self._lock:
            self.fresh.add(name)

    def settle(self) -> None:
        with self._lock:
            self.fresh.clear()

    def _fault(self, method: str, name: str, call: Callable[[], Any]) -> Any:
        listed: list[str] = call()
        with self._lock:
            return [n for n in listed if n not in self.fresh]


class RateLimited(FaultyBackend):
    """Matching calls are refused with ``QuotaError(retry_after=…)``, as a 429 with ``Retry-After`` would be."""

    METHODS = ("put", "publish")
    TIMES = None

    def __init__(self, inner: Backend, *, retry_after: float = 3600.0, **trigger: Any) -> None:
        super().__init__(inner, **trigger)
        self.retry_after = retry_after

    def _fault(self, method: str, name: str, call: Callable[[], Any]) -> Any:
        raise QuotaError(f"injected: 429 Too Many Requests on {method} {name}", retry_after=self.retry_after)


class Slow(FaultyBackend):
    """Matching calls sleep ``delay`` seconds first (a slow link)."""

    METHODS = ("get", "size", "list", "put", "read_head", "publish")
    TIMES = None

    def __init__(self, inner: Backend, *, delay: float = 0.005, **trigger: Any) -> None:
        super().__init__(inner, **trigger)
        self.delay = delay

    def _fault(self, method: str, name: str, call: Callable[[], Any]) -> Any:
        time.sleep(self.delay)
        return call()


class Interleave(FaultyBackend):
    """Runs ``action()`` just before the matching call: another process acting at that moment
    (e.g. a prune between a restore's reading of the index and of the packs)."""

    def __init__(self, inner: Backend, *, action: Callable[[], Any], **trigger: Any) -> None:
        super().__init__(inner, **trigger)
        self.action = action
        self.results: list[Any] = []

    def _fault(self, method: str, name: str, call: Callable[[], Any]) -> Any:
        self.results.append(self.action())
        return call()


# ---------------------------------------------------------------------------- verification


@dataclass
class StoreReport:
    """What :func:`verify_store` found; ``lost`` counts snapshots that did not come back intact."""

    snapshots: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    lost: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_store(
    backend: Backend,
    expected: Mapping[str, Fingerprint | str],
    *,
    password: str | None = PASSWORD,
    roots: Sequence[str] = ("home",),
    allow_unknown: bool = False,
    read_data: bool = True,
    workdir: Path | None = None,
) -> StoreReport:
    """Check the real store after a scenario.

    ``expected`` maps snapshot ids to the fingerprint (or :func:`digest`) of the tree each was
    taken from. Every snapshot in the head must be in ``expected`` (else it is a phantom, unless
    ``allow_unknown``), appear once, and restore byte-exact; ``check(read_data=True)`` must be ok.
    """
    rep = StoreReport()
    try:
        repo = Repository.open(backend, password=password, cache_dir=None)
    except BackupError as e:
        rep.problems.append(f"cannot open the repository: {type(e).__name__}: {e.message}")
        rep.lost = len(expected)
        return rep
    rep.snapshots = list(repo.state.snapshots)
    if len(set(rep.snapshots)) != len(rep.snapshots):
        rep.problems.append(f"the head names a snapshot twice: {rep.snapshots}")
    res = check(repo, read_data=read_data, reporter=Reporter())
    if not res.ok:
        rep.problems += [f"check: {p}" for p in res.problems]
    own = workdir is None
    work = Path(tempfile.mkdtemp(prefix="verify-")) if workdir is None else workdir
    try:
        for sid in rep.snapshots:
            want = expected.get(sid)
            if want is None and not allow_unknown:
                rep.problems.append(f"snapshot {sid[:12]} was never reported (phantom)")
                continue
            dest = work / sid[:16]
            try:
                snap = repo.load_snapshot(sid)
                names = list(snap.roots) or list(roots)
                restore(
                    repo,
                    snap,
                    RestoreOptions(destinations={r: dest / r for r in names}, workers=2),
                    reporter=Reporter(),
                )
            except BackupError as e:
                rep.problems.append(f"snapshot {sid[:12]} does not restore: {type(e).__name__}: {e.message}")
                rep.lost += 1
                continue
            if want is None:
                continue
            got = fingerprint(dest / names[0]) if len(names) == 1 else {r: fingerprint(dest / r) for r in names}
            same = (digest(got) == want) if isinstance(want, str) else (got == want)  # type: ignore[arg-type]
            if not same:
                rep.problems.append(f"snapshot {sid[:12]} restores to something else than was backed up")
                rep.lost += 1
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)
    return rep


# ---------------------------------------------------------------------------- the ledger (plugin)

_LEDGER_ATTR = "_openclaw_reliability_ledger"


@dataclass
class Ledger:
    """Counts of scenarios run and data lost in this process."""

    scenarios: int = 0
    lost: int = 0
    by_suite: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, suite: str, *, n: int = 1, lost: int = 0) -> None:
        with self._lock:
            self.scenarios += n
            self.lost += lost
            self.by_suite[suite] = self.by_suite.get(suite, 0) + n


def ledger_of(config: pytest.Config) -> Ledger:
    ledger = getattr(config, _LEDGER_ATTR, None)
    if ledger is None:
        ledger = Ledger()
        setattr(config, _LEDGER_ATTR, ledger)
    return ledger


@pytest.fixture(name="reliability")
def reliability_fixture(request: pytest.FixtureRequest) -> Ledger:
    """The session's ledger: ``reliability.record("faults", lost=report.lost)`` once per scenario."""
    return ledger_of(request.config)


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: hand the counts to the controller
        ledger = ledger_of(session.config)
        workeroutput["reliability"] = {"scenarios": ledger.scenarios, "lost": ledger.lost, "by_suite": ledger.by_suite}


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    doc = getattr(node, "workeroutput", {}).get("reliability")
    if doc:
        ledger = ledger_of(node.config)
        ledger.scenarios += doc["scenarios"]
        ledger.lost += doc["lost"]
        for k, v in doc["by_suite"].items():
            ledger.by_suite[k] = ledger.by_suite.get(k, 0) + v


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    ledger = ledger_of(config)
    if ledger.scenarios:
        terminalreporter.write_line(f"reliability: {ledger.scenarios} scenarios run, {ledger.lost} data lost")
