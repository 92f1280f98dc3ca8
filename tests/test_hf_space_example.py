"""examples/hf-space run the way a Docker Space runs it, against the fake Hub.

What is taken from the example itself: the wheel is built by its ``build-wheel.sh``; the tool is
installed by the Dockerfile's own ``RUN`` line (paths moved under a temporary folder) with this
machine's ``/usr/bin/python3`` — Debian bookworm's, the Python the Dockerfile's base image brings;
the environment is the Dockerfile's ``ENV`` (``/home/user`` moved likewise); the entrypoint is its
``entrypoint.sh`` with a stand-in agent as the command (the real OpenClaw is exercised by
tests/test_openclaw_real.py). As a Space: uid 1000 (when the tests run as root, which CI does;
otherwise the current user), ``SPACE_ID``, the secrets (``HF_TOKEN``, ``OPENCLAW_BACKUP_PASSWORD``)
and the repository variable in the environment, SIGTERM then the grace period.

Two containers in turn: the first starts empty (nothing to restore), is backed up periodically, and
writes a file after SIGTERM that only the final backup can hold; the second starts with an empty
home and must find both restored before its agent starts.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import cli_env, cli_ok, hub_env, json_out, wait_for
from tests.support.dropin import FLAG_DONE, FLAG_NONE, restore_flags_locked
from tests.support.hub import TOKEN, USER, HubServer
from tests.support.package import source_copy
from tests.support.repos import PASSWORD

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = REPO_ROOT / "examples" / "hf-space"
SPACE_UID = 1000
SYSTEM_PYTHON = Path("/usr/bin/python3")

AGENT = r"""
import os, pathlib, signal, sys, time
side, run = pathlib.Path(sys.argv[1]), sys.argv[2]
state = pathlib.Path(os.environ["OPENCLAW_STATE_DIR"])
found = sorted(p.name for p in state.glob("*.txt")) if state.is_dir() else []
(side / f"start-{run}.json").write_text(__import__("json").dumps(
    {"found": found, "uid": os.getuid(), "home": os.environ["HOME"],
     "secrets": [k for k in ("OPENCLAW_BACKUP_PASSWORD",) if k in os.environ]}))
state.mkdir(parents=True, exist_ok=True)
(state / f"turn-{run}.txt").write_text(f"what the agent did in container {run}\n")

def bye(signum, frame):
    (state / f"goodbye-{run}.txt").write_text("written after SIGTERM\n")
    os._exit(0)

signal.signal(signal.SIGTERM, bye)
(side / f"ready-{run}").write_text(str(os.getpid()))
while True:
    time.sleep(0.05)
"""


def dockerfile() -> dict[str, Any]:
    """The example Dockerfile's instructions that the test follows: ENV, RUN, USER, EXPOSE, CMD."""
    text = re.sub(r"\\\n", " ", (EXAMPLE / "Dockerfile").read_text())
    out: dict[str, Any] = {"env": {}, "run": [], "user": None, "expose": None, "cmd": None}
    for line in text.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word == "ENV":
            for item in shlex.split(rest):
                name, _, value = item.partition("=")
                out["env"][name] = value
        elif word == "RUN":
            out["run"].append(rest.strip())
        elif word == "USER":
            out["user"] = rest.strip()
        elif word == "EXPOSE":
            out["expose"] = int(rest.strip())
        elif word == "CMD":
            out["cmd"] = json.loads(rest)
    return out


def front_matter() -> dict[str, str]:
    text = (EXAMPLE / "README.md").read_text()
    block = text.split("---\n")[1]
    return dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith("#"))


def test_the_example_follows_the_docker_spaces_conventions() -> None:
    d, meta = dockerfile(), front_matter()
    assert meta["sdk"] == "docker"
    assert int(meta["app_port"]) == d["expose"] and str(d["expose"]) in d["cmd"]
    assert d["user"] == "user" and any("useradd -m -u 1000 user" in r for r in d["run"])
    assert d["env"]["HOME"] == "/home/user" and d["env"]["OPENCLAW_STATE_DIR"].startswith("/home/user/")
    installs = [r for r in d["run"] if "pip install" in r]
    assert installs and all("openclaw_backup-" in r and ".whl" in r for r in installs), "installed from the wheel"
    assert all("--only-binary=apsw" in r for r in installs), "APSW (its bundled SQLite) from a wheel only"
    assert "termination_grace_period" not in (EXAMPLE / "README.md").read_text()  # not a Spaces setting
    entry = (EXAMPLE / "entrypoint.sh").read_text()
    assert 'exec openclaw-backup run -- "$@"' in entry


@pytest.fixture
def world_readable_dir() -> Iterator[Path]:
    """A folder another uid can reach (pytest's own tmp folders are private to root)."""
    path = Path(tempfile.mkdtemp(prefix="openclaw-space-test-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _install(root: Path) -> Path:
    """Build the wheel with the example's script and install it with the Dockerfile's RUN line."""
    space = root / "space"
    shutil.copytree(EXAMPLE, space)
    checkout = source_copy(root / "src")  # builds leave build/ and *.egg-info behind: not in ours
    build = subprocess.run([str(space / "build-wheel.sh"), str(checkout)], capture_output=True, text=True,
                           timeout=300, check=False)  # fmt: skip
    assert build.returncode == 0, build.stdout + build.stderr
    assert list((space / "wheels").glob("openclaw_backup-*.whl")), build.stdout
    venv = root / "opt-openclaw-backup"
    (line,) = [r for r in dockerfile()["run"] if "python3 -m venv /opt/openclaw-backup" in r]
    line = line.replace("/opt/openclaw-backup", str(venv)).replace("/tmp/wheels", str(space / "wheels"))
    line = line.replace("--no-cache-dir ", "")  # the test may use the local pip cache
    pins = str(REPO_ROOT / "requirements-test.txt")  # the versions CI installs (likely in the pip cache)
    env = {**os.environ, "PATH": f"{SYSTEM_PYTHON.parent}:/bin", "PIP_CONSTRAINT": pins}
    proc = subprocess.run(["sh", "-c", line], capture_output=True, text=True, env=env, timeout=600, check=False)
    assert proc.returncode == 0, f"the Dockerfile's install step failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "sqlite" in proc.stdout  # `openclaw-backup version` ran
    return venv


class Container:
    """One start of the Space: a fresh home, the Dockerfile's environment, the entrypoint."""

    def __init__(self, root: Path, venv: Path, space_env: dict[str, str], run: int) -> None:
        self.run, self.side = run, root / "side"
        home = root / f"container-{run}" / "home" / "user"
        home.mkdir(parents=True)
        self.side.mkdir(exist_ok=True)
        agent = root / "agent.py"
        agent.write_text(AGENT)
        as_root = os.geteuid() == 0
        if as_root:
            for path in (home.parent, home, self.side):
                os.chown(path, SPACE_UID, SPACE_UID)
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
        for name, value in dockerfile()["env"].items():
            value = value.replace("/home/user", str(home)).replace("/opt/openclaw-backup", str(venv))
            env[name] = value.replace("$PATH", "/usr/bin:/bin")
        env.update(space_env)
        self.home, self.env = home, env
        self.err = root / f"container-{run}.log"
        command = [str(EXAMPLE / "entrypoint.sh"), str(venv / "bin" / "python"), str(agent), str(self.side), str(run)]
        ids: dict[str, Any] = {"user": SPACE_UID, "group": SPACE_UID, "extra_groups": []} if as_root else {}
        with open(self.err, "wb") as log:
            self.proc = subprocess.Popen(command, env=env, cwd=home, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, **ids)  # fmt: skip

    def log(self) -> str:
        return self.err.read_text(errors="replace")

    def started(self) -> dict[str, Any]:
        wait_for(lambda: (self.side / f"ready-{self.run}").exists(), 60, f"the agent of container {self.run}")
        return dict(json.loads((self.side / f"start-{self.run}.json").read_text()))

    def status(self) -> dict[str, Any]:
        try:
            return dict(json.loads((self.home / ".cache" / "openclaw-backup" / "status.json").read_text()))
        except (OSError, ValueError):
            return {}

    def stop(self, grace: float) -> int:
        """SIGTERM, as the platform sends it; the process must be gone within the grace period."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=grace + 2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"container {self.run} outlived the grace period:\n{self.log()}") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        pid = (self.side / f"ready-{self.run}").read_text() if (self.side / f"ready-{self.run}").exists() else ""
        if pid:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.mark.server
def test_the_example_space_restores_on_start_backs_up_periodically_and_at_the_end(
    hub_server: HubServer, world_readable_dir: Path, tmp_path: Path
) -> None:
    if not SYSTEM_PYTHON.exists():
        pytest.skip("needs the system's python3 (Debian bookworm's, as in the Space image)")
    venv = _install(world_readable_dir)
    repository = f"hf://datasets/{USER}/space-{uuid.uuid4().hex[:10]}"
    space_env = {
        "SPACE_ID": f"{USER}/openclaw",  # set by the Space itself
        "HF_TOKEN": TOKEN, "OPENCLAW_BACKUP_PASSWORD": PASSWORD,  # Space secrets
        "OPENCLAW_BACKUP_REPOSITORY": repository, "OPENCLAW_BACKUP_INTERVAL": "2",  # Space variables
        "HF_ENDPOINT": hub_server.url, "HF_HUB_DISABLE_XET": "1",  # the fake Hub in place of the real one
        "OPENCLAW_BACKUP_TEST_WEAK_KDF": "1",
    }  # fmt: skip
    grace = float(dockerfile()["env"].get("OPENCLAW_BACKUP_GRACE_SECONDS", "10"))
    containers: list[Container] = []
    # the restore flag files (/tmp/openclaw-restore-*) are machine-wide: held like the drop-in tests hold them
    with restore_flags_locked(), _killing(containers):
        first = Container(world_readable_dir, venv, space_env, 1)
        containers.append(first)
        seen = first.started()
        assert seen["found"] == [] and seen["home"] == str(first.home)
        assert seen["uid"] == (SPACE_UID if os.geteuid() == 0 else os.geteuid())
        assert seen["secrets"] == [], "the agent must not get the backup password"
        wait_for(lambda: first.status().get("backups_ok", 0) >= 1, 30, f"a periodic backup:\n{first.log()}")
        assert first.stop(grace) == 0, first.log()
        log = first.log()
        assert "restore: nothing to restore" in log and "final backup: snapshot" in log, log
        assert "ERROR" not in log, log

        reader = cli_env(tmp_path, **hub_env(hub_server.url, TOKEN), OPENCLAW_BACKUP_REPOSITORY=repository)
        snaps = json_out(cli_ok(["snapshots", "--json"], reader))["snapshots"]
        assert len(snaps) >= 2 and {s["host"] for s in snaps} == {space_env["SPACE_ID"]}  # periodic + final
        files = {e["path"] for e in json_out(cli_ok(["ls", snaps[-1]["id"], "--json"], reader))["entries"]}
        assert {"openclaw-state/turn-1.txt", "openclaw-state/goodbye-1.txt"} <= files, files

        second = Container(world_readable_dir, venv, space_env, 2)
        containers.append(second)
        seen = second.started()
        assert seen["found"] == ["goodbye-1.txt", "turn-1.txt"], second.log()
        assert "restore: restored snapshot" in second.log()
        restored = second.home / ".openclaw" / "goodbye-1.txt"
        assert restored.stat().st_uid == (SPACE_UID if os.geteuid() == 0 else os.geteuid())
        assert second.stop(grace) == 0, second.log()
        for flag in (FLAG_DONE, FLAG_NONE):  # left by a container of another uid: gone for the next test
            flag.unlink(missing_ok=True)


@contextmanager
def _killing(containers: list[Container]) -> Iterator[None]:
    try:
        yield
    finally:
        for c in containers:
            c.kill()
