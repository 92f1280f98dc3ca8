"""End to end with the real OpenClaw (pinned, from npm; node from PyPI; a stub model on loopback).

Onboard a scratch OpenClaw against :mod:`tests.support.model_stub`, run its gateway, run agent turns, and
back it up with ``openclaw-backup backup`` while more turns run (one is in flight when the backup
starts: its user message is committed, the model has not answered). Stop the gateway, wipe the
state, restore it, and check with OpenClaw's own commands that it works (``config validate``,
``agents list``, ``sessions``, ``memory search`` for words said before the backup — searched in
transcripts — and ``doctor``, with the gateway up) and that every transcript event committed
before the backup started is in the restored agent database. A failed install of OpenClaw fails
this test; it never skips.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from pathlib import Path

import apsw
import pytest

from openclaw_backup.settings import Settings
from tests.support import model_stub, nodejs, setup_openclaw
from tests.support.cli import cli_env, json_out, run_cli
from tests.support.openclaw import OpenClaw, explain, transcript, user_turns
from tests.support.processes import free_ports, stop_process

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

WORDS_BEFORE = ["amberkestrel", "cobaltmarmot"]  # said in turns that end before the backup
MODEL_DELAY = 0.5  # seconds the stub "thinks": a turn stays in flight while the backup starts


class TurnLoop(threading.Thread):
    """Agent turns one after another until :meth:`stop`; each turn's command result is kept."""

    def __init__(self, oc: OpenClaw) -> None:
        super().__init__(daemon=True)
        self.oc = oc
        self.results: list[tuple[str, int]] = []
        self._stop_at = threading.Event()

    def run(self) -> None:
        n = 0
        while not self._stop_at.is_set():
            n += 1
            word = f"duringturn{n}word"
            proc = self.oc.run("agent", "--agent", "main", "--message", f"While backing up, remember {word}.",
                               timeout=180)  # fmt: skip
            self.results.append((word, proc.returncode))

    def stop(self) -> None:
        self._stop_at.set()


def _chat_requests(stub: model_stub.ModelStub) -> int:
    return sum(1 for r in stub.requests() if r["path"].endswith("/chat/completions"))


def test_backup_of_a_live_openclaw_restores_its_transcripts_and_state(tmp_path: Path) -> None:
    try:
        setup_openclaw.ensure_installed()
    except (setup_openclaw.InstallFailed, nodejs.NodeMissing) as e:
        pytest.fail(f"OpenClaw {setup_openclaw.VERSION} is not installed and cannot be: {e}", pytrace=False)
    timings: dict[str, float] = {}
    mark = time.monotonic()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.monotonic()
        timings[name] = round(now - mark, 1)
        mark = now

    oc = OpenClaw(tmp_path / "home", logs=tmp_path / "logs")
    backup_env = cli_env(tmp_path, OPENCLAW_STATE_DIR=str(oc.state))
    assert run_cli(["init"], backup_env).returncode == 0
    port = free_ports()[0]
    turns = TurnLoop(oc)
    problems: list[str] = []
    stub = model_stub.start(tmp_path / "stub", delay=MODEL_DELAY)
    try:
        # ------------------------------------------------------------ a live OpenClaw
        args = ("onboard", "--non-interactive", "--accept-risk", "--mode", "local",
                "--auth-choice", "custom-api-key", "--custom-base-url", stub.url, "--custom-model-id", "fake-model",
                "--custom-api-key", "stub-key", "--gateway-port", str(port), "--gateway-bind", "loopback",
                "--gateway-auth", "token", "--skip-daemon", "--skip-channels", "--skip-skills", "--skip-health",
                "--skip-ui", "--skip-search", "--json")  # fmt: skip
        proc = oc.run(*args, timeout=180)
        assert proc.returncode == 0, explain(proc, args)
        patch = {
            "memory": {"search": {
                "sources": ["memory", "sessions"], "provider": "openai-compatible", "model": "fake-embed",
                "remote": {"baseUrl": stub.url, "apiKey": "stub-key"}, "fallback": "none",
            }},
            "logging": {"file": str(tmp_path / "logs" / "openclaw.log")},
            "update": {"checkOnStart": False},
            "telemetry": {"enabled": False},
        }  # fmt: skip
        proc = oc.run("config", "patch", "--stdin", stdin=json.dumps(patch))
        assert proc.returncode == 0, explain(proc, ("config", "patch"))
        lap("onboard+config")
        oc.start_gateway(port)
        lap("gateway start")
        for word in WORDS_BEFORE:
            args = ("agent", "--agent", "main", "--message", f"Please remember the word {word}.")
            proc = oc.run(*args, timeout=180)
            assert proc.returncode == 0, explain(proc, args)
        lap("turns before")

        # ------------------------------------------------------------ backup while turns run
        asked = _chat_requests(stub)
        turns.start()
        deadline = time.monotonic() + 120
        while _chat_requests(stub) == asked:  # the loop's first turn is committed and waits for the model
            assert turns.is_alive() and time.monotonic() < deadline, f"no turn reached the model: {turns.results}"
            time.sleep(0.05)
        before = transcript(oc.agent_db())
        wal_bytes = Path(f"{oc.agent_db()}-wal").stat().st_size
        lap("turn in flight")
        backup = run_cli(["backup", "--json"], backup_env, timeout=300)
        lap("backup")
        turns.stop()
        turns.join(timeout=200)
        assert not turns.is_alive(), "an agent turn did not finish"
        at_stop = transcript(oc.agent_db())
        lap("turns after")
        timings["gateway stop"] = round(oc.stop_gateway(), 1)
        mark = time.monotonic()

        assert backup.returncode in (0, 3), f"backup exited {backup.returncode}:\n{backup.stderr[-3000:]}"
        doc = json_out(backup)
        print("backup stats:", doc.get("stats"))
        if doc["stats"]["sqlite_captured"] < 2:  # the agent's database and state/openclaw.sqlite at least
            problems.append(f"too few databases captured through SQLite: {doc['stats']}")
        if backup.returncode != 0 or doc["warnings"]:
            problems.append(f"the backup exited {backup.returncode} with warnings {doc['warnings']}")
        if "plain file" in backup.stderr or "raw set" in backup.stderr:
            problems.append("a database was not captured through SQLite:\n" + backup.stderr[-2000:])
        print(f"before the backup: {len(before)} events, {len(user_turns(before))} user turns, WAL {wal_bytes} bytes")
        assert len(user_turns(before)) >= len(WORDS_BEFORE) + 1, "no turn was in flight when the backup started"
        assert wal_bytes > 0, "the agent database's WAL was empty when the backup started"
        assert all(rc == 0 for _, rc in turns.results), f"agent turns failed during the backup: {turns.results}"
        assert len(at_stop) > len(before), "no transcript event was committed while the backup ran"
        paths = {e["path"] for e in json_out(run_cli(["ls", "--json"], backup_env))["entries"]}
        if sidecars := sorted(p for p in paths if p.endswith(("-wal", "-shm", "-journal"))):
            problems.append(f"SQLite sidecars stored: {sidecars}")

        # ------------------------------------------------------------ wipe, restore
        shutil.rmtree(oc.state)
        proc = run_cli(["restore"], backup_env, timeout=300)
        assert proc.returncode == 0, f"restore exited {proc.returncode}:\n{proc.stderr[-3000:]}"
        lap("restore")
        copy = tmp_path / "restored-agent.sqlite"  # read a copy: no sidecars in the restored state
        shutil.copyfile(oc.agent_db(), copy)
        try:
            restored = transcript(copy)
        except apsw.Error as e:
            restored = {}
            problems.append(f"the restored agent database has no transcript: {e}")
        lost = sorted(k for k, e in before.items() if k not in restored or restored[k].event_id != e.event_id)
        if lost:
            problems.append(
                f"{len(lost)} of {len(before)} transcript events committed before the backup are not restored "
                f"({len(user_turns(before))} user turns before, {len(user_turns(restored))} restored): {lost[:10]}"
            )

        # ------------------------------------------------------------ OpenClaw's own checks
        oc.start_gateway(port)
        lap("gateway restart")
        for args in (("config", "validate"), ("agents", "list", "--json"), ("sessions", "--all-agents", "--json"),
                     ("memory", "search", WORDS_BEFORE[0], "--json"), ("doctor", "--non-interactive")):  # fmt: skip
            proc = oc.run(*args, timeout=240)
            lap(" ".join(args[:2]))
            if proc.returncode != 0:
                problems.append(explain(proc, args))
                continue
            if args[0] == "agents" and '"main"' not in proc.stdout:
                problems.append(f"agents list does not show main: {proc.stdout[-1000:]}")
            if args[0] == "sessions" and "agent:main:main" not in proc.stdout:
                problems.append(f"sessions does not show agent:main:main: {proc.stdout[-1000:]}")
            if args[0] == "memory":
                hits = json.loads(proc.stdout[proc.stdout.index("{") :]).get("results", [])
                if not any(h.get("source") == "sessions" and h.get("textScore", 0) > 0 for h in hits):
                    problems.append(f"memory search finds no transcript with {WORDS_BEFORE[0]!r}: {hits}")
    finally:
        turns.stop()
        oc.stop_gateway()  # a turn still running fails fast without it
        if turns.is_alive():
            turns.join(timeout=60)
        stop_process(stub.proc)
        print("timings (s):", timings)
    assert not problems, "\n\n".join(problems)


def test_the_installed_version_read_from_the_npm_package_is_what_openclaw_says(tmp_path: Path) -> None:
    try:
        entry = setup_openclaw.ensure_installed()
    except (setup_openclaw.InstallFailed, nodejs.NodeMissing) as e:
        pytest.fail(f"OpenClaw {setup_openclaw.VERSION} is not installed and cannot be: {e}", pytrace=False)
    said = OpenClaw(tmp_path / "home", logs=tmp_path / "logs").run("--version")
    version = re.search(r"\d+(?:\.\d+)+", said.stdout)
    assert said.returncode == 0 and version, explain(said, ("--version",))
    npm_bin = entry.parents[3] / "bin"  # PREFIX/bin/openclaw -> ../lib/node_modules/openclaw/<entry>
    assert (npm_bin / "openclaw").resolve() == entry.resolve()
    settings = Settings(env={"PATH": str(npm_bin), "HOME": str(tmp_path / "home")})
    assert settings.installed_agent_version() == version.group(0) == setup_openclaw.VERSION
