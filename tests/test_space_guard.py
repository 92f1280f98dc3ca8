"""``run`` is loud when it cannot protect the agent: in a Space (``SPACE_ID``) with a repository that
does not outlive the container, or anywhere without a password for the repository — an error naming
the variable to set at start and at every backup, ``status`` unhealthy, a non-zero exit; the agent
itself still runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from openclaw_backup.settings import Settings
from tests.support.cli import clean_env, cli_command, cli_ok, json_out, run_cli, wait_for
from tests.support.repos import PASSWORD
from tests.support.trees import write

AGENT = r"""
import os, pathlib, signal, sys, time
side = pathlib.Path(sys.argv[1])
signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
(side / "ready").write_text(str(os.getpid()))
while True:
    time.sleep(0.05)
"""


class Supervised:
    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp, self.side = tmp, tmp / "side"
        self.side.mkdir(exist_ok=True)
        (tmp / "agent.py").write_text(AGENT)
        self.status_file = tmp / "status.json"
        self.err = tmp / "run.err"
        command = [*cli_command(), "run", "--interval", "1", "--settle", "600", "--grace", "8"]
        command += ["--status-file", str(self.status_file), "--", sys.executable, str(tmp / "agent.py"), str(self.side)]
        with open(self.err, "wb") as f:
            self.proc = subprocess.Popen(
                command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=f
            )

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def status(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.status_file.read_text()))
        except (OSError, ValueError):
            return {}

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"run did not exit:\n{self.stderr()}") from None


@pytest.fixture
def supervised() -> Iterator[list[Supervised]]:
    started: list[Supervised] = []
    yield started
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait(10)
        pid = (s.side / "ready").read_text() if (s.side / "ready").exists() else ""
        if pid:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


def _loud(tmp: Path, env: dict[str, str], started: list[Supervised], variable: str) -> str:
    """Run the supervisor; check the error names ``variable`` at start and at each backup, the status
    is unhealthy, the agent runs, and the exit is non-zero. Returns its stderr."""
    run = Supervised(tmp, env)
    started.append(run)
    wait_for(lambda: (run.side / "ready").exists(), 20, f"the agent to start:\n{run.stderr()}")
    first = run.stderr().splitlines()
    assert any(line.startswith("openclaw-backup: ERROR:") and variable in line for line in first), first
    wait_for(lambda: run.status().get("backups_failed", 0) >= 2, 15, f"failed backups:\n{run.stderr()}")
    assert run.proc.poll() is None, "the agent's supervisor stopped"
    status = run_cli(["status", "--json", "--status-file", str(run.status_file)], env)
    assert status.returncode == 1 and json_out(status)["healthy"] is False
    assert variable in json_out(status)["last_error"] or variable in run.stderr()
    code = run.stop()
    assert code != 0, run.stderr()
    text = run.stderr()
    assert sum(variable in line for line in text.splitlines() if "backup failed" in line) >= 2, text
    return text


@pytest.mark.parametrize("where", ["default", "path"])
def test_space_without_a_durable_repository_fails_loudly(
    where: str, tmp_path: Path, supervised: list[Supervised]
) -> None:
    state = tmp_path / "home" / ".openclaw"
    write(state / "openclaw.json", "{}")
    env = clean_env(
        tmp_path, SPACE_ID="someone/agent", OPENCLAW_BACKUP_PASSWORD=PASSWORD, OPENCLAW_BACKUP_NPM_ENABLED="0"
    )
    if where == "path":
        env["OPENCLAW_BACKUP_REPOSITORY"] = str(tmp_path / "repo")
    text = _loud(tmp_path, env, supervised, "OPENCLAW_BACKUP_REPOSITORY")
    assert "lost when the Space restarts" in text
    assert not (tmp_path / "repo").exists() and not (tmp_path / "xdg-data" / "openclaw-backup").exists()


def test_missing_password_fails_loudly(tmp_path: Path, supervised: list[Supervised]) -> None:
    repo = tmp_path / "repo"
    write(tmp_path / "home" / ".openclaw" / "openclaw.json", "{}")
    base = clean_env(tmp_path, OPENCLAW_BACKUP_REPOSITORY=str(repo), OPENCLAW_BACKUP_NPM_ENABLED="0")
    cli_ok(["init"], {**base, "OPENCLAW_BACKUP_PASSWORD": PASSWORD})
    _loud(tmp_path, base, supervised, "OPENCLAW_BACKUP_PASSWORD")


def test_missing_password_and_no_repository_yet_fails_loudly(tmp_path: Path, supervised: list[Supervised]) -> None:
    write(tmp_path / "home" / ".openclaw" / "openclaw.json", "{}")
    env = clean_env(tmp_path, OPENCLAW_BACKUP_REPOSITORY=str(tmp_path / "repo"), OPENCLAW_BACKUP_NPM_ENABLED="0")
    _loud(tmp_path, env, supervised, "OPENCLAW_BACKUP_PASSWORD")


def test_durability_is_judged_only_in_a_space() -> None:
    assert Settings({"HOME": "/home/user"}).durability_problem() is None
    assert Settings({"HOME": "/home/user", "SPACE_ID": "a/b"}).durability_problem() is not None
    remote = {"HOME": "/home/user", "SPACE_ID": "a/b", "OPENCLAW_BACKUP_REPOSITORY": "hf://datasets/a/b"}
    assert Settings(remote).durability_problem() is None
    legacy = {"HOME": "/home/user", "SPACE_ID": "a/b", "OPENCLAW_BACKUP_DATASET_REPO": "a/b"}
    assert Settings(legacy).durability_problem() is None
