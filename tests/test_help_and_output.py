"""What people read: each command's --help (what it does, an example, its positional arguments
explained), ``snapshots`` in local time with tags and groups, ``stats``/``status`` in words, ``-v``
listing the files a backup changed, a message while waiting for the repository lock, and ``status``
once the supervisor has stopped."""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from openclaw_backup import cli
from openclaw_backup.cli_help import HELP
from tests.support.cli import cli_command, cli_env, cli_ok, json_out, run_cli, wait_for
from tests.support.trees import write


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_command_says_what_it_does_with_an_example(command: str) -> None:
    sub = _subparsers(cli.build_parser())[command]
    text = sub.format_help()
    assert command in HELP
    first_words = " ".join(HELP[command][0].split()[:4])
    assert first_words in " ".join(text.split()), text
    assert "examples:" in text and f"openclaw-backup {command}" in text.split("examples:")[1]
    for action in sub._actions:
        if not action.option_strings and action.help is None:  # a positional argument without a word
            pytest.fail(f"`{command}`: the positional argument {action.dest!r} is not explained")


def _env(tmp: Path) -> dict[str, str]:
    env = cli_env(tmp, OPENCLAW_BACKUP_REPOSITORY=str(tmp / "repo"))
    write(tmp / "home" / ".openclaw" / "a.txt", "a\n")
    cli_ok(["init"], env)
    return env


def test_snapshots_in_local_time_with_zone_tags_and_groups(tmp_path: Path) -> None:
    env = _env(tmp_path)
    cli_ok(["backup", "--tag", "before-upgrade"], env)
    write(tmp_path / "other" / "x.txt", "x")
    cli_ok(["backup", "--source", str(tmp_path / "other")], env)
    doc = json_out(cli_ok(["snapshots", "--json"], env))
    first = doc["snapshots"][0]
    text = cli_ok(["snapshots"], {**env, "TZ": "Asia/Tokyo"}).stdout
    assert re.search(rf"{first['id'][:8]}\s+\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d JST\s", text), text
    assert "before-upgrade" in text and "2 group(s)" in text
    assert text.count("group ") >= 2 and "openclaw-state" in text and "other" in text


def test_stats_in_words_and_one_set_of_units(tmp_path: Path) -> None:
    env = _env(tmp_path)
    write(tmp_path / "home" / ".openclaw" / "big.bin", os.urandom(300_000))
    cli_ok(["backup"], env)
    text = cli_ok(["stats"], env).stdout
    assert "Stored:" in text and "Encrypted:" in text and "stored_bytes" not in text
    assert re.search(r"\d+\.\d KiB", text), text
    backup = cli_ok(["backup", "--force"], env).stdout
    assert " bytes" not in backup and re.search(r"\d (B|KiB|MiB)\b", backup)


def test_verbose_backup_lists_the_changed_files(tmp_path: Path) -> None:
    env = _env(tmp_path)
    state = tmp_path / "home" / ".openclaw"
    write(state / "keep.txt", "same")
    cli_ok(["backup"], env)
    write(state / "a.txt", "changed\n")
    write(state / "new.txt", "new")
    (state / "keep.txt").unlink()
    out = cli_ok(["backup", "-v"], env).stdout
    lines = out.splitlines()
    assert "+ openclaw-state/new.txt" in lines and "M openclaw-state/a.txt" in lines
    assert "- openclaw-state/keep.txt" in lines
    assert "openclaw-state/keep.txt" not in cli_ok(["backup", "--force"], env).stdout  # not without -v


def test_a_wait_for_the_repository_lock_is_said(tmp_path: Path) -> None:
    env = _env(tmp_path)
    write(tmp_path / "home" / ".openclaw" / "b.txt", "b")
    fd = os.open(tmp_path / "repo" / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another process's publish, held
        err = tmp_path / "backup.err"
        with open(err, "wb") as f:
            proc = subprocess.Popen([*cli_command(), "backup"], env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=f, text=True)  # fmt: skip
        wait_for(lambda: "another process holds its lock" in err.read_text(), 20, "the message about the lock")
        assert proc.poll() is None  # still waiting, and said so
    finally:
        os.close(fd)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "saved" in out


def test_status_after_the_supervisor_stopped_says_so(tmp_path: Path) -> None:
    env = _env(tmp_path)
    status = tmp_path / "status.json"
    child = "import time; time.sleep(0.3)"
    proc = run_cli(["run", "--status-file", str(status), "--interval", "600", "--", "python3", "-c", child], env)
    assert proc.returncode == 0, proc.stderr
    out = run_cli(["status", "--status-file", str(status)], env)
    assert out.returncode == 1 and "stopped at" in out.stdout and "nothing is being backed up now" in out.stdout
    assert "Next backup" not in out.stdout
    doc = json_out(run_cli(["status", "--json", "--status-file", str(status)], env))
    assert doc["running"] is False and doc["state"] == "stopped" and doc["next_run"] is None
    # a supervisor that died without saying so (its process is gone)
    gone = json.loads(status.read_text()) | {"state": "running", "pid": _dead_pid()}
    status.write_text(json.dumps(gone))
    out = run_cli(["status", "--status-file", str(status)], env)
    assert out.returncode == 1 and "NOT RUNNING" in out.stdout


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    time.sleep(0.05)
    return pid
