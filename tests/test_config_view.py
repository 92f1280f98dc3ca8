"""``openclaw-backup config``: what the tool would use here, resolved as a backup resolves it, never
a secret's value; problems (no durable repository in a Space, no password) make it exit 1."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import clean_env, json_out, run_cli
from tests.support.trees import write

SECRET = "correct horse battery staple 1234"


def test_a_plausible_but_wrong_variable_in_a_space_is_named_with_the_right_one(tmp_path: Path) -> None:
    env = clean_env(tmp_path, SPACE_ID="me/agent", OPENCLAW_BACKUP_HF_REPO="me/state", OPENCLAW_BACKUP_PASSWORD=SECRET)
    proc = run_cli(["config"], env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "OPENCLAW_BACKUP_HF_REPO is ignored; did you mean OPENCLAW_BACKUP_REPOSITORY?" in proc.stdout
    assert "PROBLEM" in proc.stdout and "lost when the Space restarts" in proc.stdout
    assert "me/agent" in proc.stdout and "from OPENCLAW_BACKUP_PASSWORD" in proc.stdout
    assert SECRET not in proc.stdout + proc.stderr
    doc = json_out(run_cli(["config", "--json"], env))
    assert doc["space"] == "me/agent" and doc["repository_from"].startswith("the default")
    unknown = {"name": "OPENCLAW_BACKUP_HF_REPO", "did_you_mean": "OPENCLAW_BACKUP_REPOSITORY"}
    assert doc["unknown_variables"] == [unknown]
    assert SECRET not in str(doc)


def test_everything_it_would_use(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write(home / ".openclaw" / "openclaw.json", "{}")
    write(home / ".env.d" / "openclaw-backup.env", "export OPENCLAW_BACKUP_DATASET_REPO=me/legacy\n")
    secret_file = tmp_path / "pw"
    secret_file.write_text(SECRET)
    env = clean_env(tmp_path, HF_TOKEN="hf_secret_token", OPENCLAW_BACKUP_PASSWORD_FILE=str(secret_file),
                    OPENCLAW_BACKUP_CACHE_DIR=str(tmp_path / "cache"))  # fmt: skip
    proc = run_cli(["config", "--json"], env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json_out(proc)
    assert doc["repository"] == "hf://datasets/me/legacy" and "legacy" in doc["repository_from"]
    assert doc["password_from"] == f"OPENCLAW_BACKUP_PASSWORD_FILE ({secret_file})"
    assert doc["hub_token_from"] == "HF_TOKEN" and doc["cache_dir"] == str(tmp_path / "cache")
    assert doc["env_files"] == [{"path": str(home / ".env.d" / "openclaw-backup.env"),
                                 "variables": ["OPENCLAW_BACKUP_DATASET_REPO"]}]  # fmt: skip
    roots = {r["name"]: r for r in doc["roots"]}
    assert roots["openclaw-state"] == {"name": "openclaw-state", "path": str(home / ".openclaw"), "exists": True}
    assert roots["root-ssh"]["exists"] is False
    assert doc["space"] is None and doc["problems"] == [] and doc["excludes"]["defaults"] > 0
    text = run_cli(["config"], env).stdout
    assert SECRET not in text and "hf_secret_token" not in text
    assert str(home / ".openclaw") in text and "openclaw-backup.env: OPENCLAW_BACKUP_DATASET_REPO" in text
