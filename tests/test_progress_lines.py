"""Progress where a Space shows it (issue 14): plain lines when stderr is not a terminal, JSON only
under ``--json``."""

from __future__ import annotations

import io
import json
from pathlib import Path

from openclaw_backup.progress import TextReporter
from tests.support.cli import cli_env, hub_env, run_cli
from tests.support.hub import TOKEN, HubRepo


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_plain_progress_lines_at_most_every_ten_seconds_then_a_summary() -> None:
    out, clock = io.StringIO(), Clock()
    r = TextReporter(out, live=False, clock=clock)
    r.phase("backup", total_bytes=100 * 2**20)
    for _ in range(100):  # 100 MiB over 50 s, a progress call every 0.5 s
        clock.now += 0.5
        r.progress(done_bytes=2**20, done_items=3)
    r.done()
    lines = out.getvalue().splitlines()
    progress, summary = lines[:-1], lines[-1]
    assert 4 <= len(progress) <= 5, lines  # 50 s of work: one line per 10 s, never more
    first = progress[0]
    assert first.startswith("backup: ") and "MiB of 100.0 MiB" in first and "%" in first, first
    assert "files" in first and "/s" in first and "ETA " in first, first
    assert summary.startswith("done: 100.0 MiB, 300 files in 50s"), summary


def test_short_work_prints_no_progress_and_no_summary() -> None:
    out, clock = io.StringIO(), Clock()
    r = TextReporter(out, live=False, clock=clock)
    r.phase("backup", total_bytes=10)
    clock.now += 3
    r.progress(done_bytes=10, done_items=1)
    r.done()
    assert out.getvalue() == ""


def test_json_mode_keeps_stderr_json_only_on_the_hub(hub_repo: HubRepo, tmp_path: Path) -> None:
    """Several LFS uploads at once (huggingface_hub would draw its own bars): stdout one JSON
    object, stderr JSON lines only."""
    src = tmp_path / "src"
    for i in range(6):
        (src / f"f{i}.bin").parent.mkdir(parents=True, exist_ok=True)
        (src / f"f{i}.bin").write_bytes(bytes([i]) * 3_000_000)
    env = cli_env(tmp_path / "home", **hub_env(hub_repo.server.url, TOKEN))
    env.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)
    for args in (["init"], ["backup", "--source", str(src)]):
        proc = run_cli(["--repo", hub_repo.address, *args, "--json"], env)
        assert proc.returncode == 0, proc.stderr
        assert len([ln for ln in proc.stdout.splitlines() if ln.strip()]) == 1
        json.loads(proc.stdout)
        for line in proc.stderr.splitlines():
            if line.strip():
                json.loads(line)  # raises on a progress bar or any other text
