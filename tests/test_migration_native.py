"""Migrated snapshots are like native ones: the legacy archive folders become this tool's roots
under their own names, recorded where this machine keeps them (not the old machine's ``/root``),
so ``restore`` into place, ``ls`` and ``diff`` treat them as any other snapshot; the legacy
script's own metadata folder is not imported; a folder holding only legacy backups is recognised
with a hint to ``migrate``."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import cli_env, cli_ok, json_out, run_cli
from tests.support.legacy import LegacyRepo
from tests.support.repos import PASSWORD
from tests.support.trees import write


def _legacy(tmp: Path) -> tuple[dict[str, str], Path]:
    """A local folder with one legacy backup (state, a config folder, an extra dir, the script's
    metadata) and an environment whose HOME is not /root."""
    src = tmp / "old-machine"
    write(src / "openclaw-state" / "openclaw.json", '{"agent": "old"}')
    write(src / "openclaw-state" / "workspace" / "notes.md", "remember\n")
    write(src / "root-config" / "tool.conf", "x=1\n")
    write(src / "myextra" / "data.txt", "extra\n")
    write(src / "backup-info" / "last.json", "{}")
    legacy = LegacyRepo(tmp / "repo", tmp / "scratch")
    legacy.backup("20260301-100000", src, password=PASSWORD)
    home = tmp / "home" / "user"
    env = cli_env(tmp, HOME=str(home), OPENCLAW_BACKUP_REPOSITORY=str(tmp / "repo"))
    return env, home


def test_a_folder_with_only_legacy_backups_points_to_migrate(tmp_path: Path) -> None:
    env, _ = _legacy(tmp_path)
    proc = run_cli(["snapshots"], env)
    assert proc.returncode == 10
    assert "legacy script's backups" in proc.stderr and "openclaw-backup migrate" in proc.stderr


def test_migrated_snapshots_restore_list_and_diff_like_native_ones(tmp_path: Path) -> None:
    env, home = _legacy(tmp_path)
    cli_ok(["migrate"], env)
    (migrated,) = json_out(cli_ok(["snapshots", "--json"], env))["snapshots"]
    assert set(migrated["roots"]) == {"openclaw-state", "root-config", "myextra"}  # no backup-info
    assert migrated["roots"]["openclaw-state"]["path"] == str(home / ".openclaw")
    assert migrated["roots"]["root-config"]["path"] == str(home / ".config")
    assert migrated["roots"]["myextra"]["path"] == str(home / "myextra")

    # restore into place on this machine (HOME is not /root): every root where it belongs here
    proc = run_cli(["restore", "--yes"], env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (home / ".openclaw" / "workspace" / "notes.md").read_text() == "remember\n"
    assert (home / ".config" / "tool.conf").read_text() == "x=1\n"
    assert (home / "myextra" / "data.txt").read_text() == "extra\n"

    # a native backup of the restored state: same paths in ls, diff shows only the real change
    write(home / ".openclaw" / "workspace" / "notes.md", "remember more\n")
    cli_ok(["backup"], env)
    native = json_out(cli_ok(["snapshots", "--json"], env))["snapshots"][-1]
    assert native["origin"] != "legacy-import"
    ls_old = {e["path"] for e in json_out(cli_ok(["ls", migrated["id"], "--json"], env))["entries"]}
    ls_new = {e["path"] for e in json_out(cli_ok(["ls", native["id"], "--json"], env))["entries"]}
    assert "openclaw-state/workspace/notes.md" in ls_old and ls_old & ls_new >= {
        "openclaw-state/openclaw.json", "openclaw-state/workspace/notes.md", "root-config/tool.conf"}  # fmt: skip
    diff = json_out(cli_ok(["diff", migrated["id"], native["id"], "--json"], env))
    assert "openclaw-state/workspace/notes.md" in diff["modified"]
    assert not [p for p in diff["added"] + diff["removed"] if p.startswith(("openclaw-state/", "root-config/"))]
