"""Nothing the user has is lost by a restore: what a restore into place replaces is kept and can be
put back with the printed commands; a terminal asks first; ``--target`` never deletes what is already
there unless ``--delete``; ``--dry-run`` changes nothing; and ``latest`` is the agent's own latest,
never a one-off ``--source`` backup of another folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from tests.support.cli import cli_command, cli_env, cli_ok, run_cli
from tests.support.trees import fingerprint, write


def _setup(tmp: Path) -> tuple[dict[str, str], Path]:
    state = tmp / "home" / ".openclaw"
    write(state / "openclaw.json", b'{"v": 1}')
    write(state / "workspace" / "notes.md", b"# notes\n")
    write(state / "workspace" / "todo.md", b"- a\n")
    write(state / "workspace" / "data.txt", b"data\n")
    env = cli_env(tmp, OPENCLAW_STATE_DIR=str(state), OPENCLAW_BACKUP_REPOSITORY=str(tmp / "repo"))
    cli_ok(["init"], env)
    cli_ok(["backup"], env)
    return env, state


def test_unsaved_work_survives_a_restore_in_place_and_the_printed_undo_brings_it_back(tmp_path: Path) -> None:
    env, state = _setup(tmp_path)
    write(state / "workspace" / "written-after-the-backup.md", b"precious\n")
    before = fingerprint(state)
    proc = cli_ok(["restore"], env)
    assert not (state / "workspace" / "written-after-the-backup.md").exists()  # the state is the snapshot
    undo = [ln.strip().removeprefix("to undo: ") for ln in proc.stdout.splitlines() if "to undo:" in ln]
    assert len(undo) == 1, proc.stdout
    subprocess.run(undo[0], shell=True, check=True)
    assert fingerprint(state) == before, "the undo did not bring back the state the restore replaced"


def test_a_terminal_is_asked_before_replacing_state(tmp_path: Path) -> None:
    env, state = _setup(tmp_path)
    write(state / "workspace" / "new.md", b"new\n")
    before = fingerprint(state)
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen([*cli_command(), "restore"], env=env, stdin=slave, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
        os.write(master, b"n\n")
        out, err = proc.communicate(timeout=120)
    finally:
        os.close(master)
        os.close(slave)
    assert proc.returncode == 2 and "cancelled" in err, (out, err)
    assert fingerprint(state) == before
    assert sorted(p.name for p in state.parent.iterdir()) == [".openclaw", ".openclaw.openclaw-backup.json"], (
        "something was kept or staged"
    )


def test_restore_into_an_existing_target_deletes_nothing_unless_asked(tmp_path: Path) -> None:
    env, _state = _setup(tmp_path)
    target = tmp_path / "target"
    write(target / "openclaw-state" / "mine.txt", b"was already here\n")
    write(target / "openclaw-state" / "workspace" / "notes.md", b"an older notes file\n")
    proc = cli_ok(["restore", "--target", str(target)], env)
    assert (target / "openclaw-state" / "mine.txt").read_bytes() == b"was already here\n"
    assert (target / "openclaw-state" / "workspace" / "notes.md").read_bytes() == b"# notes\n"
    assert "left in place 1 entries" in proc.stdout
    doc = json.loads(cli_ok(["--json", "restore", "--target", str(target), "--delete"], env).stdout)
    assert not (target / "openclaw-state" / "mine.txt").exists()
    kept = Path(next(iter(doc["kept"].values())))
    assert (kept / "mine.txt").read_bytes() == b"was already here\n", "--delete lost what it removed"


def test_dry_run_lists_what_would_change_and_changes_nothing(tmp_path: Path) -> None:
    env, state = _setup(tmp_path)
    write(state / "workspace" / "notes.md", b"# notes, edited\n")
    write(state / "extra.md", b"new\n")
    (state / "workspace" / "todo.md").unlink()
    before = fingerprint(state)
    doc = json.loads(cli_ok(["--json", "restore", "--dry-run"], env).stdout)
    assert doc["dry_run"] is True
    assert doc["create"] == [str(state / "workspace" / "todo.md")]
    assert doc["replace"] == [str(state / "workspace" / "notes.md")]
    assert doc["remove"] == [str(state / "extra.md")]
    assert fingerprint(state) == before
    assert sorted(p.name for p in state.parent.iterdir()) == [".openclaw", ".openclaw.openclaw-backup.json"]


def test_a_one_off_source_backup_never_becomes_the_agents_latest(tmp_path: Path) -> None:
    env, state = _setup(tmp_path)
    cli_ok(["backup", "--source", str(state / "workspace"), "--exclude", "*.md", "--tag", "one-off"], env)
    write(state / "workspace" / "notes.md", b"# notes, edited after\n")
    cli_ok(["restore", "--yes"], env)
    assert (state / "workspace" / "notes.md").read_bytes() == b"# notes\n"
    assert (state / "workspace" / "todo.md").read_bytes() == b"- a\n", "a .md file was deleted"
    listed = json.loads(cli_ok(["--json", "snapshots"], env).stdout)["snapshots"]
    groups = {row["group"] for row in listed}
    assert len(listed) == 2 and len(groups) == 2
    tagged = json.loads(cli_ok(["--json", "snapshots", "--tag", "one-off"], env).stdout)["snapshots"]
    assert [row["roots"] for row in tagged] == [{"workspace": {"path": str(state / "workspace"), "type": "dir"}}]
    agent_group = next(g for g in groups if "openclaw-state" in g)
    only = json.loads(cli_ok(["--json", "snapshots", "--group", agent_group], env).stdout)["snapshots"]
    assert len(only) == 1 and "openclaw-state" in only[0]["roots"]


def test_state_from_a_newer_openclaw_is_not_restored_onto_an_older_one_without_a_word(tmp_path: Path) -> None:
    env, state = _setup(tmp_path)  # backed up with OPENCLAW_VERSION unset: version unknown
    newer = dict(env, OPENCLAW_VERSION="2026.9.6")
    write(state / "workspace" / "notes.md", b"# notes v2\n")
    cli_ok(["backup"], newer)
    older = dict(env, OPENCLAW_VERSION="2026.1.1")
    proc = cli_ok(["restore", "--yes"], older)
    assert "newer than the installed 2026.1.1" in proc.stderr, proc.stderr
    # the supervisor's automatic restore picks the newest snapshot the installed OpenClaw can read
    shutil.rmtree(state)
    proc = run_cli(["run", "--restore", "force", "--grace", "5", "--", "true"], older)
    assert "skipping 1 newer snapshot" in proc.stderr, proc.stderr
    assert (state / "workspace" / "notes.md").read_bytes() == b"# notes\n"


def _fake_openclaw(folder: Path, prints: str, ran: Path) -> Path:
    """An ``openclaw`` command that notes it ran (in ``ran``) and prints ``prints`` for ``--version``."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "openclaw.mjs"
    script.write_text(f"#!/bin/sh\ntouch '{ran}'\necho '{prints}'\n")
    script.chmod(0o755)
    return script


def test_the_installed_openclaw_version_is_read_from_its_npm_package_without_running_it(tmp_path: Path) -> None:
    env, state = _setup(tmp_path)
    write(state / "workspace" / "notes.md", b"# notes v2\n")
    cli_ok(["backup"], dict(env, OPENCLAW_VERSION="2026.9.6"))
    # as `npm install -g --prefix PREFIX openclaw` lays it out: bin/openclaw -> lib/node_modules/openclaw/…
    package = tmp_path / "npm" / "lib" / "node_modules" / "openclaw"
    ran = tmp_path / "npm-openclaw-ran"
    entry = _fake_openclaw(package, "OpenClaw 2099.1.1 (not asked)", ran)
    manifest = {"name": "openclaw", "version": "2026.1.1", "bin": "openclaw.mjs"}
    (package / "package.json").write_text(json.dumps(manifest))
    (tmp_path / "npm" / "bin").mkdir()
    (tmp_path / "npm" / "bin" / "openclaw").symlink_to(os.path.relpath(entry, tmp_path / "npm" / "bin"))
    proc = cli_ok(["restore", "--yes"], dict(env, PATH=f"{tmp_path / 'npm' / 'bin'}{os.pathsep}{env['PATH']}"))
    assert "newer than the installed 2026.1.1" in proc.stderr, proc.stderr
    assert not ran.exists(), "the version was read from the package, not by starting OpenClaw"
    # not installed by npm (no package.json beside it): asked with `openclaw --version`
    plain_ran = tmp_path / "plain-openclaw-ran"
    plain = _fake_openclaw(tmp_path / "plain-bin", "OpenClaw 2026.2.3 (eb377ac)", plain_ran)
    plain.rename(plain.with_name("openclaw"))
    proc = cli_ok(["restore", "--yes"], dict(env, PATH=f"{tmp_path / 'plain-bin'}{os.pathsep}{env['PATH']}"))
    assert "newer than the installed 2026.2.3" in proc.stderr, proc.stderr
    assert plain_ran.exists()


def test_a_drastic_shrink_warns_and_retention_keeps_the_snapshot_before_it(tmp_path: Path) -> None:
    env, state = _setup(tmp_path)
    for i in range(20):
        write(state / "memory" / f"m{i}.md", b"memory %d\n" % i)
    cli_ok(["backup"], env)
    full = json.loads(cli_ok(["--json", "snapshots"], env).stdout)["snapshots"][-1]["id"]
    shutil.rmtree(state / "memory")  # most files gone: a wiped or skeleton state
    proc = run_cli(["backup"], env)
    assert proc.returncode == 3 and "shrank drastically" in proc.stderr and full[:8] in proc.stderr
    cli_ok(["forget", "--keep-last", "1"], env)
    left = [row["id"] for row in json.loads(cli_ok(["--json", "snapshots"], env).stdout)["snapshots"]]
    assert full in left and len(left) == 2, "the snapshot before the shrink was forgotten"


def test_a_skeleton_state_does_not_stop_restore_if_missing_but_real_state_does(tmp_path: Path) -> None:
    env, state = _setup(tmp_path)
    marker = state.with_name(".openclaw.openclaw-backup.json")
    assert marker.exists(), "backup did not mark the state"
    for i in range(6):
        write(state / "memory" / f"m{i}.md", b"memory %d\n" % i)
    cli_ok(["backup"], env)
    # a new container: the image ships a default openclaw.json, and no marker
    shutil.rmtree(state)
    marker.unlink()
    write(state / "openclaw.json", b'{"default": true}')
    proc = run_cli(["run", "--grace", "5", "--", "true"], env)
    assert proc.returncode == 0, proc.stderr
    assert (state / "memory" / "m5.md").exists() and (state / "openclaw.json").read_bytes() == b'{"v": 1}'
    assert marker.exists()
    # the restored (marked) state is not restored over, even when it is small
    shutil.rmtree(state / "memory")
    write(state / "workspace" / "new.md", b"new\n")
    proc = run_cli(["run", "--grace", "5", "--", "true"], env)
    assert "not restoring over it" in proc.stderr and (state / "workspace" / "new.md").exists(), proc.stderr


def test_a_restore_says_so_when_the_copies_it_keeps_pile_up_and_removes_none(tmp_path: Path) -> None:
    """Every restore into place keeps what it replaced (each copy as large as the state). From the
    fourth copy beside the state, the restore says how many there are (exit 0: nothing is
    incomplete); none is ever removed."""
    env, state = _setup(tmp_path)
    outputs = []
    for i in range(5):
        write(state / "workspace" / f"unsaved-{i}.md", b"only here\n")
        outputs.append(cli_ok(["restore", "--yes"], env).stdout)
    kept = sorted(p.name for p in state.parent.iterdir() if ".pre-restore-" in p.name)
    assert len(kept) == 5, kept
    assert all("copies of what restores replaced" not in out for out in outputs[:3]), outputs
    assert "note: 4 copies of what restores replaced are kept" in outputs[3], outputs[3]
    assert "note: 5 copies" in outputs[4] and kept[0] in outputs[4], outputs[4]
    for i, name in enumerate(kept):  # each holds the unsaved file of its time, still there
        assert (state.parent / name / "workspace" / f"unsaved-{i}.md").read_bytes() == b"only here\n"
