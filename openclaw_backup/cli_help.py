"""What each command's ``--help`` says beyond its options: what the command does, and examples.

Kept apart from :mod:`.cli` (which builds the parser) so the texts can be read and tested as a whole:
every command has an entry here (``tests/test_help_and_output.py`` checks that each ``--help`` shows
its description and at least one example).
"""

from __future__ import annotations

#: command -> (what it does, in a few sentences; examples, one per line, ``command  # why``)
HELP: dict[str, tuple[str, str]] = {
    "init": (
        "Create a repository at --repo (or OPENCLAW_BACKUP_REPOSITORY). It is encrypted with a key that only "
        "the password opens: on a terminal you are asked for it twice. A lost password cannot be recovered.",
        "openclaw-backup init\n"
        "openclaw-backup init --repo hf://datasets/me/agent-state\n"
        "OPENCLAW_BACKUP_PASSWORD_FILE=~/.config/ocb-pass openclaw-backup init --repo /mnt/backup/agent",
    ),
    "backup": (
        "Take a snapshot of the OpenClaw layout (~/.openclaw and the usual extra roots; `config` lists them), "
        "or of the --source paths. Unchanged files are not read again; nothing is uploaded when nothing "
        "changed. -v lists the files that changed.",
        "openclaw-backup backup\n"
        "openclaw-backup backup --dry-run            # what it would store and leave out\n"
        "openclaw-backup backup --source ~/notes --tag manual",
    ),
    "snapshots": (
        "List the snapshots: id, time (in this machine's time zone), host, files, size, roots and tags. "
        "A group is a host and its roots: `latest` is the latest of this machine's OpenClaw group.",
        "openclaw-backup snapshots\n"
        "openclaw-backup snapshots --host me/agent --tag manual\n"
        "openclaw-backup snapshots --json",
    ),
    "ls": (
        "List the files of a snapshot. Paths start with the root name (openclaw-state/…, root-ssh/…).",
        "openclaw-backup ls                          # the latest snapshot\n"
        "openclaw-backup ls 1a2b3c4d openclaw-state/workspace",
    ),
    "diff": (
        "What changed between two snapshots: + added, - removed, M modified.",
        "openclaw-backup diff 1a2b3c4d               # against the latest\n"
        "openclaw-backup diff 1a2b3c4d 5e6f7a8b",
    ),
    "restore": (
        "Restore a snapshot, verified, swapped in atomically. Into place (asks first on a terminal; what it "
        "replaces is kept beside it, with the command to undo), or under --target DIR/<root name>.",
        "openclaw-backup restore --dry-run\n"
        "openclaw-backup restore                     # the latest, into place\n"
        "openclaw-backup restore 1a2b3c4d --target /tmp/r --include openclaw-state/workspace",
    ),
    "check": (
        "Verify the repository: every snapshot's tree and the index; with --read-data also every stored byte.",
        "openclaw-backup check\nopenclaw-backup check --read-data-subset 10%",
    ),
    "stats": (
        "Sizes: what the snapshots hold, what is stored after deduplication and compression.",
        "openclaw-backup stats",
    ),
    "forget": (
        "Remove snapshots by a keep policy (the data stays until `prune`). Without flags: OPENCLAW_BACKUP_KEEP_COUNT.",
        "openclaw-backup forget --keep-last 10 --keep-daily 7 --dry-run\n"
        "openclaw-backup forget --keep-within 30d --prune",
    ),
    "prune": (
        "Free the space of data that no snapshot needs any more.",
        "openclaw-backup prune --dry-run\nopenclaw-backup prune",
    ),
    "repair": (
        "Repair a damaged repository after `check` found damage: `index` rebuilds the index from the packs' "
        "own headers, `packs` salvages what damaged packs still hold, `snapshots` rewrites snapshots without "
        "what is lost, `head` rebuilds a lost head. `check` prints the sequence to run (docs/retention.md).",
        "openclaw-backup repair packs\nopenclaw-backup backup\nopenclaw-backup repair snapshots\n"
        "openclaw-backup check --read-data",
    ),
    "run": (
        "Supervise an agent (a container's entrypoint): restore its state when missing, start CMD, back up "
        "every --interval seconds and soon after bursts of change, and once more after SIGTERM within "
        "--grace seconds. A missing password, or in a Space a repository that would not outlive the "
        "container, is an ERROR in the log and makes `status` unhealthy.",
        "openclaw-backup run -- openclaw gateway run --port 18789 --bind lan\n"
        "openclaw-backup run --interval 600 --restore never -- ./my-agent",
    ),
    "status": (
        "The supervisor's state: running or stopped, last success, last error, next run. Exit 1 when "
        "unhealthy (for health checks).",
        "openclaw-backup status\nopenclaw-backup status --json",
    ),
    "migrate": (
        "Import the legacy script's tar.gz backups (in the repository's folder) as snapshots with their own "
        "times; they then restore, list and diff like any other.",
        "openclaw-backup migrate --dry-run\nopenclaw-backup migrate --repo hf://datasets/me/openclaw-backups",
    ),
    "legacy-env": (
        "The legacy script's variables, which are set here, and what this tool does with each (no values).",
        "openclaw-backup legacy-env",
    ),
    "key": (
        "Manage the repository's passwords: list the key files, add a password, or change the current one.",
        "openclaw-backup key list\n"
        "openclaw-backup key add                     # asks for the new password on a terminal\n"
        "openclaw-backup key passwd --new-password-file new.txt",
    ),
    "excludes": (
        "The exclude patterns a backup applies, each with why it is there.",
        "openclaw-backup excludes\nopenclaw-backup excludes --exclude 'openclaw-state/logs/'",
    ),
    "demo": (
        "Back up and restore a sample agent home in a throwaway local repository, and verify the result.",
        "openclaw-backup demo",
    ),
    "config": (
        "What this tool would use here, without opening anything: the repository and what chose it, where "
        "the password comes from (never the password), the roots and their paths, the excludes, the env "
        "files read, the cache, whether this is a Space, and unknown variables with the name meant. "
        "Exit 1 when it finds a problem.",
        "openclaw-backup config\nopenclaw-backup config --json",
    ),
    "version": (
        "The version, and the Python, SQLite (bundled with APSW) and libraries it runs with.",
        "openclaw-backup version",
    ),
}

#: Positional arguments, explained once for every command that takes them.
SNAPSHOT_ARG = "a snapshot id (or a unique prefix of it, as `snapshots` shows), or `latest` (the default)"
PATH_ARG = "only entries at or under this path (ROOT/PATH, e.g. openclaw-state/workspace)"


def epilog(command: str) -> str:
    examples = HELP[command][1]
    return "examples:\n" + "\n".join(f"  {line}" for line in examples.splitlines())
