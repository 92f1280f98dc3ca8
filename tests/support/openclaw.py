"""The real OpenClaw in a scratch home, for end-to-end tests (installed by :mod:`tests.support.setup_openclaw`).

:class:`OpenClaw` owns one scratch installation's environment — its own ``HOME`` and
``OPENCLAW_STATE_DIR``, ``OPENCLAW_DISABLE_BONJOUR=1``, no colours, node and an ``npm`` wrapper
first on ``PATH`` (:mod:`tests.support.nodejs`), none of the developer's OpenClaw, node or proxy settings —
and the processes it starts: :meth:`OpenClaw.run` runs one CLI command bounded in time;
:meth:`OpenClaw.start_gateway` runs ``gateway run`` with ``OPENCLAW_NO_RESPAWN=1`` (so the PID we
hold is the gateway itself) in its own process group and waits for its ``ready`` log line;
:meth:`OpenClaw.stop_gateway` stops it by that PID, TERM then KILL, and then the group it leads
(its helper workers).

:func:`transcript` reads an agent database's transcript events with APSW (the stdlib's SQLite
3.40 here cannot parse OpenClaw's schema functions), read-only, so it may run beside a live gateway.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw

from tests.support import nodejs, setup_openclaw
from tests.support.cli import clean_env
from tests.support.processes import log_tail, stop_process

GATEWAY_START_TIMEOUT = 120.0
GATEWAY_STOP_GRACE = 20.0
_READY = re.compile(r"\[gateway\] ready\b")
_FOREIGN = {"NODE_OPTIONS", "NODE_PATH", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"}


@dataclass(frozen=True)
class TranscriptEvent:
    event_id: str | None
    type: str | None
    role: str | None
    text: str


def transcript(db: Path) -> dict[tuple[str, int], TranscriptEvent]:
    """``(session_id, seq) -> event`` of every transcript event committed in ``db`` (read-only)."""
    uri = "file:" + str(db.resolve()) + "?mode=ro"
    con = apsw.Connection(uri, flags=apsw.SQLITE_OPEN_URI | apsw.SQLITE_OPEN_READONLY)
    con.set_busy_timeout(10_000)
    try:
        rows = con.execute(
            "SELECT e.session_id, e.seq, e.event_json, i.event_id FROM transcript_events e "
            "LEFT JOIN transcript_event_identities i ON i.session_id = e.session_id AND i.seq = e.seq"
        ).fetchall()
    finally:
        con.close()
    out: dict[tuple[str, int], TranscriptEvent] = {}
    for session_id, seq, event_json, event_id in rows:
        doc: Any = json.loads(event_json) if event_json else {}
        msg = doc.get("message") if isinstance(doc.get("message"), dict) else {}
        content = msg.get("content")
        text = content if isinstance(content, str) else json.dumps(content)
        out[(session_id, seq)] = TranscriptEvent(event_id or doc.get("id"), doc.get("type"), msg.get("role"), text)
    return out


def user_turns(events: dict[tuple[str, int], TranscriptEvent]) -> list[TranscriptEvent]:
    return [e for e in events.values() if e.type == "message" and e.role == "user"]


class OpenClaw:
    """One scratch OpenClaw: ``home`` holds its ``HOME``; its state is ``home/.openclaw``."""

    def __init__(self, home: Path, *, logs: Path) -> None:
        self.entry = setup_openclaw.ensure_installed()
        self.home, self.state, self.logs = home, home / ".openclaw", logs
        logs.mkdir(parents=True, exist_ok=True)
        bins = nodejs.bin_dir(logs / "node-bin")
        env = nodejs.with_node_path(clean_env(home.parent), bins)
        for key in list(env):  # node options and proxies of the developer's: everything here is loopback
            if key.upper() in _FOREIGN or key.lower().startswith("npm_config_"):
                del env[key]
        env.update(
            HOME=str(home), OPENCLAW_STATE_DIR=str(self.state), OPENCLAW_DISABLE_BONJOUR="1",
            NO_COLOR="1", FORCE_COLOR="0", CI="1",
        )  # fmt: skip
        self.env = env
        self.gateway: subprocess.Popen[bytes] | None = None
        self.gateway_log = logs / "gateway.log"

    def command(self, *args: str) -> list[str]:
        return [str(nodejs.node()), str(self.entry), *args]

    def run(self, *args: str, timeout: float = 120, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``openclaw ARGS`` to completion (never raises on its exit code)."""
        try:
            return subprocess.run(
                self.command(*args), env=self.env, cwd=self.home, input=stdin, capture_output=True, text=True,
                timeout=timeout, check=False, stdin=None if stdin is not None else subprocess.DEVNULL,
            )  # fmt: skip
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            return subprocess.CompletedProcess(e.cmd, -9, out, f"timed out after {timeout:.0f} s")

    def popen(self, *args: str, log: Path) -> subprocess.Popen[bytes]:
        """Start ``openclaw ARGS`` in the background, output to ``log``."""
        with open(log, "ab") as f:
            return subprocess.Popen(
                self.command(*args), env=self.env, cwd=self.home, stdin=subprocess.DEVNULL, stdout=f, stderr=f
            )

    def start_gateway(self, port: int, *, timeout: float = GATEWAY_START_TIMEOUT) -> None:
        assert self.gateway is None, "a gateway is already running"
        start = self.gateway_log.stat().st_size if self.gateway_log.exists() else 0
        with open(self.gateway_log, "ab") as f:
            self.gateway = subprocess.Popen(
                self.command("gateway", "run", "--port", str(port), "--bind", "loopback"),
                env=dict(self.env, OPENCLAW_NO_RESPAWN="1"), cwd=self.home, stdin=subprocess.DEVNULL,
                stdout=f, stderr=f, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            with open(self.gateway_log, "rb") as f:
                f.seek(start)
                if _READY.search(f.read().decode(errors="replace")):
                    return
            if self.gateway.poll() is not None or time.monotonic() > deadline:
                code = self.gateway.poll()
                self.stop_gateway()
                raise AssertionError(
                    f"the gateway did not get ready ({'exited ' + str(code) if code is not None else 'timed out'}):\n"
                    + log_tail(self.gateway_log)
                )
            time.sleep(0.1)

    def stop_gateway(self, *, grace: float = GATEWAY_STOP_GRACE) -> float:
        """Stop the gateway we started (TERM, then KILL after ``grace``); return how long it took."""
        proc, self.gateway = self.gateway, None
        if proc is None:
            return 0.0
        started = time.monotonic()
        stop_process(proc, grace=grace)
        try:  # its helper workers, in the process group it led (by its PID)
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return time.monotonic() - started

    def agent_db(self, agent: str = "main") -> Path:
        return self.state / "agents" / agent / "agent" / "openclaw-agent.sqlite"


def explain(proc: subprocess.CompletedProcess[str], args: Sequence[str] = ()) -> str:
    """A failed command, for an assertion message."""
    out, err = ("\n".join(s.splitlines()[-25:]) for s in (proc.stdout, proc.stderr))
    return f"openclaw {' '.join(args)} exited {proc.returncode}\nstdout:\n{out}\nstderr:\n{err}"
