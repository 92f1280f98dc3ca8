"""Shared fixtures and markers. What the tests share lives in :mod:`tests.support`; its pytest
plugins (fixtures that start servers, the fault ledger) are listed in ``pytest_plugins``.

Markers (``pyproject.toml``): ``slow`` — the real OpenClaw, minutes; ``server`` — the test uses
the S3 server (SeaweedFS) or the fake Hub, subprocesses started once per session. A test whose
fixtures include ``s3_server`` or ``hub_server`` is marked ``server`` here; one that asks for them
at run time (``request.getfixturevalue``) must carry the mark itself (``tests.support.backends.kinds``
marks parameters), and fails if it does not. The fast inner loop: ``./dev test -m "not slow"``
(``-m "not slow and not server"`` without the servers).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins: list[str] = ["tests.support.backends", "tests.support.s3", "tests.support.hub", "tests.support.faults"]

SERVER_FIXTURES = ("s3_server", "hub_server")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(name in getattr(item, "fixturenames", ()) for name in SERVER_FIXTURES):
            item.add_marker(pytest.mark.server)


@pytest.fixture(autouse=True)
def _server_marked(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that got a server at run time without the ``server`` mark fails (so ``-m`` stays true)."""
    yield
    used = [name for name in SERVER_FIXTURES if name in request.fixturenames]
    if used and request.node.get_closest_marker("server") is None:
        pytest.fail(f"{request.node.nodeid} uses {', '.join(used)} but is not marked `server`", pytrace=False)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never see the developer's own configuration (cf. borg's test environment)."""
    for key in list(os.environ):
        if key.startswith(("OPENCLAW_", "HF_", "HUGGINGFACE_", "AWS_")):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
