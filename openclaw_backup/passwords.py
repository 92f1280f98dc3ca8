"""Reading a password from a file or from a command's output (``--password-file``, ``--password-command``
and their variables); :mod:`.settings` decides which source applies."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from .errors import UsageError


def read_password_file(path: str, what: str) -> str:
    try:
        return Path(path).read_text().rstrip("\r\n")
    except OSError as e:
        raise UsageError(f"cannot read {what} {path}: {e.strerror}") from None


#: Seconds a password command may take (it may ask a keyring or a secret manager).
PASSWORD_COMMAND_TIMEOUT = 60.0


def run_password_command(command: str, what: str) -> str:
    """The password a command prints (its output without the final line break); run without a
    shell, its own stderr passed through (it may ask on the terminal)."""
    try:
        argv = shlex.split(command)
    except ValueError as e:
        raise UsageError(f"{what}: cannot parse {command!r}: {e}") from None
    if not argv:
        raise UsageError(f"{what} is empty")
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, text=True, timeout=PASSWORD_COMMAND_TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError) as e:
        raise UsageError(f"{what}: cannot run {argv[0]}: {e}") from None
    if proc.returncode != 0:
        raise UsageError(f"{what}: {argv[0]} exited with status {proc.returncode}; no password")
    password = proc.stdout.rstrip("\r\n")
    if not password:
        raise UsageError(f"{what}: {argv[0]} printed no password")
    return password
