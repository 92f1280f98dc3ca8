"""How the program ends (``cli.leave``): without tearing the interpreter down, yet with everything a
normal exit owes done — its output whole, its exit handlers run, its running threads waited for."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.support.cli import cli_env, cli_ok, json_out, run_cli


def _python(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=60, check=False, cwd=tmp_path)  # fmt: skip


def test_leave_flushes_the_output_and_runs_the_exit_handlers(tmp_path: Path) -> None:
    proc = _python(
        """
        import atexit, sys
        from openclaw_backup.cli import leave
        atexit.register(lambda: open("handler-ran", "w").write("yes"))
        sys.stdout.write("x" * 300_000)  # more than a pipe holds: still buffered when leave() starts
        sys.stderr.write("a warning\\n")
        leave(4)
        """,
        tmp_path,
    )
    assert proc.returncode == 4, proc.stderr
    assert proc.stdout == "x" * 300_000
    assert proc.stderr == "a warning\n"
    assert (tmp_path / "handler-ran").read_text() == "yes"


def test_leave_waits_for_a_thread_still_at_work(tmp_path: Path) -> None:
    proc = _python(
        """
        import threading, time
        from openclaw_backup.cli import leave
        def work():
            time.sleep(0.5)
            open("thread-finished", "w").write("yes")
        threading.Thread(target=work).start()
        leave(3)
        """,
        tmp_path,
    )
    assert proc.returncode == 3, proc.stderr
    assert (tmp_path / "thread-finished").read_text() == "yes"


def test_the_program_prints_a_long_listing_whole_and_exits_with_its_status(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i in range(40):
        (src / f"d{i:02d}").mkdir(parents=True)
        for j in range(60):
            (src / f"d{i:02d}" / f"file-with-a-longish-name-{j:04d}.txt").write_text(f"{i} {j}\n")
    env = cli_env(tmp_path)
    repo = str(tmp_path / "repo")
    cli_ok(["--repo", repo, "init"], env)
    cli_ok(["--repo", repo, "backup", "--source", str(src), "--no-default-excludes"], env)
    for module in (False, True):  # the installed script and ``python -m openclaw_backup``
        listing = cli_ok(["--repo", repo, "--json", "ls", "latest"], env, module=module)
        entries = json_out(listing)["entries"]
        assert sum(1 for e in entries if e["type"] == "file") == 40 * 60
        missing = run_cli(["--repo", str(tmp_path / "no-repo"), "snapshots"], env, module=module)
        assert missing.returncode == 10, missing.stderr
        assert missing.stderr.startswith("error: ")
