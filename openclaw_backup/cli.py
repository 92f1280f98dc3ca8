"""The command line: parse arguments, build typed options from settings, run, print, exit.

This is an edge: it reads the environment (through :class:`~.settings.Settings`), prints, and
turns typed errors into one line of text (plus a hint) and a documented exit code. The commands
themselves live in :mod:`.commands`; :data:`COMMANDS` names each one's module, imported only when
that command runs.

====  =====================================================================
code  meaning
====  =====================================================================
0     success (including "nothing changed, no snapshot made")
1     error
2     bad usage
3     finished with warnings (some files were skipped, or the repository is damaged)
4     integrity problem (check found damage, authentication failed, data missing)
5     partial restore (every file that could be restored was; the others are named)
10    no repository / no such snapshot
11    repository locked by another process
12    wrong password
13    conflict with a concurrent writer (retries exhausted)
14    store quota or rate limit (retry later)
15    storage error (I/O, network)
16    unsafe restore refused
17    the repository's head, config or key files are lost or damaged
18    this machine's disk is full (no space or no inodes left)
130   interrupted
====  =====================================================================
"""

from __future__ import annotations

import argparse
import atexit
import errno
import importlib
import json
import logging
import os
import sys
import textwrap
import threading
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__, memtune
from .cli_help import HELP, PATH_ARG, SNAPSHOT_ARG, epilog
from .errors import EXIT_INTERRUPTED, BackupError, NoSpaceError, NotFoundError, UsageError
from .progress import make_reporter
from .reporter import printable
from .settings import Settings, with_env_files

if TYPE_CHECKING:
    from .commands._common import Result
    from .reporter import Reporter

#: Command name -> (module of :mod:`.commands`, function). A command's module is imported only when
#: that command runs: every CLI run pays for what it imports, and a backup every few minutes runs
#: often (``--help``, ``status`` and ``excludes`` import no storage or engine code of other commands).
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("repo", "cmd_init"),
    "key": ("repo", "cmd_key"),
    "snapshots": ("repo", "cmd_snapshots"),
    "ls": ("repo", "cmd_ls"),
    "diff": ("repo", "cmd_diff"),
    "backup": ("backup", "cmd_backup"),
    "restore": ("restore", "cmd_restore"),
    "check": ("maintain", "cmd_check"),
    "stats": ("maintain", "cmd_stats"),
    "forget": ("maintain", "cmd_forget"),
    "prune": ("maintain", "cmd_prune"),
    "repair": ("maintain", "cmd_repair"),
    "run": ("run", "cmd_run"),
    "status": ("run", "cmd_status"),
    "migrate": ("run", "cmd_migrate"),
    "legacy-env": ("run", "cmd_legacy_env"),
    "excludes": ("guide", "cmd_excludes"),
    "demo": ("guide", "cmd_demo"),
    "version": ("info", "cmd_version"),
    "config": ("info", "cmd_config"),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's own exit, but with our error style
        raise UsageError(message, hint=f"see `{self.prog} --help`")


def _common(p: argparse.ArgumentParser, *, top: bool) -> None:
    """Global options, accepted before or after the command name."""
    d: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    p.add_argument(
        "-r",
        "--repo",
        help="repository: a path, hf://datasets/NS/NAME[/PREFIX], hf://buckets/…, s3://BUCKET/PREFIX",
        **d,
    )
    p.add_argument("--password-file", metavar="FILE", help="read the repository password from FILE", **d)
    p.add_argument(
        "--password-command",
        metavar="CMD",
        help="run CMD (no shell) and use what it prints as the password (a keyring, a secret manager)",
        **d,
    )
    p.add_argument("--cache-dir", help="local cache directory", **d)
    p.add_argument(
        "--json", action="store_true", help="print one JSON object on stdout; progress as JSON lines on stderr", **d
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress, no warnings (exit codes still tell)", **d)
    p.add_argument(
        "-v",
        "--verbose",
        action="count",
        help="more detail: -v the files a backup changed; -vv also each storage call",
        **({"default": 0} if top else d),
    )


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="openclaw-backup", description="Deduplicated, encrypted snapshots of an AI agent's home.")
    p.add_argument("--version", action="version", version=f"openclaw-backup {__version__}")
    _common(p, top=True)
    common = _Parser(add_help=False)
    _common(common, top=False)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(name: str, **kw: Any) -> argparse.ArgumentParser:
        """A command's parser, which also accepts the global options after the command name; its
        ``--help`` says what the command does, with examples (:mod:`.cli_help`)."""
        return sub.add_parser(name, parents=[common], description=textwrap.fill(HELP[name][0], 88), epilog=epilog(name),
                              formatter_class=argparse.RawDescriptionHelpFormatter, **kw)  # fmt: skip

    s = add("init", help="create a repository")
    s.add_argument(
        "--insecure-no-encryption", action="store_true", help="store everything in the clear (not recommended)"
    )

    s = add("backup", help="take a snapshot (of the OpenClaw layout unless --source is given)")
    s.add_argument("--source", action="append", default=[], metavar="PATH", help="back up PATH (repeatable)")
    s.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="PATTERN",
        help="exclude pattern (repeatable; !PATTERN re-includes)",
    )
    s.add_argument(
        "--exclude-file", action="append", default=[], metavar="FILE", help="read exclude patterns from FILE"
    )
    s.add_argument("--no-default-excludes", action="store_true", help="do not apply the built-in excludes")
    s.add_argument("--tag", action="append", default=[], metavar="TAG", help="record TAG on the snapshot (repeatable)")
    s.add_argument("--host", help="host name to record (default: the Space id or the machine's name)")
    s.add_argument("--force", action="store_true", help="make a snapshot even if nothing changed")
    s.add_argument(
        "--dry-run",
        action="store_true",
        help="show what would be stored, read and left out (by rule, with sizes); store and write nothing",
    )

    s = add("snapshots", help="list snapshots (with their group: host and roots)")
    s.add_argument("--host", help="only snapshots taken on this host")
    s.add_argument("--tag", action="append", default=[], help="only snapshots with this tag (repeatable: all of them)")
    s.add_argument("--group", help="only snapshots of this group (HOST:ROOT,ROOT… as listed)")
    s = add("ls", help="list the files of a snapshot")
    s.add_argument("snapshot", nargs="?", default="latest", help=SNAPSHOT_ARG)
    s.add_argument("path", nargs="?", default="", help=PATH_ARG)
    s = add("diff", help="what changed between two snapshots")
    s.add_argument("first", help="the older snapshot (an id or prefix, or `latest`)")
    s.add_argument("second", nargs="?", default="latest", help="the newer snapshot (default: `latest`)")

    s = add("restore", help="restore a snapshot (atomically, into place or under --target)")
    s.add_argument("snapshot", nargs="?", default="latest", help=SNAPSHOT_ARG)
    s.add_argument("--target", metavar="DIR", help="restore every root under DIR/<root name> instead of its own place")
    s.add_argument("--include", action="append", default=[], metavar="PATH", help="restore only ROOT/PATH (repeatable)")
    s.add_argument("--delete", action="store_true",
                   help="with --target: also remove what the target holds and the snapshot does not")  # fmt: skip
    s.add_argument("--yes", "-y", action="store_true", help="restore into place without asking (scripts)")
    s.add_argument("--dry-run", action="store_true", help="list what would be created, replaced and removed")
    s.add_argument("--partial", action="store_true",
                   help="in place: restore every file that can be, naming those whose data is lost (exit 5); "
                   "with --target this is the default")  # fmt: skip

    s = add("check", help="verify the repository")
    s.add_argument("--read-data", action="store_true", help="also read and authenticate every stored byte")
    s.add_argument("--read-data-subset", metavar="N/M|P%", help="read only a subset of the packs")

    add("stats", help="sizes and deduplication")

    s = add("forget", help="remove snapshots by id or by a keep policy (data stays until prune)")
    s.add_argument("ids", nargs="*", metavar="ID", help="snapshots to remove (damaged or not); no policy then")
    for unit in ("last", "hourly", "daily", "weekly", "monthly", "yearly"):
        s.add_argument(f"--keep-{unit}", type=int, default=0, metavar="N")
    s.add_argument("--keep-within", metavar="DURATION", help="keep everything newer than this (e.g. 7d, 2w, 1y)")
    s.add_argument("--keep-tag", action="append", default=[], metavar="TAG")
    s.add_argument("--dry-run", action="store_true", help="show what would go and why")
    s.add_argument("--prune", action="store_true", help="prune right after")

    s = add("prune", help="free the space of data no snapshot needs")
    s.add_argument("--max-unused", default="10%", help="repack packs with more garbage than this (default 10%%)")
    s.add_argument("--dry-run", action="store_true", help="show the plan only")
    s.add_argument("--grace", type=float, metavar="SECONDS",
                   help="leave unreferenced packs younger than this alone "
                   "(default 3600, or OPENCLAW_BACKUP_PRUNE_GRACE)")  # fmt: skip
    g = s.add_mutually_exclusive_group()
    g.add_argument("--squash", action="store_true", default=None, help="always squash a Hub repo's history")
    g.add_argument("--no-squash", dest="squash", action="store_false", help="never squash history")

    s = add("run", help="supervise an agent: restore if missing, run it, back up periodically and at exit")
    s.add_argument("--interval", type=float, help="seconds between backups (default 300, or the legacy cron)")
    s.add_argument(
        "--max-age",
        type=float,
        help="while the state keeps changing, back up at least this often, in seconds (default 60, "
        "or OPENCLAW_BACKUP_MAX_AGE; a Hub repo's commit budget may stretch it)",
    )
    s.add_argument("--settle", type=float, default=20.0, help="back up this many quiet seconds after a change")
    s.add_argument(
        "--min-gap", type=float, help="at least this many seconds between backups (default min(60, interval))"
    )
    s.add_argument("--grace", type=float, help="seconds between SIGTERM and SIGKILL (default 10)")
    s.add_argument("--restore", choices=["if-missing", "force", "never"], default="if-missing")
    s.add_argument("--prune-interval", type=float, default=86400.0, help="seconds between forget+prune runs")
    s.add_argument("--status-file", help="where to write the status JSON")
    s.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD …", help="the agent's command line, after --")

    s = add("status", help="the supervisor's last success, last error and next run")
    s.add_argument("--status-file")

    s = add("migrate", help="import the legacy script's backups as snapshots")
    s.add_argument("--dry-run", action="store_true")

    add("legacy-env", help="the legacy script's variables and how each is handled")

    s = add("repair", help="repair a damaged repository: index, packs, snapshots or head")
    s.add_argument("what", choices=["index", "packs", "snapshots", "head"],
                   help="index: rebuild from the packs; packs: salvage damaged packs; snapshots: drop what "
                   "is lost; head: rebuild a lost head")  # fmt: skip

    s = add("key", help="manage passwords")
    ks = s.add_subparsers(dest="key_command", metavar="ACTION", parser_class=_Parser,
                          help="list (the default), add, or passwd")  # fmt: skip
    ks.add_parser("list", help="list key files", parents=[common], description="List the key files (one per password).")
    for name, text in (("add", "add a password"), ("passwd", "change the current password")):
        about = f"{text[0].upper()}{text[1:]}: the new one from --new-password-file, OPENCLAW_BACKUP_NEW_PASSWORD, "
        k = ks.add_parser(name, help=text, parents=[common], description=about + "or asked twice on a terminal.")
        k.add_argument("--new-password-file", help="read the new password from this file")

    s = add("excludes", help="show the exclude patterns a backup would apply")
    s.add_argument("--exclude", action="append", default=[], metavar="PATTERN")
    s.add_argument("--no-default-excludes", action="store_true")

    s = add("config", help="what this tool would use here: repository, password source, roots, env files, Space")
    s.add_argument("--insecure-ok", action="store_true", help="no password is not a problem (unencrypted repository)")
    add("version", help="the version, and the Python, SQLite and libraries it runs with")
    s = add("demo", help="back up and restore a sample agent home on a local repository, and verify it")
    s.add_argument("--dir", help="work directory (default: a new temporary directory)")
    return p


def _print_result(args: argparse.Namespace, doc: dict[str, Any], text: str) -> None:
    if args.json:
        sys.stdout.write(json.dumps(doc, indent=None, sort_keys=True) + "\n")
    elif text and not (args.quiet and not doc.get("_always")):
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def settings_from(args: argparse.Namespace, env: Mapping[str, str]) -> Settings:
    """The settings of one run: the global flags over the environment (plus the legacy script's
    env files); the process environment itself is kept for the agent that ``run`` starts."""
    return Settings(
        with_env_files(env),
        process_env=env,
        repo=args.repo,
        password_file=args.password_file,
        password_command=args.password_command,
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        prompt=_ask if _on_terminal() else None,
    )


def _on_terminal() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def _ask(question: str) -> str:
    """One unechoed answer from the terminal (a password)."""
    import getpass  # only on a terminal, when a password is asked

    return getpass.getpass(question)


def run_command(args: argparse.Namespace, env: Mapping[str, str], reporter: Reporter) -> Result:
    """Import the module of ``args.command`` (only it) and run the command."""
    if args.command not in COMMANDS:
        raise NotFoundError(f"unknown command {args.command}")
    module, name = COMMANDS[args.command]
    command = getattr(importlib.import_module(f"{__package__}.commands.{module}"), name)
    settings = settings_from(args, env)
    for name, close in settings.unknown_variables() if args.command != "config" else ():  # config lists them
        reporter.warn(f"{name} is not a variable this tool knows; it is ignored"
                      + (f" (did you mean {close}?)" if close else ""))  # fmt: skip
    try:
        result: Result = command(args, settings, reporter)
    except OSError as e:  # this machine's own disk (a store's errors are StoreErrors already)
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = f" at {e.filename}" if e.filename else ""
        raise NoSpaceError(
            f"no space or no inodes left on this machine's disk{where} ({e.strerror})",
            hint="free space (see `df -h` and `df -i`) and run the command again; a restore replaces "
            "nothing until it has finished",
        ) from e
    return result


class _WaitHandler(logging.Handler):
    """Shows the ``openclaw_backup.wait`` records (waiting for a lock) on stderr as they happen."""

    def __init__(self, *, json_mode: bool) -> None:
        super().__init__(logging.INFO)
        self.json_mode = json_mode

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        line = json.dumps({"event": "wait", "message": text}) if self.json_mode else f"{text} …"
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def _show_waits(*, json_mode: bool) -> None:
    log = logging.getLogger("openclaw_backup.wait")
    log.handlers[:] = [_WaitHandler(json_mode=json_mode)]
    log.setLevel(logging.INFO)
    log.propagate = False


def entry() -> None:
    """The program (``openclaw-backup``, ``python -m openclaw_backup``): :func:`main`, then
    :func:`leave` with its exit code."""
    leave(main())


def leave(code: int) -> None:
    """End the process with ``code`` without tearing down the interpreter's objects one by one.

    A restore ends holding the index, its trees and a connection per read in flight: freeing them
    object by object, and closing each socket, costs some 0.1 s that nobody waits for. Everything the
    process owes the world is done first, as a normal exit does it: the output streams are flushed,
    and every exit handler runs (the logging handlers', a temporary folder's clean-up, the library's
    own). When a thread that is not a daemon still runs, the exit is the normal one, which waits for it.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed, or its reader went away: as a normal exit would
            code = code or 1
    main_thread = threading.main_thread()
    if any(t is not main_thread and not t.daemon and t.is_alive() for t in threading.enumerate()):
        raise SystemExit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 1
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    memtune.tune()
    parser = build_parser()
    words = list(argv if argv is not None else sys.argv[1:])
    json_mode = "--json" in words
    args: argparse.Namespace | None = None
    try:
        args = parser.parse_args(words)
        if not args.command:
            parser.print_help()
            return 2
        if args.verbose >= 2:  # storage calls, one line each (never contents or secrets)
            logging.basicConfig(stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
            logging.getLogger("openclaw_backup").setLevel(logging.DEBUG)
        reporter = make_reporter(json_mode=args.json, quiet=args.quiet, verbose=args.verbose >= 1)
        if not args.quiet:
            _show_waits(json_mode=args.json)
        try:
            doc, text, code = run_command(args, os.environ, reporter)
        finally:
            reporter.done()
        _print_result(args, doc, text)
        return code
    except BackupError as e:
        if json_mode:
            sys.stdout.write(json.dumps({"error": e.message, "hint": e.hint, "exit_code": e.exit_code}) + "\n")
        sys.stderr.write(f"error: {printable(e.message)}\n")
        if e.hint:
            sys.stderr.write(f"hint: {printable(e.hint)}\n")
        return e.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 1
    except Exception as e:  # a bug: still one line, the traceback only on request
        if args.verbose if args is not None else ("-v" in words or "--verbose" in words):
            traceback.print_exc()
        sys.stderr.write(f"error: internal error: {type(e).__name__}: {e}\n")
        sys.stderr.write("hint: this is a bug in openclaw-backup; rerun with -v for the details and report it\n")
        return 1
