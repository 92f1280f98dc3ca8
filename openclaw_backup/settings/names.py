"""The names: every environment variable the package knows (ours and the legacy script's), the
legacy roots and what becomes of each legacy variable, the tool's own secrets, and the closest
known name for a misspelt one. Part of :mod:`openclaw_backup.settings` (which reads them)."""

from __future__ import annotations

import difflib

LEGACY_ROOTS: tuple[tuple[str, str, str], ...] = (
    ("root-config", "OPENCLAW_BACKUP_ROOT_CONFIG_DIR", ".config"),
    ("root-codex", "OPENCLAW_BACKUP_ROOT_CODEX_DIR", ".codex"),
    ("root-claude", "OPENCLAW_BACKUP_ROOT_CLAUDE_DIR", ".claude"),
    ("root-agents", "OPENCLAW_BACKUP_ROOT_AGENTS_DIR", ".agents"),
    ("root-ssh", "OPENCLAW_BACKUP_ROOT_SSH_DIR", ".ssh"),
    ("root-env", "OPENCLAW_BACKUP_ROOT_ENV_DIR", ".env.d"),
    ("root-lark-cli", "OPENCLAW_BACKUP_ROOT_LARK_CLI_DIR", ".lark-cli"),
)

#: Legacy variables and what becomes of them (shown by ``openclaw-backup legacy-env``).
LEGACY_VARS: tuple[tuple[str, str], ...] = (
    ("OPENCLAW_BACKUP_DATASET_REPO", "honoured: the repository is hf://datasets/<it> (or models, see REPO_TYPE)"),
    ("HF_TOKEN", "honoured: Hub token (never printed)"),
    ("HUGGINGFACE_HUB_TOKEN", "honoured: Hub token when HF_TOKEN is unset"),
    ("OPENCLAW_RESTORE_DATASET_REPO", "honoured: restore from this repo (falls back to the backup repo)"),
    ("OPENCLAW_RESTORE_ARCHIVE", "honoured: restore this legacy archive"),
    ("OPENCLAW_BACKUP_ENCRYPTION_ENABLED", "honoured: true without a password is refused (not silently plaintext)"),
    ("OPENCLAW_BACKUP_ENCRYPTION_PASSWORD", "honoured: the repository password (and the legacy archives')"),
    ("OPENCLAW_STATE_DIR", "honoured: the state directory"),
    ("OPENCLAW_BACKUP_SOURCE_DIR", "honoured: overrides OPENCLAW_STATE_DIR"),
    ("OPENCLAW_BACKUP_ROOT_CONFIG_DIR", "honoured: extra root root-config"),
    ("OPENCLAW_BACKUP_ROOT_CODEX_DIR", "honoured: extra root root-codex"),
    ("OPENCLAW_BACKUP_ROOT_CLAUDE_DIR", "honoured: extra root root-claude"),
    ("OPENCLAW_BACKUP_ROOT_AGENTS_DIR", "honoured: extra root root-agents"),
    ("OPENCLAW_BACKUP_ROOT_SSH_DIR", "honoured: extra root root-ssh"),
    ("OPENCLAW_BACKUP_ROOT_ENV_DIR", "honoured: extra root root-env"),
    ("OPENCLAW_BACKUP_ROOT_LARK_CLI_DIR", "honoured: extra root root-lark-cli"),
    ("OPENCLAW_BACKUP_ROOT_NPM_DIR", "honoured: extra root root-npm"),
    ("OPENCLAW_BACKUP_NPM_ENABLED", "honoured: include root-npm"),
    ("OPENCLAW_RESTORE_NPM_ENABLED", "accepted; root-npm is restored when the snapshot has it"),
    ("OPENCLAW_BACKUP_EXTRA_DIRS", "honoured: name:/path,… extra roots"),
    ("OPENCLAW_BACKUP_EXTRA_FILES", "honoured: name:/path,… extra file roots"),
    ("OPENCLAW_BACKUP_REPO_TYPE", "honoured: dataset (default) or model"),
    ("OPENCLAW_BACKUP_PATH_PREFIX", "honoured: where the legacy archives are read from"),
    ("OPENCLAW_BACKUP_PRIVATE", "honoured: visibility of a repo we create"),
    ("OPENCLAW_BACKUP_KEEP_COUNT", "honoured: keep-last policy of the supervisor's forget/prune"),
    ("OPENCLAW_BACKUP_CRON", "honoured by `run`: */N minutes becomes the backup interval"),
    ("OPENCLAW_INCREMENTAL_INTERVAL_MINUTES", "honoured by `run`: the backup interval"),
    ("OPENCLAW_BACKUP_WORK_DIR", "ignored: no scratch archives are built"),
    ("OPENCLAW_BACKUP_METADATA_DIR", "ignored: metadata lives in the repository"),
    ("OPENCLAW_INCREMENTAL_BACKUP", "ignored: every backup is incremental and complete"),
    ("OPENCLAW_FULL_BACKUP_INTERVAL_HOURS", "ignored: no full/incremental chains"),
    ("OPENCLAW_MAX_INCREMENTAL_BACKUPS", "ignored: no chains"),
    ("OPENCLAW_BACKUP_COMPRESSION_LEVEL", "ignored: zstd per chunk, only when it pays"),
    ("OPENCLAW_BACKUP_SPLIT_SIZE", "ignored: data is packed in ~16 MiB packs"),
    ("OPENCLAW_BACKUP_SIZE_WARNING_MB", "ignored"),
    ("OPENCLAW_DYNAMIC_BACKUP", "ignored: `run` backs up soon after bursts of change"),
)

#: Where a Hugging Face Space mounts its persistent storage (when it has some): a repository there
#: outlives the container.
SPACE_PERSISTENT_STORAGE = "/data"

#: The tool's own secrets: never handed to the agent that ``run`` supervises. The agent keeps the
#: generic names (``HF_TOKEN``, ``AWS_*``) it may need itself; give the backup its own token with
#: the ``OPENCLAW_BACKUP_*`` names.
TOOL_SECRETS: tuple[str, ...] = (
    "OPENCLAW_BACKUP_PASSWORD",
    "OPENCLAW_BACKUP_PASSWORD_FILE",
    "OPENCLAW_BACKUP_PASSWORD_COMMAND",
    "OPENCLAW_BACKUP_NEW_PASSWORD",
    "OPENCLAW_BACKUP_ENCRYPTION_PASSWORD",
    "OPENCLAW_BACKUP_HF_TOKEN",
    "OPENCLAW_BACKUP_S3_ACCESS_KEY_ID",
    "OPENCLAW_BACKUP_S3_SECRET_ACCESS_KEY",
    "OPENCLAW_BACKUP_S3_SESSION_TOKEN",
)


#: Every ``OPENCLAW_*`` variable this tool reads or knows of (ours and the legacy script's);
#: others that look like ours get a warning naming the closest (a typo is otherwise silent).
KNOWN_VARIABLES: frozenset[str] = frozenset((
    "OPENCLAW_BACKUP_CACHE_DIR",
    "OPENCLAW_BACKUP_COMPRESSION_LEVEL",
    "OPENCLAW_BACKUP_CRON",
    "OPENCLAW_BACKUP_DATASET_REPO",
    "OPENCLAW_BACKUP_ENCRYPTION_ENABLED",
    "OPENCLAW_BACKUP_ENCRYPTION_PASSWORD",
    "OPENCLAW_BACKUP_EXTRA_DIRS",
    "OPENCLAW_BACKUP_EXTRA_FILES",
    "OPENCLAW_BACKUP_GRACE_SECONDS",
    "OPENCLAW_BACKUP_HF_TOKEN",
    "OPENCLAW_BACKUP_HOST",
    "OPENCLAW_BACKUP_INTERVAL",
    "OPENCLAW_BACKUP_PRUNE_GRACE",
    "OPENCLAW_BACKUP_KEEP_COUNT",
    "OPENCLAW_BACKUP_MAX_AGE",
    "OPENCLAW_BACKUP_METADATA_DIR",
    "OPENCLAW_BACKUP_NEW_PASSWORD",
    "OPENCLAW_BACKUP_NPM_ENABLED",
    "OPENCLAW_BACKUP_PASSWORD",
    "OPENCLAW_BACKUP_PASSWORD_COMMAND",
    "OPENCLAW_BACKUP_PASSWORD_FILE",
    "OPENCLAW_BACKUP_PATH_PREFIX",
    "OPENCLAW_BACKUP_PRIVATE",
    "OPENCLAW_BACKUP_REPOSITORY",
    "OPENCLAW_BACKUP_REPO_TYPE",
    "OPENCLAW_BACKUP_ROOT_AGENTS_DIR",
    "OPENCLAW_BACKUP_ROOT_CLAUDE_DIR",
    "OPENCLAW_BACKUP_ROOT_CODEX_DIR",
    "OPENCLAW_BACKUP_ROOT_CONFIG_DIR",
    "OPENCLAW_BACKUP_ROOT_ENV_DIR",
    "OPENCLAW_BACKUP_ROOT_LARK_CLI_DIR",
    "OPENCLAW_BACKUP_ROOT_NPM_DIR",
    "OPENCLAW_BACKUP_ROOT_SSH_DIR",
    "OPENCLAW_BACKUP_S3_ACCESS_KEY_ID",
    "OPENCLAW_BACKUP_S3_ENDPOINT",
    "OPENCLAW_BACKUP_S3_SECRET_ACCESS_KEY",
    "OPENCLAW_BACKUP_S3_SESSION_TOKEN",
    "OPENCLAW_BACKUP_SIZE_WARNING_MB",
    "OPENCLAW_BACKUP_SOURCE_DIR",
    "OPENCLAW_BACKUP_SPLIT_SIZE",
    "OPENCLAW_BACKUP_STATUS_FILE",
    "OPENCLAW_BACKUP_TEST_WEAK_KDF",
    "OPENCLAW_BACKUP_WORK_DIR",
    "OPENCLAW_DYNAMIC_BACKUP",
    "OPENCLAW_FULL_BACKUP_INTERVAL_HOURS",
    "OPENCLAW_INCREMENTAL_BACKUP",
    "OPENCLAW_INCREMENTAL_INTERVAL_MINUTES",
    "OPENCLAW_MAX_INCREMENTAL_BACKUPS",
    "OPENCLAW_RESTORE_ARCHIVE",
    "OPENCLAW_RESTORE_DATASET_REPO",
    "OPENCLAW_RESTORE_NPM_ENABLED",
    "OPENCLAW_STATE_DIR",
    "OPENCLAW_VERSION",
))
OUR_PREFIXES = ("OPENCLAW_BACKUP_", "OPENCLAW_RESTORE_")

#: Words that say what a mistyped name meant better than its spelling does (``…_HF_REPO`` is the
#: repository, though it is spelled closer to ``…_HF_TOKEN``).
_MEANT_BY_WORD = (("REPO", "OPENCLAW_BACKUP_REPOSITORY"), ("PASS", "OPENCLAW_BACKUP_PASSWORD"))


def closest_known(name: str) -> str | None:
    """The known variable a mistyped ``name`` most likely meant."""
    matches = difflib.get_close_matches(name, sorted(KNOWN_VARIABLES), n=1, cutoff=0.6)
    close = matches[0] if matches else None
    rest = name.removeprefix("OPENCLAW_BACKUP_")
    for word, meant in _MEANT_BY_WORD:
        if name.startswith("OPENCLAW_BACKUP_") and word in rest and (close is None or word not in close):
            return meant
    return close
