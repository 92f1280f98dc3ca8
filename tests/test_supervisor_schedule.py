"""The supervisor's schedule (issue 14): at most ``max_age`` of work at risk while the state keeps
changing, a store's commit budget kept, a quota's Retry-After honoured on every path, a log that says
what happens. Targets are asserted on counts (lines lost, backups attempted), not on wall time.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from openclaw_backup.backends import commit_budget
from openclaw_backup.backends.local import LocalBackend
from openclaw_backup.errors import QuotaError, StoreError
from openclaw_backup.repository import Repository
from openclaw_backup.settings import Settings
from openclaw_backup.sources import STATE_ROOT
from openclaw_backup.supervisor import Account, Description, RunOptions, Supervisor
from tests.support.cli import clean_env, cli_command, cli_ok, wait_for
from tests.support.repos import PASSWORD, restore_all

pytestmark = pytest.mark.timeout(120)

APPENDER = r"""
import os, pathlib, sys, time
log = pathlib.Path(os.environ["OPENCLAW_STATE_DIR"]) / "session.jsonl"
period = float(sys.argv[1])
(pathlib.Path(sys.argv[2])).write_text(str(os.getpid()))
n = 0
while True:
    n += 1
    with open(log, "a") as f:
        f.write(f'{{"line": {n}}}\n')
    time.sleep(period)
"""


def _lines(path: Path) -> int:
    try:
        return len(path.read_text().splitlines())
    except FileNotFoundError:
        return 0


@pytest.mark.parametrize("seed", [1, 2])
def test_sigkill_while_the_agent_keeps_writing_loses_at_most_max_age(tmp_path: Path, seed: int) -> None:
    """An agent appends a line every PERIOD s and never stops (the state never settles); the
    supervisor and the agent are SIGKILLed at a random moment: the last snapshot lacks at most about
    MAX_AGE s of lines. (With the old schedule — interval and settle only — nothing was backed up.)"""
    period, max_age = 0.1, 2.0
    state, repo = tmp_path / "state", tmp_path / "repo"
    state.mkdir()
    (state / "config.json").write_text("{}\n")
    env = clean_env(tmp_path, OPENCLAW_BACKUP_REPOSITORY=str(repo), OPENCLAW_BACKUP_PASSWORD=PASSWORD,
                    OPENCLAW_STATE_DIR=str(state), OPENCLAW_BACKUP_MAX_AGE=str(max_age))  # fmt: skip
    cli_ok(["init"], env)
    agent, pidfile, err = tmp_path / "agent.py", tmp_path / "agent.pid", tmp_path / "run.err"
    agent.write_text(APPENDER)
    command = [*cli_command(), "run", "--interval", "600", "--settle", "600", "--grace", "5", "--"]
    command += [sys.executable, str(agent), str(period), str(pidfile)]
    with open(err, "wb") as f:
        proc = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=f)
    child = 0
    try:
        child = int(wait_for(lambda: pidfile.exists() and pidfile.read_text(), 20, "the agent to start"))
        time.sleep(random.Random(seed).uniform(3 * max_age, 5 * max_age))
        os.kill(proc.pid, signal.SIGKILL)  # no SIGTERM, no final backup: an OOM kill, a host failure
        os.kill(child, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if child:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
    written = _lines(state / "session.jsonl")
    log = err.read_text(errors="replace")
    r = Repository.open(LocalBackend(repo), password=PASSWORD)
    backups = len(r.snapshots())
    assert backups >= 2, f"only {backups} snapshots while the agent kept writing:\n{log}"
    dests = restore_all(r, "latest", tmp_path / "restored")
    kept = _lines(dests[STATE_ROOT] / "session.jsonl")
    lost = written - kept
    # max_age of lines, plus the backup in flight and the polling, on a loaded test machine
    assert 0 <= lost <= (max_age + 2.0) / period, f"{lost} of {written} lines lost:\n{log}"
    assert "backing up" in log and "at least every 2s" in log, log  # the start line with the schedule
    assert log.count("backup: snapshot") >= backups - 1, log  # one line per backup


def test_max_age_defaults_to_a_minute_and_is_settable() -> None:
    assert Settings({}).max_age() == 60.0
    assert Settings({"OPENCLAW_BACKUP_MAX_AGE": "10"}).max_age() == 10.0
    assert RunOptions(command=["x"]).max_age == 60.0
    assert commit_budget("hf://datasets/a/b") == 128 and commit_budget("hf://models/a/b/p") == 128
    assert commit_budget("hf://buckets/a/b") is None and commit_budget("s3://b/p") is None
    assert commit_budget("/some/dir") is None


# ---------------------------------------------------------------------------- in-process: fake jobs


class FakeJobs:
    """Jobs whose state changes all the time; ``errors`` are raised by the first backups."""

    def __init__(self, *, errors: list[Exception] | None = None, budget: int | None = None) -> None:
        self.errors = list(errors or [])
        self.budget = budget
        self.calls: list[float] = []
        self.n = 0

    def restore_if_needed(self, *, force: bool) -> str:
        return "nothing to do"

    def backup(self) -> Account:
        self.calls.append(time.monotonic())
        if self.errors:
            raise self.errors.pop(0)
        return Account(f"snapshot {len(self.calls):08d}: 1 of 1 files changed")

    def maintain(self) -> str:
        return "forgot 0 snapshots"

    def change_token(self) -> str:
        self.n += 1
        return str(self.n)  # never settles

    def describe(self) -> Description:
        return Description("memory:", ["openclaw-state=/x"], commits_per_hour=self.budget)


@pytest.fixture
def own_signals() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


def _supervise(jobs: FakeJobs, *, life: float, **options: float) -> list[str]:
    lines: list[str] = []
    opts = RunOptions(command=["sleep", str(life)], poll=0.05, grace=2.0, restore="never", **options)  # type: ignore[arg-type]
    assert Supervisor(opts, jobs, log=lines.append).run() == 0
    return lines


def test_retry_after_is_honoured_by_every_path(own_signals: None) -> None:
    """A quota refusal with Retry-After 30 s: no path tries again within the agent's 2 s of life —
    not max_age (0.2 s), not settled changes, not the interval (0.5 s), not the final backup."""
    jobs = FakeJobs(errors=[QuotaError("commit quota exhausted (HTTP 429), retry after 30 s", retry_after=30)])
    lines = _supervise(jobs, life=2.0, max_age=0.2, interval=0.5, settle=0.05, min_gap=0.05)
    assert len(jobs.calls) == 1, lines
    text = "\n".join(lines)
    assert "next attempt in 30s" in text, text
    assert "final backup NOT taken" in text, text


def test_a_short_retry_after_is_waited_for_then_backups_resume(own_signals: None) -> None:
    jobs = FakeJobs(errors=[QuotaError("rate limited (HTTP 429)", retry_after=1)])
    lines = _supervise(jobs, life=2.5, max_age=0.2, interval=600)
    assert len(jobs.calls) >= 3, lines  # refused, then resumed (and the final backup)
    assert jobs.calls[1] - jobs.calls[0] >= 1.0, lines


def test_a_failed_backup_says_when_it_tries_again_and_backs_off(own_signals: None) -> None:
    jobs = FakeJobs(errors=[StoreError("network down", transient=True)] * 50)
    lines = _supervise(jobs, life=2.0, max_age=0.1, interval=600)
    # backing off from 10 s: one attempt, not one every 0.1 s (the final backup is the second)
    assert len(jobs.calls) <= 2, lines
    assert any("backup failed: network down" in ln and "next attempt in 10s" in ln for ln in lines), lines


def test_a_commit_budget_stretches_the_schedule_and_says_so(own_signals: None) -> None:
    free = FakeJobs()
    _supervise(free, life=2.0, max_age=0.2, interval=600)
    assert len(free.calls) >= 4  # no budget: every ~0.2 s
    budgeted = FakeJobs(budget=4)  # 3 an hour for us: 20 minutes apart
    lines = _supervise(budgeted, life=2.0, max_age=0.2, interval=600)
    assert len(budgeted.calls) == 1, lines  # the final backup only
    assert any("stretched from 0s to 1200s to stay under 3 commits an hour" in ln for ln in lines), lines
