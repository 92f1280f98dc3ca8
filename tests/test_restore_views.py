"""A restore writes the blobs stored raw (incompressible data) straight from a view of the opened
payload, not a copy: the files come back byte for byte, sparse ones with their holes."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from openclaw_backup import forkwork
from openclaw_backup.codec import BLOB_DATA, decode_blob, decode_blob_view
from tests.support.repos import encode_blob, local_repo, new_repo, run_backup, run_restore, snapshot_nodes

needs_fork = pytest.mark.skipif(not forkwork.available(), reason="the forked worker is Linux-only")


def test_a_raw_blob_decodes_to_a_view_and_to_bytes_alike() -> None:
    repo = new_repo()
    data = random.Random(1).randbytes(70_000)  # incompressible: stored raw
    bid = repo.cipher.blob_id(data)
    stored = bytes(encode_blob(repo.cipher, BLOB_DATA, data, bid))
    view = decode_blob_view(repo.cipher, BLOB_DATA, bid, stored, len(data))
    assert isinstance(view, memoryview) and view == data
    whole = decode_blob(repo.cipher, BLOB_DATA, bid, stored, len(data))
    assert type(whole) is bytes and whole == data


@pytest.mark.parametrize("fork", [False, pytest.param(True, marks=needs_fork)])
def test_incompressible_files_and_a_sparse_one_come_back_byte_for_byte(tmp_path: Path, fork: bool) -> None:
    src = tmp_path / "src"
    rng = random.Random(2)
    for i in range(8):
        p = src / f"d{i % 2}" / f"r{i}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rng.randbytes(40_000 * (i + 1)))
    size = 48 << 20
    sparse = src / "disk.img"
    with open(sparse, "wb") as f:
        f.truncate(size)
        f.seek(20 << 20)
        f.write(rng.randbytes(300_000))  # raw blobs with holes around them
    repo = local_repo(tmp_path / "repo")
    run_backup(repo, {"data": src})
    run_restore(repo, "latest", {"data": tmp_path / "out"}, fork=fork)
    for p in src.rglob("*"):
        if p.is_file():
            assert (tmp_path / "out" / p.relative_to(src)).read_bytes() == p.read_bytes(), p
    if snapshot_nodes(repo)["data/disk.img"].sparse:
        assert os.stat(tmp_path / "out" / "disk.img").st_blocks * 512 < 8 << 20  # the holes stayed holes
