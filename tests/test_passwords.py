"""Where the password comes from: typed on a terminal (twice for ``init``), ``--password-command`` /
``OPENCLAW_BACKUP_PASSWORD_COMMAND``, ``OPENCLAW_BACKUP_PASSWORD_FILE``; and ``init`` says that a lost
password cannot be recovered. The terminal is a real pseudo-terminal (``pty.fork``)."""

from __future__ import annotations

import os
import pty
import select
import shlex
import sys
import time
from pathlib import Path

from tests.support.cli import clean_env, cli_command, cli_ok, json_out, run_cli
from tests.support.repos import PASSWORD
from tests.support.trees import write

PROMPTS = (b"repository password: ", b"again: ")


def on_terminal(args: list[str], env: dict[str, str], answers: list[str], timeout: float = 60) -> tuple[int, str]:
    """Run the CLI with a pseudo-terminal as its controlling terminal and stdin/stdout/stderr; type
    ``answers`` one per prompt. Returns (exit status, everything it wrote)."""
    cmd = [*cli_command(), *args]
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec at once
        try:
            os.execve(cmd[0], cmd, env)
        finally:
            os._exit(127)
    out, answered, deadline = b"", 0, time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                out += data
            asked = sum(out.count(p) for p in PROMPTS)
            if asked > answered and answered < len(answers):
                os.write(fd, answers[answered].encode() + b"\n")
                answered += 1
        else:
            os.kill(pid, 9)
            raise AssertionError(f"{args} did not finish on the terminal: {out!r}")
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace").replace("\r\n", "\n")


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = clean_env(tmp, OPENCLAW_BACKUP_REPOSITORY=str(tmp / "repo"), OPENCLAW_BACKUP_NPM_ENABLED="0", **extra)
    write(tmp / "home" / ".openclaw" / "openclaw.json", '{"x": 1}')
    return env


def test_init_on_a_terminal_asks_twice_and_warns_that_the_password_cannot_be_recovered(tmp_path: Path) -> None:
    env = _env(tmp_path)
    code, out = on_terminal(["init"], env, [PASSWORD, "something else"])
    assert code == 2 and "differ" in out, out
    assert not (tmp_path / "repo").exists()
    code, out = on_terminal(["init"], env, [PASSWORD, PASSWORD])
    assert code == 0, out
    assert out.count("repository password: ") == 1 and out.count("again: ") == 1
    assert "Nobody can recover it" in out and PASSWORD not in out
    # later commands ask once; the typed password opens the repository
    code, out = on_terminal(["backup"], env, [PASSWORD])
    assert code == 0 and out.count("repository password: ") == 1, out
    code, out = on_terminal(["snapshots"], env, ["not the password"])
    assert code == 12, out
    doc = json_out(cli_ok(["snapshots", "--json"], {**env, "OPENCLAW_BACKUP_PASSWORD": PASSWORD}))
    assert len(doc["snapshots"]) == 1


def test_without_a_terminal_nothing_is_asked(tmp_path: Path) -> None:
    env = _env(tmp_path)
    proc = run_cli(["init"], env)
    assert proc.returncode == 2 and "OPENCLAW_BACKUP_PASSWORD" in proc.stderr
    cli_ok(["init"], {**env, "OPENCLAW_BACKUP_PASSWORD": PASSWORD})
    proc = run_cli(["snapshots"], env)
    assert proc.returncode == 12 and "no password" in proc.stderr


def test_password_command_and_file(tmp_path: Path) -> None:
    env = _env(tmp_path)
    command = shlex.join([sys.executable, "-c", f"print({PASSWORD!r})"])
    proc = cli_ok(["init", "--password-command", command], env)
    assert "Nobody can recover it" in proc.stdout and "--password-command" in proc.stdout
    cli_ok(["backup"], {**env, "OPENCLAW_BACKUP_PASSWORD_COMMAND": command})
    secret = tmp_path / "secret"
    secret.write_text(PASSWORD + "\n")
    doc = json_out(cli_ok(["snapshots", "--json"], {**env, "OPENCLAW_BACKUP_PASSWORD_FILE": str(secret)}))
    assert len(doc["snapshots"]) == 1
    failing = shlex.join([sys.executable, "-c", "import sys; sys.exit(3)"])
    proc = run_cli(["snapshots", "--password-command", failing], env)
    assert proc.returncode == 2 and "exited with status 3" in proc.stderr
    wrong = shlex.join([sys.executable, "-c", "print('nope-nope-nope')"])
    assert run_cli(["snapshots", "--password-command", wrong], env).returncode == 12
