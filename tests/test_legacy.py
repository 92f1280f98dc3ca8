"""The legacy reader against repositories made with the real tools (tar, gzip, split, openssl)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openclaw_backup.errors import BackupError, IntegrityError, NotFoundError, UnsafeRestoreError, WrongPasswordError
from openclaw_backup.legacy import (
    ArchiveNotFoundError,
    BrokenChainError,
    ChecksumMismatchError,
    LegacyError,
    LegacyFormatError,
    PasswordRequiredError,
    UnsafeArchiveError,
    extract_chain,
    find_archive,
    find_latest,
    list_backups,
    load_backup,
    resolve_chain,
)
from tests.support.legacy import DictStore, LegacyRepo, crafted_tar, member, run, stamp_time
from tests.support.trees import tar_fingerprint, write_tree

PW = "correct horse battery staple"


@pytest.fixture
def repo(tmp_path: Path) -> LegacyRepo:
    return LegacyRepo(tmp_path / "repo", tmp_path / "scratch")


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """An agent home as the legacy script staged it: one folder per archive root, one extra file."""
    src = tmp_path / "src"
    write_tree(
        src,
        {
            "openclaw-state/openclaw.json": '{"agent": "x"}',
            "openclaw-state/workspace/notes.md": "# notes\n",
            "openclaw-state/credentials/token": "s3cret",
            "openclaw-state/blob.bin": os.urandom(20_000),
            "openclaw-state/empty-dir/.keep": "",
            "root-config/gh/hosts.yml": "github.com: {}\n",
            "my-extra-file": "extra\n",
        },
    )
    (src / "openclaw-state/credentials/token").chmod(0o600)
    (src / "openclaw-state/credentials").chmod(0o700)
    (src / "openclaw-state/link-to-notes").symlink_to("workspace/notes.md")
    for d in ("openclaw-state/credentials", "openclaw-state/workspace", "openclaw-state"):
        os.utime(src / d, (1_600_000_000, 1_600_000_000))
    return src


def restore(repo: LegacyRepo, staging: Path, *, password: str | None = None, warnings: list[str] | None = None):
    latest = find_latest(repo.store, prefix=repo.prefix)
    assert latest is not None
    chain = resolve_chain(repo.store, latest, prefix=repo.prefix)
    out = extract_chain(
        repo.store,
        chain,
        password=password,
        staging_dir=staging,
        warn=(warnings.append if warnings is not None else None),
    )
    return chain, out


def test_full_only_round_trip_keeps_modes_mtimes_symlinks(repo: LegacyRepo, source: Path, tmp_path: Path) -> None:
    name = repo.backup("20260425-013501", source)
    warnings: list[str] = []
    chain, out = restore(repo, tmp_path / "stage", warnings=warnings)
    assert [b.archive_name for b in chain] == [name]
    assert warnings == []
    assert set(out) == {"openclaw-state", "root-config", "my-extra-file"}
    assert out["my-extra-file"].read_text() == "extra\n"
    assert tar_fingerprint(out["openclaw-state"]) == tar_fingerprint(source / "openclaw-state")
    assert os.readlink(out["openclaw-state"] / "link-to-notes") == "workspace/notes.md"
    assert not list((tmp_path / "stage").glob(".legacy-work-*"))


def test_full_plus_two_incrementals_overlay(repo: LegacyRepo, source: Path, tmp_path: Path) -> None:
    full = repo.backup("20260425-010000", source)
    write_tree(
        source, {"openclaw-state/openclaw.json": '{"agent": "y"}', "openclaw-state/new/a.txt": "a"}, mtime=1_700_001_000
    )
    inc1 = repo.backup(
        "20260425-013000",
        source,
        members=["openclaw-state/openclaw.json", "openclaw-state/new/a.txt"],
        backup_type="incremental",
        parent=repo.meta_path(full),
    )
    write_tree(source, {"openclaw-state/new/a.txt": "a2", "root-config/gh/hosts.yml": "v2"}, mtime=1_700_002_000)
    inc2 = repo.backup(
        "20260425-020000",
        source,
        members=["openclaw-state/new/a.txt", "root-config/gh/hosts.yml"],
        backup_type="incremental",
        parent=repo.meta_path(inc1),
    )
    chain, out = restore(repo, tmp_path / "stage")
    assert [b.archive_name for b in chain] == [full, inc1, inc2]
    for root in ("openclaw-state", "root-config"):
        assert tar_fingerprint(out[root], dir_mtimes=False) == tar_fingerprint(source / root, dir_mtimes=False)


def test_split_volumes_with_checksum(repo: LegacyRepo, source: Path, tmp_path: Path) -> None:
    name = repo.backup("20260425-013501", source, split_size=4096)
    backup = find_latest(repo.store, prefix="backups")
    assert backup is not None and len(backup.volumes) >= 4
    assert backup.volumes[0] == f"backups/{name}.part-aa"
    _, out = restore(repo, tmp_path / "stage")
    assert tar_fingerprint(out["openclaw-state"]) == tar_fingerprint(source / "openclaw-state")


def test_old_split_without_checksum_warns(repo: LegacyRepo, source: Path, tmp_path: Path) -> None:
    repo.backup("20260425-013501", source, split_size=4096, version="2.0", checksum=False)
    warnings: list[str] = []
    _, out = restore(repo, tmp_path / "stage", warnings=warnings)
    assert len(warnings) == 1 and "no checksum" in warnings[0]
    assert tar_fingerprint(out["openclaw-state"]) == tar_fingerprint(source / "openclaw-state")


def test_v1_meta_lacking_fields_discovers_parts(repo: LegacyRepo, source: Path, tmp_path: Path) -> None:
    name = repo.backup("20260425-013501", source, split_size=8192, version="1.0", naive_time=True)
    backup = find_latest(repo.store)
    assert backup is not None
    assert backup.backup_type == "full" and backup.chain_id is None and backup.checksum is None
    assert backup.created_at == stamp_time("20260425-013501") and backup.created_at.tzinfo is not None
    assert backup.volumes[0] == f"backups/{name}.part-aa"
    _, out = restore(repo, tmp_path / "stage", warnings=[])
    assert tar_fingerprint(out["openclaw-state"]) == tar_fingerprint(source / "openclaw-state")


def test_encrypted(repo: LegacyRepo, source: Path, tmp_path: Path) -> None:
    name = repo.backup("20260425-013501", source, password=PW)
    assert name.endswith(".tar.gz.enc")
    assert repo.path(name).read_bytes().startswith(b"Salted__")
    _, out = restore(repo, tmp_path / "stage", password=PW)
    assert tar_fingerprint(out["openclaw-state"]) == tar_fingerprint(source / "openclaw-state")


@pytest.mark.parametrize("password", ["wrong password", None])
def test_encrypted_wrong_or_missing_password(
    repo: LegacyRepo, source: Path, tmp_path: Path, password: str | None
) -> None:
    repo.backup("20260425-013501", source, password=PW)
    staging = tmp_path / "stage"
    with pytest.raises(WrongPasswordError) as info:
        restore(repo, staging, password=password)
    assert info.value.exit_code == 12 and info.value.hint
    if password is None:
        assert isinstance(info.value, PasswordRequiredError)
    assert list(staging.iterdir()) == []


def test_encrypted_and_split(repo: LegacyRepo, source: Path, tmp_path: Path) -> None:
    repo.backup("20260425-013501", source, password=PW, split_size=5000)
    _, out = restore(repo, tmp_path / "stage", password=PW)
    assert tar_fingerprint(out["openclaw-state"]) == tar_fingerprint(source / "openclaw-state")


def test_encrypted_incremental_chain(repo: LegacyRepo, source: Path, tmp_path: Path) -> None:
    full = repo.backup("20260425-010000", source, password=PW, split_size=6000)
    write_tree(source, {"openclaw-state/openclaw.json": "changed"}, mtime=1_700_005_000)
    repo.backup(
        "20260425-013000",
        source,
        members=["openclaw-state/openclaw.json"],
        backup_type="incremental",
        parent=repo.meta_path(full),
        password=PW,
    )
    _, out = restore(repo, tmp_path / "stage", password=PW)
    assert (out["openclaw-state"] / "openclaw.json").read_text() == "changed"


def _chain_fixture(repo: LegacyRepo, source: Path) -> dict[str, str]:
    """Chain A (full, inc with parent, inc with null parent, inc after it) and an unrelated chain B."""
    names = {"A0": repo.backup("20260425-010000", source, chain_id="aaaa0000")}
    write_tree(source, {"openclaw-state/openclaw.json": "A1"}, mtime=1_700_001_000)
    one = ["openclaw-state/openclaw.json"]
    names["A1"] = repo.backup(
        "20260425-011000", source, members=one, backup_type="incremental", chain_id="aaaa0000",
        parent=repo.meta_path(names["A0"]),
    )  # fmt: skip
    write_tree(source, {"openclaw-state/openclaw.json": "A2"}, mtime=1_700_002_000)
    names["A2"] = repo.backup(
        "20260425-012000", source, members=one, backup_type="incremental", chain_id="aaaa0000", parent=None
    )
    write_tree(source, {"openclaw-state/openclaw.json": "B0"}, mtime=1_700_003_000)
    names["B0"] = repo.backup("20260425-013000", source, chain_id="bbbb0000")
    write_tree(source, {"openclaw-state/openclaw.json": "A3"}, mtime=1_700_004_000)
    names["A3"] = repo.backup(
        "20260425-014000", source, members=one, backup_type="incremental", chain_id="aaaa0000",
        parent=repo.meta_path(names["A2"]),
    )  # fmt: skip
    write_tree(source, {"openclaw-state/openclaw.json": "B1"}, mtime=1_700_005_000)
    names["B1"] = repo.backup(
        "20260425-015000", source, members=one, backup_type="incremental", chain_id="bbbb0000", parent=None
    )
    return names


def test_null_parent_resolved_by_chain_id(repo: LegacyRepo, source: Path, tmp_path: Path) -> None:
    n = _chain_fixture(repo, source)
    a2 = find_archive(repo.store, prefix="backups", archive_name=n["A2"])
    assert [b.archive_name for b in resolve_chain(repo.store, a2)] == [n["A0"], n["A1"], n["A2"]]
    a3 = find_archive(repo.store, prefix="backups", archive_name=n["A3"])
    chain = resolve_chain(repo.store, a3)
    assert [b.archive_name for b in chain] == [n["A0"], n["A1"], n["A2"], n["A3"]]
    out = extract_chain(repo.store, chain, password=None, staging_dir=tmp_path / "stage")
    assert (out["openclaw-state"] / "openclaw.json").read_text() == "A3"
    b1 = find_latest(repo.store)
    assert b1 is not None
    assert [b.archive_name for b in resolve_chain(repo.store, b1)] == [n["B0"], n["B1"]]


def test_parent_without_prefix(repo: LegacyRepo, source: Path, tmp_path: Path) -> None:
    full = repo.backup("20260425-010000", source)
    write_tree(source, {"my-extra-file": "v2"}, mtime=1_700_009_000)
    repo.backup(
        "20260425-013000", source, members=["my-extra-file"], backup_type="incremental", parent=f"{full}.meta.json"
    )
    chain, out = restore(repo, tmp_path / "stage")
    assert chain[0].archive_name == full
    assert out["my-extra-file"].read_text() == "v2"


def test_empty_prefix(tmp_path: Path, source: Path) -> None:
    repo = LegacyRepo(tmp_path / "repo", tmp_path / "scratch", prefix="")
    full = repo.backup("20260425-010000", source)
    repo.backup(
        "20260425-013000", source, members=["my-extra-file"], backup_type="incremental", parent=f"{full}.meta.json"
    )
    chain, _ = restore(repo, tmp_path / "stage")
    assert len(chain) == 2 and chain[0].meta_path == f"{full}.meta.json"


def test_missing_link_is_broken_chain(repo: LegacyRepo, source: Path, tmp_path: Path) -> None:
    full = repo.backup("20260425-010000", source)
    inc1 = repo.backup("20260425-011000", source, members=["my-extra-file"], backup_type="incremental",
                       parent=repo.meta_path(full))  # fmt: skip
    repo.backup(
        "20260425-012000", source, members=["my-extra-file"], backup_type="incremental", parent=repo.meta_path(inc1)
    )
    repo.path(inc1 + ".meta.json").unlink()
    latest = find_latest(repo.store)
    assert latest is not None
    with pytest.raises(BrokenChainError) as info:
        resolve_chain(repo.store, latest)
    assert inc1 in str(info.value) and info.value.exit_code == 4


def test_missing_full_of_null_parent_chain(repo: LegacyRepo, source: Path) -> None:
    n = _chain_fixture(repo, source)
    repo.path(n["A0"] + ".meta.json").unlink()
    with pytest.raises(BrokenChainError, match="aaaa0000"):
        resolve_chain(repo.store, find_archive(repo.store, archive_name=n["A3"]))


def test_missing_volume_and_parent_loop(repo: LegacyRepo, source: Path, tmp_path: Path) -> None:
    name = repo.backup("20260425-010000", source, split_size=4096, checksum=False)
    repo.path(name + ".part-ab").unlink()
    latest = find_latest(repo.store)
    assert latest is not None
    with pytest.raises(BrokenChainError, match="part-ab"):
        extract_chain(repo.store, [latest], password=None, staging_dir=tmp_path / "stage")
    assert list((tmp_path / "stage").iterdir()) == []
    a = repo.backup("20260425-020000", source, backup_type="incremental", parent="backups/x.tar.gz.meta.json")
    b = repo.backup("20260425-021000", source, backup_type="incremental", parent=repo.meta_path(a))
    repo.edit_meta(a, parent=repo.meta_path(b))
    with pytest.raises(BrokenChainError, match="loop"):
        resolve_chain(repo.store, load_backup(repo.store, repo.meta_path(b)))


@pytest.mark.parametrize("split", [None, 4096])
def test_checksum_mismatch(repo: LegacyRepo, source: Path, tmp_path: Path, split: int | None) -> None:
    name = repo.backup("20260425-010000", source, split_size=split)
    victim = repo.path(name + (".part-ab" if split else ""))
    data = bytearray(victim.read_bytes())
    data[100] ^= 0x01
    victim.write_bytes(bytes(data))
    staging = tmp_path / "stage"
    with pytest.raises(IntegrityError) as info:
        restore(repo, staging)
    assert isinstance(info.value, ChecksumMismatchError)
    assert list(staging.iterdir()) == []


Entries = list[tuple[tarfile.TarInfo, bytes | None]]
HOSTILE: dict[str, Callable[[Path], Entries]] = {
    "absolute": lambda outside: [(member(str(outside / "abs.txt")), b"pwned")],
    "dotdot": lambda outside: [(member("openclaw-state/../../outside/dd.txt"), b"pwned")],
    "through-symlink": lambda outside: [
        (member("openclaw-state/link", tarfile.SYMTYPE, linkname="../../outside"), None),
        (member("openclaw-state/link/evil.txt"), b"pwned"),
    ],
    "through-abs-symlink": lambda outside: [
        (member("openclaw-state/link", tarfile.SYMTYPE, linkname=str(outside)), None),
        (member("openclaw-state/link/evil.txt"), b"pwned"),
    ],
    "char-device": lambda outside: [(member("openclaw-state/null", tarfile.CHRTYPE), None)],
    "block-device": lambda outside: [(member("openclaw-state/sda", tarfile.BLKTYPE), None)],
    "fifo": lambda outside: [(member("openclaw-state/fifo", tarfile.FIFOTYPE), None)],
    "hardlink-other-root": lambda outside: [
        (member("root-ssh/id_ed25519"), b"key"),
        (member("openclaw-state/key", tarfile.LNKTYPE, linkname="root-ssh/id_ed25519"), None),
    ],
    "hardlink-absolute": lambda outside: [(member("openclaw-state/p", tarfile.LNKTYPE, linkname="/etc/passwd"), None)],
    "hardlink-not-yet-extracted": lambda outside: [
        (member("openclaw-state/a", tarfile.LNKTYPE, linkname="openclaw-state/b"), None),
        (member("openclaw-state/b"), b"b"),
    ],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_escaping_members_refused(repo: LegacyRepo, tmp_path: Path, case: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    good: Entries = [(member("openclaw-state/fine.txt"), b"fine")]  # extracted first: must not survive
    tar = crafted_tar(tmp_path / "hostile.tar", good + HOSTILE[case](outside))
    repo.backup("20260425-010000", tmp_path, tar_file=tar)
    staging = tmp_path / "stage"
    with pytest.raises(UnsafeArchiveError) as info:
        restore(repo, staging)
    assert isinstance(info.value, UnsafeRestoreError)
    assert list(outside.iterdir()) == []
    assert list(staging.iterdir()) == []


def test_symlink_from_earlier_archive_is_not_followed(repo: LegacyRepo, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    tar1 = crafted_tar(
        tmp_path / "t1.tar", [(member("openclaw-state/d", tarfile.SYMTYPE, linkname=str(outside)), None)]
    )
    full = repo.backup("20260425-010000", tmp_path, tar_file=tar1)
    tar2 = crafted_tar(tmp_path / "t2.tar", [(member("openclaw-state/d/x.txt"), b"pwned")])
    repo.backup("20260425-011000", tmp_path, tar_file=tar2, backup_type="incremental", parent=repo.meta_path(full))
    with pytest.raises(UnsafeArchiveError, match="symlink"):
        restore(repo, tmp_path / "stage")
    assert list(outside.iterdir()) == []


def test_symlinks_kept_and_replaced_not_written_through(repo: LegacyRepo, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    entries = [
        (member("openclaw-state/abs", tarfile.SYMTYPE, linkname="/etc/passwd"), None),
        (member("openclaw-state/s", tarfile.SYMTYPE, linkname=str(outside / "t.txt")), None),
        (member("openclaw-state/s"), b"regular now"),
        (member("openclaw-state/f", mode=0o640), b"hello"),
        (member("openclaw-state/h", tarfile.LNKTYPE, linkname="openclaw-state/f"), None),
        (member("./root-config/", tarfile.DIRTYPE, mode=0o700), None),
    ]
    repo.backup("20260425-010000", tmp_path, tar_file=crafted_tar(tmp_path / "t.tar", entries))
    _, out = restore(repo, tmp_path / "stage")
    state = out["openclaw-state"]
    assert os.readlink(state / "abs") == "/etc/passwd"
    assert not (state / "s").is_symlink() and (state / "s").read_bytes() == b"regular now"
    assert (state / "h").read_bytes() == b"hello" and (state / "h").stat().st_ino == (state / "f").stat().st_ino
    assert (state / "f").stat().st_mode & 0o777 == 0o640
    assert out["root-config"].stat().st_mode & 0o777 == 0o700
    assert list(outside.iterdir()) == []


def test_dot_rooted_tar_and_empty_incremental(repo: LegacyRepo, source: Path, tmp_path: Path) -> None:
    """`tar -C dir .` names members ./x; an incremental with nothing in it is a tar of zero blocks."""
    tar = tmp_path / "dot.tar"
    run("tar", "-cf", tar, "-C", source, ".")
    full = repo.backup("20260425-010000", source, tar_file=tar)
    empty = tmp_path / "empty.tar"
    run("tar", "-cf", empty, "-T", "/dev/null")
    repo.backup("20260425-011000", source, tar_file=empty, backup_type="incremental", parent=repo.meta_path(full))
    chain, out = restore(repo, tmp_path / "stage")
    assert len(chain) == 2
    assert tar_fingerprint(out["openclaw-state"]) == tar_fingerprint(source / "openclaw-state")


def test_restore_archive_by_name(repo: LegacyRepo, source: Path, tmp_path: Path) -> None:
    old = repo.backup("20260425-010000", source)
    write_tree(source, {"my-extra-file": "newer"}, mtime=1_700_009_000)
    repo.backup("20260425-020000", source)
    for spelling in (old, old + ".meta.json", f"backups/{old}", old.removesuffix(".tar.gz")):
        assert find_archive(repo.store, prefix="backups", archive_name=spelling).archive_name == old
    chain = resolve_chain(repo.store, find_archive(repo.store, prefix="backups", archive_name=old))
    out = extract_chain(repo.store, chain, password=None, staging_dir=tmp_path / "stage")
    assert out["my-extra-file"].read_text() == "extra\n"
    with pytest.raises(ArchiveNotFoundError) as info:
        find_archive(repo.store, prefix="backups", archive_name="openclaw-backup-19990101-000000.tar.gz")
    assert isinstance(info.value, NotFoundError)


def test_no_latest_pointer_means_nothing_to_restore(repo: LegacyRepo, source: Path) -> None:
    assert find_latest(repo.store) is None
    repo.backup("20260425-010000", source, set_latest=False)
    assert find_latest(repo.store) is None


def test_latest_pointer_to_missing_backup(repo: LegacyRepo, source: Path) -> None:
    repo.set_latest("openclaw-backup-20260425-010000.tar.gz")
    with pytest.raises(BrokenChainError, match=r"latest-backup\.json"):
        find_latest(repo.store)


def test_list_backups_sorted_ignores_checkpoints(repo: LegacyRepo, source: Path) -> None:
    b = repo.backup("20260425-020000", source)
    a = repo.backup("20260425-010000", source, version="1.0", naive_time=True)
    repo.path("openclaw-backup-20260425-030000.tar.gz.checkpoint.json").write_text('{"status": "uploading"}')
    repo.path("openclaw-backup-20260425-040000.tar.gz.meta.json").write_text("{not json")
    with pytest.raises(LegacyFormatError):
        list_backups(repo.store)
    skipped: list[str] = []
    assert [x.archive_name for x in list_backups(repo.store, warn=skipped.append)] == [a, b]
    assert len(skipped) == 1


def test_unwritable_member_is_a_typed_error(repo: LegacyRepo, tmp_path: Path) -> None:
    tar = crafted_tar(
        tmp_path / "t.tar", [(member("openclaw-state/ok"), b"1"), (member("openclaw-state/" + "n" * 300), b"2")]
    )
    repo.backup("20260425-010000", tmp_path, tar_file=tar)
    with pytest.raises(LegacyError, match="name too long"):
        restore(repo, tmp_path / "stage")
    assert list((tmp_path / "stage").iterdir()) == []


def test_staging_must_be_empty(repo: LegacyRepo, source: Path, tmp_path: Path) -> None:
    repo.backup("20260425-010000", source)
    staging = tmp_path / "stage"
    staging.mkdir()
    (staging / "mine").write_text("keep")
    with pytest.raises(LegacyError, match="not empty"):
        restore(repo, staging)
    assert (staging / "mine").read_text() == "keep"


# -- hostile bytes: always a typed error ---------------------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
_FIELDS = ["version", "backup_type", "chain_id", "parent", "volumes", "is_split", "checksum", "encrypted",
           "created_at_utc", "last_backup_time"]  # fmt: skip
_META_BYTES = st.binary(max_size=300) | st.dictionaries(
    st.sampled_from(_FIELDS), _JSON | st.sampled_from(["full", "incremental", "2026-04-25T01:00:00"])
).map(lambda d: json.dumps(d).encode())
META = "backups/openclaw-backup-20260425-010000.tar.gz.meta.json"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(meta=_META_BYTES, pointer=st.sampled_from([None, b"{}", b"[1]", json.dumps({"latest": META}).encode()]))
def test_arbitrary_metadata_gives_typed_errors(meta: bytes, pointer: bytes | None) -> None:
    files = {META: meta, "backups/openclaw-backup-20260425-010000.tar.gz": b"x"}
    if pointer is not None:
        files["latest-backup.json"] = pointer
    store = DictStore(files)
    try:
        latest = find_latest(store)
        if latest is not None:
            resolve_chain(store, latest)
        list_backups(store)
    except BackupError:
        pass


def _valid_tar_gz() -> bytes:
    with tempfile.TemporaryDirectory() as d:
        tar = crafted_tar(Path(d) / "t.tar", [(member("openclaw-state/a.txt"), b"hello" * 50)])
        return gzip.compress(tar.read_bytes())


_VALID = _valid_tar_gz()


def _mutate(data: bytes, at: int, byte: int) -> bytes:
    at %= len(data)
    return data[:at] + bytes([byte]) + data[at + 1 :]


_ARCHIVE_BYTES = (
    st.binary(max_size=600)
    | st.binary(max_size=1500).map(gzip.compress)
    | st.builds(_mutate, st.just(_VALID), st.integers(0, len(_VALID)), st.integers(0, 255))
    | st.integers(0, len(_VALID)).map(lambda n: _VALID[:n])
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_ARCHIVE_BYTES, encrypted=st.booleans())
def test_arbitrary_archive_gives_typed_errors(data: bytes, encrypted: bool) -> None:
    name = "openclaw-backup-20260425-010000.tar.gz" + (".enc" if encrypted else "")
    meta = {"backup_type": "full", "encrypted": encrypted, "volumes": [name],
            "checksum": "sha256:" + hashlib.sha256(data).hexdigest()}  # fmt: skip
    store = DictStore({f"backups/{name}": data, f"backups/{name}.meta.json": json.dumps(meta).encode()})
    with tempfile.TemporaryDirectory() as d:
        staging = Path(d) / "stage"
        backup = load_backup(store, f"backups/{name}.meta.json")
        try:
            out = extract_chain(store, [backup], password="pw", staging_dir=staging)
        except BackupError:
            assert list(staging.iterdir()) == []
        else:
            assert all(p.parent == staging for p in out.values())
        assert sorted(os.listdir(d)) == ["stage"]
        shutil.rmtree(staging)
