"""The kinds of store, and the fixtures of the in-process ones (a pytest plugin).

Backend fixtures are named ``<kind>_backend``; each yields a fresh, empty backend. ``memory`` and
``local`` are here; ``s3`` and ``hub`` start real servers (:mod:`tests.support.s3`,
:mod:`tests.support.hub`); ``hub_bucket`` runs on an in-memory bucket API (:mod:`tests.support.hub`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from openclaw_backup.backends.local import LocalBackend
from openclaw_backup.backends.memory import MemoryBackend

#: Every kind of store; the contract suite (tests/test_backend_contract.py) runs on each ``<kind>_backend``.
BACKEND_KINDS = ["memory", "local", "s3", "hub", "hub_bucket"]
#: The kinds whose fixture starts (or shares) a server subprocess.
SERVER_KINDS = frozenset({"s3", "hub"})


def kinds(*names: str) -> list[Any]:
    """``names`` (default: every kind) as parameters, those on a server marked ``server``."""
    return [pytest.param(k, marks=pytest.mark.server) if k in SERVER_KINDS else k for k in names or BACKEND_KINDS]


@pytest.fixture
def memory_backend() -> Iterator[MemoryBackend]:
    yield MemoryBackend()


@pytest.fixture
def local_backend(tmp_path: Path) -> Iterator[LocalBackend]:
    b = LocalBackend(tmp_path / "repo", lock_timeout=2.0)
    yield b
    b.close()
