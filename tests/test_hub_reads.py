"""Ranged reads of the Hub arrive whole, as plain GETs (:mod:`.backends.plain_get`) and through the
library's session alike (what a proxy in the environment makes them): a cold restore of files larger
than a piece, through reads of several pieces each, is byte for byte; the session's connections take
the socket's bytes in large pieces (:data:`.hub_client.READ_PIECE` per call, not 64 KiB)."""

from __future__ import annotations

import random
from pathlib import Path

import httpcore2
import pytest

from openclaw_backup.backends import hub_files, open_backend
from openclaw_backup.backends.hub_client import READ_PIECE
from openclaw_backup.backends.options import HubEnvironment
from tests.support.hub import HubRepo
from tests.support.repos import new_repo, open_repo, run_backup, run_restore


@pytest.mark.parametrize("via", ["plain GETs", "the session"])
def test_a_cold_restore_reads_in_large_pieces_and_every_byte_arrives(
    hub_repo: HubRepo, tmp_path: Path, via: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub_env, asked = HubEnvironment(), list[str]()
    if via == "the session":  # as when a proxy is configured: the settings say so, the session is asked
        def through_a_proxy(url: str) -> bool:
            asked.append(url)
            return False

        monkeypatch.setattr(hub_files, "_direct", through_a_proxy)
        hub_env = HubEnvironment(proxied=True)
    src = tmp_path / "src"
    rng = random.Random(3)
    for i, size in enumerate((3 * READ_PIECE + 12_345, READ_PIECE - 1, 70_000)):
        p = src / f"f{i}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rng.randbytes(size))  # incompressible: each read is as long as what it holds
    repo = new_repo(hub_repo.open(create=True), pack_size=8 << 20)
    run_backup(repo, {"src": src}, forked=False)
    cold = open_repo(open_backend(hub_repo.address, hub_repo.server.options(retries=5, hub_env=hub_env)))
    run_restore(cold, "latest", {"src": tmp_path / "out"})
    assert httpcore2.HTTP11Connection.READ_NUM_BYTES == READ_PIECE  # the session's connections read so
    for p in src.iterdir():
        assert (tmp_path / "out" / p.name).read_bytes() == p.read_bytes(), p.name
    assert bool(asked) == (via == "the session")
