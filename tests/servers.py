"""Helpers shared by the fixtures that start real servers (the Hub test server, SeaweedFS)."""

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
