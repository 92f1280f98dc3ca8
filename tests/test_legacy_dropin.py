"""A Space switching from the legacy script: same variables, same dataset, `openclaw-backup` instead.

Legacy tar.gz chains are built with the real tar/gzip/split/openssl (``tests.support.legacy``) and uploaded
to the root of a dataset on the fake Hub through the real ``huggingface_hub`` client. The CLI runs in
a subprocess with ONLY the legacy script's variables (plus HF_ENDPOINT, a private HOME/XDG and the
test-only weak KDF). The legacy flag files are fixed paths in /tmp: every restore holds the flag lock
(``tests.support.dropin.restore_flags_locked``) so parallel workers don't see each other's flags.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import clean_env, cli_ok, json_out, run_cli
from tests.support.dropin import FLAG_DONE, FLAG_NONE, restore_flags_locked
from tests.support.hub import TOKEN, HubRepo
from tests.support.legacy import LegacyRepo, stamp_time
from tests.support.trees import tar_fingerprint, write, write_tree

PW = "legacy pass phrase"
DIR_MTIME = 1_650_000_000
LEGACY_PREFIX = "openclaw-backup/"  # where our repository lives in the dataset


def settle_dirs(root: Path) -> None:
    """Fixed folder mtimes, so a restored tree can be compared with its source exactly."""
    for dirpath, _, _ in os.walk(root):
        os.utime(dirpath, (DIR_MTIME, DIR_MTIME))


def make_source(src: Path) -> None:
    """An agent home as the legacy script staged it: one folder per archive root."""
    write_tree(
        src,
        {
            "openclaw-state/openclaw.json": '{"agent": "legacy v1"}',
            "openclaw-state/workspace/notes.md": "# notes\n",
            "openclaw-state/credentials/token": "s3cret",
            "openclaw-state/blob.bin": os.urandom(30_000),
            "openclaw-state/link-to-notes": "->workspace/notes.md",
            "root-config/gh/hosts.yml": "github.com: {}\n",
            "myextra/data.txt": "extra data\n",
            "backup-info/last.json": "{}",
        },
    )
    (src / "openclaw-state/empty-dir").mkdir()
    (src / "openclaw-state/credentials/token").chmod(0o600)
    (src / "openclaw-state/credentials").chmod(0o700)
    settle_dirs(src)


def change_source(src: Path, tag: str, mtime: int) -> list[str]:
    """Change one file, add one; return the changed members (what an incremental holds)."""
    changed = {"openclaw-state/openclaw.json": f'{{"agent": "{tag}"}}', f"openclaw-state/workspace/{tag}.md": tag}
    write_tree(src, dict(changed), mtime=mtime)
    settle_dirs(src)
    return sorted(changed)


@dataclass
class Space:
    hub: HubRepo
    tmp: Path
    src: Path
    legacy: LegacyRepo
    state: Path
    extra: Path
    config: Path
    env: dict[str, str] = field(default_factory=dict)

    def upload(self) -> None:
        api = self.hub.api()
        api.create_repo(self.hub.repo_id, repo_type="dataset", private=True, exist_ok=True)
        api.upload_folder(
            repo_id=self.hub.repo_id, folder_path=self.legacy.root, repo_type="dataset", commit_message="legacy"
        )

    def hub_files(self) -> dict[str, tuple[Any, ...]]:
        entries = self.hub.api().list_repo_tree(self.hub.repo_id, repo_type="dataset", recursive=True)
        return {e.path: (e.blob_id, e.size) for e in entries if hasattr(e, "blob_id")}

    def legacy_files(self) -> dict[str, tuple[Any, ...]]:
        return {p: v for p, v in self.hub_files().items() if not p.startswith(LEGACY_PREFIX)}

    def expect_restored(self, src: Path | None = None) -> None:
        src = src or self.src
        assert tar_fingerprint(self.state) == tar_fingerprint(src / "openclaw-state")
        assert tar_fingerprint(self.extra) == tar_fingerprint(src / "myextra")
        assert tar_fingerprint(self.config) == tar_fingerprint(src / "root-config")

    def wipe(self) -> None:
        for p in (self.state, self.extra, self.config):
            shutil.rmtree(p, ignore_errors=True)


def legacy_env(hub: HubRepo, tmp: Path, *, password: str | None = None, **extra: str) -> dict[str, str]:
    """Only what a legacy Space sets (plus the fake Hub's endpoint and the test-only weak KDF)."""
    env = clean_env(
        tmp,
        OPENCLAW_BACKUP_DATASET_REPO=hub.repo_id,
        HF_TOKEN=TOKEN,
        HF_ENDPOINT=hub.server.url,
        HF_HUB_DISABLE_XET="1",
        OPENCLAW_STATE_DIR=str(tmp / "live/state"),
        OPENCLAW_BACKUP_EXTRA_DIRS=f"myextra:{tmp / 'live/extra'}",
    )
    if password is not None:
        env.update(OPENCLAW_BACKUP_ENCRYPTION_ENABLED="true", OPENCLAW_BACKUP_ENCRYPTION_PASSWORD=password)
    env.update(extra)
    return env


@pytest.fixture
def space(hub_repo: HubRepo, tmp_path: Path) -> Space:
    src = tmp_path / "src"
    make_source(src)
    sp = Space(
        hub_repo,
        tmp_path,
        src,
        LegacyRepo(tmp_path / "legacy-repo", tmp_path / "scratch"),
        state=tmp_path / "live/state",
        extra=tmp_path / "live/extra",
        config=tmp_path / "home/.config",
    )
    sp.env = legacy_env(hub_repo, tmp_path)
    return sp


@dataclass
class Restored:
    proc: subprocess.CompletedProcess[str]
    done: bool
    skipped: bool

    @property
    def out(self) -> str:
        return f"exit {self.proc.returncode}\nstdout: {self.proc.stdout}\nstderr: {self.proc.stderr}"


def restore(env: dict[str, str], *args: str, module: bool = False) -> Restored:
    """`restore` with the flag files removed first, and which of them it touched."""
    with restore_flags_locked():
        proc = run_cli(["restore", *args], env, module=module)
        return Restored(proc, FLAG_DONE.exists(), FLAG_NONE.exists())


def encrypted_split_chain(sp: Space) -> list[str]:
    full = sp.legacy.backup("20260301-100000", sp.src, password=PW, split_size=8000)
    members = change_source(sp.src, "v2", 1_700_100_000)
    inc = sp.legacy.backup("20260301-110000", sp.src, password=PW, members=members, backup_type="incremental",
                           parent=sp.legacy.meta_path(full))  # fmt: skip
    assert len(list(sp.legacy.root.glob(f"backups/{full}.part-*"))) >= 4
    return [full, inc]


# ---------------------------------------------------------------------------- the one-line switch


def test_legacy_space_switches_tools(space: Space) -> None:
    encrypted_split_chain(space)
    space.upload()
    space.env = legacy_env(space.hub, space.tmp, password=PW)
    legacy_before = space.legacy_files()

    r = restore(space.env)
    assert r.proc.returncode == 0, r.out
    assert r.done and not r.skipped
    assert "restored legacy backup openclaw-backup-20260301-110000.tar.gz.enc (2 archives)" in r.proc.stdout
    space.expect_restored()

    # the same through `python -m openclaw_backup`, over a damaged local state
    write(space.state / "openclaw.json", "garbage")
    shutil.rmtree(space.extra)
    r = restore(space.env, module=True)
    assert r.proc.returncode == 0 and r.done, r.out
    space.expect_restored()

    # the first backup creates our repository in the same dataset, and one snapshot
    write(space.state / "after-switch.txt", "new state\n", mtime_ns=10**9 * 1_700_200_000)
    proc = cli_ok(["backup"], space.env)
    files = space.hub_files()
    assert f"{LEGACY_PREFIX}config" in files, sorted(files)
    assert space.legacy_files() == legacy_before
    snaps = json_out(cli_ok(["snapshots", "--json"], space.env))["snapshots"]
    assert len(snaps) == 1, proc.stdout
    assert set(snaps[0]["roots"]) == {"openclaw-state", "root-config", "myextra"}
    assert "UNENCRYPTED" not in proc.stderr

    # restore now takes the new snapshot, newer than the legacy chain
    space.wipe()
    r = restore(space.env)
    assert r.proc.returncode == 0 and r.done, r.out
    assert f"restored snapshot {snaps[0]['id'][:8]}" in r.proc.stdout
    assert (space.state / "after-switch.txt").read_text() == "new state\n"
    (space.state / "after-switch.txt").unlink()
    space.expect_restored()
    assert space.legacy_files() == legacy_before


@pytest.mark.parametrize("hub_state", ["no-repo", "empty-dataset"])
def test_nothing_to_restore(space: Space, hub_state: str) -> None:
    if hub_state == "empty-dataset":
        api = space.hub.api()
        api.create_repo(space.hub.repo_id, repo_type="dataset", private=True)
        api.upload_file(path_or_fileobj=b"# hi\n", path_in_repo="notes.txt", repo_id=space.hub.repo_id,
                        repo_type="dataset")  # fmt: skip
    r = restore(space.env)
    assert r.proc.returncode == 0, r.out
    assert r.skipped and not r.done
    assert not space.state.exists()


@pytest.mark.parametrize("missing", ["meta", "archive"])
def test_missing_link_fails_loudly_and_keeps_state(space: Space, missing: str) -> None:
    full = space.legacy.backup("20260301-100000", space.src)
    inc1 = space.legacy.backup("20260301-110000", space.src, members=change_source(space.src, "v2", 1_700_100_000),
                               backup_type="incremental", parent=space.legacy.meta_path(full))  # fmt: skip
    space.legacy.backup("20260301-120000", space.src, members=change_source(space.src, "v3", 1_700_200_000),
                        backup_type="incremental", parent=space.legacy.meta_path(inc1))  # fmt: skip
    gone = space.legacy.path(inc1 + (".meta.json" if missing == "meta" else ""))
    gone.unlink()
    space.upload()
    write(space.state / "mine.txt", "local state\n")
    write(space.extra / "x", "local extra\n")
    before = tar_fingerprint(space.state.parent)
    r = restore(space.env)
    assert r.proc.returncode == 4, r.out
    assert not r.done and not r.skipped
    assert "error:" in r.proc.stderr and inc1 in r.proc.stderr, r.proc.stderr
    assert tar_fingerprint(space.state.parent) == before
    assert not space.config.exists()


def test_restore_archive_picks_an_older_legacy_backup(space: Space) -> None:
    v1 = space.tmp / "src-v1"
    shutil.copytree(space.src, v1, symlinks=True)
    settle_dirs(v1)
    older = space.legacy.backup("20260301-100000", space.src, password=PW)
    change_source(space.src, "v2", 1_700_100_000)
    space.legacy.backup("20260302-100000", space.src, password=PW, chain_id="ffff0000")
    space.upload()
    space.env = legacy_env(space.hub, space.tmp, password=PW)

    r = restore(space.env)  # the latest
    assert r.proc.returncode == 0 and r.done, r.out
    space.expect_restored()
    cli_ok(["backup"], space.env)  # our repository now has a newer snapshot

    for name in (older, older.removesuffix(".tar.gz.enc")):
        space.wipe()
        r = restore({**space.env, "OPENCLAW_RESTORE_ARCHIVE": name})
        assert r.proc.returncode == 0 and r.done, r.out
        assert f"restored legacy backup {older}" in r.proc.stdout
        space.expect_restored(v1)

    r = restore({**space.env, "OPENCLAW_RESTORE_ARCHIVE": "openclaw-backup-20250101-000000.tar.gz"})
    assert r.proc.returncode == 10 and not r.done, r.out


# ---------------------------------------------------------------------------- configuration


def test_env_file_fills_unset_variables_only_and_never_runs_commands(space: Space) -> None:
    space.legacy.backup("20260301-100000", space.src)
    space.upload()
    marker1, marker2 = space.tmp / "pwned-1", space.tmp / "pwned-2"
    env = legacy_env(space.hub, space.tmp)
    del env["OPENCLAW_BACKUP_DATASET_REPO"], env["OPENCLAW_STATE_DIR"]
    write(
        Path(env["HOME"]) / ".env.d/openclaw-backup.env",
        "# written by the Space's setup\n"
        f"export OPENCLAW_BACKUP_DATASET_REPO={space.hub.repo_id}\n"
        f'export OPENCLAW_STATE_DIR="{space.state}"\n'
        "export HF_TOKEN=hf_wrong_token_from_the_file\n"
        f"export OPENCLAW_BACKUP_ROOT_CONFIG_DIR=$(touch {marker1}; echo {space.tmp / 'elsewhere'})\n"
        f"OPENCLAW_BACKUP_ROOT_CODEX_DIR=`touch {marker2}`\n"
        "export OPENCLAW_BACKUP_PATH_PREFIX='backups'\n",
    )
    r = restore(env)
    assert r.proc.returncode == 0 and r.done, r.out
    space.expect_restored()  # root-config went to the default ~/.config
    assert not marker1.exists() and not marker2.exists()
    assert not (space.tmp / "elsewhere").exists()

    rows = {v["name"]: v["set"] for v in json_out(cli_ok(["legacy-env", "--json"], env))["variables"]}
    assert rows["OPENCLAW_BACKUP_DATASET_REPO"] and rows["OPENCLAW_STATE_DIR"] and rows["HF_TOKEN"]
    assert not rows["OPENCLAW_BACKUP_ROOT_CONFIG_DIR"] and not rows["OPENCLAW_BACKUP_ROOT_CODEX_DIR"]


def test_env_file_value_with_a_hash_sign(space: Space) -> None:
    space.legacy.backup("20260301-100000", space.src, password="pa#ss")
    space.upload()
    env = legacy_env(space.hub, space.tmp)
    write(
        Path(env["HOME"]) / ".env.d/openclaw-backup.env",
        "export OPENCLAW_BACKUP_ENCRYPTION_ENABLED=true\nexport OPENCLAW_BACKUP_ENCRYPTION_PASSWORD=pa#ss\n",
    )
    r = restore(env)
    assert r.proc.returncode == 0, r.out
    space.expect_restored()


ODD_TUNING = {
    "OPENCLAW_BACKUP_SPLIT_SIZE": "banana",
    "OPENCLAW_BACKUP_COMPRESSION_LEVEL": "42",
    "OPENCLAW_INCREMENTAL_BACKUP": "sometimes",
    "OPENCLAW_FULL_BACKUP_INTERVAL_HOURS": "-1",
    "OPENCLAW_MAX_INCREMENTAL_BACKUPS": "NaN",
    "OPENCLAW_BACKUP_SIZE_WARNING_MB": "",
    "OPENCLAW_DYNAMIC_BACKUP": "2",
    "OPENCLAW_DYNAMIC_MIN_INTERVAL": "x y z",
    "OPENCLAW_INCREMENTAL_INTERVAL_MINUTES": "0",
    "OPENCLAW_BACKUP_CRON": "@reboot",
    "OPENCLAW_BACKUP_KEEP_COUNT": "lots",
    "OPENCLAW_BACKUP_WORK_DIR": "/nonexistent/openclaw-work",
    "OPENCLAW_BACKUP_METADATA_DIR": "/nonexistent/backup-info",
}


def test_odd_tuning_variables_do_not_break_backup_or_restore(space: Space) -> None:
    encrypted_split_chain(space)
    space.upload()
    env = legacy_env(space.hub, space.tmp, password=PW, **ODD_TUNING)
    r = restore(env)
    assert r.proc.returncode == 0 and r.done, r.out
    space.expect_restored()
    write(space.state / "more.txt", "more\n", mtime_ns=10**9 * 1_700_300_000)
    cli_ok(["backup"], env)
    space.wipe()
    r = restore(env)
    assert r.proc.returncode == 0 and "restored snapshot" in r.proc.stdout, r.out
    assert (space.state / "more.txt").read_text() == "more\n"

    rows = {v["name"]: v for v in json_out(cli_ok(["legacy-env", "--json"], env))["variables"]}
    listed = [n for n in ODD_TUNING if not n.startswith("OPENCLAW_DYNAMIC_MIN")]
    for name in listed:
        assert rows[name]["set"], name
        assert rows[name]["handling"]
    text = cli_ok(["legacy-env"], env).stdout
    assert "banana" not in text and PW not in text  # names and handling only, never values


def test_encryption_enabled_without_password_is_refused(space: Space) -> None:
    space.legacy.backup("20260301-100000", space.src)
    space.upload()
    before = space.hub_files()
    env = legacy_env(space.hub, space.tmp, OPENCLAW_BACKUP_ENCRYPTION_ENABLED="true")
    write(space.state / "openclaw.json", "{}")
    proc = run_cli(["backup"], env)
    assert proc.returncode == 2, proc.stderr
    assert "ENCRYPTION_ENABLED is true but OPENCLAW_BACKUP_ENCRYPTION_PASSWORD is not set" in proc.stderr
    assert space.hub_files() == before  # nothing stored, in the clear or otherwise


def test_unencrypted_legacy_backup_succeeds_with_exit_0(space: Space) -> None:
    write(space.state / "openclaw.json", "{}")
    write(space.state / "credentials/token", "s3cret")
    proc = run_cli(["backup"], space.env)
    assert "UNENCRYPTED" in proc.stderr and "credentials/token" in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stderr


def test_odd_private_value_keeps_the_new_dataset_private(space: Space) -> None:
    write(space.state / "openclaw.json", "{}")
    env = legacy_env(space.hub, space.tmp, password=PW, OPENCLAW_BACKUP_PRIVATE="y")
    cli_ok(["backup"], env)
    assert space.hub.stats()["private"] is True


# ---------------------------------------------------------------------------- migrate


def test_migrate_imports_legacy_backups_once_with_their_times(space: Space) -> None:
    v0 = space.tmp / "src-v0"
    shutil.copytree(space.src, v0, symlinks=True)
    write_tree(v0, {"openclaw-state/openclaw.json": '{"agent": "v0"}'})
    settle_dirs(v0)
    names = [space.legacy.backup("20260228-090000", v0, chain_id="00000000", password=PW)]
    names += encrypted_split_chain(space)
    names.append(space.legacy.backup("20260301-120000", space.src, password=PW, backup_type="incremental",
                                     members=change_source(space.src, "v3", 1_700_200_000),
                                     parent=space.legacy.meta_path(names[-1])))  # fmt: skip
    space.upload()
    space.env = legacy_env(space.hub, space.tmp, password=PW)
    legacy_before = space.legacy_files()

    target_legacy = space.tmp / "legacy-restore"
    r = restore(space.env, "--target", str(target_legacy))
    assert r.proc.returncode == 0 and "restored legacy backup" in r.proc.stdout, r.out

    first = json_out(cli_ok(["migrate", "--json"], space.env))
    assert [d["archive"] for d in first["imported"]] == names
    snaps = json_out(cli_ok(["snapshots", "--json"], space.env))["snapshots"]
    assert len(snaps) == 4
    for snap, name in zip(snaps, names, strict=True):
        stamp = name.removeprefix("openclaw-backup-")[:15]
        assert datetime.fromisoformat(snap["time"]) == stamp_time(stamp)
        assert snap["origin"] == "legacy-import" and f"legacy:{name}" in snap["tags"]

    again = json_out(cli_ok(["migrate", "--json"], space.env))
    assert again["imported"] == [] and sorted(again["already_imported"]) == sorted(names)
    assert len(json_out(cli_ok(["snapshots", "--json"], space.env))["snapshots"]) == 4
    assert space.legacy_files() == legacy_before

    target_new = space.tmp / "imported-restore"
    r = restore(space.env, snaps[-1]["id"], "--target", str(target_new))
    assert r.proc.returncode == 0 and "restored snapshot" in r.proc.stdout, r.out
    for root in ("openclaw-state", "root-config", "myextra"):
        assert tar_fingerprint(target_new / root) == tar_fingerprint(target_legacy / root), root
        assert tar_fingerprint(target_new / root) == tar_fingerprint(space.src / root), root
    target_old = space.tmp / "oldest-restore"
    r = restore(space.env, snaps[0]["id"], "--target", str(target_old))
    assert r.proc.returncode == 0, r.out
    assert tar_fingerprint(target_old / "openclaw-state") == tar_fingerprint(v0 / "openclaw-state")


def test_migrate_dry_run_writes_nothing(space: Space) -> None:
    space.legacy.backup("20260301-100000", space.src, password=PW)
    space.upload()
    env = legacy_env(space.hub, space.tmp, password=PW)
    before = space.hub_files()
    doc = json_out(cli_ok(["migrate", "--dry-run", "--json"], env))
    assert [d["archive"] for d in doc["imported"]] == ["openclaw-backup-20260301-100000.tar.gz.enc"]
    assert space.hub_files() == before
