"""Back up, restore, compare: random trees come back exactly (DESIGN §3 "Snapshots are complete trees").

The property test builds random trees — unicode and non-UTF-8 names, symlinks of every kind,
empty files and folders, small and larger files with repeated content, deep nesting, varied
modes and explicit nanosecond mtimes — and checks that a restore reproduces the full fingerprint,
both into a fresh place and over an existing, different tree (the atomic swap).
"""

from __future__ import annotations

import os
import random
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.repos import new_repo, run_backup, run_restore
from tests.support.trees import fingerprint, fp_diff, leftovers, sample_state, write

# ---------------------------------------------------------------------------- random trees

_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\x00"),
    min_size=1,
    max_size=12,
)


@st.composite
def names(draw: st.DrawFn) -> bytes:
    """A file name as bytes: UTF-8 text, sometimes with bytes that are not valid UTF-8."""
    raw = draw(_TEXT).encode()
    if draw(st.integers(0, 5)) == 0:
        raw += draw(st.sampled_from([b"\xff", b"\xe9t\xe9", b"\x80\x81", b"\xc3("]))
    if raw in (b".", b".."):
        raw += b"_"
    return raw[:200]


MTIMES = st.one_of(
    st.integers(0, 4_000_000_000 * 10**9),  # any nanosecond up to 2096
    st.sampled_from([0, 1, 10**9, 1_700_000_000_123_456_789]),
)
FILE_MODES = st.sampled_from([0o600, 0o644, 0o755, 0o700])
DIR_MODES = st.sampled_from([0o755, 0o700, 0o750])
#: content seeds come from a small pool so that equal contents (dedup) are common
CONTENT = st.one_of(
    st.just((0, 0)),
    st.tuples(st.integers(0, 3), st.integers(1, 200)),
    st.tuples(st.integers(0, 3), st.integers(1, 300_000)),
    st.tuples(st.just(7), st.sampled_from([65_536, 150_000, 300_000])),
)


@dataclass
class F:
    content: tuple[int, int]
    mode: int
    mtime: int


@dataclass
class L:
    target: bytes
    mtime: int


@dataclass
class D:
    children: dict[bytes, object]
    mode: int
    mtime: int


LINK_TARGETS = st.one_of(
    names().map(lambda n: n),  # relative, maybe dangling
    st.sampled_from([b"../x", b"./a/b/c", b"/tmp/nowhere/\xff", b"/usr/bin/env", b"..", b"/"]),
)

leaf = st.one_of(
    st.builds(F, CONTENT, FILE_MODES, MTIMES),
    st.builds(F, CONTENT, FILE_MODES, MTIMES),
    st.builds(L, LINK_TARGETS, MTIMES),
)


def _dirs(children: st.SearchStrategy[object]) -> st.SearchStrategy[D]:
    return st.builds(D, st.dictionaries(names(), children, max_size=5), DIR_MODES, MTIMES)


trees = st.builds(
    D,
    st.dictionaries(names(), st.recursive(leaf, _dirs, max_leaves=25), max_size=8),
    DIR_MODES,
    MTIMES,
)


def _content(spec: tuple[int, int]) -> bytes:
    seed, size = spec
    rnd = random.Random(seed * 1_000_003 + size)
    if seed == 7:  # compressible and repeated blocks
        block = rnd.randbytes(4096)
        return (block * (size // 4096 + 1))[:size]
    return rnd.randbytes(size)


def build(path: bytes, node: D) -> None:
    """Create ``node`` at ``path`` (which must not exist); mtimes last, deepest first."""
    os.mkdir(path)
    for name, child in node.children.items():
        p = os.path.join(path, name)
        if isinstance(child, D):
            build(p, child)
        elif isinstance(child, F):
            with open(p, "wb") as f:
                f.write(_content(child.content))
            os.chmod(p, child.mode)
            os.utime(p, ns=(child.mtime, child.mtime))
        else:
            assert isinstance(child, L)
            os.symlink(child.target, p)
            os.utime(p, ns=(child.mtime, child.mtime), follow_symlinks=False)
    os.chmod(path, node.mode)
    os.utime(path, ns=(node.mtime, node.mtime))


def deep_chain(path: bytes, depth: int, mtime: int) -> None:
    p = path
    for i in range(depth):
        p = os.path.join(p, b"~chain~%d" % i)
        os.mkdir(p)
    with open(os.path.join(p, b"leaf"), "wb") as f:
        f.write(b"deep")
    os.utime(os.path.join(p, b"leaf"), ns=(mtime, mtime))
    while p != path:
        os.utime(p, ns=(mtime, mtime))
        p = os.path.dirname(p)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(tree=trees, depth=st.integers(0, 40), chain_mtime=MTIMES)
def test_random_tree_roundtrip(tree: D, depth: int, chain_mtime: int) -> None:
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        src = os.path.join(os.fsencode(tmp), b"src")
        build(src, tree)
        if depth:
            deep_chain(src, depth, chain_mtime)
            os.utime(src, ns=(tree.mtime, tree.mtime))
        before = fingerprint(src)

        repo = new_repo()
        res = run_backup(repo, {"src": Path(os.fsdecode(src))})
        assert res.snapshot_id and not res.warnings, res.warnings
        assert fingerprint(src) == before, "the backup changed its source"

        # 1. into a fresh place
        fresh = tmp / "fresh" / "src"
        run_restore(repo, "latest", {"src": fresh})
        got = fingerprint(fresh)
        assert got == before, fp_diff(before, got)

        # 2. over an existing, different tree: the result is the snapshot, nothing else
        over = tmp / "over" / "src"
        write(over / "stale-file", b"must disappear")
        (over / "stale-dir" / "x").mkdir(parents=True)
        os.symlink("/etc", over / "stale-link")
        for name in list(tree.children)[:2]:  # same names, other types
            p = os.path.join(os.fsencode(over), name)
            if not os.path.lexists(p):
                os.mkdir(p)
        run_restore(repo, "latest", {"src": over})
        got = fingerprint(over)
        assert got == before, fp_diff(before, got)
        assert leftovers(over.parent) == []


# ---------------------------------------------------------------------------- deletions and old snapshots


def test_deleted_file_stays_deleted_and_older_snapshot_by_prefix(tmp_path: Path) -> None:
    src = tmp_path / "src"
    sample_state(src)
    repo = new_repo()
    first = run_backup(repo, {"state": src})
    assert first.snapshot_id
    first_id = first.snapshot_id
    state1 = fingerprint(src)

    (src / "agents/main/sessions/s1.jsonl").unlink()
    shutil.rmtree(src / "private")
    write(src / "agents/main/sessions/s2.jsonl", b"new session\n")
    second = run_backup(repo, {"state": src})
    assert second.snapshot_id and second.parent_id == first.snapshot_id
    state2 = fingerprint(src)
    assert state1 != state2

    target = tmp_path / "restore" / "state"
    run_restore(repo, first_id[:8], {"state": target})
    assert fingerprint(target) == state1
    assert (target / "agents/main/sessions/s1.jsonl").exists()

    # the second snapshot restored over the first one's state: deletions happen
    run_restore(repo, "latest", {"state": target})
    got = fingerprint(target)
    assert got == state2, fp_diff(state2, got)
    assert not (target / "agents/main/sessions/s1.jsonl").exists()
    assert not (target / "private").exists()
    assert leftovers(target.parent) == []

    # and back again, by a unique id prefix
    run_restore(repo, first_id[:6], {"state": target})
    got = fingerprint(target)
    assert got == state1, fp_diff(state1, got)
    assert leftovers(target.parent) == []


def test_restore_include_subtree_over_existing(tmp_path: Path) -> None:
    """``--include`` replaces only the chosen folder, atomically, and leaves its siblings alone."""
    src = tmp_path / "src"
    sample_state(src)
    repo = new_repo()
    run_backup(repo, {"state": src})
    target = tmp_path / "t" / "state"
    run_restore(repo, "latest", {"state": target})
    write(target / "agents/main/sessions/extra.jsonl", b"not in the snapshot")
    write(target / "media/keep-me", b"sibling")
    run_restore(repo, "latest", {"state": target}, includes=["state/agents/main/sessions"])
    assert not (target / "agents/main/sessions/extra.jsonl").exists()
    assert (target / "media/keep-me").read_bytes() == b"sibling"
    assert fingerprint(target / "agents/main/sessions") == fingerprint(src / "agents/main/sessions")
    assert leftovers(target / "agents/main") == []


@pytest.mark.parametrize("kind", ["file", "symlink"])
def test_single_file_root_roundtrip(tmp_path: Path, kind: str) -> None:
    src = tmp_path / "config.json"
    if kind == "file":
        write(src, b'{"a": 1}', mode=0o640, mtime_ns=1_600_000_000_987_654_321)
    else:
        os.symlink("somewhere/else", src)
        os.utime(src, ns=(1_600_000_000_000_000_001,) * 2, follow_symlinks=False)
    repo = new_repo()
    run_backup(repo, {"cfg": src})
    dest = tmp_path / "out" / "config.json"
    run_restore(repo, "latest", {"cfg": dest})
    assert fingerprint(dest) == fingerprint(src)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002, 0o777])
def test_file_modes_exact_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    """Files are created with their final mode when the umask allows it and get it by fchmod when
    it does not: either way the restored modes are exactly the stored ones."""
    src = tmp_path / "src"
    modes = [0o644, 0o600, 0o664, 0o755, 0o400, 0o000, 0o777, 0o640, 0o4755, 0o2750]
    for m in modes:
        write(src / f"f{m:o}", os.urandom(3000) if m % 2 else b"", mode=m)
    repo = new_repo()
    run_backup(repo, {"s": src})
    old = os.umask(umask)
    try:
        run_restore(repo, "latest", {"s": tmp_path / "out"})
    finally:
        os.umask(old)
    got = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "out").iterdir()}
    assert got == {f"f{m:o}": m for m in modes}
    assert fingerprint(tmp_path / "out") == fingerprint(src)
