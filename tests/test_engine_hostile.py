"""Damaged and hostile repositories, and interrupted restores (DESIGN §3 Encryption, §4 "Restore is
atomic and cautious").

Whatever the repository says, a restore writes nothing outside its target, leaves the existing
target untouched when it fails, and a kill at any moment leaves the old state or the new one.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from openclaw_backup import cli, codec
from openclaw_backup.backends.local import LocalBackend
from openclaw_backup.codec import BLOB_DATA
from openclaw_backup.errors import IntegrityError, UnsafeRestoreError, WrongPasswordError
from openclaw_backup.maintenance import check
from openclaw_backup.pack import pack_name
from openclaw_backup.reporter import Reporter
from openclaw_backup.repository import Repository, walk
from openclaw_backup.settings import Settings, restore_destinations
from tests.support.repos import HOST, PASSWORD, local_repo, new_repo, publish_crafted, run_backup, run_restore, tree_id
from tests.support.trees import fingerprint, fp_diff, leftovers, sample_state, write

# ---------------------------------------------------------------------------- a flipped byte


def _blob_of(repo: Repository, snap_ref: str, path: str) -> bytes:
    repo.load_index()
    snap = repo.find_snapshot(snap_ref)
    for p, node in walk(repo, snap.tree):
        if p == path:
            return bytes.fromhex(node.content[len(node.content) // 2])
    raise AssertionError(f"{path} not in snapshot")


def test_flipped_byte_in_pack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    sample_state(src)
    write(src / "victim.bin", os.urandom(400_000))
    repo_dir = tmp_path / "repo"
    repo = local_repo(repo_dir)
    first = run_backup(repo, {"state": src})
    write(src / "another.txt", b"second snapshot")
    second = run_backup(repo, {"state": src})
    assert first.snapshot_id and second.snapshot_id
    assert len(list((repo_dir / "data").rglob("*"))) > 5, "expected several packs"

    target = tmp_path / "t" / "state"
    write(target / "existing.txt", b"the state before the restore")
    write(target / "sub/file", b"x" * 1000)
    os.symlink("existing.txt", target / "link")
    before = fingerprint(target)
    parent_before = sorted(os.listdir(target.parent))

    bid = _blob_of(repo, "latest", "state/victim.bin")
    ref = repo.index[bid]
    pack = repo_dir / pack_name(ref.pack)
    data = bytearray(pack.read_bytes())
    data[ref.offset + ref.length // 2] ^= 0x40
    pack.write_bytes(bytes(data))

    fresh = Repository.open(LocalBackend(repo_dir), password=PASSWORD)
    with pytest.raises(IntegrityError):
        run_restore(fresh, "latest", {"state": target})
    assert fingerprint(target) == before, "a failed restore touched the target"
    assert sorted(os.listdir(target.parent)) == parent_before, "staging left beside the target"

    # through the CLI with --target: a partial restore (exit 5): every file but the damaged one
    monkeypatch.setenv("OPENCLAW_BACKUP_PASSWORD", PASSWORD)
    elsewhere = tmp_path / "t3"
    code = cli.main(["--repo", str(repo_dir), "restore", second.snapshot_id[:10], "--target", str(elsewhere)])
    assert code == 5
    assert not (elsewhere / "state" / "victim.bin").exists()
    assert {p.name for p in (elsewhere / "state").iterdir()} == {p.name for p in src.iterdir()} - {"victim.bin"}

    res = check(fresh, read_data=True, reporter=Reporter())
    assert not res.ok and res.problems
    assert set(res.damaged) == {first.snapshot_id, second.snapshot_id}
    for paths in res.damaged.values():
        assert paths == ["state/victim.bin"]
    assert any("victim.bin" in p for p in res.problems)
    code = cli.main(["--repo", str(repo_dir), "check", "--read-data"])
    assert code == 4

    # a restore of what is not damaged still works
    other = tmp_path / "t2" / "state"
    run_restore(fresh, "latest", {"state": other}, includes=["state/agents"])
    assert fingerprint(other / "agents") == fingerprint(src / "agents")


# ---------------------------------------------------------------------------- crafted repositories


def _file_node(name: Any, bid: str, size: int, **kw: Any) -> dict[str, Any]:
    return {"name": name, "type": "file", "mode": 0o644, "mtime_ns": 0, "size": size, "content": [bid], **kw}


def _dir_node(name: Any, subtree: str) -> dict[str, Any]:
    return {"name": name, "type": "dir", "mode": 0o755, "mtime_ns": 0, "subtree": subtree}


def _link_node(name: Any, target: str) -> dict[str, Any]:
    return {"name": name, "type": "symlink", "mode": 0o777, "mtime_ns": 0, "target": target}


@pytest.fixture
def crafted(tmp_path: Path) -> dict[str, Any]:
    """A repository with one honest data blob, and a watched place to restore into."""
    repo = new_repo()
    w = repo.pack_writer()
    payload = b"pwned\n"
    bid = w.store(BLOB_DATA, payload).hex()
    w.flush()
    index = repo.save_index(w.packs)
    assert index
    repo.publish(add_indexes=[index])
    repo.load_index()
    base = tmp_path / "place"
    (base / "sibling").mkdir(parents=True)
    write(base / "sibling/file", b"sibling")
    outside = tmp_path / "outside"
    outside.mkdir()
    return {"repo": repo, "bid": bid, "size": len(payload), "base": base, "outside": outside, "tmp": tmp_path}


def _hostile_cases(c: dict[str, Any]) -> dict[str, tuple[list[dict[str, Any]], list[bytes]]]:
    """name -> (nodes of the folder 'evil', extra tree blobs)."""
    bid, size, outside = c["bid"], c["size"], c["outside"]
    sub_id, sub = tree_id(c["repo"], [_file_node("pwned", bid, size)])
    cases: dict[str, tuple[list[dict[str, Any]], list[bytes]]] = {
        "dotdot-file": ([_file_node("..", bid, size)], []),
        "dotdot-dir": ([_dir_node("..", sub_id)], [sub]),
        "dot": ([_dir_node(".", sub_id)], [sub]),
        "slash": ([_file_node("a/b", bid, size)], []),
        "up-slash": ([_file_node("../pwned", bid, size)], []),
        "absolute-etc": ([_file_node("/etc", bid, size)], []),
        "absolute-outside": ([_file_node(str(outside / "pwned"), bid, size)], []),
        "empty": ([_file_node("", bid, size)], []),
        "nul": ([_file_node("x\x00y", bid, size)], []),
        "not-a-string": ([_file_node(["x"], bid, size)], []),
        "symlink-then-dir": ([_link_node("evil", str(outside)), _dir_node("evil", sub_id)], [sub]),
        "dir-then-symlink": ([_dir_node("evil", sub_id), _link_node("evil", str(outside))], [sub]),
        "duplicate-files": ([_file_node("f", bid, size), _file_node("f", bid, size)], []),
        "huge-size": ([_file_node("big", bid, 1 << 40)], []),
        "absurd-size": ([_file_node("big", bid, 1 << 50)], []),
        "negative-size": ([_file_node("neg", bid, -1)], []),
        "short-size": ([_file_node("short", bid, size - 1)], []),
        "chardev": ([{"name": "tty", "type": "chardev", "mode": 0o666, "mtime_ns": 0, "rdev": 0x0501}], []),
        "fifo": ([{"name": "p", "type": "fifo", "mode": 0o666, "mtime_ns": 0}], []),
        "missing-blob": ([_file_node("m", "ab" * 32, 10)], []),
        "tree-as-data": ([_file_node("t", sub_id, len(sub))], [sub]),
        "missing-subtree": ([_dir_node("d", "cd" * 32)], []),
        "bad-mode": ([{**_file_node("f", bid, size), "mode": 0o170000}], []),
        "symlink-nul-target": ([_link_node("l", "a\x00b")], []),
        "unencodable-name": ([_file_node("bad\ud800", bid, size)], []),
        "alias-names": ([_dir_node("\udcc3\udcbf", sub_id), _link_node("ÿ", str(outside))], [sub]),
        "content-id-newline": ([_file_node("f", bid + "\n", size)], []),
        "subtree-id-newline": ([_dir_node("d", sub_id + "\n")], [sub]),
    }
    return cases


HOSTILE = [
    "dotdot-file", "dotdot-dir", "dot", "slash", "up-slash", "absolute-etc", "absolute-outside", "empty", "nul",
    "not-a-string", "symlink-then-dir", "dir-then-symlink", "duplicate-files", "huge-size", "absurd-size",
    "negative-size", "short-size", "chardev", "fifo", "missing-blob", "tree-as-data", "missing-subtree",
    "bad-mode", "symlink-nul-target", "unencodable-name", "alias-names", "content-id-newline",
    "subtree-id-newline",
]  # fmt: skip


def _snapshot_listing(c: dict[str, Any]) -> tuple[Any, ...]:
    base, tmp = c["base"], c["tmp"]
    return (
        sorted(os.listdir(base)),
        fingerprint(base / "sibling"),
        sorted(os.listdir(c["outside"])),
        sorted(os.listdir(tmp)),
        os.path.exists("/etc/pwned"),
    )


@pytest.mark.parametrize("case", HOSTILE)
def test_crafted_tree_is_refused(crafted: dict[str, Any], case: str) -> None:
    c = crafted
    nodes, extra = _hostile_cases(c)[case]
    top_id, top = tree_id(c["repo"], nodes)
    publish_crafted(c["repo"], [_dir_node("evil", top_id)], subtrees=[*extra, top])
    before = _snapshot_listing(c)
    dest = c["base"] / "evil"
    with pytest.raises((UnsafeRestoreError, IntegrityError)):
        run_restore(c["repo"], "latest", {"evil": dest})
    assert _snapshot_listing(c) == before
    assert not os.path.lexists(dest)

    # restoring over an existing target leaves it untouched
    write(dest / "mine", b"precious")
    fp = fingerprint(dest)
    with pytest.raises((UnsafeRestoreError, IntegrityError)):
        run_restore(c["repo"], "latest", {"evil": dest})
    assert fingerprint(dest) == fp
    assert leftovers(c["base"]) == []


@pytest.mark.parametrize("name", ["..", "a/b", "", "/etc"])
def test_crafted_root_name_is_refused(crafted: dict[str, Any], name: str) -> None:
    c = crafted
    sub_id, sub = tree_id(c["repo"], [_file_node("pwned", c["bid"], c["size"])])
    publish_crafted(c["repo"], [_dir_node(name, sub_id)], subtrees=[sub], roots={name: "/x"})
    before = _snapshot_listing(c)
    with pytest.raises((UnsafeRestoreError, IntegrityError)):
        run_restore(c["repo"], "latest", {name: c["base"] / "evil"})
    assert _snapshot_listing(c) == before


def test_crafted_symlink_is_never_followed(crafted: dict[str, Any]) -> None:
    """A legal tree whose symlink points outside: the link is restored as a link, nothing is written through it."""
    c = crafted
    sub_id, sub = tree_id(c["repo"], [_file_node("pwned", c["bid"], c["size"])])
    top_id, top = tree_id(c["repo"], [_link_node("a", str(c["outside"])), _dir_node("b", sub_id)])
    publish_crafted(c["repo"], [_dir_node("evil", top_id)], subtrees=[sub, top])
    before = sorted(os.listdir(c["outside"]))
    dest = c["base"] / "evil"
    run_restore(c["repo"], "latest", {"evil": dest})
    assert os.readlink(dest / "a") == str(c["outside"])
    assert (dest / "b/pwned").read_bytes() == b"pwned\n"
    assert sorted(os.listdir(c["outside"])) == before
    # a later snapshot where "a" is a folder: --include of a file in it must not go through the link
    inner_id, inner = tree_id(c["repo"], [_file_node("pwned", c["bid"], c["size"])])
    top2_id, top2 = tree_id(c["repo"], [_dir_node("a", inner_id)])
    sid2, _ = publish_crafted(c["repo"], [_dir_node("evil", top2_id)], subtrees=[inner, top2])
    with pytest.raises(UnsafeRestoreError):
        run_restore(c["repo"], sid2, {"evil": dest}, includes=["evil/a/pwned"])
    assert sorted(os.listdir(c["outside"])) == before
    assert os.readlink(dest / "a") == str(c["outside"])


def test_crafted_unencodable_symlink_target_is_refused(crafted: dict[str, Any]) -> None:
    c = crafted
    top_id, top = tree_id(c["repo"], [_link_node("l", "a\ud800b")])
    publish_crafted(c["repo"], [_dir_node("evil", top_id)], subtrees=[top])
    before = _snapshot_listing(c)
    try:
        with pytest.raises((UnsafeRestoreError, IntegrityError)):
            run_restore(c["repo"], "latest", {"evil": c["base"] / "evil"})
    finally:
        assert _snapshot_listing(c) == before


# ---------------------------------------------------------------------------- where roots go


def test_restore_destinations_refuse_paths_outside_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    s = Settings({"HOME": str(home)})
    for recorded in ("/etc", "/root/.ssh", str(home), str(home / ".." / "x"), "relative/path", ""):
        snap = {"roots": {"etc": {"path": recorded, "type": "dir"}}}
        with pytest.raises(UnsafeRestoreError):
            restore_destinations(snap["roots"], s, None)
        assert restore_destinations(snap["roots"], s, str(tmp_path / "t")) == {"etc": tmp_path / "t" / "etc"}
    ok = {"roots": {"extra": {"path": str(home / "data"), "type": "dir"}, "openclaw-state": {"path": "/elsewhere"}}}
    assert restore_destinations(ok["roots"], s, None) == {"extra": home / "data", "openclaw-state": home / ".openclaw"}


def test_cli_refuses_root_recorded_outside_home(crafted: dict[str, Any], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """End to end, with a stand-in for /etc (we may run as root: never aim a restore at the real one)."""
    repo_dir = tmp_path / "repo"
    repo = local_repo(repo_dir)
    victim = tmp_path / "sysconf"
    write(victim / "passwd", b"root:x:0:0\n")
    run_backup(repo, {"sysconf": victim})
    write(victim / "passwd", b"changed after the backup\n")
    fp = fingerprint(victim)
    monkeypatch.setenv("OPENCLAW_BACKUP_PASSWORD", PASSWORD)
    assert cli.main(["--repo", str(repo_dir), "restore"]) == UnsafeRestoreError.exit_code
    assert fingerprint(victim) == fp
    assert cli.main(["--repo", str(repo_dir), "restore", "--target", str(tmp_path / "t")]) == 0
    assert (tmp_path / "t/sysconf/passwd").read_bytes() == b"root:x:0:0\n"
    assert fingerprint(victim) == fp


def test_restore_destinations_symlink_in_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, home / "link")
    snap = {"roots": {"x": {"path": str(home / "link" / "x"), "type": "dir"}}}
    with pytest.raises(UnsafeRestoreError):
        restore_destinations(snap["roots"], Settings({"HOME": str(home)}), None)


# ---------------------------------------------------------------------------- interrupted restores

RESTORER = r"""
import sys
from pathlib import Path
from openclaw_backup.backends.local import LocalBackend
from openclaw_backup.repository import Repository
from openclaw_backup.restorer import RestoreOptions, restore
from openclaw_backup.reporter import Reporter
repo = Repository.open(LocalBackend(sys.argv[1]), password=sys.argv[2])
snap = repo.find_snapshot(sys.argv[3])
print("start", flush=True)
restore(repo, snap, RestoreOptions(destinations={"data": Path(sys.argv[4])}), reporter=Reporter())
print("done", flush=True)
"""


def _tree(root: Path, seed: int, files: int, size: int) -> None:
    rnd = random.Random(seed)
    for i in range(files):
        write(root / f"d{i % 7}" / f"sub{i % 3}" / f"f{i}.bin", rnd.randbytes(size), mode=0o644)
    write(root / f"only-in-{seed}", b"marker")
    os.symlink(f"only-in-{seed}", root / "link")
    (root / "empty").mkdir()


def test_interrupted_restore_leaves_old_or_new(tmp_path: Path) -> None:
    repo_dir = tmp_path / "repo"
    repo = local_repo(repo_dir, pack_size=1 << 20)
    a, b = tmp_path / "a", tmp_path / "b"
    _tree(a, 1, 40, 20_000)
    _tree(b, 2, 160, 40_000)  # ~6.4 MB
    snap_a = run_backup(repo, {"data": a}).snapshot_id
    snap_b = run_backup(repo, {"data": b}).snapshot_id
    assert snap_a and snap_b
    fps = {snap_a: fingerprint(a), snap_b: fingerprint(b)}
    target = tmp_path / "place" / "data"
    run_restore(repo, snap_a, {"data": target})
    current = snap_a

    rnd = random.Random(42)
    # seconds after the child said "start" (its imports take longer than the restore itself)
    kills: list[str | float] = ["staging", "staging", 0.0, 0.15, 0.3, 0.5, rnd.uniform(0, 0.8)]
    seen_staging = 0
    outcomes: list[tuple[str | float, bool]] = []
    for when in kills:
        other = snap_b if current == snap_a else snap_a
        old_leftovers = set(leftovers(target.parent))
        proc = subprocess.Popen(
            [sys.executable, "-c", RESTORER, str(repo_dir), PASSWORD, other, str(target)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            if when != "staging":
                assert proc.stdout.readline() == "start\n"
                time.sleep(float(when))
            else:
                deadline = time.monotonic() + 20
                while not set(leftovers(target.parent)) - old_leftovers:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        break
                    time.sleep(0.0005)
                else:
                    seen_staging += 1
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        got = fingerprint(target)
        matches = [sid for sid, fp in fps.items() if fp == got]
        assert matches, f"after a kill at {when!r} the target is neither state:\n" + fp_diff(fps[current], got)
        outcomes.append((when, matches[0] != current))
        current = matches[0]
    assert seen_staging, "never caught a restore in its staging phase"
    assert not all(changed for _, changed in outcomes), f"no kill landed before the swap: {outcomes}"

    # the next restore succeeds and clears what the killed ones left
    other = snap_b if current == snap_a else snap_a
    run_restore(Repository.open(LocalBackend(repo_dir), password=PASSWORD), other, {"data": target})
    assert fingerprint(target) == fps[other]
    assert leftovers(target.parent) == []


# ---------------------------------------------------------------------------- keys, indexes, snapshots


def test_wrong_password(tmp_path: Path) -> None:
    repo_dir = tmp_path / "repo"
    local_repo(repo_dir)
    with pytest.raises(WrongPasswordError):
        Repository.open(LocalBackend(repo_dir), password="wrong")
    with pytest.raises(WrongPasswordError):
        Repository.open(LocalBackend(repo_dir), password=None)
    assert Repository.open(LocalBackend(repo_dir), password=PASSWORD).state.seq >= 1


def test_truncated_index_file(tmp_path: Path) -> None:
    src = tmp_path / "src"
    sample_state(src)
    repo_dir = tmp_path / "repo"
    repo = local_repo(repo_dir, cache_dir=tmp_path / "cache")
    run_backup(repo, {"state": src})
    (index,) = (repo_dir / "index").iterdir()
    index.write_bytes(index.read_bytes()[:-7])
    fresh = Repository.open(LocalBackend(repo_dir), password=PASSWORD)  # no cache: reads the store
    fresh.load_index()  # contained: left out with a warning naming it
    assert len(fresh.index) == 0 and index.name[:16] in fresh.warnings[-1] and "index" in fresh.warnings[-1]
    assert "repair index" in fresh.warnings[-1]
    with pytest.raises(IntegrityError):
        run_restore(fresh, "latest", {"state": tmp_path / "t" / "state"})
    assert not (tmp_path / "t" / "state").exists()
    res = check(fresh, reporter=Reporter())
    assert not res.ok and "index" in res.problems[0]

    # a truncated index that still carries its true name's bytes is caught by authentication too
    sealed = codec.encode_index(fresh.cipher, {"00" * 32: []})
    with pytest.raises(IntegrityError):
        codec.decode_index(fresh.cipher, "x", sealed[:-1])


def test_swapped_snapshot_file(tmp_path: Path) -> None:
    src = tmp_path / "src"
    sample_state(src)
    repo_dir = tmp_path / "repo"
    repo = local_repo(repo_dir, cache_dir=tmp_path / "cache")
    first = run_backup(repo, {"state": src}).snapshot_id
    write(src / "new", b"x")
    second = run_backup(repo, {"state": src}).snapshot_id
    assert first and second
    shutil.copyfile(repo_dir / "snapshots" / first, repo_dir / "snapshots" / second)
    fresh = Repository.open(LocalBackend(repo_dir), password=PASSWORD)
    with pytest.raises(IntegrityError):
        fresh.load_snapshot(second)
    assert fresh.find_snapshot("latest").id == first  # contained: the damaged one is left out, named
    assert "does not match its name" in fresh.unreadable[f"snapshots/{second}"]
    assert fresh.load_snapshot(first).id == first

    # a sealed document moved to another kind's place fails authentication (identity is bound)
    snap_bytes = (repo_dir / "snapshots" / first).read_bytes()
    with pytest.raises(IntegrityError):
        codec.decode_document(fresh.cipher, b"head", snap_bytes, what="head")
    # a blob passed off as another one fails too
    fresh.load_index()
    ids = [bid for bid, ref in fresh.index.items() if ref.btype == BLOB_DATA][:2]
    ref0 = fresh.index[ids[0]]
    stored = fresh.backend.get(pack_name(ref0.pack), offset=ref0.offset, length=ref0.length)
    with pytest.raises(IntegrityError):
        codec.decode_blob(fresh.cipher, BLOB_DATA, ids[1], stored, ref0.raw_len)


def test_snapshot_host_is_recorded(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "a", b"a")
    repo = new_repo()
    run_backup(repo, {"s": src})
    assert repo.find_snapshot("latest").host == HOST
