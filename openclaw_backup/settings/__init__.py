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

Every environment variable the package honours is named in this module and parsed here, once, into
a typed value (:meth:`Settings.keep_policy`, :meth:`Settings.interval`, :meth:`Settings.grace`, …);
the commands, the service and the supervisor receive values, never names. :data:`LEGACY_VARS` lists
the legacy script's variables and what becomes of each (``openclaw-backup legacy-env``).

Parts: :mod:`.names` (every name the package knows, the tool's secrets, the closest name for a
misspelt one), :mod:`.parsing` (env files, cron schedules, numbers, password files/commands) and
:mod:`.hub` (what the Hub's client libraries would read from the environment).
"""

from __future__ import annotations

import getpass
import json
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..backends import BackendOptions, normalize_address
from ..crypto import KdfParams
from ..errors import UnsafeRestoreError, UsageError
from ..retention import Policy
from ..sources import Root
from .hub import hub_endpoint, hub_environment, implicit_token
from .names import (
    KNOWN_VARIABLES,
    LEGACY_ROOTS,
    LEGACY_VARS,
    OUR_PREFIXES,
    SPACE_PERSISTENT_STORAGE,
    TOOL_SECRETS,
    closest_known,
)
from .parsing import (
    LEGACY_ENV_FILES,
    cron_interval,
    env_files_read,
    positive,
    proxy_for,
    read_password_file,
    run_password_command,
    truthy,
    with_env_files,
)

__all__ = [
    "KNOWN_VARIABLES", "LEGACY_ENV_FILES", "LEGACY_ROOTS", "LEGACY_VARS", "SPACE_PERSISTENT_STORAGE", "TOOL_SECRETS",
    "Settings", "cron_interval", "env_files_read", "restore_destinations", "sources_from_paths", "with_env_files",
]  # fmt: skip

@dataclass
class Settings:
    """Everything the edges need, resolved from flags + environment."""

    env: Mapping[str, str]
    repo: str | None = None
    password_file: str | None = None
    cache_dir: Path | None = None
    home: Path = field(default_factory=Path.home)
    #: the process's own environment (``env`` may add the legacy env files' variables); what the
    #: supervised agent inherits, minus :data:`TOOL_SECRETS`
    process_env: Mapping[str, str] | None = None
    #: ``--password-command``: run it, its output is the password
    password_command: str | None = None
    #: asks a question on the terminal and returns the answer unechoed (the CLI's, on a terminal only)
    prompt: Callable[[str], str] | None = field(default=None, repr=False, compare=False)
    _resolved: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.home = Path(self.env.get("HOME") or self.home)

    # ------------------------------------------------------------- repository

    def repository(self) -> str:
        """The repository address, its scheme in lower case; an unknown or mistyped scheme is a
        :class:`UsageError` here, before anything is created."""
        if self.repo:
            return normalize_address(self.repo)
        if self.env.get("OPENCLAW_BACKUP_REPOSITORY"):
            return normalize_address(self.env["OPENCLAW_BACKUP_REPOSITORY"])
        legacy = self.env.get("OPENCLAW_BACKUP_DATASET_REPO")
        if legacy:
            kind = self.env.get("OPENCLAW_BACKUP_REPO_TYPE", "dataset") or "dataset"
            return f"hf://{kind}s/{legacy.strip('/')}"
        return str(self.data_home() / "openclaw-backup" / "repository")

    def repository_source(self) -> str:
        """What chose :meth:`repository`: a flag, a variable, or the default."""
        if self.repo:
            return "--repo"
        if self.env.get("OPENCLAW_BACKUP_REPOSITORY"):
            return "OPENCLAW_BACKUP_REPOSITORY"
        if self.env.get("OPENCLAW_BACKUP_DATASET_REPO"):
            return "OPENCLAW_BACKUP_DATASET_REPO (legacy)"
        return "the default (no --repo, no OPENCLAW_BACKUP_REPOSITORY)"

    def token_source(self) -> str | None:
        """The variable the Hub token comes from (never the token), or None."""
        names = ("OPENCLAW_BACKUP_HF_TOKEN", "HF_TOKEN", "HUGGINGFACE_HUB_TOKEN")
        return next((n for n in names if self.env.get(n)), None)

    def space_id(self) -> str | None:
        """The Hugging Face Space this runs in (``SPACE_ID``, set by the Space itself), or None."""
        return self.env.get("SPACE_ID") or None

    def durability_problem(self) -> UsageError | None:
        """In a Space, a repository that does not outlive the container — none configured (the
        default is a folder in the container) or a local path — as the error to report; None when
        not in a Space or the repository is remote (or on the Space's persistent storage, ``/data``)."""
        if not self.space_id():
            return None
        address = self.repository()
        if "://" in address:
            return None
        path = Path(address).absolute()
        if os.path.ismount(SPACE_PERSISTENT_STORAGE) and Path(SPACE_PERSISTENT_STORAGE) in (path, *path.parents):
            return None
        hint = (
            "set OPENCLAW_BACKUP_REPOSITORY=hf://datasets/<you>/<name> as a Space variable, and HF_TOKEN "
            "(write access) and OPENCLAW_BACKUP_PASSWORD as Space secrets"
        )
        if self.repo or self.env.get("OPENCLAW_BACKUP_REPOSITORY"):
            return UsageError(
                f"the repository {address} is a folder inside this Space's container ({self.space_id()}): "
                "it is lost when the Space restarts, and the backups with it",
                hint=hint,
            )
        return UsageError(
            f"OPENCLAW_BACKUP_REPOSITORY is not set: backups would go to {address}, inside this Space's "
            f"container ({self.space_id()}), and be lost when the Space restarts",
            hint=hint,
        )

    def legacy_mode(self) -> bool:
        """The legacy script's configuration drives this run (no repository given the new way)."""
        return (
            bool(self.env.get("OPENCLAW_BACKUP_DATASET_REPO"))
            and not self.repo
            and not self.env.get("OPENCLAW_BACKUP_REPOSITORY")
        )

    def restore_repository(self) -> tuple[str, str] | None:
        """``OPENCLAW_RESTORE_DATASET_REPO`` as (the name given, its address), when it names another repo."""
        other = self.env.get("OPENCLAW_RESTORE_DATASET_REPO")
        if not other or other == self.env.get("OPENCLAW_BACKUP_DATASET_REPO"):
            return None
        kind = self.env.get("OPENCLAW_BACKUP_REPO_TYPE", "dataset") or "dataset"
        return other, f"hf://{kind}s/{other.strip('/')}"

    def with_repository(self, address: str) -> Settings:
        """These settings, for the repository at ``address``."""
        return Settings(
            self.env,
            repo=address,
            password_file=self.password_file,
            cache_dir=self.cache_dir,
            password_command=self.password_command,
            prompt=self.prompt,
            _resolved=self._resolved,
        )

    def restore_archive(self) -> str | None:
        """The legacy archive a restore must use (``OPENCLAW_RESTORE_ARCHIVE``), or None for the newest."""
        return self.env.get("OPENCLAW_RESTORE_ARCHIVE") or None

    def legacy_prefix(self) -> str:
        """The folder of the legacy script's backups in the repository (``OPENCLAW_BACKUP_PATH_PREFIX``)."""
        return self.env.get("OPENCLAW_BACKUP_PATH_PREFIX", "backups")

    def data_home(self) -> Path:
        return Path(self.env.get("XDG_DATA_HOME") or self.home / ".local" / "share")

    def cache_root(self) -> Path:
        if self.cache_dir:
            return self.cache_dir
        if self.env.get("OPENCLAW_BACKUP_CACHE_DIR"):
            return Path(self.env["OPENCLAW_BACKUP_CACHE_DIR"])
        return Path(self.env.get("XDG_CACHE_HOME") or self.home / ".cache") / "openclaw-backup"

    def password(self) -> str | None:
        """The repository password, or None when none is configured (and none was typed yet).

        In order: ``--password-file``, ``--password-command``, ``OPENCLAW_BACKUP_PASSWORD``, the legacy
        ``OPENCLAW_BACKUP_ENCRYPTION_PASSWORD``, ``OPENCLAW_BACKUP_PASSWORD_FILE``,
        ``OPENCLAW_BACKUP_PASSWORD_COMMAND``; a password typed at :meth:`ask_password` is kept for the run.
        """
        if self._resolved is not None:
            return self._resolved
        if self.password_file:
            return read_password_file(self.password_file, "the password file")
        if self.password_command:
            self._resolved = run_password_command(self.password_command, "--password-command")
            return self._resolved
        for name in ("OPENCLAW_BACKUP_PASSWORD", "OPENCLAW_BACKUP_ENCRYPTION_PASSWORD"):
            if self.env.get(name):
                return self.env[name]
        if self.env.get("OPENCLAW_BACKUP_PASSWORD_FILE"):
            return read_password_file(self.env["OPENCLAW_BACKUP_PASSWORD_FILE"], "OPENCLAW_BACKUP_PASSWORD_FILE")
        if self.env.get("OPENCLAW_BACKUP_PASSWORD_COMMAND"):
            self._resolved = run_password_command(
                self.env["OPENCLAW_BACKUP_PASSWORD_COMMAND"], "OPENCLAW_BACKUP_PASSWORD_COMMAND"
            )
            return self._resolved
        return None

    def password_source(self) -> str:
        """Where :meth:`password` would take the password from (never the password itself)."""
        if self.password_file:
            return f"--password-file {self.password_file}"
        if self.password_command:
            return "--password-command"
        for name in ("OPENCLAW_BACKUP_PASSWORD", "OPENCLAW_BACKUP_ENCRYPTION_PASSWORD"):
            if self.env.get(name):
                return name
        if self.env.get("OPENCLAW_BACKUP_PASSWORD_FILE"):
            return f"OPENCLAW_BACKUP_PASSWORD_FILE ({self.env['OPENCLAW_BACKUP_PASSWORD_FILE']})"
        if self.env.get("OPENCLAW_BACKUP_PASSWORD_COMMAND"):
            return "OPENCLAW_BACKUP_PASSWORD_COMMAND"
        if self.prompt is not None:
            return "asked on the terminal"
        return "none"

    def can_ask(self) -> bool:
        """A password can be typed (the CLI runs on a terminal)."""
        return self.prompt is not None

    def ask_password(self, *, confirm: bool = False) -> str | None:
        """Ask for the password on the terminal (twice when ``confirm``, for a new repository);
        None when there is no terminal. The answer is kept for the rest of the run."""
        if self.prompt is None:
            return None
        first = self.prompt("new repository password: " if confirm else "repository password: ")
        if confirm and first != self.prompt("the same password again: "):
            raise UsageError("the two passwords differ; nothing was created")
        if not first:
            raise UsageError("the password is empty")
        self._resolved = first
        return first

    def new_password(self, path: str | None = None) -> str | None:
        """The password ``key add``/``key passwd`` install: from ``path``, else ``OPENCLAW_BACKUP_NEW_PASSWORD``.

        None when neither is given (the command may then ask on a terminal).
        """
        if path:
            try:
                return Path(path).read_text().rstrip("\r\n")
            except OSError as e:
                raise UsageError(f"cannot read {path}: {e.strerror}") from None
        return self.env.get("OPENCLAW_BACKUP_NEW_PASSWORD") or None

    def legacy_unencrypted_choice(self) -> bool:
        """True when a legacy configuration chose no encryption (our repository may then be plain).

        ``OPENCLAW_BACKUP_ENCRYPTION_ENABLED=true`` without a password is refused: the legacy script
        silently stored plaintext in that case; we do not.
        """
        if not self.env.get("OPENCLAW_BACKUP_DATASET_REPO") or self.env.get("OPENCLAW_BACKUP_REPOSITORY"):
            return False
        if truthy(self.env.get("OPENCLAW_BACKUP_ENCRYPTION_ENABLED"), False):
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

    def _first(self, *names: str) -> str | None:
        return next((self.env[n] for n in names if self.env.get(n)), None)

    def backend_options(self, *, create: bool = False) -> BackendOptions:
        """The tool's own credentials (``OPENCLAW_BACKUP_HF_TOKEN``, ``OPENCLAW_BACKUP_S3_*``) come
        first, so the backup and the agent can hold different tokens; then the usual names, then
        the token ``huggingface_hub`` would find itself (:mod:`.hub`: the stored login's). The
        libraries read the process's own environment (not the legacy env files): the stored login,
        and the proxy variables botocore would follow."""
        library_env = self.process_env if self.process_env is not None else self.env
        token = self._first("OPENCLAW_BACKUP_HF_TOKEN", "HF_TOKEN", "HUGGINGFACE_HUB_TOKEN")
        settled = True
        if token is None:
            token, settled = implicit_token(library_env)
        s3_endpoint = self._first("OPENCLAW_BACKUP_S3_ENDPOINT", "AWS_ENDPOINT_URL")
        return BackendOptions(
            token=token,
            hf_endpoint=hub_endpoint(self.env, library_env),
            hub_env=hub_environment(library_env, token_settled=settled),
            s3_endpoint=s3_endpoint,
            s3_proxy=proxy_for(s3_endpoint, library_env) if s3_endpoint else None,
            s3_region=self._first("AWS_REGION", "AWS_DEFAULT_REGION"),
            s3_access_key=self._first("OPENCLAW_BACKUP_S3_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"),
            s3_secret_key=self._first("OPENCLAW_BACKUP_S3_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"),
            s3_session_token=self._first("OPENCLAW_BACKUP_S3_SESSION_TOKEN", "AWS_SESSION_TOKEN"),
            create=create,
            # Like the legacy script: public only when explicitly false; anything else stays private.
            private=(self.env.get("OPENCLAW_BACKUP_PRIVATE") or "").strip().lower() not in ("false", "0", "no", "off"),
        )

    # ------------------------------------------------------------- service (`run`, retention)

    def unknown_variables(self) -> list[tuple[str, str | None]]:
        """``(name, closest known name)`` for each ``OPENCLAW_BACKUP_*``/``OPENCLAW_RESTORE_*``
        variable set that this tool does not know."""
        out = []
        for name in sorted(self.env):
            if name.startswith(OUR_PREFIXES) and name not in KNOWN_VARIABLES:
                out.append((name, closest_known(name)))
        return out

    def agent_environment(self) -> dict[str, str]:
        """The environment of the agent ``run`` supervises: this process's own, without the tool's
        secrets (a prompt-injected agent could read them, or write them into transcripts that are
        then backed up)."""
        base = self.process_env if self.process_env is not None else self.env
        return {k: v for k, v in base.items() if k not in TOOL_SECRETS}

    def keep_policy(self) -> Policy | None:
        """``OPENCLAW_BACKUP_KEEP_COUNT`` as a keep-last policy, or None when unset or not a positive integer.

        One rule for ``forget`` (with no flags) and for the supervisor's daily forget: digits only
        (ASCII), greater than zero; anything else ("lots", "0", "-1") is ignored, as the legacy
        script ignored tuning it did not understand.
        """
        text = (self.env.get("OPENCLAW_BACKUP_KEEP_COUNT") or "").strip()
        if not re.fullmatch(r"[0-9]+", text) or int(text) <= 0:
            return None
        return Policy(keep_last=int(text))

    def prune_grace(self, flag: float | None = None) -> float:
        """Seconds prune leaves an unindexed pack alone (a concurrent backup's work in progress):
        ``flag`` (``prune --grace``), else OPENCLAW_BACKUP_PRUNE_GRACE, else one hour."""
        if flag is not None:
            if flag < 0:
                raise UsageError(f"--grace must not be negative, got {flag}")
            return flag
        text = self.env.get("OPENCLAW_BACKUP_PRUNE_GRACE", "").strip()
        if not text:
            return 3600.0
        try:
            value = float(text)
        except ValueError:
            value = -1
        if value < 0:
            raise UsageError(f"OPENCLAW_BACKUP_PRUNE_GRACE must be a number of seconds (0 or more), got {text!r}")
        return value

    def interval(self) -> float:
        """Seconds between backups: OPENCLAW_BACKUP_INTERVAL, else the legacy cron/minutes, else 300."""
        if self.env.get("OPENCLAW_BACKUP_INTERVAL", "").strip():
            return positive(self.env["OPENCLAW_BACKUP_INTERVAL"], "OPENCLAW_BACKUP_INTERVAL")
        if self.env.get("OPENCLAW_BACKUP_CRON", "").strip():
            return cron_interval(self.env["OPENCLAW_BACKUP_CRON"])
        minutes = self.env.get("OPENCLAW_INCREMENTAL_INTERVAL_MINUTES", "")
        if minutes.strip():
            return positive(minutes, "OPENCLAW_INCREMENTAL_INTERVAL_MINUTES") * 60
        return 300.0

    def max_age(self) -> float:
        """At most this many seconds of changes are outside a snapshot while the state keeps changing
        (``OPENCLAW_BACKUP_MAX_AGE``, default 60; a Hub repo's commit budget may stretch it)."""
        return positive(self.env.get("OPENCLAW_BACKUP_MAX_AGE", "60"), "OPENCLAW_BACKUP_MAX_AGE")

    def grace(self) -> float:
        """Seconds between SIGTERM and SIGKILL of the agent (``OPENCLAW_BACKUP_GRACE_SECONDS``, default 10)."""
        return positive(self.env.get("OPENCLAW_BACKUP_GRACE_SECONDS", "10"), "OPENCLAW_BACKUP_GRACE_SECONDS")

    def status_file(self, explicit: str | None = None) -> Path:
        """Where the supervisor's status JSON lives: ``explicit`` (a flag), ``OPENCLAW_BACKUP_STATUS_FILE``, or
        ``status.json`` in the cache."""
        path = explicit or self.env.get("OPENCLAW_BACKUP_STATUS_FILE")
        return Path(path) if path else self.cache_root() / "status.json"

    def legacy_variables(self) -> list[tuple[str, bool, str]]:
        """Each of :data:`LEGACY_VARS` as (name, set here, handling); never a value (some are secrets)."""
        return [(name, name in self.env, handling) for name, handling in LEGACY_VARS]

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
        if truthy(self.env.get("OPENCLAW_BACKUP_NPM_ENABLED"), True):
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

    def installed_agent_version(self) -> str | None:
        """The OpenClaw that will read restored state: ``OPENCLAW_VERSION``, else the version of the
        ``openclaw`` on PATH — read from its npm package, or (not installed by npm) what
        ``openclaw --version`` says; None when unknown."""
        if self.env.get("OPENCLAW_VERSION"):
            return self.env["OPENCLAW_VERSION"]
        exe = shutil.which("openclaw", path=self.env.get("PATH", os.defpath))
        if exe is None:
            return None
        return _npm_package_version(exe) or _openclaw_version_command(exe)

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


_VERSION = re.compile(r"\d+(?:\.\d+)+")


def _npm_package_version(exe: str) -> str | None:
    """The version of the npm package ``openclaw`` that ``exe`` runs: npm installs the command as a
    link to a file of ``<prefix>/lib/node_modules/openclaw/``, whose ``package.json`` names it.
    Reading that costs a millisecond; starting node to ask costs 0.3 s to several seconds."""
    folder = Path(os.path.realpath(exe)).parent
    for candidate in (folder, *list(folder.parents)[:3]):
        try:
            doc = json.loads((candidate / "package.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(doc, dict) or doc.get("name") != "openclaw":
            return None  # the nearest package is another one: not an npm install of OpenClaw
        m = _VERSION.match(str(doc.get("version", "")))
        return m.group(0) if m else None
    return None


def _openclaw_version_command(exe: str) -> str | None:
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = _VERSION.search(out)
    return m.group(0) if m else None


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


def restore_destinations(roots: Mapping[str, Mapping[str, str]], s: Settings, target: str | None) -> dict[str, Path]:
    """Where each of a snapshot's ``roots`` goes: under ``target``, or to the place this machine configures.

    A root this machine does not configure goes back to its recorded path only when that path is
    inside the home directory; a repository cannot direct a restore at, say, ``/etc``.
    """
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
