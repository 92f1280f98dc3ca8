"""Helpers shared by the tests: stopping the servers they start (the Hub test server, SeaweedFS),
and a clean environment for CLI subprocesses."""

from __future__ import annotations

import subprocess
from pathlib import Path

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
