"""A root that is a symlink (a state directory on a mounted volume, common in containers): its
contents are backed up, links inside it stay links, and a restore writes into the link's target
and keeps the link, so the agent goes on writing to the volume."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.repos import local_repo, run_backup, run_restore, snapshot_nodes
from tests.support.trees import fingerprint, past_ns, write


def _state(volume: Path) -> None:
    write(volume / "openclaw.json", b'{"agent": "main"}', mtime_ns=past_ns(60))
    write(volume / "workspace" / "notes.md", b"# notes\n", mtime_ns=past_ns(60))
    os.symlink("workspace/notes.md", volume / "LATEST.md")  # a link inside stays a link


def test_a_symlinked_root_is_backed_up_and_restored_through_its_link(tmp_path: Path) -> None:
    volume = tmp_path / "mnt" / "state"
    _state(volume)
    link = tmp_path / "home" / ".openclaw"
    link.parent.mkdir(parents=True)
    os.symlink(volume, link)
    repo = local_repo(tmp_path / "repo")
    res = run_backup(repo, {"openclaw-state": link})
    assert res.stats["files"] == 2 and not res.degraded, res
    nodes = snapshot_nodes(repo)
    assert nodes["openclaw-state"].type == "dir"
    assert nodes["openclaw-state/LATEST.md"].type == "symlink"
    before = fingerprint(volume)

    write(volume / "workspace" / "notes.md", b"changed after the backup\n")
    res = run_restore(repo, "latest", {"openclaw-state": link})
    assert link.is_symlink() and os.readlink(link) == str(volume), "the restore replaced the link"
    assert fingerprint(volume) == before
    assert (link / "workspace" / "notes.md").read_bytes() == b"# notes\n"
    beside = [p for p in volume.parent.iterdir() if p.name != "state"]
    assert [str(p) for p in beside] == list(res.kept.values()), "staging left beside the target"
    assert (beside[0] / "workspace" / "notes.md").read_bytes() == b"changed after the backup\n"


def test_a_root_link_to_a_file_is_followed_and_kept(tmp_path: Path) -> None:
    real = tmp_path / "secrets" / "env"
    write(real, b"TOKEN=1\n", mtime_ns=past_ns(60))
    link = tmp_path / "home" / ".env"
    link.parent.mkdir()
    os.symlink(real, link)
    repo = local_repo(tmp_path / "repo")
    run_backup(repo, {"env": link})
    assert snapshot_nodes(repo)["env"].type == "file"
    real.write_bytes(b"TOKEN=changed\n")
    run_restore(repo, "latest", {"env": link})
    assert link.is_symlink() and real.read_bytes() == b"TOKEN=1\n"
