"""Retention and maintenance: keep policies, forget, prune, check, repair (docs/retention.md).

Sections: the policy (``apply_policy``, pure); ``forget`` through the CLI; the space target (many
backups of a changing tree, with periodic forget+prune, end within 1.3x of what the kept
snapshots need; on the Hub only a squash gets there); ``check --read-data`` naming damage;
``repair index``; what ``prune`` keeps, frees, repacks, and when it removes unindexed packs.
"""

from __future__ import annotations

import os
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from openclaw_backup import codec, prune
from openclaw_backup.backends.base import Backend
from openclaw_backup.backends.local import LocalBackend
from openclaw_backup.backends.memory import MemoryBackend
from openclaw_backup.codec import BLOB_DATA
from openclaw_backup.errors import UsageError
from openclaw_backup.filecache import FileCache
from openclaw_backup.maintenance import check
from openclaw_backup.pack import pack_name
from openclaw_backup.reporter import Reporter
from openclaw_backup.repository import Repository, walk
from openclaw_backup.retention import DEFAULT_POLICY, Policy, apply_policy, parse_duration
from openclaw_backup.snapshot import Snapshot
from tests.support.cli import json_out, main_cli
from tests.support.repos import (
    HOST,
    PASSWORD,
    RETENTION_PACK_SIZE,
    needed_bytes,
    new_repo,
    open_repo,
    restore_all,
    run_backup,
    stored_bytes,
)
from tests.support.trees import fingerprint, fp_diff, write

OLD_NS = 1_600_000_000 * 10**9  # an mtime far outside the file cache's racy window

# ============================================================================ the policy (pure)

T0 = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday: ISO week 1 of 2024 is Jan 1-7


def snap(i: int, t: datetime, *, host: str = "h", roots: tuple[str, ...] = ("state",), tags: tuple[str, ...] = ()
         ) -> Snapshot:  # fmt: skip
    return Snapshot(
        id=f"{i:064x}",
        tree="00" * 32,
        time=t.isoformat(timespec="microseconds"),
        host=host,
        roots={r: {"path": f"/x/{r}", "type": "dir"} for r in roots},
        tags=list(tags),
    )


def every_20_min(days: int = 10) -> list[Snapshot]:
    """Snapshots every 20 minutes from 2024-01-01 00:00 to 2024-01-10 23:40 (720 of them)."""
    return [snap(i, T0 + timedelta(minutes=20 * i)) for i in range(days * 24 * 3)]


def kept_times(snaps: list[Snapshot], policy: Policy) -> list[str]:
    forget, reasons = apply_policy(snaps, policy)
    assert {s.id for s in forget}.isdisjoint(reasons), "a snapshot both kept and forgotten"
    assert len(forget) + len(reasons) == len(snaps), "every snapshot is either kept or forgotten"
    by_id = {s.id: s.time for s in snaps}
    return sorted((by_id[i][:16] for i in reasons), reverse=True)


def test_keep_last() -> None:
    snaps = every_20_min()
    assert kept_times(snaps, Policy(keep_last=5)) == [
        "2024-01-10T23:40", "2024-01-10T23:20", "2024-01-10T23:00", "2024-01-10T22:40", "2024-01-10T22:20",
    ]  # fmt: skip
    assert len(kept_times(snaps, Policy(keep_last=10_000))) == 720


def test_keep_hourly_keeps_the_newest_of_each_recent_hour() -> None:
    snaps = every_20_min()
    kept = kept_times(snaps, Policy(keep_hourly=24))
    assert kept == [f"2024-01-10T{h:02d}:40" for h in range(23, -1, -1)]
    assert len(kept_times(snaps, Policy(keep_hourly=1000))) == 240  # only 240 hours have snapshots
    assert all(t.endswith(":40") for t in kept_times(snaps, Policy(keep_hourly=1000)))


def test_keep_daily_weekly_monthly_yearly() -> None:
    snaps = every_20_min()
    assert kept_times(snaps, Policy(keep_daily=7)) == [f"2024-01-{d:02d}T23:40" for d in range(10, 3, -1)]
    assert len(kept_times(snaps, Policy(keep_daily=30))) == 10
    # ISO weeks: Jan 1-7 (week 1), Jan 8-14 (week 2): the newest of each.
    assert kept_times(snaps, Policy(keep_weekly=1)) == ["2024-01-10T23:40"]
    assert kept_times(snaps, Policy(keep_weekly=5)) == ["2024-01-10T23:40", "2024-01-07T23:40"]
    assert kept_times(snaps, Policy(keep_monthly=6)) == ["2024-01-10T23:40"]
    assert kept_times(snaps, Policy(keep_yearly=3)) == ["2024-01-10T23:40"]


def test_buckets_count_existing_buckets_not_calendar_units() -> None:
    times = [T0 + timedelta(hours=10), T0 + timedelta(hours=12), T0 + timedelta(days=4), T0 + timedelta(days=9)]
    snaps = [snap(i, t) for i, t in enumerate(times)]
    assert kept_times(snaps, Policy(keep_daily=2)) == ["2024-01-10T00:00", "2024-01-05T00:00"]
    assert kept_times(snaps, Policy(keep_daily=3)) == ["2024-01-10T00:00", "2024-01-05T00:00", "2024-01-01T12:00"]
    # monthly across a year boundary, yearly over years
    snaps = [snap(i, datetime(2022 + i // 12, 1 + i % 12, 15, tzinfo=UTC)) for i in range(30)]  # 2022-01 .. 2024-06
    assert kept_times(snaps, Policy(keep_monthly=8))[-1] == "2023-11-15T00:00"
    assert kept_times(snaps, Policy(keep_yearly=2)) == ["2024-06-15T00:00", "2023-12-15T00:00"]


def test_keep_within_is_relative_to_the_newest_snapshot() -> None:
    snaps = every_20_min()
    assert len(kept_times(snaps, Policy(keep_within=timedelta(hours=2)))) == 7  # 21:40 .. 23:40 inclusive
    assert len(kept_times(snaps, Policy(keep_within=parse_duration("1d")))) == 73
    assert len(kept_times(snaps, Policy(keep_within=parse_duration("2w")))) == 720


def test_combined_rules_union_and_reasons() -> None:
    snaps = every_20_min()
    forget, reasons = apply_policy(snaps, Policy(keep_last=2, keep_hourly=3, keep_daily=2))
    by_time = {s.time[:16]: reasons[s.id] for s in snaps if s.id in reasons}
    assert by_time == {
        "2024-01-10T23:40": ["last", "hourly", "daily"],
        "2024-01-10T23:20": ["last"],
        "2024-01-10T22:40": ["hourly"],
        "2024-01-10T21:40": ["hourly"],
        "2024-01-09T23:40": ["daily"],
    }
    assert len(forget) == 715


def test_default_policy_on_ten_days() -> None:
    # keep-last 12 (23:40 .. 20:00), hourly 48 (Jan 9 00:40 .. Jan 10 23:40), daily 14 (10 days), weekly, monthly
    kept = kept_times(every_20_min(), DEFAULT_POLICY)
    hourly = {f"2024-01-{d:02d}T{h:02d}:40" for d in (9, 10) for h in range(24)}
    last = {(datetime(2024, 1, 10, 23, 40) - timedelta(minutes=20 * i)).isoformat()[:16] for i in range(12)}
    daily = {f"2024-01-{d:02d}T23:40" for d in range(1, 11)}
    assert set(kept) == hourly | last | daily  # weekly/monthly picks are daily picks here
    assert len(kept) == 48 + 8 + 8  # 12 last of which 4 are :40 hourly; 10 daily of which 2 are hourly


def test_keep_tag() -> None:
    snaps = every_20_min()
    for s in (snaps[3], snaps[100], snaps[500]):
        s.tags = ["keep", "other"]
    snaps[7].tags = ["other"]
    _forget, reasons = apply_policy(snaps, Policy(keep_last=1, keep_tags=("keep",)))
    assert sorted(reasons) == sorted([snaps[3].id, snaps[100].id, snaps[500].id, snaps[-1].id])
    assert reasons[snaps[100].id] == ["tag"] and reasons[snaps[-1].id] == ["last"]


def test_grouping_by_host_and_roots() -> None:
    snaps = [snap(i, T0 + timedelta(hours=i), host="a" if i % 2 else "b") for i in range(10)]
    _, reasons = apply_policy(snaps, Policy(keep_last=2))
    assert sorted(int(i, 16) for i in reasons) == [6, 7, 8, 9]  # two per host
    roots_sets = [("state",), ("state", "config"), ("config", "state")]  # the last two are one group
    snaps = [snap(i, T0 + timedelta(hours=i), roots=roots_sets[i % 3]) for i in range(9)]
    _, reasons = apply_policy(snaps, Policy(keep_last=1))
    assert sorted(int(i, 16) for i in reasons) == [6, 8]
    _, reasons = apply_policy(snaps, Policy(keep_daily=1, keep_within=timedelta(0)))
    assert sorted(int(i, 16) for i in reasons) == [6, 8]


def test_order_of_input_does_not_matter() -> None:
    snaps = every_20_min(3)
    policy = Policy(keep_last=3, keep_hourly=5, keep_daily=2)
    shuffled = list(snaps)
    random.Random(1).shuffle(shuffled)
    assert apply_policy(shuffled, policy)[1].keys() == apply_policy(snaps, policy)[1].keys()


def test_empty_policy_keeps_everything() -> None:
    snaps = every_20_min(1)
    forget, reasons = apply_policy(snaps, Policy())
    assert forget == [] and len(reasons) == len(snaps)
    assert all(r == ["no policy"] for r in reasons.values())
    assert Policy().empty() and not Policy(keep_tags=("x",)).empty()


@pytest.mark.parametrize(
    "text,expected",
    [("7d", timedelta(days=7)), ("2w", timedelta(days=14)), ("12h", timedelta(hours=12)),
     ("30min", timedelta(minutes=30)), ("1y6m", timedelta(days=365 + 180)), ("1d2h", timedelta(days=1, hours=2))],
)  # fmt: skip
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "7", "d", "7x", "1d junk", "-1d"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_duration(text)


# ============================================================================ forget via the CLI


@pytest.fixture
def cli_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Repository, Path, list[str]]:
    """A local repository with 6 snapshots an hour apart (oldest first), and the CLI pointed at it."""
    src = tmp_path / "src"
    write(src / "f.txt", b"hello")
    repo = new_repo(LocalBackend(tmp_path / "repo"), pack_size=RETENTION_PACK_SIZE)
    ids = []
    for i in range(6):
        write(src / "n.txt", str(i).encode())
        res = run_backup(repo, {"src": src}, time=T0 + timedelta(hours=i), forked=False)
        assert res.snapshot_id
        ids.append(res.snapshot_id)
    monkeypatch.setenv("OPENCLAW_BACKUP_REPOSITORY", str(tmp_path / "repo"))
    monkeypatch.setenv("OPENCLAW_BACKUP_PASSWORD", PASSWORD)
    monkeypatch.setenv("OPENCLAW_BACKUP_TEST_WEAK_KDF", "1")
    monkeypatch.setenv("OPENCLAW_BACKUP_HOST", HOST)
    return repo, tmp_path / "repo", ids


def _repo_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_forget_dry_run_changes_nothing(cli_repo: tuple[Repository, Path, list[str]]) -> None:
    _, root, ids = cli_repo
    before = _repo_files(root)
    code, out, err = main_cli(["forget", "--keep-last", "2", "--dry-run", "--json"])
    assert code == 0, err
    doc = json_out(out)
    assert doc["dry_run"] is True
    assert sorted(f["id"] for f in doc["forget"]) == sorted(ids[:4])
    assert {k["id"]: k["reasons"] for k in doc["keep"]} == {ids[4]: ["last"], ids[5]: ["last"]}
    assert _repo_files(root) == before
    code, out, _ = main_cli(["forget", "--keep-last", "2", "--dry-run"])
    assert code == 0 and "4 snapshot(s) would be forgotten" in out and f"keep   {ids[5][:8]}  (last)" in out
    assert _repo_files(root) == before


def test_forget_keep_count_env_means_keep_last(
    cli_repo: tuple[Repository, Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, _, ids = cli_repo
    monkeypatch.setenv("OPENCLAW_BACKUP_KEEP_COUNT", "3")
    code, out, err = main_cli(["forget", "--json"])
    assert code == 0, err
    assert json_out(out)["policy"] == "last=3"
    repo.refresh()
    assert sorted(repo.state.snapshots) == sorted(ids[3:])
    # explicit flags win over the legacy variable
    code, _, err = main_cli(["forget", "--keep-last", "1"])
    assert code == 0, err
    repo.refresh()
    assert repo.state.snapshots == [ids[5]]


@pytest.mark.parametrize("value", ["3", " 3 ", "0", "-1", "lots", "3.0", "\u00b2", ""])
def test_keep_count_means_the_same_to_forget_and_to_the_supervisor(
    value: str, cli_repo: tuple[Repository, Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One rule (settings.keep_policy): a positive ASCII integer is keep-last; anything else is ignored,
    so ``forget`` asks for a policy and the supervisor's maintenance applies its default."""
    from openclaw_backup.service import Service
    from openclaw_backup.settings import Settings

    monkeypatch.setenv("OPENCLAW_BACKUP_KEEP_COUNT", value)
    code, out, err = main_cli(["forget", "--dry-run", "--json"])
    account = Service(Settings(dict(os.environ)), reporter=Reporter()).maintain()
    if value.strip() in ("3",):
        assert code == 0, err
        assert json_out(out)["policy"] == "last=3"
        assert "(last=3)" in account
    else:
        assert code == UsageError.exit_code and "no keep policy given" in err
        assert f"({DEFAULT_POLICY.describe()})" in account


def test_forget_without_policy_is_usage_error(cli_repo: tuple[Repository, Path, list[str]]) -> None:
    _, root, _ = cli_repo
    before = _repo_files(root)
    code, _, err = main_cli(["forget"])
    assert code == 2 and "no keep policy" in err
    code, _, _ = main_cli(["forget", "--keep-last", "0", "--prune"])
    assert code == 2
    assert _repo_files(root) == before


def test_forget_prune_cli_removes_forgotten_snapshot_files(cli_repo: tuple[Repository, Path, list[str]]) -> None:
    _repo, root, ids = cli_repo
    code, out, err = main_cli(["forget", "--keep-within", "2h", "--prune", "--json"])
    assert code == 0, err
    doc = json_out(out)
    assert sorted(f["id"] for f in doc["forget"]) == sorted(ids[:3]) and "prune" in doc
    assert sorted(p.name for p in (root / "snapshots").iterdir()) == sorted(ids[3:])


# ============================================================================ the space target


def _changing_tree(src: Path) -> None:
    write(src / "big-constant.bin", random.Random(7).randbytes(2 * 1024 * 1024), mtime_ns=OLD_NS)
    write(src / "journal.log", os.urandom(100_000))
    write(src / "conf/settings.json", b'{"a": 1}\n', mtime_ns=OLD_NS)


def _change(src: Path, i: int) -> None:
    write(src / "rewritten.bin", os.urandom(200_000))
    with open(src / "journal.log", "ab") as f:
        f.write(os.urandom(5_000))
    write(src / "counter.txt", str(i).encode())


def _space_run(repo: Repository, src: Path, tmp: Path, *, n: int, every: int, keep: int, squash: bool | None) -> None:
    cache = FileCache(tmp / "files.db")
    for i in range(n):
        _change(src, i)
        res = run_backup(repo, {"state": src}, cache=cache, scratch=tmp, forked=False)
        assert res.snapshot_id, "every backup of a changed tree makes a snapshot"
        if (i + 1) % every == 0:
            prune.forget(repo, Policy(keep_last=keep))
            prune.prune(repo, reporter=Reporter(), squash=squash)


SPACE_BACKUPS = 200
HUB_SPACE_BACKUPS = 60  # 200 take ~36 s on the fake Hub (ratio 19 before squash, 1.0003 after)


@pytest.mark.parametrize("kind", ["memory", "local"])
def test_space_stays_within_1_3x_of_what_kept_snapshots_need(kind: str, tmp_path: Path) -> None:
    backend: Backend = MemoryBackend() if kind == "memory" else LocalBackend(tmp_path / "repo")
    repo = new_repo(backend, cache_dir=tmp_path / "cache", pack_size=RETENTION_PACK_SIZE)
    src = tmp_path / "src"
    _changing_tree(src)
    t = time.monotonic()
    _space_run(repo, src, tmp_path, n=SPACE_BACKUPS, every=20, keep=5, squash=None)
    prune.forget(repo, Policy(keep_last=5))
    prune.prune(repo, reporter=Reporter())
    elapsed = time.monotonic() - t
    stored, needed = stored_bytes(backend), needed_bytes(repo)
    ratio = stored / needed
    print(f"\n[space {kind}] {SPACE_BACKUPS} backups in {elapsed:.1f}s: stored {stored} B, needed {needed} B, "
          f"ratio {ratio:.4f}")  # fmt: skip
    assert len(repo.state.snapshots) == 5
    # sanity of the measure: the kept snapshots hold at least the big file, 5 rewritten files and the journal
    assert needed >= 2 * 1024 * 1024 + 5 * 200_000
    assert ratio <= 1.3
    assert check(repo, read_data=True, reporter=Reporter()).ok


def test_space_on_the_hub_needs_a_squash(hub_backend: Any, hub_repo: Any, tmp_path: Path) -> None:
    repo = new_repo(hub_backend, cache_dir=tmp_path / "cache", pack_size=RETENTION_PACK_SIZE)
    src = tmp_path / "src"
    _changing_tree(src)
    n = HUB_SPACE_BACKUPS
    t = time.monotonic()
    _space_run(repo, src, tmp_path, n=n, every=20, keep=5, squash=False)
    prune.forget(repo, Policy(keep_last=5))
    res = prune.prune(repo, reporter=Reporter(), squash=False)
    assert res.squashed is False
    needed = needed_bytes(repo)
    before = hub_repo.stats()
    ratio_before = before["stored_bytes"] / needed
    res = prune.prune(repo, reporter=Reporter(), squash=True)
    assert res.squashed is True
    after = hub_repo.stats()
    needed_after = needed_bytes(repo)
    ratio_after = after["stored_bytes"] / needed_after
    print(f"\n[space hub] {n} backups in {time.monotonic() - t:.1f}s: needed {needed_after} B; stored "
          f"{before['stored_bytes']} B before squash (ratio {ratio_before:.2f}, history {before['history']}), "
          f"{after['stored_bytes']} B after (ratio {ratio_after:.4f}, history {after['history']})")  # fmt: skip
    assert ratio_before > 3, "deleted files on a Hub repo keep costing storage until the history is squashed"
    assert ratio_after <= 1.3
    assert after["history"] <= 2
    repo.refresh()
    assert check(repo, read_data=True, reporter=Reporter()).ok


def test_hub_prune_squashes_by_itself_when_deleted_bytes_pile_up(hub_backend: Any, hub_repo: Any, tmp_path: Path
                                                                 ) -> None:  # fmt: skip
    repo = new_repo(hub_backend, cache_dir=tmp_path / "cache", pack_size=RETENTION_PACK_SIZE)
    src = tmp_path / "src"
    _changing_tree(src)
    _space_run(repo, src, tmp_path, n=8, every=100, keep=1, squash=None)
    prune.forget(repo, Policy(keep_last=1))
    # 7 forgotten snapshots' rewritten files + journal tails (> 1/4 of the live ~2.5 MB)
    res = prune.prune(repo, reporter=Reporter())
    assert res.squashed is True
    repo.refresh()
    assert repo.state.deleted_since_squash == 0
    assert hub_repo.stats()["stored_bytes"] / needed_bytes(repo) <= 1.3


# ============================================================================ check --read-data and repair


@pytest.fixture
def two_snapshots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A local repo with snapshots s1 (a, b, sub/c) and s2 (b changed); the CLI pointed at it."""
    src = tmp_path / "src"
    write(src / "a.bin", os.urandom(300_000))
    write(src / "b.bin", os.urandom(300_000))
    write(src / "sub/c.txt", b"c" * 5000)
    for i in range(8):  # enough packs for subsets to mean something
        write(src / f"many/m{i}.bin", os.urandom(200_000))
    cache = tmp_path / "cache"
    repo = new_repo(LocalBackend(tmp_path / "repo"), cache_dir=cache, pack_size=RETENTION_PACK_SIZE)
    s1 = run_backup(repo, {"src": src}, forked=False).snapshot_id
    fp1 = fingerprint(src)
    write(src / "b.bin", os.urandom(300_000))
    s2 = run_backup(repo, {"src": src}, forked=False).snapshot_id
    fp2 = fingerprint(src)
    monkeypatch.setenv("OPENCLAW_BACKUP_REPOSITORY", str(tmp_path / "repo"))
    monkeypatch.setenv("OPENCLAW_BACKUP_PASSWORD", PASSWORD)
    monkeypatch.setenv("OPENCLAW_BACKUP_CACHE_DIR", str(cache))
    return {"repo": repo, "root": tmp_path / "repo", "src": src, "s1": s1, "s2": s2, "fp1": fp1, "fp2": fp2,
            "cache": cache, "tmp": tmp_path}  # fmt: skip


def _blob_of(repo: Repository, snap_id: str, path: str) -> bytes:
    repo.load_index()
    for p, node in walk(repo, repo.find_snapshot(snap_id).tree):
        if p == path:
            return bytes.fromhex(node.content[0])
    raise AssertionError(f"{path} not in {snap_id}")


def _flip(root: Path, repo: Repository, bid: bytes) -> str:
    ref = repo.index[bid]
    path = root / pack_name(ref.pack)
    data = bytearray(path.read_bytes())
    data[ref.offset + ref.length // 2] ^= 0x01
    os.chmod(path, 0o600)
    path.write_bytes(bytes(data))
    return ref.pack


def test_check_read_data_names_damaged_snapshots_and_paths(two_snapshots: dict[str, Any]) -> None:
    ts = two_snapshots
    repo, s1, s2 = ts["repo"], ts["s1"], ts["s2"]
    code, out, err = main_cli(["check", "--read-data", "--json"])
    assert code == 0, err + out
    pack = _flip(ts["root"], repo, _blob_of(repo, s1, "src/a.bin"))
    code, out, _ = main_cli(["check", "--json"])  # structure only: the flipped byte is not seen
    assert code == 0
    code, out, _ = main_cli(["check", "--read-data", "--json"])
    assert code == 4
    doc = json_out(out)
    assert doc["ok"] is False
    assert doc["damaged_snapshots"] == {s1: ["src/a.bin"], s2: ["src/a.bin"]}
    assert any(pack[:16] in p for p in doc["problems"])
    code, out, _ = main_cli(["check", "--read-data"])
    assert code == 4 and f"damaged snapshot {s1[:8]}: src/a.bin" in out


def test_check_read_data_subsets(two_snapshots: dict[str, Any]) -> None:
    ts = two_snapshots
    repo = ts["repo"]
    pack = _flip(ts["root"], repo, _blob_of(repo, ts["s2"], "src/b.bin"))
    packs = len({r.pack for r in repo.index.values()})
    assert packs >= 6
    results = {}
    damaged_in = f"{int(pack[:8], 16) % 2 + 1}/2"
    other = "2/2" if damaged_in == "1/2" else "1/2"
    for spec in (other, damaged_in):  # the damaged subset last: what it finds is recorded
        code, out, _ = main_cli(["check", "--read-data-subset", spec, "--json"])
        results[spec] = (code, json_out(out))
    assert results["1/2"][1]["packs_read"] + results["2/2"][1]["packs_read"] == packs
    assert results[damaged_in][0] == 4 and results[damaged_in][1]["damaged_snapshots"] == {ts["s2"]: ["src/b.bin"]}
    assert results[other][0] == 0
    code, out, _ = main_cli(["check", "--read-data-subset", "50%", "--json"])
    assert code in (0, 4) and json_out(out)["packs_read"] in (round(packs / 2), round((packs - 1) / 2))
    code, out, _ = main_cli(["check", "--read-data-subset", "100%", "--json"])
    assert code == 4 and json_out(out)["packs_read"] >= packs - 1  # the recorded blob is no longer indexed
    for bad in ("0/2", "3/2", "0%", "150%", "x"):
        code, _, _ = main_cli(["check", "--read-data-subset", bad])
        assert code == 2, bad


def test_repair_index_after_index_files_and_cache_are_lost(two_snapshots: dict[str, Any]) -> None:
    import shutil

    ts = two_snapshots
    root, tmp = ts["root"], ts["tmp"]
    for p in (root / "index").iterdir():
        p.unlink()
    shutil.rmtree(ts["cache"])
    code, out, _ = main_cli(["check", "--json"])
    assert code == 4 and any(p.startswith("index/") for p in json_out(out)["problems"])
    code, out, err = main_cli(["repair", "index", "--json"])
    assert code == 0, err
    doc = json_out(out)
    assert doc["damaged_packs"] == [] and doc["packs_indexed"] == len(_packs_of(root))
    code, out, err = main_cli(["check", "--read-data", "--json"])
    assert code == 0, out + err
    for sid, fp in ((ts["s1"], ts["fp1"]), (ts["s2"], ts["fp2"])):
        target = tmp / f"restored-{sid[:8]}"
        code, _, err = main_cli(["restore", sid, "--target", str(target)])
        assert code == 0, err
        assert fingerprint(target / "src") == fp, fp_diff(fingerprint(target / "src"), fp)


# ============================================================================ prune


def _data_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in (root / "data").rglob("*") if p.is_file())


def test_prune_keeps_what_kept_snapshots_need_and_frees_the_rest(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    repo = new_repo(LocalBackend(root), cache_dir=tmp_path / "cache", pack_size=RETENTION_PACK_SIZE)
    src = tmp_path / "src"
    write(src / "shared.bin", os.urandom(400_000), mtime_ns=OLD_NS)
    (src / "empty").mkdir()
    os.symlink("shared.bin", src / "link")
    fps: dict[str, Any] = {}
    ids = []
    for i in range(6):
        write(src / "unique.bin", os.urandom(500_000))
        write(src / f"log/{i}.txt", f"entry {i}\n".encode() * 100)
        res = run_backup(repo, {"src": src}, tags=["keep"] if i == 0 else [], forked=False)
        assert res.snapshot_id
        ids.append(res.snapshot_id)
        fps[res.snapshot_id] = fingerprint(src)
    before = _data_bytes(root)
    dry = prune.prune(repo, reporter=Reporter(), dry_run=True)
    assert dry.dry_run is True and dry.packs_deleted == 0
    assert _data_bytes(root) == before
    out = prune.forget(repo, Policy(keep_last=2, keep_tags=("keep",)))
    assert sorted(f.id for f in out.forgotten) == sorted(ids[1:4])
    assert not any((root / "snapshots" / i).exists() for i in ids[1:4])
    res = prune.prune(repo, reporter=Reporter())
    after = _data_bytes(root)
    assert res.packs_deleted >= 3
    assert before - after >= 3 * 450_000, (before, after)  # three forgotten unique.bin versions
    assert set(repo.state.snapshots) == {ids[0], ids[4], ids[5]}
    assert check(repo, read_data=True, reporter=Reporter()).ok
    fresh = open_repo(LocalBackend(root))
    for sid in (ids[0], ids[4], ids[5]):
        target = tmp_path / f"r-{sid[:8]}"
        restore_all(fresh, sid, target)
        assert fingerprint(target / "src") == fps[sid], fp_diff(fingerprint(target / "src"), fps[sid])
    # a second prune finds nothing to do
    again = prune.prune(repo, reporter=Reporter())
    assert again.packs_deleted == again.packs_repacked == 0 and _data_bytes(root) == after


def _packs_of(root: Path) -> set[str]:
    return {p.name for p in (root / "data").rglob("*") if p.is_file()}


def test_prune_repacks_a_pack_that_is_mostly_garbage(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    repo = new_repo(LocalBackend(root), cache_dir=tmp_path / "cache", pack_size=RETENTION_PACK_SIZE)
    src = tmp_path / "src"
    for i in range(12):
        write(src / f"d/f{i:02d}.bin", os.urandom(15_000))
    run_backup(repo, {"src": src}, forked=False)
    keep_blob = _blob_of(repo, repo.state.snapshots[0], "src/d/f00.bin")
    old_pack = repo.index[keep_blob].pack
    assert sum(1 for r in repo.index.values() if r.pack == old_pack) >= 12  # all files share one pack
    for i in range(1, 12):
        (src / f"d/f{i:02d}.bin").unlink()
    s2 = run_backup(repo, {"src": src}, forked=False).snapshot_id
    assert s2
    fp2 = fingerprint(src)
    first = repo.state.snapshots[0]
    assert prune.forget(repo, Policy(keep_last=1)).forgotten == []  # the last snapshot before a shrink stays
    repo.forget_snapshots([first])  # forgotten by id, as a user who means it would
    packs_before, bytes_before = _packs_of(root), _data_bytes(root)
    res = prune.prune(repo, reporter=Reporter(), max_unused=0.1)
    assert res.packs_repacked >= 1 and res.new_packs >= 1
    assert old_pack not in _packs_of(root)
    assert _packs_of(root) != packs_before
    repo.load_index()
    assert repo.index[keep_blob].pack != old_pack and repo.index[keep_blob].pack in _packs_of(root)
    assert bytes_before - _data_bytes(root) >= 10 * 15_000
    assert check(repo, read_data=True, reporter=Reporter()).ok
    target = tmp_path / "restored"
    restore_all(open_repo(LocalBackend(root)), s2, target)
    assert fingerprint(target / "src") == fp2


def _stray_pack(repo: Repository) -> str:
    """A crashed backup's leftover: a valid pack that no index names."""
    w = repo.pack_writer()
    w.store(BLOB_DATA, os.urandom(20_000))
    w.flush()
    (pack,) = w.packs
    return pack


def test_unindexed_pack_survives_within_the_grace_period(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    repo = new_repo(LocalBackend(root), cache_dir=tmp_path / "cache", pack_size=RETENTION_PACK_SIZE)
    write(tmp_path / "src/x", b"x" * 1000)
    run_backup(repo, {"src": tmp_path / "src"}, forked=False)
    stray = _stray_pack(repo)
    for _ in range(2):
        res = prune.prune(repo, reporter=Reporter(), unindexed_grace=3600)
        assert res.unindexed_deleted == 0
        assert (root / pack_name(stray)).exists()
    # seen for longer than a short grace: gone on the next prune
    time.sleep(0.4)
    res = prune.prune(repo, reporter=Reporter(), unindexed_grace=0.3)
    assert res.unindexed_deleted == 1 and not (root / pack_name(stray)).exists()
    stray2 = _stray_pack(repo)
    res = prune.prune(repo, reporter=Reporter(), unindexed_grace=0.5)
    assert res.unindexed_deleted == 0 and (root / pack_name(stray2)).exists()  # first seen just now
    time.sleep(0.6)
    res = prune.prune(repo, reporter=Reporter(), unindexed_grace=0.5)
    assert res.unindexed_deleted == 1 and not (root / pack_name(stray2)).exists()
    assert check(repo, read_data=True, reporter=Reporter()).ok


def test_unindexed_pack_deleted_at_once_with_zero_grace(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    repo = new_repo(LocalBackend(root), cache_dir=tmp_path / "cache", pack_size=RETENTION_PACK_SIZE)
    write(tmp_path / "src/x", b"x" * 1000)
    run_backup(repo, {"src": tmp_path / "src"}, forked=False)
    stray = _stray_pack(repo)
    stray_bytes = (root / pack_name(stray)).stat().st_size
    before = stored_bytes(repo.backend)
    res = prune.prune(repo, reporter=Reporter(), unindexed_grace=0)
    assert res.unindexed_deleted == 1 and not (root / pack_name(stray)).exists()
    assert stored_bytes(repo.backend) <= before - stray_bytes + 2000  # (the index is rewritten)
    assert check(repo, read_data=True, reporter=Reporter()).ok


# ============================================================================ bugs


def _pack_garbage(repo: Repository, live: set[bytes]) -> dict[str, float]:
    """For every stored pack: the fraction of its blob bytes (from its own header) that no snapshot needs."""
    out = {}
    for name in repo.backend.list("data/"):
        pack = name.rsplit("/", 1)[-1]
        refs = codec.parse_pack_header(repo.cipher, pack, repo.backend.get(name))
        total = sum(r.length for r in refs.values())
        dead = sum(r.length for b, r in refs.items() if b not in live)
        out[pack] = dead / total
    return out


def test_kept_packs_garbage_never_exceeds_max_unused_across_prunes(tmp_path: Path) -> None:
    repo = new_repo(LocalBackend(tmp_path / "repo"), cache_dir=tmp_path / "cache", pack_size=RETENTION_PACK_SIZE)
    src = tmp_path / "src"
    for i in range(20):
        write(src / f"d/f{i:02d}.bin", os.urandom(10_000))
    run_backup(repo, {"src": src}, forked=False)
    worst = 0.0
    for i in range(19, 0, -1):  # remove one file per round; each round's new garbage is < 10% of what is indexed
        (src / f"d/f{i:02d}.bin").unlink()
        run_backup(repo, {"src": src}, forked=False)
        prune.forget(repo, Policy(keep_last=1))
        prune.prune(repo, reporter=Reporter(), max_unused=0.1)
        repo.refresh()
        repo.load_index()
        garbage = _pack_garbage(repo, prune.mark_live(repo))
        worst = max(worst, max(garbage.values()))
    print(f"\n[garbage] worst fraction of garbage left in a kept pack: {worst:.2f}")
    assert worst <= 0.1 + 0.02  # a little slack for the tree blobs that share the pack


def test_prune_removes_stale_temporaries_of_killed_writes(tmp_path: Path) -> None:
    """A write killed between its temp file and its rename leaves ``.tmp-*``; prune removes old ones."""
    backend = LocalBackend(tmp_path / "repo")
    repo = new_repo(backend, cache_dir=tmp_path / "cache", pack_size=RETENTION_PACK_SIZE)
    write(tmp_path / "src/a.txt", b"a")
    run_backup(repo, {"src": tmp_path / "src"}, forked=False)
    stale = tmp_path / "repo/data/ab/.tmp-0123456789abcdef"
    fresh = tmp_path / "repo/data/ab/.tmp-fedcba9876543210"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"half a pack")
    fresh.write_bytes(b"a pack being written")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    res = prune.prune(repo, reporter=Reporter(), unindexed_grace=3600)
    assert res.temporaries_removed == 1
    assert not stale.exists() and fresh.exists()
