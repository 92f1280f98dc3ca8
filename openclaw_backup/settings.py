"""Settings: the one place that reads the environment and turns it into typed options.

Sources, in order of precedence: command-line flags (passed in by the CLI), the process
environment (our ``OPENCLAW_BACKUP_*`` names and the legacy script's names), then built-in
defaults. Nothing below the edges reads ``os.environ``; they receive what is built here.

Roots of the OpenClaw layout (names are the legacy archive folders, see LEGACY_FORMAT.md):
``openclaw-state`` (``OPENCLAW_BACKUP_SOURCE_DIR`` > ``OPENCLAW_STATE_DIR`` > ``~/.openclaw``), and
``root-config``, ``root-codex``, ``root-claude``, ``root-agents``, ``root-ssh``, ``root-env``,
``root-lark-cli``, ``root-npm`` (when npm backup is enabled) from ``OPENCLAW_BACKUP_ROOT_*_DIR``
(default ``~/.<name>``), plus ``OPENCLAW_BACKUP_EXTRA_DIRS`` / ``OPENCLAW_BACKUP_EXTRA_FILES``
(``name:/path,…``). The same mapping decides where a restore sends each root
(:func:`restore_destinations`).
"""

from __future__ import annotations

import getpass
import json
import os
import re
import shlex
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .backends import BackendOptions
from .crypto import KdfParams
from .errors import UnsafeRestoreError, UsageError
from .sources import Root

LEGACY_ROOTS: tuple[tuple[str, str, str], ...] = (
    ("root-config", "OPENCLAW_BACKUP_ROOT_CONFIG_DIR", ".config"),
    ("root-codex", "OPENCLAW_BACKUP_ROOT_CODEX_DIR", ".codex"),
    ("root-claude", "OPENCLAW_BACKUP_ROOT_CLAUDE_DIR", ".claude"),
    ("root-agents", "OPENCLAW_BACKUP_ROOT_AGENTS_DIR", ".agents"),
    ("root-ssh", "OPENCLAW_BACKUP_ROOT_SSH_DIR", ".ssh"),
    ("root-env", "OPENCLAW_BACKUP_ROOT_ENV_DIR", ".env.d"),
    ("root-lark-cli", "OPENCLAW_BACKUP_ROOT_LARK_CLI_DIR", ".lark-cli"),
)


LEGACY_ENV_FILES = ("/etc/profile.d/openclaw-env.sh", "{home}/.env.d/openclaw-backup.env")
_ASSIGN = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def with_env_files(env: Mapping[str, str], files: tuple[str, ...] = LEGACY_ENV_FILES) -> dict[str, str]:
    """The environment, plus variables from the legacy script's shell files where unset.

    Only plain assignments (``[export] NAME=value``, quoted or not) are read; anything that would
    need a shell to evaluate (``$(…)``, backticks, ``$VAR``) is skipped, never executed.
    """
    out = dict(env)
    home = env.get("HOME") or str(Path.home())
    for pattern in files:
        try:
            text = Path(pattern.format(home=home)).read_text()
        except (OSError, UnicodeDecodeError):
            continue
        for line in text.splitlines():
            m = _ASSIGN.match(line)
            if not m or m.group(1) in out:
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
            out[m.group(1)] = parts[0] if parts else ""
    return out


def _truthy(value: str | None, default: bool) -> bool:
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


@dataclass
class Settings:
    """Everything the edges need, resolved from flags + environment."""

    env: Mapping[str, str]
    repo: str | None = None
    password_file: str | None = None
    cache_dir: Path | None = None
    home: Path = field(default_factory=Path.home)

    def __post_init__(self) -> None:
        self.home = Path(self.env.get("HOME") or self.home)

    # ------------------------------------------------------------- repository

    def repository(self) -> str:
        if self.repo:
            return self.repo
        if self.env.get("OPENCLAW_BACKUP_REPOSITORY"):
            return self.env["OPENCLAW_BACKUP_REPOSITORY"]
        legacy = self.env.get("OPENCLAW_BACKUP_DATASET_REPO")
        if legacy:
            kind = self.env.get("OPENCLAW_BACKUP_REPO_TYPE", "dataset") or "dataset"
            return f"hf://{kind}s/{legacy.strip('/')}"
        return str(self.data_home() / "openclaw-backup" / "repository")

    def data_home(self) -> Path:
        return Path(self.env.get("XDG_DATA_HOME") or self.home / ".local" / "share")

    def cache_root(self) -> Path:
        if self.cache_dir:
            return self.cache_dir
        if self.env.get("OPENCLAW_BACKUP_CACHE_DIR"):
            return Path(self.env["OPENCLAW_BACKUP_CACHE_DIR"])
        return Path(self.env.get("XDG_CACHE_HOME") or self.home / ".cache") / "openclaw-backup"

    def password(self) -> str | None:
        """The repository password, or None when none is configured."""
        if self.password_file:
            try:
                return Path(self.password_file).read_text().rstrip("\r\n")
            except OSError as e:
                raise UsageError(f"cannot read the password file {self.password_file}: {e.strerror}") from None
        for name in ("OPENCLAW_BACKUP_PASSWORD", "OPENCLAW_BACKUP_ENCRYPTION_PASSWORD"):
            if self.env.get(name):
                return self.env[name]
        if self.env.get("OPENCLAW_BACKUP_PASSWORD_FILE"):
            self.password_file = self.env["OPENCLAW_BACKUP_PASSWORD_FILE"]
            return self.password()
        return None

    def legacy_unencrypted_choice(self) -> bool:
        """True when a legacy configuration chose no encryption (our repository may then be plain).

        ``OPENCLAW_BACKUP_ENCRYPTION_ENABLED=true`` without a password is refused: the legacy script
        silently stored plaintext in that case; we do not.
        """
        if not self.env.get("OPENCLAW_BACKUP_DATASET_REPO") or self.env.get("OPENCLAW_BACKUP_REPOSITORY"):
            return False
        if _truthy(self.env.get("OPENCLAW_BACKUP_ENCRYPTION_ENABLED"), False):
            raise UsageError(
                "OPENCLAW_BACKUP_ENCRYPTION_ENABLED is true but OPENCLAW_BACKUP_ENCRYPTION_PASSWORD is not set",
                hint="set the password (the legacy script silently stored plaintext here; we refuse)",
            )
        return True

    def kdf_params(self) -> KdfParams:
        """Key-derivation cost for new key files; test suites may ask for cheap ones, never the default."""
        if self.env.get("OPENCLAW_BACKUP_TEST_WEAK_KDF") == "1":
            return KdfParams.weak_for_tests()
        return KdfParams()

    def backend_options(self, *, create: bool = False) -> BackendOptions:
        return BackendOptions(
            token=self.env.get("HF_TOKEN") or self.env.get("HUGGINGFACE_HUB_TOKEN") or None,
            hf_endpoint=self.env.get("HF_ENDPOINT") or None,
            s3_endpoint=self.env.get("OPENCLAW_BACKUP_S3_ENDPOINT") or self.env.get("AWS_ENDPOINT_URL") or None,
            s3_region=self.env.get("AWS_REGION") or self.env.get("AWS_DEFAULT_REGION") or None,
            s3_access_key=self.env.get("AWS_ACCESS_KEY_ID") or None,
            s3_secret_key=self.env.get("AWS_SECRET_ACCESS_KEY") or None,
            s3_session_token=self.env.get("AWS_SESSION_TOKEN") or None,
            create=create,
            # Like the legacy script: public only when explicitly false; anything else stays private.
            private=(self.env.get("OPENCLAW_BACKUP_PRIVATE") or "").strip().lower() not in ("false", "0", "no", "off"),
        )

    # ------------------------------------------------------------- sources

    def state_dir(self) -> str:
        return (
            self.env.get("OPENCLAW_BACKUP_SOURCE_DIR")
            or self.env.get("OPENCLAW_STATE_DIR")
            or str(self.home / ".openclaw")
        )

    def layout_roots(self) -> list[Root]:
        """Every root of the OpenClaw layout, whether or not it exists here."""
        roots = [Root("openclaw-state", os.path.abspath(os.path.expanduser(self.state_dir())))]
        for name, var, default in LEGACY_ROOTS:
            roots.append(Root(name, os.path.abspath(self.env.get(var) or str(self.home / default))))
        if _truthy(self.env.get("OPENCLAW_BACKUP_NPM_ENABLED"), True):
            roots.append(
                Root(
                    "root-npm", os.path.abspath(self.env.get("OPENCLAW_BACKUP_ROOT_NPM_DIR") or str(self.home / ".npm"))
                )
            )
        for var in ("OPENCLAW_BACKUP_EXTRA_DIRS", "OPENCLAW_BACKUP_EXTRA_FILES"):
            for item in (self.env.get(var) or "").split(","):
                if not item.strip():
                    continue
                name, sep, path = item.strip().partition(":")
                if not sep or not path:
                    raise UsageError(f"{var}: expected name:/path, got {item!r}")
                roots.append(Root(name.strip(), os.path.abspath(os.path.expanduser(path.strip()))))
        return roots

    def default_roots(self) -> list[Root]:
        """The layout roots that exist (the state dir always, so a missing one is reported)."""
        roots = self.layout_roots()
        return [r for i, r in enumerate(roots) if i == 0 or os.path.lexists(r.path)]

    def host(self) -> str:
        return self.env.get("OPENCLAW_BACKUP_HOST") or self.env.get("SPACE_ID") or socket.gethostname()

    def username(self) -> str:
        try:
            return getpass.getuser()
        except (KeyError, OSError):
            return ""

    def agent_version(self) -> str | None:
        """OpenClaw's version, when known (``OPENCLAW_VERSION``, else its config's last-touched version)."""
        if self.env.get("OPENCLAW_VERSION"):
            return self.env["OPENCLAW_VERSION"]
        try:
            doc = json.loads((Path(self.state_dir()) / "openclaw.json").read_text())
            version = doc.get("meta", {}).get("lastTouchedVersion")
            return str(version) if version else None
        except (OSError, ValueError, AttributeError):
            return None


def sources_from_paths(paths: list[str]) -> list[Root]:
    """``--source`` paths as roots named after their base names (made unique)."""
    roots: list[Root] = []
    used: set[str] = set()
    for p in paths:
        path = os.path.abspath(os.path.expanduser(p))
        base = "".join(c if c.isalnum() or c in "._-" else "_" for c in (os.path.basename(path) or "root"))
        base = base.strip(".") or "root"
        name, n = base, 2
        while name in used:
            name, n = f"{base}-{n}", n + 1
        used.add(name)
        roots.append(Root(name, path))
    return roots


def restore_destinations(snapshot: dict[str, Any], s: Settings, target: str | None) -> dict[str, Path]:
    """Where each root of ``snapshot`` goes: under ``target``, or to the place this machine configures.

    A root this machine does not configure goes back to its recorded path only when that path is
    inside the home directory; a repository cannot direct a restore at, say, ``/etc``.
    """
    roots: dict[str, Any] = snapshot.get("roots", {})
    if target:
        return {name: Path(target).absolute() / name for name in roots}
    configured = {r.name: Path(r.path) for r in s.layout_roots()}
    out: dict[str, Path] = {}
    home = s.home.absolute()
    for name, info in roots.items():
        if name in configured:
            out[name] = configured[name]
            continue
        recorded = Path(str(info.get("path", "")))
        # Resolve symlinks on the way: ~/link -> /etc must not let a repository aim at /etc.
        real = Path(os.path.realpath(recorded)) if recorded.is_absolute() else recorded
        if recorded.is_absolute() and ".." not in recorded.parts and Path(os.path.realpath(home)) in real.parents:
            out[name] = recorded
        else:
            raise UnsafeRestoreError(
                f"root {name!r} was backed up from {recorded}, outside this machine's configured places",
                hint="restore it with --target DIR",
            )
    return out
