"""Processes the tests start (servers, the CLI, drivers): stopping them by PID, their logs, ports."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

STOP_GRACE = 5.0


def stop_process(proc: subprocess.Popen[bytes] | subprocess.Popen[str], *, grace: float = STOP_GRACE) -> None:
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


def free_ports(count: int = 1) -> list[int]:
    """Distinct free loopback ports (all held open together so none repeats)."""
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind(("127.0.0.1", 0))
            ports.append(int(s.getsockname()[1]))
        return ports


def in_forked_child(check: Callable[[], bool]) -> bool:
    """What ``check()`` answers in a child forked from this process now (an exception or a child
    that dies answers False); the child ends with ``os._exit`` and is waited for."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: answer, and leave without running this process's clean-ups
        try:
            answer = b"1" if check() else b"0"
        except BaseException:
            answer = b"0"
        os.write(write, answer)
        os._exit(0)
    os.close(write)
    try:
        return os.read(read, 1) == b"1"
    finally:
        os.close(read)
        os.waitpid(pid, 0)


def cpu_seconds(stat: str) -> float:
    """User + system CPU seconds in a Linux ``/proc/…/stat`` file (a process's, or a thread's under
    ``/proc/self/task/``); 0.0 when it cannot be read."""
    try:
        with open(stat) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
