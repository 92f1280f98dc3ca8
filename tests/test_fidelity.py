"""File fidelity (docs/fidelity.md): hard links, holes, extended attributes, owners, nanosecond
mtimes and special files, each backed up and restored through the real engine on this disk."""

from __future__ import annotations

import errno
import os
import socket
import stat
from pathlib import Path

import pytest

from tests.support.cli import cli_env, json_out, run_cli
from tests.support.repos import local_repo, publish_crafted, run_backup, run_restore, snapshot_nodes, tree_id
from tests.support.trees import past_ns, write

AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _xattrs_supported(where: Path) -> bool:
    probe = write(where / ".xattr-probe", b"")
    try:
        os.setxattr(probe, "user.probe", b"1")
        return True
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
            return False
        raise
    finally:
        probe.unlink()


@pytest.mark.parametrize("forked", [False, True])
def test_hard_links_come_back_as_one_file(tmp_path: Path, forked: bool) -> None:
    src = tmp_path / "src"
    a = write(src / "a.bin", os.urandom(300_000), mtime_ns=past_ns(60))
    (src / "sub").mkdir()
    os.link(a, src / "b.bin")
    os.link(a, src / "sub" / "c.bin")
    write(src / "plain.txt", b"alone", mtime_ns=past_ns(60))
    repo = local_repo(tmp_path / "repo")
    run_backup(repo, {"data": src})
    nodes = snapshot_nodes(repo)
    key = nodes["data/a.bin"].hardlink
    assert key and nodes["data/b.bin"].hardlink == key and nodes["data/sub/c.bin"].hardlink == key
    assert nodes["data/plain.txt"].hardlink is None

    res = run_restore(repo, "latest", {"data": tmp_path / "out"}, forked=forked)
    out = tmp_path / "out"
    inodes = {os.stat(out / p).st_ino for p in ("a.bin", "b.bin", "sub/c.bin")}
    assert len(inodes) == 1 and os.stat(out / "a.bin").st_nlink == 3
    assert (out / "sub" / "c.bin").read_bytes() == a.read_bytes()
    assert os.stat(out / "plain.txt").st_nlink == 1
    assert res.hardlinks == 2


def test_nodes_sharing_a_link_key_but_not_content_are_restored_each_with_its_own(tmp_path: Path) -> None:
    """Defensive: two nodes claiming one inode but holding different content (the file changed
    between the reads of its two names) are both restored with their own content; none is lost."""
    src = tmp_path / "src"
    write(src / "x", b"one", mtime_ns=past_ns(60))
    write(src / "y", b"two", mtime_ns=past_ns(60))
    repo = local_repo(tmp_path / "repo")
    run_backup(repo, {"data": src})
    nodes = snapshot_nodes(repo)
    sub = [dict(nodes[f"data/{n}"].to_json(), hardlink="7:7") for n in ("x", "y")]
    sub_id, sub_raw = tree_id(repo, sub)
    top = {"name": "data", "type": "dir", "mode": 0o755, "mtime_ns": past_ns(60), "subtree": sub_id}
    sid, _ = publish_crafted(repo, [top], subtrees=[sub_raw], roots={"data": str(src)})
    res = run_restore(repo, sid, {"data": tmp_path / "out"})
    assert (tmp_path / "out" / "x").read_bytes() == b"one"
    assert (tmp_path / "out" / "y").read_bytes() == b"two"
    assert res.hardlinks == 0


def test_a_sparse_file_stays_sparse(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    size = 96 << 20
    path = src / "disk.img"
    with open(path, "wb") as f:
        f.truncate(size)
        f.seek(40 << 20)
        f.write(b"data in the middle" * 100)
        f.seek(size - 10)
        f.write(b"0123456789")
    if os.stat(path).st_blocks * 512 >= size // 2:
        pytest.skip("this file system does not keep holes")
    repo = local_repo(tmp_path / "repo")
    run_backup(repo, {"data": src})
    assert snapshot_nodes(repo)["data/disk.img"].sparse
    run_restore(repo, "latest", {"data": tmp_path / "out"})
    restored = tmp_path / "out" / "disk.img"
    st = os.stat(restored)
    assert st.st_size == size
    assert st.st_blocks * 512 < 16 << 20, f"restored with {st.st_blocks * 512} bytes allocated"
    assert restored.read_bytes() == path.read_bytes()


def test_a_sparse_file_ending_in_a_hole_keeps_its_size(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    path = src / "tail-hole"
    with open(path, "wb") as f:
        f.write(os.urandom(5000))
        f.truncate(40 << 20)
    if os.stat(path).st_blocks * 512 >= 20 << 20:
        pytest.skip("this file system does not keep holes")
    repo = local_repo(tmp_path / "repo")
    run_backup(repo, {"data": src})
    run_restore(repo, "latest", {"data": tmp_path / "out"})
    assert (tmp_path / "out" / "tail-hole").read_bytes() == path.read_bytes()


def test_extended_attributes_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    if not _xattrs_supported(src):
        pytest.skip("no user extended attributes on this file system")
    f = write(src / "note.md", b"# note", mtime_ns=past_ns(60))
    os.setxattr(f, "user.origin", b"https://example.org/\x00binary\xff")
    os.setxattr(f, "user.empty", b"")
    os.setxattr(src, "user.dir", b"on the folder")
    repo = local_repo(tmp_path / "repo")
    run_backup(repo, {"data": src})
    assert snapshot_nodes(repo)["data/note.md"].xattrs == {
        "user.empty": b"", "user.origin": b"https://example.org/\x00binary\xff"
    }
    out = tmp_path / "out"
    run_restore(repo, "latest", {"data": out})
    assert os.getxattr(out / "note.md", "user.origin") == b"https://example.org/\x00binary\xff"
    assert os.getxattr(out / "note.md", "user.empty") == b""
    assert os.getxattr(out, "user.dir") == b"on the folder"
    assert os.stat(out / "note.md").st_mtime_ns == os.stat(f).st_mtime_ns


def test_owners_are_recorded_always(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "f", b"x")
    repo = local_repo(tmp_path / "repo")
    run_backup(repo, {"data": src})
    node = snapshot_nodes(repo)["data/f"]
    assert (node.uid, node.gid) == (os.getuid(), os.getgid())


@pytest.mark.skipif(not AS_ROOT, reason="only root can give files to another user")
def test_owners_round_trip_as_root(tmp_path: Path) -> None:
    src = tmp_path / "src"
    f = write(src / "work" / "notes.md", b"mine", mtime_ns=past_ns(60))
    tool = write(src / "bin" / "tool", b"#!/bin/sh\n", mode=0o755, mtime_ns=past_ns(60))
    os.symlink("work/notes.md", src / "LATEST")
    for p in (src, src / "work", f, src / "bin", tool):
        os.chown(p, 1000, 1001)
    os.chown(src / "LATEST", 1002, 1003, follow_symlinks=False)
    os.chmod(tool, 0o4755)  # set-uid survives the change of owner at restore
    repo = local_repo(tmp_path / "repo")
    run_backup(repo, {"data": src})
    out = tmp_path / "out"
    run_restore(repo, "latest", {"data": out})
    for rel in ("", "work", "work/notes.md", "bin", "bin/tool"):
        st = os.lstat(out / rel)
        assert (st.st_uid, st.st_gid) == (1000, 1001), rel
    st = os.lstat(out / "LATEST")
    assert (st.st_uid, st.st_gid) == (1002, 1003)
    assert stat.S_IMODE(os.stat(out / "bin" / "tool").st_mode) == 0o4755


def test_nanosecond_mtimes_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "src"
    ns = 1_600_000_000_123_456_789
    write(src / "f", b"x", mtime_ns=ns)
    (src / "d").mkdir()
    os.utime(src / "d", ns=(ns + 1, ns + 1))
    repo = local_repo(tmp_path / "repo")
    run_backup(repo, {"data": src})
    run_restore(repo, "latest", {"data": tmp_path / "out"})
    assert os.stat(tmp_path / "out" / "f").st_mtime_ns == ns
    assert os.stat(tmp_path / "out" / "d").st_mtime_ns == ns + 1


def test_special_files_are_named_in_the_summary_not_skipped_unsaid(tmp_path: Path) -> None:
    state = tmp_path / "home" / ".openclaw"
    write(state / "openclaw.json", b"{}", mtime_ns=past_ns(60))
    os.mkfifo(state / "pipe")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(state / "gateway.sock"))
    try:
        env = cli_env(tmp_path, OPENCLAW_STATE_DIR=str(state))
        run_cli(["init"], env)
        proc = run_cli(["backup"], env)
        assert proc.returncode == 0, proc.stderr
        assert "not stored: 2 special file(s)" in proc.stdout
        assert "socket openclaw-state/gateway.sock" in proc.stdout and "fifo openclaw-state/pipe" in proc.stdout
        doc = json_out(run_cli(["backup", "--force", "--json"], env))
        assert sorted((s["kind"], s["path"]) for s in doc["special"]) == [
            ("fifo", "openclaw-state/pipe"), ("socket", "openclaw-state/gateway.sock")
        ]
        assert doc["stats"]["special_files"] == 2 and not doc["degraded"]
    finally:
        sock.close()


def test_a_restore_refused_for_lack_of_space_is_not_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk's answer is the one thing replaced here (filling a real disk is not a test's job):
    the refusal comes before anything changes, with its own exit code and a hint."""
    import shutil

    from tests.support.cli import main_cli

    state = tmp_path / "home" / ".openclaw"
    write(state / "openclaw.json", b"{}" * 1000, mtime_ns=past_ns(60))
    env = cli_env(tmp_path, OPENCLAW_STATE_DIR=str(state))
    run_cli(["init"], env)
    assert run_cli(["backup"], env).returncode == 0
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=10))
    code, _, err = main_cli(["restore", "--target", str(tmp_path / "out")])
    assert code == 19, err
    assert "only 10 are free" in err and "hint:" in err
    assert not (tmp_path / "out" / "openclaw-state").exists()
