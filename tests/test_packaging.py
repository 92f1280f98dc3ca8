"""The package as a user gets it: built from this checkout, installed into a fresh virtualenv with
every dependency at the lowest version ``pyproject.toml`` allows, and run against the fake Hub.

The lowest versions are read from the metadata itself (each ``>=X`` becomes ``==X``), so a range
that claims more than the code supports fails here (the ``huggingface_hub>=1.0`` that let
``import httpx2`` fail). Transitive dependencies are left to their own metadata. pip may use its
local cache; the test needs the package index the project's other installs use.
"""

from __future__ import annotations

import ast
import json
import sqlite3
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.support.cli import cli_env, hub_env
from tests.support.hub import TOKEN, USER, HubServer
from tests.support.package import source_copy

REPO_ROOT = Path(__file__).resolve().parents[1]
INSTALL_TIMEOUT = 600.0


def _metadata() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]


def lowest_pins() -> list[str]:
    """``name==X`` for each dependency's lower bound ``>=X`` (every dependency must have one)."""
    pins = []
    for text in _metadata()["dependencies"]:
        req = Requirement(text)
        lows = [s.version for s in req.specifier if s.operator == ">="]
        assert lows, f"{text}: every dependency needs a lower bound (the lowest is what this test installs)"
        pins.append(f"{req.name}=={lows[0]}")
    return pins


def _imported_top_modules() -> set[str]:
    """Every top-level module the package imports (absolute imports only)."""
    out: set[str] = set()
    for path in (REPO_ROOT / "openclaw_backup").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                out.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                out.add(node.module.split(".")[0])
    return out


#: Import name -> distribution name, where they differ.
_DIST_OF = {"huggingface_hub": "huggingface-hub"}


def test_every_third_party_import_is_declared() -> None:
    stdlib = set(sys.stdlib_module_names)
    third_party = {m for m in _imported_top_modules() if m not in stdlib and m != "openclaw_backup"}
    declared = {Requirement(t).name.lower().replace("_", "-") for t in _metadata()["dependencies"]}
    missing = sorted(m for m in third_party if _DIST_OF.get(m, m).lower().replace("_", "-") not in declared)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_license_and_classifiers_are_shipped() -> None:
    meta = _metadata()
    assert meta["license"] == "Apache-2.0"
    assert "Apache License" in (REPO_ROOT / "LICENSE").read_text()
    assert any(c.startswith("Topic :: System :: Archiving") for c in meta["classifiers"])


@pytest.mark.server
def test_fresh_install_at_the_lowest_versions_does_a_hub_round_trip(hub_server: HubServer, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    constraints = tmp_path / "lowest.txt"
    constraints.write_text("\n".join(lowest_pins()) + "\n")
    install = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-c", str(constraints),
         str(source_copy(tmp_path / "src"))],
        capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False,
    )  # fmt: skip
    assert install.returncode == 0, f"pip install at the lowest versions failed:\n{install.stderr[-4000:]}"
    frozen = subprocess.run([str(py), "-m", "pip", "freeze"], capture_output=True, text=True, check=True).stdout
    installed = {Requirement(ln).name.lower().replace("_", "-"): Version(ln.split("==")[1])
                 for ln in frozen.splitlines() if "==" in ln}  # fmt: skip
    for pin in lowest_pins():  # the lowest versions really are what got installed
        name, version = pin.split("==")
        assert installed.get(name.lower().replace("_", "-")) == Version(version), f"{pin} not installed: {frozen}"

    env = cli_env(tmp_path, **hub_env(hub_server.url, TOKEN), OPENCLAW_BACKUP_REPOSITORY=f"hf://datasets/{USER}/lowest")
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    env.pop("PYTHONPATH", None)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["openclaw-backup", *args], env=env, capture_output=True, text=True, timeout=120,
                              cwd=tmp_path, stdin=subprocess.DEVNULL, check=False)  # fmt: skip
        assert proc.returncode == 0, f"{args} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    version = cli("--version").stdout
    assert version.split()[-1] == _package_version()
    about = json.loads(cli("version", "--json").stdout)
    assert about["version"] == _package_version() and about["libraries"]["huggingface_hub"] == "2.0.0"
    state = Path(env["HOME"]) / ".openclaw"
    (state / "agents/main/sessions").mkdir(parents=True)
    (state / "openclaw.json").write_bytes(b'{"a": 1}')
    (state / "agents/main/sessions/s.jsonl").write_bytes(b"line\n" * 1000)
    with sqlite3.connect(state / "memory.sqlite") as db:  # captured through APSW at its lowest version
        db.execute("create table t(x)")
        db.executemany("insert into t values (?)", [(i,) for i in range(500)])
    db.close()
    cli("init")
    cli("backup")
    cli("check", "--read-data")
    cli("restore", "latest", "--target", str(tmp_path / "out"))
    restored = tmp_path / "out" / "openclaw-state"
    assert (restored / "openclaw.json").read_bytes() == b'{"a": 1}'
    assert (restored / "agents/main/sessions/s.jsonl").read_bytes() == b"line\n" * 1000
    with sqlite3.connect(restored / "memory.sqlite") as db:
        assert db.execute("select count(*) from t").fetchone() == (500,)
    db.close()


def _package_version() -> str:
    tree = ast.parse((REPO_ROOT / "openclaw_backup" / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "__version__":
            return str(ast.literal_eval(node.value))
    raise AssertionError("no __version__")
