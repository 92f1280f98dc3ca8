"""The container lifecycle (``openclaw-backup run -- <agent>``) with real processes and real signals.

Each test runs the real CLI in a subprocess on a local repository (``OPENCLAW_BACKUP_REPOSITORY``)
with ``OPENCLAW_STATE_DIR`` in a private folder; the agent is a small Python child whose behaviour is
picked by its first argument (see ``CHILD``). It reports readiness (its handlers are installed) by
writing its PID to ``side/ready``, so no signal is sent before it can be handled.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from openclaw_backup import supervisor
from openclaw_backup.backends.local import LocalBackend
from openclaw_backup.commands import run as commands_run
from openclaw_backup.errors import BackupError
from openclaw_backup.reporter import Reporter
from openclaw_backup.repository import Repository
from openclaw_backup.settings import Settings
from tests.support.cli import clean_env, cli_command, cli_ok, json_out, read_status, run_cli, wait_for
from tests.support.dropin import FLAG_DONE, restore_flags_locked
from tests.support.repos import PASSWORD
from tests.support.trees import tar_fingerprint, write

CHILD = r"""
import os, pathlib, signal, sys, time
mode, side = sys.argv[1], pathlib.Path(sys.argv[2])
state = pathlib.Path(os.environ["OPENCLAW_STATE_DIR"])

def ready():
    (side / "ready.tmp").write_text(str(os.getpid()))
    os.replace(side / "ready.tmp", side / "ready")

if mode.startswith("trap:"):              # on TERM: write a file into the state, exit with the code
    def bye(signum, frame):
        time.sleep(0.3)
        (state / "goodbye.txt").write_text("written after SIGTERM")
        os._exit(int(mode[5:]))
    signal.signal(signal.SIGTERM, bye)
elif mode == "ignore":                    # an agent that does not stop on TERM
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
elif mode == "default":                   # dies of TERM
    pass
elif mode == "env":                       # records the environment it was given
    import json
    (side / "env.json").write_text(json.dumps(dict(os.environ)))
elif mode == "selfkill":                  # dies of SIGKILL on its own, nobody signalled it
    ready()
    time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGKILL)
elif mode.startswith("check:"):           # is the state there at start-up? 0 yes, 3 missing, 4 different
    rel, want = mode[6:].split("=", 1)
    try:
        got = (state / rel).read_text()
    except FileNotFoundError:
        got = None
    (side / "seen").write_text(repr(got))
    sys.exit(3 if got is None else 0 if got == want else 4)
ready()
while True:
    time.sleep(0.05)
"""


@dataclass
class Env:
    tmp: Path
    env: dict[str, str]
    state: Path
    repo: Path
    side: Path
    child: Path

    def snapshots(self) -> list[dict[str, Any]]:
        return Repository.open(LocalBackend(self.repo), password=PASSWORD).snapshots()


@dataclass
class Run:
    proc: subprocess.Popen[bytes]
    err: Path
    status_file: Path
    side: Path

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def status(self) -> dict[str, Any]:
        return read_status(self.status_file)

    def child_pid(self) -> int:
        return int(wait_for(lambda: _read(self.side / "ready"), 15, "the child to be ready"))

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the supervisor did not exit within {timeout}s:\n{self.stderr()}") from None


def _read(path: Path) -> str | None:
    try:
        return path.read_text() or None
    except OSError:
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its dead parent) counts as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def senv(tmp_path: Path) -> Env:
    state, repo, side = tmp_path / "state", tmp_path / "repo", tmp_path / "side"
    side.mkdir()
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    env = clean_env(
        tmp_path,
        OPENCLAW_BACKUP_REPOSITORY=str(repo),
        OPENCLAW_BACKUP_PASSWORD=PASSWORD,
        OPENCLAW_STATE_DIR=str(state),
        OPENCLAW_BACKUP_HOST="supervisor-test",
    )
    write(state / "a.txt", "version 1\n")
    write(state / "sub/b.bin", os.urandom(5000))
    cli_ok(["init"], env)
    return Env(tmp_path, env, state, repo, side, child)


@pytest.fixture
def runs() -> Iterator[list[Run]]:
    """Every supervisor started by a test; any still running at the end is killed (with its child)."""
    started: list[Run] = []
    yield started
    for r in started:
        pid = _read(r.side / "ready")
        if r.proc.poll() is None:
            r.proc.kill()
            r.proc.wait(10)
        if pid and _alive(int(pid)):
            os.kill(int(pid), signal.SIGKILL)


def start(e: Env, runs: list[Run], child_mode: str, *args: str, env: dict[str, str] | None = None) -> Run:
    (e.side / "ready").unlink(missing_ok=True)
    status = e.tmp / "status.json"
    status.unlink(missing_ok=True)
    err = e.tmp / f"run-{len(runs)}.err"
    command = [*cli_command(), "run", *args, "--status-file", str(status), "--"]
    command += [sys.executable, str(e.child), child_mode, str(e.side)]
    with open(err, "wb") as f:
        proc = subprocess.Popen(
            command,
            env=env or e.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=f,
        )
    r = Run(proc, err, status, e.side)
    runs.append(r)
    return r


# ---------------------------------------------------------------------------- final backup, exit status


@pytest.mark.parametrize("code", [0, 7])
def test_file_written_on_sigterm_is_in_final_snapshot(senv: Env, runs: list[Run], code: int) -> None:
    r = start(senv, runs, f"trap:{code}", "--interval", "600", "--settle", "600", "--grace", "8")
    r.child_pid()
    r.proc.send_signal(signal.SIGTERM)
    assert r.wait(12) == code, r.stderr()
    snaps = senv.snapshots()
    assert len(snaps) == 1, r.stderr()
    target = senv.tmp / "restored"
    cli_ok(["restore", snaps[0].id, "--target", str(target)], senv.env)
    assert (target / "openclaw-state/goodbye.txt").read_text() == "written after SIGTERM"
    assert tar_fingerprint(target / "openclaw-state") == tar_fingerprint(senv.state)
    assert "final backup: snapshot" in r.stderr()
    st = r.status()
    assert st["state"] == "stopped" and st["exit_code"] == code and st["backups_ok"] == 1


@pytest.mark.parametrize(("mode", "signalled", "expected"), [("default", True, 128 + 15), ("selfkill", False, 128 + 9)])
def test_child_killed_by_signal_gives_128_plus_n(
    senv: Env, runs: list[Run], mode: str, signalled: bool, expected: int
) -> None:
    r = start(senv, runs, mode, "--interval", "600", "--settle", "600", "--grace", "8")
    r.child_pid()
    if signalled:
        r.proc.send_signal(signal.SIGTERM)
    assert r.wait(12) == expected, r.stderr()
    assert r.status()["exit_code"] == expected
    assert len(senv.snapshots()) == 1  # the final backup still ran


# ---------------------------------------------------------------------------- restore at start-up


def test_restart_with_state_does_not_restore_unless_forced(senv: Env, runs: list[Run]) -> None:
    cli_ok(["backup"], senv.env)
    write(senv.state / "a.txt", "changed locally\n")
    with restore_flags_locked():
        r = start(senv, runs, "check:a.txt=changed locally\n", "--interval", "600", "--settle", "600")
        assert r.wait(15) == 0, r.stderr()
        assert "not restoring over it" in r.stderr()
        assert (senv.state / "a.txt").read_text() == "changed locally\n"
        assert not FLAG_DONE.exists(), "a restore happened"
    # the final backup of that run stored "changed locally"; change the state once more
    write(senv.state / "a.txt", "changed again\n")
    write(senv.state / "extra.txt", "not in any snapshot\n")
    with restore_flags_locked():
        r = start(senv, runs, "check:a.txt=changed locally\n", "--restore", "force", "--interval", "600")
        assert r.wait(15) == 0, f"the child did not see the restored state: {(senv.side / 'seen').read_text()}"
        assert "restore: restored snapshot" in r.stderr()
        assert FLAG_DONE.exists()
    assert not (senv.state / "extra.txt").exists()


@pytest.mark.parametrize("how", ["removed", "empty"])
def test_restart_without_state_restores_before_child_starts(senv: Env, runs: list[Run], how: str) -> None:
    write(senv.state / "sub/deeper/c.txt", "deep\n", mode=0o600)
    cli_ok(["backup"], senv.env)
    before = tar_fingerprint(senv.state)
    shutil.rmtree(senv.state)
    if how == "empty":
        senv.state.mkdir()
    with restore_flags_locked():
        r = start(senv, runs, "check:a.txt=version 1\n", "--interval", "600", "--settle", "600")
        assert r.wait(20) == 0, f"child saw {_read(senv.side / 'seen')}:\n{r.stderr()}"
        assert FLAG_DONE.exists()
    assert _read(senv.side / "seen") == repr("version 1\n")
    assert tar_fingerprint(senv.state) == before
    assert len(senv.snapshots()) == 1  # the final backup found nothing new


def test_failed_restore_does_not_start_the_agent(senv: Env, runs: list[Run]) -> None:
    cli_ok(["backup"], senv.env)
    shutil.rmtree(senv.state)
    r = start(senv, runs, "check:a.txt=version 1\n", env={**senv.env, "OPENCLAW_BACKUP_PASSWORD": "wrong"})
    assert r.wait(15) == 12, r.stderr()
    assert "not starting the agent" in r.stderr()
    assert not (senv.side / "seen").exists()
    assert r.status()["state"] == "restore-failed"


# ---------------------------------------------------------------------------- periodic and settled backups


def test_periodic_backups_and_unchanged_tree_makes_no_snapshot(senv: Env, runs: list[Run]) -> None:
    cli_ok(["backup"], senv.env)
    r = start(senv, runs, "trap:0", "--interval", "1", "--settle", "600", "--grace", "8")
    r.child_pid()
    wait_for(lambda: r.status().get("backups_ok", 0) >= 2, 10, "two periodic backups")
    assert len(senv.snapshots()) == 1, "an unchanged tree made a snapshot"
    write(senv.state / "new.txt", "new\n")
    wait_for(lambda: len(senv.snapshots()) == 2, 10, "a periodic backup of the change", every=0.2)
    ok = r.status()["backups_ok"]
    wait_for(lambda: r.status().get("backups_ok", 0) >= ok + 2, 10, "two more periodic backups")
    assert len(senv.snapshots()) == 2
    r.proc.send_signal(signal.SIGTERM)
    assert r.wait(12) == 0
    # the child wrote goodbye.txt before exiting: the final backup is the third snapshot
    assert len(senv.snapshots()) == 3
    assert "no changes, nothing uploaded" in r.stderr()


def _burst(state: Path) -> float:
    for i in range(6):
        write(state / f"burst/{i}.txt", f"change {i}\n")
        time.sleep(0.2)
    return time.time()


def test_cli_burst_of_changes_is_backed_up_after_settle(senv: Env, runs: list[Run]) -> None:
    cli_ok(["backup"], senv.env)
    r = start(senv, runs, "trap:0", "--interval", "600", "--settle", "1", "--min-gap", "0.5", "--grace", "8")
    r.child_pid()
    _burst(senv.state)
    try:
        wait_for(lambda: len(senv.snapshots()) == 2, 8, "a backup after the burst settled", every=0.25)
    finally:
        r.proc.send_signal(signal.SIGTERM)
        r.wait(12)


DRIVER = r"""
import os, sys
from pathlib import Path
from openclaw_backup.reporter import Reporter
from openclaw_backup.service import Service
from openclaw_backup.settings import Settings
from openclaw_backup.supervisor import RunOptions, Supervisor
opts = RunOptions(command=sys.argv[2:], interval=600, poll=0.2, settle=1.0, min_gap=0.5, grace=8,
                  status_file=Path(sys.argv[1]))
log = lambda line: print(f"openclaw-backup: {line}", file=sys.stderr, flush=True)
sys.exit(Supervisor(opts, Service(Settings(os.environ), reporter=Reporter()), log=log).run())
"""


def test_burst_of_changes_is_backed_up_once_it_settles(senv: Env, runs: list[Run]) -> None:
    """The supervisor's own logic with short poll/min-gap (the CLI cannot set them, see above)."""
    cli_ok(["backup"], senv.env)
    driver = senv.tmp / "driver.py"
    driver.write_text(DRIVER)
    status, err = senv.tmp / "status.json", senv.tmp / "driver.err"
    with open(err, "wb") as f:
        proc = subprocess.Popen(
            [sys.executable, str(driver), str(status), sys.executable, str(senv.child), "trap:0", str(senv.side)],
            env=senv.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=f,
        )  # fmt: skip
    r = Run(proc, err, status, senv.side)
    runs.append(r)
    r.child_pid()
    time.sleep(2.5)  # quiet since start: at most a no-change backup, no snapshot
    assert len(senv.snapshots()) == 1
    burst_end = _burst(senv.state)
    assert len(senv.snapshots()) == 1, "backed up in the middle of the burst"
    wait_for(lambda: len(senv.snapshots()) == 2, 8, "a backup after the burst settled", every=0.1)
    snap = senv.snapshots()[-1]
    assert snap.summary["files"] == 2 + 6  # the whole burst, taken after it ended
    assert datetime_of(snap) >= burst_end + 0.5
    time.sleep(2.0)  # quiet: no further snapshot
    assert len(senv.snapshots()) == 2
    proc.send_signal(signal.SIGTERM)
    assert r.wait(12) == 0, r.stderr()
    assert len(senv.snapshots()) == 3  # goodbye.txt


def datetime_of(snap: Any) -> float:
    from openclaw_backup.retention import snapshot_time

    return snapshot_time(snap).timestamp()


# ---------------------------------------------------------------------------- failures and status


def test_failing_backup_is_logged_agent_keeps_running_then_recovers(senv: Env, runs: list[Run]) -> None:
    cli_ok(["backup"], senv.env)
    status_cmd = ["status", "--json", "--status-file", str(senv.tmp / "status.json")]
    r = start(senv, runs, "trap:0", "--interval", "1", "--settle", "600", "--grace", "8")
    pid = r.child_pid()
    wait_for(lambda: r.status().get("backups_ok", 0) >= 1, 10, "a first backup")
    assert run_cli(status_cmd, senv.env).returncode == 0
    away = senv.tmp / "repo-away"
    senv.repo.rename(away)  # the store disappears (unmounted, network down)
    try:
        wait_for(lambda: r.status().get("backups_failed", 0) >= 2, 10, "failed backups")
        assert r.proc.poll() is None and _alive(pid), "a failed backup took the agent down"
        proc = run_cli(status_cmd, senv.env)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        doc = json_out(proc)
        assert doc["last_error"] and doc["state"] == "running"
        assert "backup failed" in r.stderr()
    finally:
        away.rename(senv.repo)

    def recovered() -> bool:
        st = r.status()
        return str(st.get("last_success", "")) > str(st.get("last_error", "")).split(" ")[0]

    wait_for(recovered, 10, "a backup succeeding again")
    proc = run_cli(status_cmd, senv.env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json_out(proc)["last_error"]  # kept for the record, but no longer unhealthy
    r.proc.send_signal(signal.SIGTERM)
    assert r.wait(12) == 0


def test_wrong_password_backup_fails_agent_keeps_running(senv: Env, runs: list[Run]) -> None:
    env = {**senv.env, "OPENCLAW_BACKUP_PASSWORD": "not the password"}
    r = start(senv, runs, "trap:5", "--interval", "1", "--settle", "600", "--grace", "8", env=env)
    pid = r.child_pid()
    wait_for(lambda: r.status().get("backups_failed", 0) >= 2, 10, "failed backups")
    assert _alive(pid)
    proc = run_cli(["status", "--json", "--status-file", str(senv.tmp / "status.json")], env)
    assert proc.returncode == 1
    doc = json_out(proc)
    assert "password" in doc["last_error"].lower() and not doc.get("last_success")
    r.proc.send_signal(signal.SIGTERM)
    assert r.wait(12) == 5  # the child's status, though the final backup failed too
    assert r.stderr().count("backup failed") >= 3
    assert senv.snapshots() == []


def test_status_without_a_supervisor(senv: Env) -> None:
    proc = run_cli(["status", "--status-file", str(senv.tmp / "nothing.json")], senv.env)
    assert proc.returncode == 10 and "no status file" in proc.stderr


class _Jobs:
    def __init__(self) -> None:
        self.calls = 0

    def backup(self) -> supervisor.Account:
        self.calls += 1
        if self.calls == 1:
            raise BackupError("store unreachable")
        return supervisor.Account("ok")


def test_success_right_after_an_error_is_healthy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor, "_now", lambda: "2026-01-01T00:00:05+00:00")
    path = tmp_path / "status.json"
    jobs: Any = _Jobs()
    sup = supervisor.Supervisor(supervisor.RunOptions(command=["true"], status_file=path), jobs, log=lambda s: None)
    sup._run_backup()  # fails
    sup._run_backup()  # succeeds, later
    args = argparse.Namespace(status_file=str(path))
    doc, _, code = commands_run.cmd_status(args, Settings({}), Reporter())
    assert doc["backups_failed"] == 1 and doc["backups_ok"] == 1
    assert code == 0


# ---------------------------------------------------------------------------- bounded shutdown


def _big_sparse(e: Env) -> None:
    """A file whose backup takes far longer than the test waits (zeros: nothing much is stored)."""
    with open(e.state / "sparse.bin", "wb") as f:
        f.truncate(16 << 30)


def test_second_sigterm_aborts_the_final_backup(senv: Env, runs: list[Run]) -> None:
    _big_sparse(senv)
    r = start(senv, runs, "trap:0", "--interval", "600", "--settle", "600", "--grace", "60")
    r.child_pid()
    r.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: r.status().get("state") == "final-backup", 10, "the final backup to start")
    time.sleep(0.5)
    assert r.proc.poll() is None, r.stderr()
    t0 = time.monotonic()
    r.proc.send_signal(signal.SIGTERM)
    code = r.wait(10)
    assert time.monotonic() - t0 < 3.0
    assert code == 0, r.stderr()  # the child had exited with 0
    assert "second signal: aborting now" in r.stderr()
    assert senv.snapshots() == []


GRACE = 4.0
SLACK = 1.5


def _stubborn_run(e: Env, runs: list[Run]) -> tuple[Run, int, float]:
    _big_sparse(e)
    r = start(e, runs, "ignore", "--interval", "600", "--settle", "600", "--grace", str(GRACE))
    pid = r.child_pid()
    r.proc.send_signal(signal.SIGTERM)
    return r, pid, time.monotonic()


def test_final_backup_bounded_by_grace_and_stubborn_child_killed(senv: Env, runs: list[Run]) -> None:
    r, pid, t0 = _stubborn_run(senv, runs)
    wait_for(lambda: r.status().get("state") == "stopped", GRACE + SLACK, "the supervisor to give up and stop")
    wait_for(lambda: not _alive(pid), 1.0, "the stubborn child to be killed")
    assert time.monotonic() - t0 < GRACE + SLACK
    assert r.status()["exit_code"] == 128 + 9
    err = r.stderr()
    assert "the agent did not stop in time" in err and "did not finish within the grace period" in err
    assert senv.snapshots() == []


def test_process_exits_within_grace_when_final_backup_is_slow(senv: Env, runs: list[Run]) -> None:
    r, _, t0 = _stubborn_run(senv, runs)
    try:
        code = r.proc.wait(timeout=GRACE + SLACK + 2)
    except subprocess.TimeoutExpired:
        code = None
    assert code == 128 + 9, f"still running {time.monotonic() - t0:.1f}s after SIGTERM (grace {GRACE}s)"
    assert time.monotonic() - t0 < GRACE + SLACK


def test_scheduled_maintenance_forgets_by_the_legacy_keep_count(senv: Env, runs: list[Run]) -> None:
    """forget + prune run on their own schedule, off the main thread, with OPENCLAW_BACKUP_KEEP_COUNT."""
    for i in range(4):
        write(senv.state / f"gen{i}.txt", f"generation {i}\n")
        cli_ok(["backup"], senv.env)
    assert len(senv.snapshots()) == 4
    env = dict(senv.env, OPENCLAW_BACKUP_KEEP_COUNT="2")
    r = start(senv, runs, "trap:0", "--interval", "600", "--settle", "600", "--prune-interval", "1",
              "--grace", "8", env=env)  # fmt: skip
    r.child_pid()
    wait_for(lambda: "maintenance: forgot" in r.stderr(), 40, "a scheduled forget + prune")
    assert len(senv.snapshots()) == 2
    r.proc.send_signal(signal.SIGTERM)
    assert r.wait(12) == 0
    assert (senv.state / "goodbye.txt").exists()
    snaps = senv.snapshots()
    assert len(snaps) >= 2 and any(s.summary["files"] == 5 for s in snaps)  # the final backup


# ---------------------------------------------------------------------------- what the agent gets, health


def test_the_agent_does_not_get_the_tools_secrets(senv: Env, runs: list[Run]) -> None:
    env = dict(senv.env, OPENCLAW_BACKUP_HF_TOKEN="hf_tool_only", HF_TOKEN="hf_agents_own",
               OPENCLAW_BACKUP_S3_SECRET_ACCESS_KEY="tool-s3-secret", MY_AGENT_SETTING="kept")  # fmt: skip
    r = start(senv, runs, "env", "--interval", "600", "--settle", "600", "--grace", "8", env=env)
    r.child_pid()
    seen = json.loads((senv.side / "env.json").read_text())
    r.proc.send_signal(signal.SIGTERM)
    r.wait(12)
    for secret in ("OPENCLAW_BACKUP_PASSWORD", "OPENCLAW_BACKUP_HF_TOKEN", "OPENCLAW_BACKUP_S3_SECRET_ACCESS_KEY"):
        assert secret not in seen, f"the agent was handed {secret}"
    assert PASSWORD not in json.dumps(seen)
    assert seen["HF_TOKEN"] == "hf_agents_own" and seen["MY_AGENT_SETTING"] == "kept"
    assert seen["OPENCLAW_STATE_DIR"] == str(senv.state)
    assert len(senv.snapshots()) == 1, r.stderr()  # while the backup itself still had its password


def test_an_incomplete_backup_makes_the_status_unhealthy(senv: Env, runs: list[Run]) -> None:
    import apsw

    db = senv.state / "agents" / "agent.sqlite"
    db.parent.mkdir(parents=True)
    con = apsw.Connection(str(db))
    con.execute("CREATE TABLE t (x TEXT)")
    with con:
        con.executemany("INSERT INTO t VALUES (?)", [("x" * 300,) for _ in range(200)])
    con.close()
    data = bytearray(db.read_bytes())
    data[4096 : 4096 + 12] = b"\x0d\xff\xff" + b"\xff" * 9  # a damaged page: only a raw set can be stored
    db.write_bytes(bytes(data))
    r = start(senv, runs, "default", "--interval", "600", "--settle", "600", "--grace", "8")
    r.child_pid()
    r.proc.send_signal(signal.SIGTERM)
    r.wait(12)
    assert "backup INCOMPLETE" in r.stderr() and "agent.sqlite" in r.stderr()
    st = r.status()
    assert st["healthy"] is False and any("agent.sqlite" in p for p in st["degraded"])
    proc = run_cli(["status", "--status-file", str(r.status_file)], senv.env)
    assert proc.returncode == 1 and "INCOMPLETE" in proc.stdout
