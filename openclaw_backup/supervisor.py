"""The container lifecycle: restore if needed → run the agent → back up periodically → final backup.

``openclaw-backup run -- <command…>`` is a Space's entrypoint. The supervisor:

1. restores the agent's state when it is missing (never over existing state unless forced);
2. starts the command as a child process;
3. backs up every ``interval`` seconds, sooner when a burst of changes has settled (polled every
   ``poll`` seconds, ``settle`` seconds without change, at least ``min_gap`` after the last
   backup), and — while the state keeps changing — at the latest ``max_age`` seconds after the
   last backup started (less the last backup's duration), so a kill without warning (SIGKILL, an
   out-of-memory kill, a host failure) loses at most about ``max_age`` seconds of work. A store
   with a commit budget (``commits_per_hour``, a Hub repo's 128) is kept to
   :data:`BUDGET_SHARE` of it: backups are spaced at least ``3600 / (share × budget)`` seconds
   apart, and the start line says so when that stretches ``max_age``. A failed backup is logged
   with its next attempt and retried later (backing off), never fatal to the agent; a quota's
   Retry-After is honoured by every path (interval, settled changes, ``max_age``, the final
   backup). Forget + prune run every ``prune_interval`` seconds, never during the final backup;
4. on SIGTERM/SIGINT forwards the signal to the child, waits for it, then takes one final backup
   bounded by what is left of the ``grace`` period; a second signal aborts at once;
5. exits with the child's status (128+N when it died of signal N) — unless the child exited 0 and
   the final backup failed: then with that failure's exit code (never a silent success).

Before anything, the jobs' ``preflight`` names what would make every backup useless or impossible
(in a Space, a repository that does not outlive the container; no password): it is logged as an
error, the status is unhealthy, the agent still runs, and each backup then fails with it.

It knows nothing of repositories: the work is done by a :class:`Jobs` object built by the CLI.
A JSON **status file** (last success, last error, next run) is rewritten after every event. The
log says what happens: a line at start (repository, roots, schedule), one per backup (its account
and duration, or the error and when the next attempt is), one per retention run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from . import memtune
from .errors import BackupError, QuotaError


@dataclass(frozen=True)
class Account:
    """What one backup did: a line for the log, and the warnings that make the snapshot incomplete
    (it holds less than, or other than, what the sources had). Any problem makes the status unhealthy."""

    text: str
    problems: tuple[str, ...] = ()
    changed: bool = True  # made a snapshot (a commit, on a store with a commit budget)


class Jobs(Protocol):
    def preflight(self) -> BackupError | None:
        """What makes every backup useless or impossible (no durable repository, no password), or None."""

    def restore_if_needed(self, *, force: bool) -> str:
        """Restore when the state is missing (or ``force``); return a one-line account."""

    def backup(self) -> Account:
        """Take a backup; return its account. Raises BackupError."""

    def maintain(self) -> str:
        """Forget + prune by the configured policy; return a one-line account."""

    def change_token(self) -> str:
        """A cheap fingerprint of the sources (stat only) to notice bursts of change."""

    def describe(self) -> Description:
        """What is backed up where, for the start line (never fails, never a secret)."""


@dataclass(frozen=True)
class Description:
    repository: str
    roots: list[str]
    commits_per_hour: int | None = None  # the store's commit budget, None when it has none


@dataclass(frozen=True)
class RunOptions:
    command: list[str]
    interval: float = 300.0
    max_age: float = 60.0
    poll: float = 15.0
    settle: float = 20.0
    min_gap: float = 60.0
    grace: float = 10.0
    restore: str = "if-missing"  # if-missing | force | never
    prune_interval: float = 86400.0
    status_file: Path | None = None
    env: dict[str, str] | None = None


BUDGET_SHARE = 0.75  # of a store's commit budget the supervisor allows itself (others may commit too)
FAILURE_BACKOFF = 10.0  # seconds before retrying a failed backup, doubling per failure (capped by interval)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _at(delay: float) -> str:
    """The wall-clock time ``delay`` seconds from now, for log lines."""
    return datetime.fromtimestamp(time.time() + delay, UTC).strftime("%H:%M:%S UTC")


@dataclass
class Status:
    path: Path | None
    doc: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def update(self, **kw: Any) -> None:
        with self.lock:
            self.doc.update(kw)
            if self.path is None:
                return
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.path.with_name(f".{self.path.name}.tmp")
                tmp.write_text(json.dumps(self.doc, indent=1, sort_keys=True))
                os.replace(tmp, self.path)
            except OSError:
                pass


class Supervisor:
    def __init__(self, options: RunOptions, jobs: Jobs, *, log: Callable[[str], None]) -> None:
        self.opts = options
        self.jobs = jobs
        self.log = log
        self.status = Status(options.status_file, {"pid": os.getpid(), "started": _now(), "state": "starting"})
        self.child: subprocess.Popen[bytes] | None = None
        self.wake = threading.Event()
        self.signals: list[int] = []
        self._backup_thread: threading.Thread | None = None
        self._last_backup = time.monotonic()  # when the last backup ended
        self._last_start = time.monotonic()  # when the last backup started
        self._last_took = 0.0
        self._next_backup = time.monotonic() + options.interval
        self._next_prune = time.monotonic() + options.prune_interval
        self._not_before = 0.0  # no backup before this (a quota's Retry-After, a failure's backoff)
        self._quota_until = 0.0  # a quota's Retry-After alone (the final backup honours it, not a backoff)
        self._backed_token: str | None = None  # the change token the last good backup started from
        self._pending_token: str | None = None
        self._streak = 0  # failures in a row
        self._spacing = options.max_age  # at least this between backup starts while changing
        self._budget_gap = 0.0  # at least this between any two backup starts (a commit budget)
        self._ok = 0
        self._failed = 0
        self._final_failure: int | None = None  # the exit code of a failed final backup
        self.status.update(healthy=True)

    # ------------------------------------------------------------------ signals

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signals.append(signum)
        if len(self.signals) >= 2:
            self.log("second signal: aborting now")
            os._exit(self._exit_status() if self.child and self.child.poll() is not None else 128 + signum)
        if self.child is not None and self.child.poll() is None:
            try:
                self.child.send_signal(signum)
            except ProcessLookupError:
                pass
        self.wake.set()

    def _exit_status(self) -> int:
        if self.child is None or self.child.returncode is None:
            return 0
        rc = self.child.returncode
        return 128 - rc if rc < 0 else rc

    # ------------------------------------------------------------------ jobs

    def _failed_until(self, delay: float) -> str:
        self._not_before = max(self._not_before, time.monotonic() + delay)
        self._next_backup = max(self._next_backup, self._not_before)
        self.status.update(next_run=datetime.fromtimestamp(time.time() + delay, UTC).isoformat(timespec="seconds"))
        return f"next attempt in {delay:.0f}s (at {_at(delay)})"

    def _run_backup(self, *, final: bool = False) -> None:
        started = time.monotonic()
        try:
            account = self.jobs.backup()
            self._ok += 1
            self._streak = 0
            self._backed_token = self._pending_token
            took = f"({time.monotonic() - started:.1f}s)"
            if account.problems:
                self.status.update(last_success=_now(), last_result=account.text, backups_ok=self._ok, healthy=False,
                                   degraded=list(account.problems[:20]))  # fmt: skip
                self.log(f"{'final ' if final else ''}backup INCOMPLETE: {account.text} {took}; "
                         f"{len(account.problems)} files not stored as they are:")  # fmt: skip
                for problem in account.problems[:20]:
                    self.log(f"  {problem}")
            else:
                self.status.update(last_success=_now(), last_result=account.text, backups_ok=self._ok, healthy=True,
                                   degraded=[])  # fmt: skip
                self.log(f"{'final ' if final else ''}backup: {account.text} {took}")
        except QuotaError as e:
            self._final_failure = e.exit_code if final else None
            self._failed += 1
            # The store said when: no path (interval, settled changes, max_age, final) tries before.
            delay = e.retry_after if e.retry_after is not None else max(self.opts.max_age, self.opts.interval)
            self._quota_until = time.monotonic() + delay
            self.status.update(last_error=f"{_now()} {e.message}", backups_failed=self._failed, healthy=False)
            self.log(f"backup postponed: {e.message}; {self._failed_until(delay)}")
        except BackupError as e:
            self._failed += 1
            self._streak += 1
            self._final_failure = e.exit_code if final else None
            self.status.update(last_error=f"{_now()} {e.message}", backups_failed=self._failed, healthy=False)
            self.log(f"{'final ' if final else ''}backup failed{'' if final else ' (will retry)'}: {e.message}"
                     + (f" — {e.hint}" if e.hint else "") + ("" if final else f"; {self._retry_later()}"))  # fmt: skip
        except Exception as e:  # a bug must not take the agent down with it
            self._final_failure = 1 if final else None
            self._failed += 1
            self._streak += 1
            self.status.update(last_error=f"{_now()} internal error: {e!r}", backups_failed=self._failed, healthy=False)
            self.log(f"backup failed with an internal error: {e!r}; {self._retry_later()}")
        finally:
            self._last_backup = time.monotonic()
            self._last_took = self._last_backup - started
            memtune.give_back()

    def _retry_later(self) -> str:
        delay = min(FAILURE_BACKOFF * 2 ** (self._streak - 1), max(self.opts.interval, 1.0), 300.0)
        return self._failed_until(delay)

    def _start_backup(self, token: str) -> None:
        self._pending_token = token
        self._last_start = time.monotonic()
        self._next_backup = time.monotonic() + self.opts.interval
        self.status.update(next_run=datetime.fromtimestamp(time.time() + self.opts.interval, UTC).isoformat(
            timespec="seconds"))  # fmt: skip
        self._backup_thread = threading.Thread(target=self._run_backup, name="backup", daemon=True)
        self._backup_thread.start()

    def _maintain(self) -> None:
        started = time.monotonic()
        try:
            text = self.jobs.maintain()
            self.log(f"maintenance: {text} ({time.monotonic() - started:.1f}s)")
        except BackupError as e:
            self.log(f"maintenance failed (will retry tomorrow): {e.message}")
        except Exception as e:
            self.log(f"maintenance failed with an internal error: {e!r}")
        finally:
            memtune.give_back()

    # ------------------------------------------------------------------ main

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        self._preflight()
        if self.opts.restore != "never":
            try:
                self.log(f"restore: {self.jobs.restore_if_needed(force=self.opts.restore == 'force')}")
            except BackupError as e:
                self.status.update(state="restore-failed", last_error=f"{_now()} {e.message}")
                self.log(f"restore failed: {e.message}" + (f" — {e.hint}" if e.hint else ""))
                self.log("not starting the agent over missing or unverified state")
                return e.exit_code
        if self.signals:
            return 128 + self.signals[0]
        self._plan_schedule()
        self.child = subprocess.Popen(self.opts.command, env=self.opts.env)
        self.status.update(state="running", child_pid=self.child.pid)
        threading.Thread(target=self._watch_child, name="child", daemon=True).start()
        token, token_since = self._token(), self._last_backup
        self._last_start = self._last_backup = time.monotonic()
        while not self.signals and self.child.poll() is None:
            due = min(self._next_backup, self._last_start + self._spacing)
            self.wake.wait(timeout=min(self.opts.poll, max(0.05, due - time.monotonic())))
            self.wake.clear()
            if self.signals or self.child.poll() is not None:
                break
            now = time.monotonic()
            busy = self._backup_thread is not None and self._backup_thread.is_alive()
            if busy:
                continue
            new = self._token()
            if new != token:
                token, token_since = new, now
            if now < self._not_before or now < self._last_start + self._budget_gap:
                continue  # the store asked us to wait, a failure backs off, or the commit budget
            dirty = token != self._backed_token
            settled = dirty and now - token_since >= self.opts.settle and token_since > self._last_backup
            # while changing: the next backup starts max_age after the last one started, less what
            # a backup takes, so its snapshot holds what was there max_age ago at the latest
            overdue = dirty and now >= self._last_start + max(self._budget_gap, self._spacing - self._last_took)
            if now >= self._next_backup or overdue or (settled and now - self._last_backup >= self.opts.min_gap):
                self._start_backup(token)
            elif now >= self._next_prune:
                # In the backup slot, so the two never overlap; off the main thread, so signals are
                # handled at once. A prune cut short at shutdown is harmless (one atomic publication).
                self._next_prune = now + self.opts.prune_interval
                self._backup_thread = threading.Thread(target=self._maintain, name="maintenance", daemon=True)
                self._backup_thread.start()
        return self._shutdown()

    def _plan_schedule(self) -> None:
        """Work out the spacing (max_age, stretched by a commit budget) and say it all in one line."""
        describe = getattr(self.jobs, "describe", None)
        try:
            d: Description | None = describe() if describe is not None else None
        except Exception:  # the start line must never stop the agent
            d = None
        budget = d.commits_per_hour if d is not None else None
        stretch = ""
        if budget:
            allowed = max(1, int(budget * BUDGET_SHARE))
            self._budget_gap = 3600.0 / allowed
            if self._budget_gap > self.opts.max_age:
                stretch = (
                    f"; stretched from {self.opts.max_age:.0f}s to {self._budget_gap:.0f}s to stay under {allowed} "
                    f"commits an hour (the store allows {budget})"
                )
        self._spacing = max(self.opts.max_age, self._budget_gap)
        where = f"{d.repository}, roots {', '.join(d.roots) or '(none)'}" if d is not None else "(unknown repository)"
        self.log(
            f"backing up {where}: while the state changes at least every {self._spacing:.0f}s{stretch}; "
            f"{self.opts.settle:.0f}s after a burst of changes settles; every {self.opts.interval:.0f}s in any case; "
            f"retention every {self.opts.prune_interval / 3600:.3g}h; a final backup on SIGTERM "
            f"(within {self.opts.grace:.0f}s)"
        )

    def _preflight(self) -> None:
        """Say at once, and in the status, when the backups cannot protect the agent's state; the
        agent still runs (each backup then fails with the same error, and so does the exit status)."""
        try:
            problem = self.jobs.preflight()
        except Exception as e:
            self.log(f"could not check the configuration: {e!r}")
            return
        if problem is not None:
            self.status.update(healthy=False, last_error=f"{_now()} {problem.message}", problem=problem.message)
            self.log(f"ERROR: {problem.message}" + (f" — {problem.hint}" if problem.hint else ""))
            self.log("ERROR: the agent runs, but its state is NOT protected until this is fixed")

    def _token(self) -> str:
        try:
            return self.jobs.change_token()
        except Exception:
            return ""

    def _watch_child(self) -> None:
        assert self.child is not None
        self.child.wait()
        self.wake.set()

    def _shutdown(self) -> int:
        deadline = time.monotonic() + self.opts.grace - 0.5
        assert self.child is not None
        if self.signals:
            self.log(f"signal {self.signals[0]}: stopping the agent, then a final backup")
        try:
            self.child.wait(timeout=max(0.1, deadline - time.monotonic() - 1.0))
        except subprocess.TimeoutExpired:
            self.log("the agent did not stop in time; final backup while it runs")
        if self._backup_thread is not None and self._backup_thread.is_alive():
            self._backup_thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self.status.update(state="final-backup")
        wait = self._quota_until - time.monotonic()
        abandoned = False
        if wait > 0 and time.monotonic() + wait >= deadline:
            # A quota's Retry-After outlasts the grace period: trying
            # anyway would upload for nothing and be refused. Loud: changes since the last snapshot are lost.
            self.log(
                f"final backup NOT taken: the store asked us to wait until {_at(wait)}, beyond the grace period; "
                "changes since the last snapshot are not in a backup"
            )
            self.status.update(last_error=f"{_now()} final backup not taken (the store asked to wait)", healthy=False)
        else:
            if wait > 0:
                self.log(f"final backup waits {wait:.0f}s, as the store asked")
                time.sleep(wait)
            final = threading.Thread(target=self._run_backup, kwargs={"final": True}, name="final", daemon=True)
            final.start()
            final.join(timeout=max(0.0, deadline - time.monotonic()))
            abandoned = final.is_alive()
        if abandoned:
            self.log("final backup did not finish within the grace period; the previous snapshot stands")
        if self.child.poll() is None:
            self.child.kill()
            self.child.wait()
        code = self._exit_status()
        if code == 0 and self._final_failure is not None and not abandoned:
            code = self._final_failure  # never a silent success when the last state was not saved
            self.log(f"exiting with status {code}: the final backup failed")
        self.status.update(state="stopped", exit_code=code, stopped=_now(), next_run=None, child_pid=None)
        if abandoned:
            # Its worker threads would keep the interpreter alive (and might still publish): stop now.
            # A publication is atomic, so cutting it off leaves the previous snapshot intact.
            os._exit(code)
        return code
