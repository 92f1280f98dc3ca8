"""Bad input gets a clear error and creates nothing: repository addresses with unknown or mistyped
schemes, cron schedules that are invalid or unsupported, variables that look like ours but are not,
short passwords at ``init``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from openclaw_backup.backends import normalize_address, scheme_of
from openclaw_backup.errors import UsageError
from openclaw_backup.settings import Settings, cron_interval
from tests.support.cli import cli_env, run_cli


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("ftp://x", "unknown repository scheme 'ftp'"),
        ("gs://b/p", "unknown repository scheme 'gs'"),
        ("hf:/datasets/a/b", "did you mean 'hf://datasets/a/b'"),
        ("HF:/datasets/a/b", "did you mean 'hf://datasets/a/b'"),
        ("s3:bucket/p", "did you mean 's3://bucket/p'"),
    ],
)
def test_unknown_or_mistyped_schemes_are_refused_and_nothing_is_created(
    tmp_path: Path, address: str, message: str
) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    env = cli_env(tmp_path)
    for command in (["init"], ["backup", "--source", str(tmp_path)]):
        proc = run_cli(["--repo", address, *command], env, cwd=work)
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr + proc.stdout
    assert list(work.iterdir()) == [], "something was created for a refused address"
    assert not (tmp_path / "xdg-data" / "openclaw-backup").exists()


def test_schemes_are_case_insensitive() -> None:
    assert scheme_of("S3://b/p") == "s3" and normalize_address("S3://b/p") == "s3://b/p"
    assert normalize_address("HF://datasets/a/b") == "hf://datasets/a/b"
    assert Settings({"OPENCLAW_BACKUP_REPOSITORY": "Hf://buckets/a/b"}).repository() == "hf://buckets/a/b"
    assert scheme_of("/data/backups") == "" and scheme_of("notes:2026") == ""  # plain paths stay paths


@pytest.mark.parametrize(
    ("expr", "seconds"), [("*/5 * * * *", 300), ("*/1 * * * *", 60), ("7 * * * *", 3600), ("0 */6 * * *", 21600)]
)
def test_supported_cron_schedules(expr: str, seconds: float) -> None:
    assert cron_interval(expr) == seconds
    assert Settings({"OPENCLAW_BACKUP_CRON": expr}).interval() == seconds


@pytest.mark.parametrize("expr", ["*/0 * * * *", "*/60 * * * *", "*/5 * * *", "0 3 * * *", "0 0 * * 1", "garbage"])
def test_invalid_zero_step_or_unsupported_cron_is_an_error(expr: str) -> None:
    with pytest.raises(UsageError, match="OPENCLAW_BACKUP_CRON"):
        Settings({"OPENCLAW_BACKUP_CRON": expr}).interval()


def test_run_with_a_zero_step_cron_refuses_to_start(tmp_path: Path) -> None:
    marker = tmp_path / "agent-started"
    env = cli_env(tmp_path, OPENCLAW_BACKUP_CRON="*/0 * * * *", OPENCLAW_STATE_DIR=str(tmp_path / "state"))
    proc = run_cli(["run", "--", sys.executable, "-c", f"open({str(marker)!r}, 'w')"], env, cwd=tmp_path)
    assert proc.returncode == 2 and "OPENCLAW_BACKUP_CRON" in proc.stderr
    assert not marker.exists(), "the agent was started under a schedule that was refused"


def test_a_variable_that_looks_like_ours_gets_a_warning_with_the_closest_name(tmp_path: Path) -> None:
    env = cli_env(tmp_path, OPENCLAW_BACKUP_HF_REPO="me/backups", OPENCLAW_BACKUP_PASWORD="x")
    proc = run_cli(["excludes"], env, cwd=tmp_path)
    assert proc.returncode == 0
    assert "OPENCLAW_BACKUP_HF_REPO is not a variable this tool knows" in proc.stderr
    assert "OPENCLAW_BACKUP_PASWORD" in proc.stderr and "did you mean OPENCLAW_BACKUP_PASSWORD?" in proc.stderr
    quiet = run_cli(["excludes"], cli_env(tmp_path), cwd=tmp_path)
    assert "not a variable" not in quiet.stderr


def test_a_short_password_gets_a_warning_at_init(tmp_path: Path) -> None:
    env = cli_env(tmp_path, OPENCLAW_BACKUP_PASSWORD="a")
    proc = run_cli(["--repo", str(tmp_path / "repo"), "init"], env, cwd=tmp_path)
    assert proc.returncode == 0 and "the password has 1 characters" in proc.stderr
