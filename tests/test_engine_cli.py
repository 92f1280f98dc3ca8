"""The issue's "done when", through the real command line in a subprocess.

``OPENCLAW_STATE_DIR=S openclaw-backup init && openclaw-backup backup``; ``rm -rf S``;
``openclaw-backup restore`` reproduces S exactly — including a WAL-mode SQLite database that
another process keeps writing during the backup. HOME is a private empty folder, so no other
root of the OpenClaw layout exists.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from openclaw_backup.sources import DEFAULT_EXCLUDES
from tests.support.cli import cli_env, json_out, run_cli
from tests.support.trees import fingerprint, fp_diff, leftovers, past_ns, sample_state, set_mtimes, write

WRITER = r"""
import os, sqlite3, sys, time
db, side, stop = sys.argv[1:4]
con = sqlite3.connect(db, isolation_level=None, timeout=30)
con.execute("PRAGMA journal_mode=WAL")
n = con.execute("SELECT max(n) FROM t").fetchone()[0]
while not os.path.exists(stop):
    n += 1
    con.execute("BEGIN IMMEDIATE")
    con.execute("INSERT INTO t(n, payload) VALUES (?, ?)", (n, os.urandom(300)))
    con.execute("UPDATE meta SET v = ? WHERE k = 'last'", (n,))
    con.execute("COMMIT")
    # only after the commit returned: every row <= the number in the side file is committed
    with open(side + ".tmp", "w") as f:
        f.write(str(n))
    os.replace(side + ".tmp", side)
    time.sleep(0.0005)
con.close()
"""


def _read_side(side: Path) -> int:
    return int(side.read_text())


def _make_db(path: Path, rows: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE t (n INTEGER PRIMARY KEY, payload BLOB)")
    con.execute("CREATE TABLE meta (k TEXT PRIMARY KEY, v INTEGER)")
    con.execute("BEGIN")
    con.executemany("INSERT INTO t VALUES (?, ?)", ((i, os.urandom(300)) for i in range(1, rows + 1)))
    con.execute("INSERT INTO meta VALUES ('last', ?)", (rows,))
    con.execute("COMMIT")
    con.close()


def test_backup_rm_restore_with_live_sqlite_writer(tmp_path: Path) -> None:
    state = tmp_path / "state"
    sample_state(state)
    for i in range(6):  # some bulk, so the backup takes a moment while the writer runs
        write(state / f"media/big{i}.bin", os.urandom(1_500_000))
    set_mtimes(state, past_ns(60))
    db = state / "agents/main/sessions.sqlite"
    _make_db(db, 3000)
    side, stop = tmp_path / "written", tmp_path / "stop"
    side.write_text("0")
    env = cli_env(tmp_path, OPENCLAW_STATE_DIR=str(state))

    assert run_cli(["init"], env).returncode == 0
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(side), str(stop)])
    try:
        deadline = time.monotonic() + 30
        while _read_side(side) < 3050:
            assert writer.poll() is None, "the writer died"
            assert time.monotonic() < deadline, "the writer does not write"
            time.sleep(0.01)
        # the writer holds the database open: -wal and -shm exist from here on
        assert (db.parent / "sessions.sqlite-wal").exists()
        not_db = lambda rel: rel.startswith("agents/main/sessions.sqlite")  # noqa: E731
        expected = fingerprint(state, skip=not_db)

        committed_before = _read_side(side)
        proc = run_cli(["backup", "--json"], env)
        committed_after = _read_side(side)
        assert proc.returncode == 0, proc.stderr
        doc = json_out(proc)
        assert doc["snapshot"] and not doc["warnings"]
        assert doc["stats"]["sqlite_captured"] == 1
        assert committed_after > committed_before, "the writer was not running during the backup"
    finally:
        stop.touch()
        writer.wait(30)

    ls = json_out(run_cli(["ls", "--json"], env))
    paths = {e["path"] for e in ls["entries"]}
    assert "openclaw-state/agents/main/sessions.sqlite" in paths
    assert not [p for p in paths if p.endswith(("-wal", "-shm", "-journal"))], paths
    assert {p.split("/")[0] for p in paths} == {"openclaw-state"}  # no other root

    shutil.rmtree(state)
    proc = run_cli(["restore"], env)
    assert proc.returncode == 0, proc.stderr
    got = fingerprint(state, skip=not_db)
    assert got == expected, fp_diff(expected, got)
    assert not (db.parent / "sessions.sqlite-wal").exists()
    assert leftovers(state.parent) == []

    # check a copy: opening the database in place would create sidecars and touch its folder
    copy = tmp_path / "check.sqlite"
    shutil.copyfile(db, copy)
    con = sqlite3.connect(copy)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        ns = [r[0] for r in con.execute("SELECT n FROM t ORDER BY n")]
        last = con.execute("SELECT v FROM meta WHERE k = 'last'").fetchone()[0]
    finally:
        con.close()
    assert ns == list(range(1, len(ns) + 1)), "the restored rows are not a prefix"
    assert last == len(ns), "rows and the meta row come from different moments (torn copy)"
    assert len(ns) >= committed_before, f"rows committed before the backup are missing ({len(ns)} < {committed_before})"
    assert len(ns) <= committed_after + 1

    # the restore seeded the file cache: nothing changed, nothing is read, nothing is published
    proc = run_cli(["backup", "--json"], env)
    assert proc.returncode == 0, proc.stderr
    doc = json_out(proc)
    assert doc["unchanged"] is True and doc["snapshot"] is None
    assert doc["stats"]["files_read"] == 0


def test_unchanged_second_backup_reads_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    sample_state(state)
    _make_db(state / "agents/main/sessions.sqlite", 200)  # closed, WAL mode, no sidecars
    set_mtimes(state, past_ns(30))
    env = cli_env(tmp_path, OPENCLAW_STATE_DIR=str(state))
    assert run_cli(["init"], env).returncode == 0

    first = json_out(run_cli(["backup", "--json"], env))
    assert first["snapshot"] and first["stats"]["files_read"] == first["stats"]["files"] > 5
    before = fingerprint(state)

    proc = run_cli(["backup", "--json"], env)
    assert proc.returncode == 0, proc.stderr
    second = json_out(proc)
    assert second["unchanged"] is True and second["snapshot"] is None
    assert second["parent"] == first["snapshot"]
    assert second["stats"]["files_read"] == 0 and second["stats"]["bytes_read"] == 0
    assert second["stats"]["files_cached"] == first["stats"]["files"]
    assert fingerprint(state) == before, "backing up changed the source (e.g. a folder mtime)"

    proc = run_cli(["backup"], env)
    assert proc.returncode == 0 and "no snapshot made" in proc.stdout, proc.stdout
    snaps = json_out(run_cli(["snapshots", "--json"], env))["snapshots"]
    assert len(snaps) == 1


def test_cli_errors_and_exit_codes(tmp_path: Path) -> None:
    state = tmp_path / "state"
    write(state / "a.txt", b"a")
    env = cli_env(tmp_path, OPENCLAW_STATE_DIR=str(state))

    # no repository yet
    proc = run_cli(["restore"], env)
    assert proc.returncode == 10, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("error: ")
    proc = run_cli(["snapshots", "--json"], env)
    assert proc.returncode == 10
    assert json_out(proc)["exit_code"] == 10

    assert run_cli(["init"], env).returncode == 0
    assert run_cli(["init"], env).returncode == 2  # already exists
    assert run_cli(["backup"], env).returncode == 0

    bad = dict(env, OPENCLAW_BACKUP_PASSWORD="not the password")
    for args in (["snapshots"], ["backup"], ["restore"]):
        proc = run_cli(args, bad)
        assert proc.returncode == 12, (args, proc.returncode, proc.stderr)
        assert "Traceback" not in proc.stderr
        errors = [ln for ln in proc.stderr.splitlines() if not ln.startswith("hint: ")]
        assert len(errors) == 1 and errors[0].startswith("error: "), proc.stderr
    no_pw = {k: v for k, v in env.items() if k != "OPENCLAW_BACKUP_PASSWORD"}
    assert run_cli(["snapshots"], no_pw).returncode == 12

    assert run_cli(["restore", "deadbeef"], env).returncode == 10  # no such snapshot
    assert run_cli(["backup", "--no-such-flag"], env).returncode == 2


def test_excludes_and_json_output(tmp_path: Path) -> None:
    env = cli_env(tmp_path, OPENCLAW_STATE_DIR=str(tmp_path / "state"))
    proc = run_cli(["excludes"], env)
    assert proc.returncode == 0
    for pattern, _why in DEFAULT_EXCLUDES:
        assert pattern in proc.stdout
    doc = json_out(run_cli(["excludes", "--json", "--exclude", "!logs/", "--exclude", "*.tmp"], env))
    pats = [r["pattern"] for r in doc["excludes"]]
    assert pats[: len(DEFAULT_EXCLUDES)] == [p for p, _ in DEFAULT_EXCLUDES]
    assert pats[len(DEFAULT_EXCLUDES) :] == ["!logs/", "*.tmp"]
    assert json_out(run_cli(["excludes", "--json", "--no-default-excludes"], env))["excludes"] == []

    state = tmp_path / "state"
    write(state / "keep.txt", b"k")
    write(state / "node_modules/x/index.js", b"x")  # defaults are anchored: not OpenClaw's bulk
    write(state / "debug.log", b"x")
    write(state / "agents/main/agent/tmp/scratch", b"x")
    write(state / "cache/control-ui-assets/app.js", b"x")
    write(state / "tmp/keep-this.txt", b"x")
    assert run_cli(["init", "--json"], env).returncode == 0
    # global options also after the command; --json: one object on stdout, JSON lines on stderr
    proc = run_cli(["backup", "--json", "--exclude", "!openclaw-state/tmp/"], env)
    assert proc.returncode == 0, proc.stderr
    doc = json_out(proc)
    assert doc["snapshot"]
    for line in proc.stderr.splitlines():
        assert isinstance(json.loads(line), dict)
    entries = {e["path"] for e in json_out(run_cli(["ls", "--json"], env))["entries"]}
    for kept in ("keep.txt", "tmp/keep-this.txt", "node_modules/x/index.js", "debug.log"):
        assert f"openclaw-state/{kept}" in entries
    for gone in ("cache", "agents/main/agent/tmp"):
        assert f"openclaw-state/{gone}" not in entries

    for args in (["snapshots", "--json"], ["stats", "--json"], ["check", "--read-data", "--json"],
                 ["diff", "--json", "latest"], ["--json", "key", "list"]):  # fmt: skip
        proc = run_cli(args, env)
        assert proc.returncode == 0, (args, proc.stderr)
        json_out(proc)


def test_cli_key_passwd(tmp_path: Path) -> None:
    state = tmp_path / "state"
    write(state / "a.txt", b"a")
    env = cli_env(tmp_path, OPENCLAW_STATE_DIR=str(state))
    assert run_cli(["init"], env).returncode == 0
    assert run_cli(["backup"], env).returncode == 0
    new_pw = tmp_path / "new-pw"
    new_pw.write_text("a new password\n")
    proc = run_cli(["key", "passwd", "--new-password-file", str(new_pw)], env)
    assert proc.returncode == 0, proc.stderr
    assert run_cli(["snapshots"], env).returncode == 12
    assert run_cli(["snapshots"], dict(env, OPENCLAW_BACKUP_PASSWORD="a new password")).returncode == 0
    keys = json_out(run_cli(["--json", "key", "list"], dict(env, OPENCLAW_BACKUP_PASSWORD="a new password")))
    assert len(keys["keys"]) == 1


def test_cli_global_options_after_key_action(tmp_path: Path) -> None:
    env = cli_env(tmp_path, OPENCLAW_STATE_DIR=str(tmp_path / "state"))
    assert run_cli(["init"], env).returncode == 0
    proc = run_cli(["key", "list", "--json"], env)
    assert proc.returncode == 0, proc.stderr
    assert len(json_out(proc)["keys"]) == 1


def test_every_command_is_registered_and_imported_only_when_it_runs(tmp_path: Path) -> None:
    """The lazy registry in cli.py names a module and function for each parser command; a fast
    command imports no other command's module (and no engine code it does not use)."""
    import importlib

    from openclaw_backup import cli

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == set(cli.COMMANDS)  # type: ignore[arg-type]
    for module, name in cli.COMMANDS.values():
        assert callable(getattr(importlib.import_module(f"openclaw_backup.commands.{module}"), name))
    probe = (
        "import sys; from openclaw_backup import cli; code = cli.main(sys.argv[1:]); "
        "print(' '.join(m for m in sys.modules if m.startswith('openclaw_backup')), file=sys.stderr)"
    )
    env = cli_env(tmp_path)
    proc = subprocess.run([sys.executable, "-c", probe, "excludes"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    loaded = set(proc.stderr.split())
    assert "openclaw_backup.commands.guide" in loaded
    others = {"backup", "restore", "repo", "maintain", "run"}
    assert not {f"openclaw_backup.commands.{m}" for m in others} & loaded
    assert not {"openclaw_backup.archiver", "openclaw_backup.restorer", "openclaw_backup.service"} & loaded


def test_internal_error_traceback_follows_the_given_argv(tmp_path: Path) -> None:
    """``-v`` decides whether a bug's traceback is shown, read from the arguments given to main(),
    not from the process's own (here the two disagree on purpose)."""
    probe = (
        "import sys; from openclaw_backup import cli\n"
        "def boom(*a, **k): raise RuntimeError('boom')\n"
        "cli.run_command = boom\n"
        "sys.exit(cli.main(['excludes'] if '-v' in sys.argv else ['-v', 'excludes']))\n"
    )
    env = cli_env(tmp_path)
    quiet = subprocess.run([sys.executable, "-c", probe, "-v"], env=env, capture_output=True, text=True)
    loud = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert quiet.returncode == loud.returncode == 1
    assert "internal error: RuntimeError: boom" in quiet.stderr and "Traceback" not in quiet.stderr
    assert "Traceback" in loud.stderr
