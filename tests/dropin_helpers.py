"""Helpers for the container-lifecycle and legacy drop-in tests (``test_supervisor``, ``test_legacy_dropin``).

* :func:`restore_flags_locked` — the legacy flag files are fixed paths in ``/tmp``; a test that may
  touch or checks them holds an exclusive ``flock`` on a lock file in ``/tmp`` (tests run under
  xdist), and starts with both flags removed.
* :func:`base_env` / :func:`cli` — the real ``openclaw-backup`` in a subprocess with a clean
  environment (a private HOME and XDG folders, cheap key derivation).
* :func:`wait_for` — poll a condition with a deadline.
* :func:`fingerprint` — type, permission bits, mtime and content of everything under a folder.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import stat
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from openclaw_backup.service import FLAG_COMPLETED, FLAG_SKIPPED
from tests.servers import clean_env, run_cli
from tests.servers import cli_command as cli_command
from tests.servers import json_out as json_out

FLAG_DONE = Path(FLAG_COMPLETED)
FLAG_NONE = Path(FLAG_SKIPPED)
FLAG_LOCK = Path("/tmp/openclaw-backup-tests-restore-flags.lock")


@contextmanager
def restore_flags_locked() -> Iterator[None]:
    """Hold the flag-file lock (blocking) with both flags removed; release on exit."""
    fd = os.open(FLAG_LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        for flag in (FLAG_DONE, FLAG_NONE):
            flag.unlink(missing_ok=True)
        yield
    finally:
        os.close(fd)  # releases the flock


def base_env(tmp: Path, **extra: str) -> dict[str, str]:
    """Only PATH-like basics from our environment, a private HOME/XDG and the weak test KDF."""
    return clean_env(tmp, **extra)


cli = functools.partial(run_cli, timeout=90)  # this module's bound per CLI call


def cli_ok(args: list[str], env: Mapping[str, str], **kw: Any) -> subprocess.CompletedProcess[str]:
    proc = cli(args, env, **kw)
    assert proc.returncode == 0, f"{args} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return proc


def wait_for(pred: Callable[[], Any], timeout: float, what: str, *, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(every)


def fingerprint(root: Path) -> dict[str, tuple[Any, ...]]:
    """Everything under ``root`` (not ``root`` itself): type, mode bits, mtime (s), content hash."""
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode), int(st.st_mtime))
            else:
                out[rel] = ("file", stat.S_IMODE(st.st_mode), int(st.st_mtime),
                            hashlib.sha256(path.read_bytes()).hexdigest())  # fmt: skip
    return out


def write(path: Path, data: str | bytes, *, mtime: int | None = None, mode: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    if mode is not None:
        path.chmod(mode)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path
