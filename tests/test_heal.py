"""A repository that heals (issue 13): damage a real repository on disk as a disk or a bad sync
would — a snapshot, tree, index file, pack, head, key file or config — then the next backup,
listing, forget, check, repair and restore behave as documented (docs/reliability.md, "Damage"),
and every snapshot that can still be restored restores exactly.

Everything goes through the real command line (in process) on a local repository, with a fresh
cache where the damage would otherwise hide behind it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from openclaw_backup.backends.base import Backend
from openclaw_backup.backends.local import LocalBackend
from openclaw_backup.codec import BlobRef
from openclaw_backup.errors import StoreError
from openclaw_backup.pack import pack_name
from openclaw_backup.reporter import Reporter
from openclaw_backup.repository import Repository, walk
from tests.support.backends import kinds
from tests.support.cli import cli_env, cli_ok, json_out, main_cli, run_cli
from tests.support.faults import FailAlways
from tests.support.repos import PACK_SIZE, PASSWORD, new_repo, open_repo, restore_all, run_backup
from tests.support.trees import fingerprint, write


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A local repository (small packs) with two snapshots of ``src`` (s1; then b.bin changed: s2)
    made by the CLI; the CLI pointed at it with a cache that each test may wipe."""
    src = tmp_path / "src"
    write(src / "a.bin", os.urandom(200_000))
    write(src / "b.bin", os.urandom(200_000))
    write(src / "sub/c.txt", b"c" * 5000)
    for i in range(4):
        write(src / f"many/m{i}.bin", os.urandom(100_000))
    for k in list(os.environ):
        if k.startswith(("OPENCLAW_", "HF_", "AWS_")):
            monkeypatch.delenv(k)
    monkeypatch.setenv("OPENCLAW_BACKUP_REPOSITORY", str(tmp_path / "repo"))
    monkeypatch.setenv("OPENCLAW_BACKUP_PASSWORD", PASSWORD)
    monkeypatch.setenv("OPENCLAW_BACKUP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("OPENCLAW_BACKUP_TEST_WEAK_KDF", "1")
    monkeypatch.setenv("OPENCLAW_BACKUP_HOST", "heal-host")
    new_repo(LocalBackend(tmp_path / "repo"), pack_size=PACK_SIZE)  # small packs: damage hits one file
    s1 = backup(src)
    fp1 = fingerprint(src)
    write(src / "b.bin", os.urandom(200_000))
    s2 = backup(src)
    return {"src": src, "root": tmp_path / "repo", "cache": tmp_path / "cache", "tmp": tmp_path,
            "s1": s1, "s2": s2, "fps": {s1: fp1, s2: fingerprint(src)}}  # fmt: skip


def backup(src: Path, *extra: str, code: int = 0) -> str:
    rc, out, err = main_cli(["backup", "--source", str(src), "--json", *extra])
    assert rc == code, err + out
    return str(json_out(out)["snapshot"])


def restores_exactly(w: dict[str, Any], sid: str, fp: Any) -> None:
    target = w["tmp"] / f"restore-{sid[:8]}-{len(os.listdir(w['tmp']))}"
    rc, out, err = main_cli(["restore", sid, "--target", str(target)])
    assert rc == 0, err + out
    assert fingerprint(target / "src") == fp


def fresh_cache(w: dict[str, Any]) -> None:
    shutil.rmtree(w["cache"], ignore_errors=True)


def flip(path: Path, at: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if at is None else at] ^= 0x01
    os.chmod(path, 0o600)
    path.write_bytes(bytes(data))


def repo_of(w: dict[str, Any]) -> Repository:
    repo = Repository.open(LocalBackend(w["root"]), password=PASSWORD)
    repo.load_index()
    return repo


def place_of(w: dict[str, Any], sid: str, path: str) -> tuple[Repository, str]:
    """(the repository, the pack holding the first blob of ``path`` in snapshot ``sid``)."""
    repo, ref = first_blob(w, sid, path)
    return repo, ref.pack


def first_blob(w: dict[str, Any], sid: str, path: str) -> tuple[Repository, BlobRef]:
    """(the repository, where the first blob of ``path`` in snapshot ``sid`` is stored)."""
    repo = repo_of(w)
    for p, node in walk(repo, repo.load_snapshot(sid).tree):
        if p == path:
            ref = repo.locate(bytes.fromhex(node.content[0]))
            assert ref is not None
            return repo, ref
    raise AssertionError(path)


def files_touching(w: dict[str, Any], sid: str, pack: str) -> set[str]:
    """The files of ``sid`` (relative to ``src``) with a blob in ``pack``: small packs are filled in
    the order the backup's threads finish, so a neighbour of the damaged file may share its pack."""
    repo = repo_of(w)
    return {
        p.removeprefix("src/")
        for p, node in walk(repo, repo.load_snapshot(sid).tree)
        if node.content and any(getattr(repo.locate(bytes.fromhex(h)), "pack", None) == pack for h in node.content)
    }


def check(*extra: str) -> tuple[int, dict[str, Any]]:
    rc, out, _ = main_cli(["check", "--json", *extra])
    return rc, json_out(out)


# ---------------------------------------------------------------------------- snapshots


def test_a_damaged_old_snapshot_affects_only_itself(world: dict[str, Any]) -> None:
    w = world
    s1, s2 = w["s1"], w["s2"]
    flip(w["root"] / "snapshots" / s1)
    fresh_cache(w)
    rc, out, err = main_cli(["snapshots", "--json"])
    assert rc == 3 and [r["id"] for r in json_out(out)["snapshots"]] == [s2]
    assert s1 in json_out(out)["unreadable"] and f"snapshots/{s1[:16]}" in err and f"forget {s1[:8]}" in err
    restores_exactly(w, s2, w["fps"][s2])
    rc, out, err = main_cli(["restore", "latest", "--target", str(w["tmp"] / "latest")])
    assert rc == 0 and fingerprint(w["tmp"] / "latest" / "src") == w["fps"][s2]
    # a backup goes on, and is not silently healthy: exit 3, the warning names the snapshot
    write(w["src"] / "new.txt", b"new")
    rc, out, err = main_cli(["backup", "--source", str(w["src"]), "--json"])
    assert rc == 3 and json_out(out)["snapshot"] and s1[:16] in err
    s3 = json_out(out)["snapshot"]
    restores_exactly(w, s3, fingerprint(w["src"]))
    # retention judges the others and keeps the damaged one, saying so
    for dry in (["--dry-run"], []):
        rc, out, err = main_cli(["forget", "--keep-last", "1", "--json", *dry])
        assert rc == 3, err
        doc = json_out(out)
        assert [f["id"] for f in doc["forget"]] == [s2] and s1 in doc["unreadable"]
    rc, out, err = main_cli(["prune"])
    assert rc == 4 and f"forget {s1[:8]}" in err  # never prunes around an unreadable snapshot
    # forget by id removes it, damaged as it is
    rc, out, err = main_cli(["forget", s1[:8]])
    assert rc == 0, err
    assert not (w["root"] / "snapshots" / s1).exists()
    rc, out, _ = main_cli(["snapshots", "--json"])
    assert rc == 0 and [r["id"] for r in json_out(out)["snapshots"]] == [s3]
    assert main_cli(["prune", "--grace", "0"])[0] == 0
    assert check("--read-data")[0] == 0
    restores_exactly(w, s3, fingerprint(w["src"]))


def test_a_missing_snapshot_file_is_damage_not_no_such_snapshot(world: dict[str, Any]) -> None:
    w = world
    (w["root"] / "snapshots" / w["s1"]).unlink()
    fresh_cache(w)
    rc, _, err = main_cli(["restore", w["s1"][:8], "--target", str(w["tmp"] / "t")])
    assert rc == 4 and "missing from the store" in err
    rc, out, err = main_cli(["repair", "snapshots", "--json"])
    assert rc == 0 and w["s1"] in json_out(out)["forgotten"]
    assert check("--read-data")[0] == 0
    restores_exactly(w, w["s2"], w["fps"][w["s2"]])


# ---------------------------------------------------------------------------- packs and blobs


def test_a_lost_pack_is_stored_again_by_the_next_backup(world: dict[str, Any]) -> None:
    """A deleted pack: the next backup (even with a warm file cache) does not reuse its blobs; it
    stores them again from the sources, which heals every snapshot that used them."""
    w = world
    s1, s2 = w["s1"], w["s2"]
    _, pack = place_of(w, s2, "src/a.bin")  # a.bin: the same in s1 and s2, and in the sources
    (w["root"] / pack_name(pack)).unlink()
    rc, out, err = main_cli(["backup", "--source", str(w["src"]), "--json"])
    assert rc == 3 and "missing from the store" in err and "check" in err
    doc = json_out(out)
    assert doc["snapshot"] and doc["stats"]["blobs_added"] > 0
    fresh_cache(w)
    for sid in (s1, s2, doc["snapshot"]):
        restores_exactly(w, sid, w["fps"].get(sid, w["fps"][s2]))
    # every blob of the lost pack had a place again: healed with no further step
    assert check("--read-data")[0] == 0
    rc, out, err = main_cli(["repair", "packs", "--json"])  # drops the lost pack from the index
    assert rc == 0 and any(pack[:16] in d for d in json_out(out)["damaged_packs"]), err
    assert check("--read-data")[0] == 0
    for sid in (s1, s2):
        restores_exactly(w, sid, w["fps"][sid])


def test_a_flipped_byte_found_by_check_is_healed_by_the_next_backup(world: dict[str, Any]) -> None:
    w = world
    s1, s2 = w["s1"], w["s2"]
    _, pack = place_of(w, s2, "src/a.bin")
    flip(w["root"] / pack_name(pack))
    assert check()[0] == 0  # structure only: a flipped byte is not seen
    # a backup before check cannot know: it reuses the blob (as restic would)
    rc, res = check("--read-data")
    assert rc == 4 and res["damaged_snapshots"] == {s1: ["src/a.bin"], s2: ["src/a.bin"]}
    assert res["damage_recorded"]
    _, out, _ = main_cli(["check", "--read-data"])
    assert "next: `openclaw-backup repair packs`" in out
    # the record is in the repository: a backup from another cache stores the blob again
    fresh_cache(w)
    rc, out, err = main_cli(["backup", "--source", str(w["src"]), "--json"])
    assert rc == 0, err
    doc = json_out(out)
    assert doc["stats"]["blobs_added"] >= 1
    for sid in (s1, s2, doc["snapshot"]):  # s1 and s2 are whole again: the blob has a good place
        restores_exactly(w, sid, w["fps"].get(sid, w["fps"][s2]))
    assert main_cli(["repair", "packs"])[0] == 0
    assert not (w["root"] / pack_name(pack)).exists()
    rc, res = check("--read-data")
    assert rc == 0, res
    for sid in (s1, s2):
        restores_exactly(w, sid, w["fps"][sid])


def test_lost_data_the_sources_no_longer_have_is_dropped_by_repair_snapshots(world: dict[str, Any]) -> None:
    """s1's b.bin is no longer in the sources: after its pack is damaged, repair snapshots
    rewrites s1 without it (recording it), and everything else restores exactly."""
    w = world
    s1, s2 = w["s1"], w["s2"]
    repo, pack = place_of(w, s1, "src/b.bin")
    if any(ref.pack == pack for bid, ref in repo.index.items() if ref.btype == b"T"):
        pytest.skip("the pack also holds trees")  # b.bin's 200 KB alone fill a test pack
    flip(w["root"] / pack_name(pack))
    rc, res = check("--read-data")
    assert rc == 4 and list(res["damaged_snapshots"]) == [s1]
    for step in (["repair", "packs"], ["backup", "--source", str(w["src"])], ["repair", "snapshots", "--json"]):
        rc, out, err = main_cli(step)
        assert rc == 0, f"{step}: {err}{out}"
    doc = json_out(out)
    assert list(doc["rewritten"]) == [s1] and doc["rewritten"][s1]["dropped"] == ["src/b.bin"]
    new_s1 = doc["rewritten"][s1]["new"]
    rc, res = check("--read-data")
    assert rc == 0, res
    target = w["tmp"] / "repaired"
    assert main_cli(["restore", new_s1, "--target", str(target)])[0] == 0
    expected = {k: v for k, v in w["fps"][s1].items() if k != "b.bin"}
    assert fingerprint(target / "src") == expected
    rc, out, _ = main_cli(["snapshots", "--json"])
    rows = {r["id"]: r for r in json_out(out)["snapshots"]}
    assert "repaired" in rows[new_s1]["tags"]
    restores_exactly(w, s2, w["fps"][s2])


# ---------------------------------------------------------------------------- index, head, keys, config


def test_a_damaged_index_file_is_contained_and_rebuilt(world: dict[str, Any]) -> None:
    w = world
    victim = sorted((w["root"] / "index").iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:-9])
    fresh_cache(w)
    rc, out, err = main_cli(["snapshots", "--json"])
    assert rc == 0 and len(json_out(out)["snapshots"]) == 2  # listing needs no index
    rc, _, err = main_cli(["prune"])
    assert rc == 4 and "repair index" in err
    rc, res = check()
    assert rc == 4 and any(p.startswith(f"index/{victim.name[:16]}") for p in res["problems"])
    write(w["src"] / "more.txt", b"more")
    rc, out, err = main_cli(["backup", "--source", str(w["src"]), "--json"])  # goes on, not silently
    assert rc == 3 and victim.name[:16] in err and "repair index" in err
    s3 = json_out(out)["snapshot"]
    assert main_cli(["repair", "index"])[0] == 0
    assert check("--read-data")[0] == 0
    for sid, fp in {**w["fps"], s3: fingerprint(w["src"])}.items():
        restores_exactly(w, sid, fp)


def test_check_never_trusts_the_cache(world: dict[str, Any]) -> None:
    """The store's index file is truncated, the cache's copy is intact: check reads the store."""
    w = world
    main_cli(["check"])  # fills the cache
    victim = sorted((w["root"] / "index").iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:-9])
    for extra in ([], ["--read-data"]):
        rc, res = check(*extra)
        assert rc == 4 and any(victim.name[:16] in p for p in res["problems"]), res


def test_a_lost_head_is_rebuilt_from_the_listings(world: dict[str, Any]) -> None:
    w = world
    (w["root"] / "head").unlink()
    rc, _, err = main_cli(["snapshots"])
    assert rc == 17 and "repair head" in err and "damaged beyond" not in err
    rc, out, err = main_cli(["repair", "head", "--json"])
    assert rc == 0 and json_out(out)["snapshots"] == 2, err
    rc, _, err = main_cli(["snapshots"])
    assert rc == 0, err  # no "went back in time": the new head's sequence is above the old one's
    assert "back in time" not in err
    assert check("--read-data")[0] == 0
    for sid, fp in w["fps"].items():
        restores_exactly(w, sid, fp)
    rc, _, err = main_cli(["repair", "head"])
    assert rc == 2 and "nothing to repair" in err


def test_lost_key_files_and_config_name_the_way_back(world: dict[str, Any]) -> None:
    w = world
    keys = w["tmp"] / "keys"
    shutil.move(w["root"] / "keys", keys)
    rc, _, err = main_cli(["snapshots"])
    assert rc == 17 and "wrong password" not in err and "key files" in err
    shutil.move(keys, w["root"] / "keys")
    (w["root"] / "config").rename(w["tmp"] / "config")
    rc, _, err = main_cli(["snapshots"])
    assert rc == 17 and "config" in err and "`init` refuses" in err
    assert main_cli(["init"])[0] == 2  # init refuses indeed, and the hint never suggested it
    (w["tmp"] / "config").rename(w["root"] / "config")
    assert main_cli(["snapshots"])[0] == 0


# ---------------------------------------------------------------------------- orphans and names




def test_a_failed_backup_leaves_no_orphan_packs(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i in range(6):
        write(src / f"f{i}.bin", os.urandom(100_000))
    raw = LocalBackend(tmp_path / "repo")
    new_repo(raw)
    before = set(raw.list("data/"))
    failing = FailAlways(raw, methods="put", names="snapshots/*")  # every pack lands, then it fails
    repo = Repository.open(failing, password=PASSWORD)
    with pytest.raises(StoreError):
        run_backup(repo, {"src": src})
    assert set(raw.list("data/")) == before and not raw.list("index/")


def test_prune_grace_is_settable(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """A killed backup's packs (unindexed) are kept for the grace, then pruned."""
    w = world
    orphan = w["root"] / "data" / "ab" / ("ab" + "0" * 62)
    orphan.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(next(p for p in (w["root"] / "data").rglob("*") if p.is_file()), orphan)
    rc, out, _ = main_cli(["prune", "--json"])
    assert rc == 0 and json_out(out)["unindexed_deleted"] == 0 and orphan.exists()
    monkeypatch.setenv("OPENCLAW_BACKUP_PRUNE_GRACE", "0")
    rc, out, _ = main_cli(["prune", "--json"])
    assert rc == 0 and json_out(out)["unindexed_deleted"] == 1 and not orphan.exists()
    monkeypatch.setenv("OPENCLAW_BACKUP_PRUNE_GRACE", "soon")
    assert main_cli(["prune"])[0] == 2
    assert main_cli(["prune", "--grace", "-1"])[0] == 2


def test_names_are_escaped_in_human_output(world: dict[str, Any]) -> None:
    w = world
    evil = "x\nwarning: all is well \x1b[2J"
    write(w["src"] / evil, b"evil")
    sid = backup(w["src"])
    rc, out, _ = main_cli(["ls", sid])
    assert rc == 0 and "x\\x0awarning: all is well \\x1b[2J" in out
    assert "\x1b" not in out and not any(line.startswith("warning:") for line in out.splitlines())
    rc, out, _ = main_cli(["ls", sid, "--json"])
    assert any(e["path"] == f"src/{evil}" for e in json_out(out)["entries"])  # JSON keeps the name


# ---------------------------------------------------------------------------- partial restores


@pytest.mark.parametrize("damage", ["flip", "delete"])
def test_a_restore_restores_every_file_it_can_and_names_the_others(
    world: dict[str, Any], damage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = world
    s2 = w["s2"]
    _, ref = first_blob(w, s2, "src/a.bin")
    path = w["root"] / pack_name(ref.pack)
    if damage == "flip":  # a byte of a.bin's first blob: only a.bin is damaged
        flip(path, ref.offset + ref.length // 2)
        lost = {"a.bin"}
    else:  # the whole pack: every file with a blob in it
        lost = files_touching(w, s2, ref.pack)
        path.unlink()
    fresh_cache(w)
    target = w["tmp"] / "partial"
    assert "a.bin" in lost and "b.bin" in w["fps"][s2] and len(lost) < len(w["fps"][s2]) - 2
    rc, out, err = main_cli(["restore", s2, "--target", str(target)])
    assert rc == 5, err + out
    assert "PARTIAL" in out and f"{target}/src/a.bin" in out and "check --read-data" in out
    expected = {k: v for k, v in w["fps"][s2].items() if k not in lost}
    assert fingerprint(target / "src") == expected  # everything else, exactly; never half a file
    rc, out, _ = main_cli(["restore", s2, "--target", str(w["tmp"] / "p2"), "--json"])
    assert rc == 5 and sorted(json_out(out)["failed"]) == sorted(f"{w['tmp']}/p2/src/{f}" for f in lost)
    if damage == "delete":
        return
    # in place (the agent's state), only when asked for: else it fails naming the file, changing nothing
    monkeypatch.setenv("OPENCLAW_STATE_DIR", str(w["src"]))
    rc, out, err = main_cli(["backup", "--json"])  # a flipped byte is not seen: a.bin's blob is reused
    assert rc == 0, err
    s3 = json_out(out)["snapshot"]
    before = fingerprint(w["src"])
    rc, out, err = main_cli(["restore", s3, "--yes"])
    assert rc == 4 and "a.bin" in err and "--partial" in err, err + out
    assert fingerprint(w["src"]) == before
    (w["src"] / "b.bin").write_bytes(b"changed")
    rc, out, err = main_cli(["restore", s3, "--yes", "--partial"])
    assert rc == 5, err + out
    now = fingerprint(w["src"])
    assert not lost & set(now)
    assert {k: v for k, v in now.items() if k != "."} == {k: v for k, v in before.items() if k not in lost | {"."}}


# ---------------------------------------------------------------------------- where the backend matters


@pytest.mark.parametrize("kind", kinds("local", "s3", "hub", "hub_bucket"))
def test_on_each_store_a_lost_pack_heals_and_a_failed_backup_leaves_no_orphans(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store: Backend = request.getfixturevalue(f"{kind}_backend")
    src = tmp_path / "src"
    for i in range(3):
        write(src / f"f{i}.bin", os.urandom(80_000))
    repo = new_repo(store)
    first = run_backup(repo, {"src": src}, forked=False).snapshot_id
    assert first
    # a pack lost from the store: the next backup stores its blobs again, with a warning
    node_pack = None
    repo.load_index()
    for p, node in walk(repo, repo.load_snapshot(first).tree):
        if p == "src/f1.bin":
            ref = repo.locate(bytes.fromhex(node.content[0]))
            assert ref is not None
            node_pack = ref.pack
    assert node_pack is not None
    store.delete_unpublished([pack_name(node_pack)])
    reporter = Reporter()
    again = run_backup(open_repo(store), {"src": src}, reporter=reporter, forked=False)
    assert again.snapshot_id and any("missing from the store" in w for w in reporter.warnings)
    fresh = open_repo(store)
    for sid in (first, again.snapshot_id):
        target = tmp_path / f"t-{sid[:8]}"
        restore_all(fresh, sid, target)
        assert fingerprint(target / "src") == fingerprint(src)
    # a backup that fails after writing its packs removes them (on a Hub repo nothing was visible)
    before = set(store.list("data/")), set(store.list("index/"))
    write(src / "new.bin", os.urandom(150_000))
    failing = FailAlways(store, methods="put", names="snapshots/*")
    with pytest.raises(StoreError):
        run_backup(open_repo(failing), {"src": src}, forked=False)
    assert (set(store.list("data/")), set(store.list("index/"))) == before


def test_on_a_hub_repo_a_pack_deleted_by_hand_is_noticed_by_the_next_backup(
    hub_backend: Backend, tmp_path: Path
) -> None:
    """A Hub repo lists its packs at most hourly under the same head (its API calls are budgeted);
    a pack deleted by hand is a commit, which changes the head's version, so the very next backup
    on this machine (warm cache, same head document) lists again and stores the data again."""
    src = tmp_path / "src"
    for i in range(2):
        write(src / f"f{i}.bin", os.urandom(80_000))
    cache = tmp_path / "cache"
    new_repo(hub_backend, cache_dir=cache)
    first = run_backup(open_repo(hub_backend, cache_dir=cache), {"src": src}, forked=False).snapshot_id
    assert first
    quiet = Reporter()
    assert run_backup(open_repo(hub_backend, cache_dir=cache), {"src": src}, reporter=quiet, forked=False).unchanged
    assert not quiet.warnings
    repo = open_repo(hub_backend, cache_dir=cache)
    repo.load_index()
    packs = sorted(repo.indexed_packs())
    hub_backend.delete_unpublished([pack_name(packs[0])])  # a commit of its own, as the Hub's web page makes
    reporter = Reporter()
    again = run_backup(open_repo(hub_backend, cache_dir=cache), {"src": src}, reporter=reporter, forked=False)
    assert any("missing from the store" in w for w in reporter.warnings), reporter.warnings
    assert again.snapshot_id
    target = tmp_path / "t"
    restore_all(open_repo(hub_backend), again.snapshot_id, target)
    assert fingerprint(target / "src") == fingerprint(src)


# ---------------------------------------------------------------------------- the supervisor, a full disk


def test_restore_if_missing_falls_back_to_an_older_intact_snapshot(tmp_path: Path) -> None:
    state = tmp_path / "home" / ".openclaw"
    write(state / "openclaw.json", b'{"v": 1}')
    write(state / "workspace" / "notes.md", b"# notes\n")
    env = cli_env(tmp_path, OPENCLAW_STATE_DIR=str(state), OPENCLAW_BACKUP_REPOSITORY=str(tmp_path / "repo"))
    cli_ok(["init"], env)
    cli_ok(["backup"], env)
    older = fingerprint(state)
    write(state / "workspace" / "new.bin", os.urandom(50_000))
    cli_ok(["backup"], env)
    repo = Repository.open(LocalBackend(tmp_path / "repo"), password=PASSWORD)
    repo.load_index()
    newest = repo.snapshots()[-1]
    (node,) = [n for p, n in walk(repo, newest.tree) if p.endswith("workspace/new.bin")]
    ref = repo.locate(bytes.fromhex(node.content[0]))
    assert ref is not None
    flip(tmp_path / "repo" / pack_name(ref.pack), at=ref.offset + ref.length // 2)
    shutil.rmtree(state)
    state.with_name(".openclaw.openclaw-backup.json").unlink()
    proc = run_cli(["run", "--grace", "5", "--", "true"], env)
    assert proc.returncode == 0, proc.stderr
    assert f"snapshot {newest.id[:8]} failed verification" in proc.stderr
    assert fingerprint(state) == older  # the older intact snapshot, whole; never a partial newest


def test_a_full_disk_during_a_restore_is_its_own_error(world: dict[str, Any]) -> None:
    """Out of inodes on the target: exit 18 naming where, with the way on; not "a bug"."""
    w = world
    small = w["tmp"] / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,nr_inodes=8", "tmpfs", str(small)],
                      capture_output=True).returncode != 0:  # fmt: skip
        pytest.skip("cannot mount a small file system here (needs root)")
    try:
        rc, out, err = main_cli(["restore", w["s2"], "--target", str(small)])
        assert rc == 18, err + out
        assert "no space or no inodes left" in err and "df -i" in err and "bug" not in err
        assert not [n for n in os.listdir(small) if "openclaw-restore" in n]  # no staging left behind
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_a_damaged_tree_is_named_restored_around_and_healed(world: dict[str, Any]) -> None:
    """The listing of folder ``sub`` (the same tree in s1 and s2) is damaged: a restore names the
    folder and restores the rest; check records it; the next backup stores the tree again."""
    w = world
    s1, s2 = w["s1"], w["s2"]
    repo = repo_of(w)
    (sub,) = [n for p, n in walk(repo, repo.load_snapshot(s2).tree) if p == "src/sub"]
    assert sub.subtree
    ref = repo.locate(bytes.fromhex(sub.subtree))
    assert ref is not None
    flip(w["root"] / pack_name(ref.pack), at=ref.offset + ref.length // 2)
    fresh_cache(w)
    target = w["tmp"] / "around"
    rc, out, err = main_cli(["restore", s2, "--target", str(target), "--json"])
    assert rc == 5, err + out
    assert list(json_out(out)["failed"]) == [f"{target}/src/sub"]
    assert fingerprint(target / "src") == {k: v for k, v in w["fps"][s2].items() if not k.startswith("sub")}
    rc, res = check("--read-data")
    assert rc == 4 and res["damaged_snapshots"] == {s1: ["src/sub"], s2: ["src/sub"]}
    rc, out, err = main_cli(["backup", "--source", str(w["src"]), "--json"])
    assert rc == 0 and json_out(out)["stats"]["blobs_added"] >= 1, err
    for sid in (s1, s2):
        restores_exactly(w, sid, w["fps"][sid])
    assert main_cli(["repair", "packs"])[0] == 0
    assert check("--read-data")[0] == 0
