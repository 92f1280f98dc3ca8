"""Helpers shared by the tests: stopping the servers they start (the Hub test server, SeaweedFS),
and running the CLI in a subprocess with a clean environment."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

STOP_GRACE = 5.0


def stop_process(proc: subprocess.Popen[bytes], *, grace: float = STOP_GRACE) -> None:
    """Bounded TERM-then-KILL of one process we started, by its PID."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace)


def log_tail(path: Path, lines: int = 30) -> str:
    """The end of a server's log, for a failure message."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def clean_env(tmp: Path, **extra: str) -> dict[str, str]:
    """An environment for a CLI subprocess: our own variables removed, a private HOME and XDG dirs,
    the weak test KDF; ``extra`` on top."""
    import os

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


def cli_command(*, module: bool = False) -> list[str]:
    """``openclaw-backup`` from this interpreter's venv (or ``python -m openclaw_backup``)."""
    exe = Path(sys.executable).with_name("openclaw-backup")
    if module or not exe.exists():
        return [sys.executable, "-m", "openclaw_backup"]
    return [str(exe)]


def run_cli(
    args: list[str], env: Mapping[str, str], *, timeout: float = 120, module: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run the CLI to completion; never raises on its exit code."""
    return subprocess.run(
        cli_command(module=module) + args,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def json_out(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The single JSON object a ``--json`` command prints on stdout."""
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line of JSON on stdout, got {proc.stdout!r} (stderr {proc.stderr!r})"
    doc = json.loads(lines[0])
    assert isinstance(doc, dict)
    return doc
