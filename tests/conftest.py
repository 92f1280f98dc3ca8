"""Shared fixtures. Backend fixtures are named ``<kind>_backend``; the contract suite runs on each.

Hub and S3 fixtures live in their own plugin modules (listed in ``pytest_plugins``) because they
start real servers; each fixture yields a fresh, empty backend.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from openclaw_backup.backends.local import LocalBackend
from openclaw_backup.backends.memory import MemoryBackend

pytest_plugins: list[str] = ["tests.s3_fixtures", "tests.hub_fixtures", "tests.faults"]

#: Every kind of store; the contract suite (tests/test_backend_contract.py) runs on each ``<kind>_backend``.
BACKEND_KINDS = ["memory", "local", "s3", "hub", "hub_bucket"]


@pytest.fixture
def memory_backend() -> Iterator[MemoryBackend]:
    yield MemoryBackend()


@pytest.fixture
def local_backend(tmp_path: Path) -> Iterator[LocalBackend]:
    b = LocalBackend(tmp_path / "repo", lock_timeout=2.0)
    yield b
    b.close()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never see the developer's own configuration (cf. borg's test environment)."""
    import os

    for key in list(os.environ):
        if key.startswith(("OPENCLAW_", "HF_", "HUGGINGFACE_", "AWS_")):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
