"""The real OpenClaw for the tests: a pinned release installed from npm into ``.cache/`` of the checkout.

``python -m tests.support.setup_openclaw`` (run by ``./dev test`` before pytest, so the ~30 s install is
not inside a timed test) and :func:`ensure_installed` (called by the tests themselves, in case
pytest was started directly) install ``openclaw@VERSION`` with ``npm install -g --prefix``, using
node and npm from :mod:`tests.support.nodejs`. The install is idempotent (a marker file written last
records the version) and safe when several processes (pytest-xdist workers) ask at once: an
exclusive ``flock`` on a lock file beside the prefix serialises them, and a half-finished install
(killed, failed) is always redone from an empty prefix. A failure raises :class:`InstallFailed`;
the tests report it as a failure, never as a skip.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.support import nodejs

VERSION = "2026.9.6"
REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE = REPO_ROOT / ".cache"
PREFIX = CACHE / f"openclaw-{VERSION}"
MARKER_NAME = ".installed-by-openclaw-backup-tests"
INSTALL_TIMEOUT = 600.0


class InstallFailed(RuntimeError):
    """npm could not install the pinned OpenClaw (no registry, a broken download, …)."""


def package_dir(prefix: Path = PREFIX) -> Path:
    return prefix / "lib" / "node_modules" / "openclaw"


def entry_script(prefix: Path = PREFIX) -> Path:
    """OpenClaw's command-line entry (run it with ``node``), as its package.json names it."""
    pkg = package_dir(prefix)
    meta = json.loads((pkg / "package.json").read_text())
    bins = meta.get("bin")
    rel = bins if isinstance(bins, str) else bins["openclaw"]
    return pkg / rel


def _installed(prefix: Path) -> bool:
    try:
        return (prefix / MARKER_NAME).read_text().strip() == VERSION and entry_script(prefix).is_file()
    except (OSError, ValueError, KeyError, TypeError):
        return False


def ensure_installed(*, prefix: Path = PREFIX, timeout: float = INSTALL_TIMEOUT, quiet: bool = True) -> Path:
    """Install OpenClaw ``VERSION`` under ``prefix`` unless it is there; return its entry script."""
    if _installed(prefix):
        return entry_script(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    with open(prefix.parent / f"{prefix.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed (or the process dies)
        if not _installed(prefix):  # another process may have installed it while we waited
            _install(prefix, timeout=timeout, quiet=quiet)
    return entry_script(prefix)


def _install(prefix: Path, *, timeout: float, quiet: bool) -> None:
    shutil.rmtree(prefix, ignore_errors=True)  # a half-finished earlier attempt
    prefix.mkdir(parents=True)
    bins = nodejs.bin_dir(prefix.parent / "node-bin")
    env = nodejs.with_node_path(os.environ, bins)
    cmd = nodejs.npm_command(
        "install", "-g", "--prefix", str(prefix), f"openclaw@{VERSION}",
        "--no-fund", "--no-audit", "--loglevel=error",
    )  # fmt: skip
    started = time.monotonic()
    if not quiet:
        print(f"installing openclaw@{VERSION} from npm into {prefix} …", file=sys.stderr, flush=True)
    try:
        proc = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as e:
        raise InstallFailed(f"npm install openclaw@{VERSION} took more than {timeout:.0f} s") from e
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise InstallFailed(f"npm install openclaw@{VERSION} failed ({proc.returncode}):\n{tail}")
    script = entry_script(prefix)
    check = subprocess.run(
        [str(nodejs.node()), str(script), "--version"],
        env=dict(env, HOME=str(prefix / "home"), OPENCLAW_STATE_DIR=str(prefix / "home" / "state")),
        capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    shutil.rmtree(prefix / "home", ignore_errors=True)
    if check.returncode != 0 or VERSION not in check.stdout:
        raise InstallFailed(f"openclaw --version after install: {check.returncode} {check.stdout!r} {check.stderr!r}")
    (prefix / MARKER_NAME).write_text(VERSION + "\n")
    if not quiet:
        print(f"installed openclaw@{VERSION} in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)


def main() -> int:
    try:
        script = ensure_installed(quiet=False)
    except (InstallFailed, nodejs.NodeMissing) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"openclaw {VERSION}: {script}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
