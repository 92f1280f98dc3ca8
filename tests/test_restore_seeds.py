"""A restore describes the files it wrote for the file cache (the seeds of the next backup) when
asked, and only then: a restore elsewhere (``--target``) lstats nothing for a cache it never fills."""

from __future__ import annotations

from pathlib import Path

from openclaw_backup.repository import Repository
from tests.support.repos import new_repo, run_backup, run_restore
from tests.support.trees import write


def _repo_with(tmp: Path) -> tuple[Repository, Path]:
    src = tmp / "src"
    for i in range(6):
        write(src / f"d{i % 2}" / f"f{i}.txt", f"file {i}\n".encode() * (i + 1))
    repo = new_repo()
    run_backup(repo, {"home": src})
    return repo, src


def test_a_restore_seeds_every_file_it_wrote_by_default(tmp_path: Path) -> None:
    repo, _ = _repo_with(tmp_path)
    res = run_restore(repo, "latest", {"home": tmp_path / "out" / "home"})
    assert res.files == 6
    assert sorted(Path(p).name for p in res.seeds) == [f"f{i}.txt" for i in range(6)]
    for path, cached in res.seeds.items():
        st = Path(path).lstat()
        assert cached.sig.startswith(f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}:")  # as written


def test_a_restore_without_seeds_restores_and_counts_the_same_but_seeds_nothing(tmp_path: Path) -> None:
    repo, _ = _repo_with(tmp_path)
    res = run_restore(repo, "latest", {"home": tmp_path / "out" / "home"}, seeds=False)
    assert res.files == 6 and res.bytes == sum(len(f"file {i}\n") * (i + 1) for i in range(6))
    assert res.seeds == {}
    assert (tmp_path / "out" / "home" / "d1" / "f5.txt").read_bytes() == b"file 5\n" * 6
