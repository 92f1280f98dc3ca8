"""The real ``openclaw-backup`` command line, for the tests: environments and runners.

* :func:`clean_env` — our own variables removed, a private HOME and XDG folders, the weak test KDF;
  :func:`cli_env` adds the test password (:data:`tests.support.repos.PASSWORD`), host name and no
  npm; :func:`hub_env` / :func:`s3_env` point it at a store.
* :func:`run_cli` (to completion, stdin closed, never raises on the exit code), :func:`cli_ok` (and
  asserts exit 0), :func:`json_out` (the one JSON object a ``--json`` command prints),
  :func:`spawn_cli` (in the background), :func:`spawn_cli_on_go` (two processes starting together)
  and :func:`main_cli` (``cli.main`` in this process).
* :func:`wait_for` — poll a condition with a deadline.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

from tests.support.repos import HOST, PASSWORD

CLI_TIMEOUT = 120.0  # seconds one CLI call may take before the test fails


def clean_env(tmp: Path, **extra: str) -> dict[str, str]:
    """An environment for a CLI subprocess: our own variables removed, a private HOME and XDG dirs
    under ``tmp``, the weak test KDF; ``extra`` on top."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("OPENCLAW_", "HF_", "HUGGINGFACE_", "AWS_", "XDG_"))
    }
    (tmp / "home").mkdir(parents=True, exist_ok=True)
    env.update(
        HOME=str(tmp / "home"),
        XDG_CACHE_HOME=str(tmp / "xdg-cache"),
        XDG_DATA_HOME=str(tmp / "xdg-data"),
        OPENCLAW_BACKUP_TEST_WEAK_KDF="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.update(extra)
    return env


def cli_env(tmp: Path, **extra: str) -> dict[str, str]:
    """:func:`clean_env` with the test password, a fixed host name and npm's folders left alone."""
    return clean_env(tmp, **{"OPENCLAW_BACKUP_PASSWORD": PASSWORD, "OPENCLAW_BACKUP_HOST": HOST,
                             "OPENCLAW_BACKUP_NPM_ENABLED": "0", **extra})  # fmt: skip


def hub_env(url: str, token: str) -> dict[str, str]:
    """Variables that point the CLI at a Hub (plain LFS: the fake Hub speaks no Xet)."""
    return {
        "HF_ENDPOINT": url,
        "HF_TOKEN": token,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }


def s3_env(endpoint: str, access_key: str, secret_key: str) -> dict[str, str]:
    """Variables that point the CLI at an S3 endpoint."""
    return {
        "AWS_ACCESS_KEY_ID": access_key,
        "AWS_SECRET_ACCESS_KEY": secret_key,
        "AWS_REGION": "us-east-1",
        "OPENCLAW_BACKUP_S3_ENDPOINT": endpoint,
    }


def cli_command(*, module: bool = False) -> list[str]:
    """``openclaw-backup`` from this interpreter's venv (or ``python -m openclaw_backup``)."""
    exe = Path(sys.executable).with_name("openclaw-backup")
    if module or not exe.exists():
        return [sys.executable, "-m", "openclaw_backup"]
    return [str(exe)]


def run_cli(
    args: Sequence[str], env: Mapping[str, str], *, timeout: float = CLI_TIMEOUT, module: bool = False, **kw: Any
) -> subprocess.CompletedProcess[str]:
    """Run the CLI to completion with stdin closed (unless ``input`` is given); never raises on its
    exit code. ``kw`` goes to :func:`subprocess.run` (``cwd``, ``input``)."""
    if "input" not in kw:
        kw.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run(
        [*cli_command(module=module), *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kw,
    )


def cli_ok(args: Sequence[str], env: Mapping[str, str], **kw: Any) -> subprocess.CompletedProcess[str]:
    """:func:`run_cli`, asserting exit 0."""
    proc = run_cli(args, env, **kw)
    assert proc.returncode == 0, f"{args} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return proc


def json_out(proc: subprocess.CompletedProcess[str] | str) -> dict[str, Any]:
    """The single JSON object a ``--json`` command prints on stdout (a process, or its stdout)."""
    stdout = proc if isinstance(proc, str) else proc.stdout
    stderr = "" if isinstance(proc, str) else f" (stderr {proc.stderr!r})"
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line of JSON on stdout, got {stdout!r}{stderr}"
    doc = json.loads(lines[0])
    assert isinstance(doc, dict)
    return doc


def read_status(path: Path) -> dict[str, Any]:
    """The supervisor's status file as it is now; empty while it does not exist or is being replaced."""
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def spawn_cli(args: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen[str]:
    """Start the CLI in the background (stdin closed; stdout and stderr piped)."""
    return subprocess.Popen(
        [*cli_command(), *args],
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


# The CLI's own main(), in a fresh process, started only when the "go" file appears: the heavy
# imports are done by then, so two processes begin their backups within milliseconds of each other.
_LAUNCHER = r"""
import os, sys, time
import openclaw_backup.cli, openclaw_backup.commands.backup
import openclaw_backup.backends.hf_repo, openclaw_backup.backends.s3
go, ready = sys.argv[1], sys.argv[2]
open(ready, "w").close()
deadline = time.monotonic() + 60
while not os.path.exists(go):
    if time.monotonic() > deadline:
        sys.exit(99)
    time.sleep(0.002)
sys.exit(openclaw_backup.cli.main(sys.argv[3:]))
"""


def spawn_cli_on_go(args: list[str], env: Mapping[str, str], go: Path, ready: Path) -> subprocess.Popen[str]:
    """Start the CLI, fully imported, waiting for ``go`` to exist; it creates ``ready`` when waiting."""
    return subprocess.Popen(
        [sys.executable, "-c", _LAUNCHER, str(go), str(ready), *args],
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def main_cli(args: Sequence[str]) -> tuple[int, str, str]:
    """``openclaw_backup.cli.main`` in-process (environment from ``os.environ``): (code, stdout, stderr)."""
    from openclaw_backup.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def wait_for(pred: Callable[[], Any], timeout: float, what: str, *, every: float = 0.05) -> Any:
    """Poll ``pred`` every ``every`` seconds until it is truthy (returns its value) or ``timeout``
    seconds have passed (fails the test)."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(every)
