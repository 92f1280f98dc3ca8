"""Parsing for :mod:`openclaw_backup.settings`: the legacy env files (plain assignments only),
cron schedules that are a fixed interval, booleans and positive numbers, password files and
commands, the proxy an environment names for a URL. Pure functions of their arguments; the names
they are given come from the settings."""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import UsageError

LEGACY_ENV_FILES = ("/etc/profile.d/openclaw-env.sh", "{home}/.env.d/openclaw-backup.env")
_ASSIGN = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def with_env_files(env: Mapping[str, str], files: tuple[str, ...] = LEGACY_ENV_FILES) -> dict[str, str]:
    """The environment, plus variables from the legacy script's shell files where unset.

    Only plain assignments (``[export] NAME=value``, quoted or not) are read; anything that would
    need a shell to evaluate (``$(…)``, backticks, ``$VAR``) is skipped, never executed.
    """
    out = dict(env)
    for _path, assignments in _env_file_assignments(env, files):
        for name, value in assignments.items():
            out.setdefault(name, value)
    return out


def env_files_read(env: Mapping[str, str], files: tuple[str, ...] = LEGACY_ENV_FILES) -> list[tuple[str, list[str]]]:
    """Each legacy env file that exists, with the variables it supplies (those ``env`` does not set)."""
    out: list[tuple[str, list[str]]] = []
    taken = set(env)
    for path, assignments in _env_file_assignments(env, files):
        used = [n for n in assignments if n not in taken]
        taken.update(used)
        out.append((path, used))
    return out


def _env_file_assignments(env: Mapping[str, str], files: tuple[str, ...]) -> list[tuple[str, dict[str, str]]]:
    """(path, its plain assignments) for each of ``files`` that can be read."""
    found: list[tuple[str, dict[str, str]]] = []
    home = env.get("HOME") or str(Path.home())
    for pattern in files:
        path = pattern.format(home=home)
        try:
            text = Path(path).read_text()
        except (OSError, UnicodeDecodeError):
            continue
        assignments: dict[str, str] = {}
        for line in text.splitlines():
            m = _ASSIGN.match(line)
            if not m or m.group(1) in assignments:
                continue
            try:
                lexer = shlex.shlex(m.group(2), posix=True)
                lexer.whitespace_split = True
                lexer.commenters = ""  # a '#' starts a comment only at the start of a word, as in bash
                parts = list(lexer)
            except ValueError:
                continue
            for i, word in enumerate(parts):
                if word.startswith("#"):
                    parts = parts[:i]
                    break
            raw = m.group(2)
            if len(parts) > 1 or "$(" in raw or "`" in raw or ("$" in raw and not raw.startswith("'")):
                continue
            assignments[m.group(1)] = parts[0] if parts else ""
        found.append((path, assignments))
    return found


_CRON_HELP = (
    "supported: '*/N * * * *' (every N minutes), 'M * * * *' (hourly), 'M */H * * *' (every H hours); "
    "or set OPENCLAW_BACKUP_INTERVAL (seconds)"
)


def cron_interval(expr: str) -> float:
    """Seconds between runs of the legacy script's ``OPENCLAW_BACKUP_CRON`` schedule, for the cron
    forms that are a fixed interval; any other expression (invalid, a zero step, a calendar
    schedule) is a :class:`UsageError`, never silently replaced by a default."""
    fields = expr.split()
    if len(fields) != 5 or fields[2:] != ["*", "*", "*"]:
        raise UsageError(f"OPENCLAW_BACKUP_CRON={expr!r} is not a supported schedule", hint=_CRON_HELP)
    minute, hour = fields[:2]
    step = re.fullmatch(r"\*/(\d{1,4})", minute)
    if step and hour == "*":
        n = int(step.group(1))
        if not 1 <= n <= 59:
            raise UsageError(f"OPENCLAW_BACKUP_CRON={expr!r}: a step of {n} minutes is out of range", hint=_CRON_HELP)
        return n * 60.0
    if minute.isdigit() and int(minute) <= 59:
        if hour == "*":
            return 3600.0
        every = re.fullmatch(r"\*/(\d{1,3})", hour)
        if every and 1 <= int(every.group(1)) <= 23:
            return int(every.group(1)) * 3600.0
    raise UsageError(f"OPENCLAW_BACKUP_CRON={expr!r} is not a supported schedule", hint=_CRON_HELP)


def truthy(value: str | None, default: bool) -> bool:
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def positive(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1
    if value <= 0:
        raise UsageError(f"{what} must be a positive number, got {text!r}")
    return value


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


def proxy_for(url: str, env: Mapping[str, str]) -> str | None:
    """The proxy ``env`` names for ``url`` (None when none applies): ``<scheme>_proxy`` or
    ``all_proxy`` in either case, the lower-case name winning, unless ``no_proxy`` covers the host
    — the standard library's rules (``urllib.request.getproxies_environment``, ``HTTP_PROXY``
    ignored under CGI's ``REQUEST_METHOD``), which botocore follows; read from ``env``, not from
    the process."""
    proxies: dict[str, str] = {}
    for name, value in env.items():  # any case first, then the lower-case names win
        if value and name.lower().endswith("_proxy"):
            proxies[name.lower()[:-6]] = value
    if "REQUEST_METHOD" in env:
        proxies.pop("http", None)
    for name, value in env.items():
        if name.endswith("_proxy"):
            if value:
                proxies[name[:-6].lower()] = value
            else:
                proxies.pop(name[:-6].lower(), None)
    parts = urlsplit(url)
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy:
        return None
    return None if _bypassed(parts.netloc.lower(), proxies.get("no", "")) else proxy


def _bypassed(host: str, no_proxy: str) -> bool:
    """Whether ``no_proxy`` (``*``, or host names and domain suffixes separated by commas, a
    leading dot ignored) covers ``host`` (``name[:port]``), as ``urllib.request`` decides it."""
    if no_proxy.strip() == "*":
        return True
    name_only = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    for entry in no_proxy.split(","):
        entry = entry.strip().lstrip(".").lower()
        if entry and any(h == entry or h.endswith("." + entry) for h in (name_only, host)):
            return True
    return False
