"""Restoring a snapshot: verified, built beside the target, swapped in atomically.

For each **unit** (a root, or a path picked with ``--include``) the restorer:

1. builds the whole tree in a fresh **staging** directory next to the destination
   (``.<name>.openclaw-restore-<random>``), creating directories and files itself with
   ``O_EXCL|O_NOFOLLOW`` and symlinks last, so nothing is ever written through a link;
2. reads the trees a level at a time and then the data, each needed part of a pack once (merged
   ranged reads: :meth:`.Repository.read_views`, which authenticates and verifies every blob
   against its id, and hands a blob stored raw over as a view, not a copy), and writes each blob
   at its offsets; checks every file's size. Each read is a
   batch for :mod:`.batches` (worker threads, and a forked worker too: from a store far away it
   reads through a handle of its own, :meth:`.Repository.reopen_store`, with half the reads in
   flight); a file whose blobs all lie in one read is created, written and finished by that batch, a
   file spread over several reads is created first and finished once they all are done;
3. sets modes and mtimes (directories deepest first);
4. without ``delete`` (``restore --target`` unless ``--delete``), first carries into the staging
   tree what the destination holds and the snapshot lacks (:func:`merge_existing`), so nothing
   there is deleted;
5. swaps the staging tree with the destination in one ``renameat2(RENAME_EXCHANGE)``, or — where
   the file system lacks it — two renames with a recoverable ``.openclaw-old-`` name;
6. **keeps the state it replaced** beside the destination (``.<name>.pre-restore-<UTC time>``,
   :func:`kept_name`) so that the restore can be undone — or, without ``keep_replaced``, removes
   it — and removes any stale SQLite sidecars.

With ``partial``, a file whose data is missing or damaged in the repository (or a folder whose
listing is) is left out and named in :attr:`RestoreResult.failed`; every other file is restored.
Without it such damage fails the restore, naming the file, before anything is swapped in.

An interruption before step 4 leaves the old state and a staging directory that the next run
removes; an interruption inside the two-rename fallback is undone by :func:`recover` on the next
run. Tree names are validated by :func:`openclaw_backup.tree.decode_tree`; with ``--include``,
no existing symlink on the way to the destination is followed.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import fsmeta, memtune
from .batches import Progress, run_batches
from .errors import IntegrityError, NoSpaceError, NotFoundError, UnsafeRestoreError, UsageError
from .filecache import CachedFile, signature
from .index import BLOB_DATA, BlobRef
from .pack import ReadBatch
from .reporter import Reporter
from .repository import Repository
from .snapshot import Snapshot
from .sources import SIDECAR_SUFFIXES
from .swap import STAGING_MARK, _remove, holds_something, kept_name, merge_existing, recover, swap_into_place
from .tree import Node, check_node_name

_WANT_COST = 16 * 1024  # the work of one blob write (file creation, system calls), in bytes of data


def _read_umask() -> int:
    """The process umask, read without setting it (``os.umask`` would change it for every thread
    for a moment); when unknown, the most restrictive answer, which makes every file get its mode
    by ``fchmod``."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o777


@dataclass(frozen=True)
class RestoreOptions:
    """``destinations`` maps each root name to where it goes; built by the edges."""

    destinations: dict[str, Path]
    includes: list[str] = field(default_factory=list)
    workers: int = max(2, os.cpu_count() or 2)
    check_space: bool = True
    #: Keep what a restore replaces beside it (:func:`kept_name`), so the restore can be undone.
    keep_replaced: bool = True
    #: Remove what the destination holds and the snapshot does not (the destination becomes the
    #: snapshot exactly); without it, existing entries the snapshot lacks are left in place.
    delete: bool = True
    #: Share the reading, decoding and writing with a forked worker process (:mod:`.batches`; from
    #: a store far away it reads through a handle of its own, or does nothing when the store
    #: cannot give it one): None when there is enough to restore, True whenever the platform
    #: allows, False never.
    fork: bool | None = None
    #: Restore every file that can be restored, leaving out (and naming) those whose data is
    #: missing or damaged, rather than fail.
    partial: bool = False
    #: Describe every restored file for the file cache (:attr:`RestoreResult.seeds`, a ``lstat`` of
    #: each): off for a restore whose files no backup reads (``--target``), which has no use for them.
    seeds: bool = True


_PARTIAL_HINT = (
    "restore everything else with `--target DIR` (or in place with `--partial`); "
    "`openclaw-backup check --read-data` records the damage so that the next backup heals it"
)


@dataclass
class RestoreResult:
    snapshot_id: str
    restored: dict[str, str]
    files: int = 0
    bytes: int = 0
    seeds: dict[str, CachedFile] = field(default_factory=dict)
    kept: dict[str, str] = field(default_factory=dict)  # destination -> where the state it replaced is kept
    carried: int = 0  # existing entries left in place (without ``delete``)
    hardlinks: int = 0  # files restored as links to another restored file
    owners_not_restored: int = 0  # entries owned by someone else, restored as ours (not running as root)
    xattrs_not_restored: int = 0  # attributes outside ``user.*`` the process may not set
    failed: dict[str, str] = field(default_factory=dict)  # with ``partial``: path not restored -> why

    def to_json(self) -> dict[str, Any]:
        return {"snapshot": self.snapshot_id, "restored": self.restored, "files": self.files, "bytes": self.bytes,
                "kept": self.kept, "left_in_place": self.carried, "hardlinks": self.hardlinks,
                "owners_not_restored": self.owners_not_restored,
                "xattrs_not_restored": self.xattrs_not_restored, "failed": self.failed}  # fmt: skip


@dataclass
class _Unit:
    """One destination; entries are listed with their paths inside ``staging`` (plain strings)."""

    label: str
    node: Node
    dest: Path
    staging: Path = Path()
    files: list[tuple[str, Node]] = field(default_factory=list)
    dirs: list[tuple[str, Node]] = field(default_factory=list)  # parents before children
    links: list[tuple[str, Node]] = field(default_factory=list)
    hardlinks: list[tuple[str, str]] = field(default_factory=list)  # (path, the path it is a link to)
    kept: Path | None = None  # where the state this unit replaced was kept
    carried: int = 0


def _final(unit: _Unit, path: str) -> str:
    """Where ``path`` (inside the staging tree) ends up once swapped in."""
    return os.fspath(unit.dest) + path[len(os.fspath(unit.staging)) :]


_Want = tuple[bytes, BlobRef, tuple[str, int]]  # a blob's id, where it is, the path and offset it goes to
_Done = tuple[int, dict[str, int], dict[str, str]]  # a batch's files finished, spread files' bytes, failures


def _cost(batch: ReadBatch[tuple[str, int]]) -> int:
    return batch.end - batch.start + _WANT_COST * len(batch.wants)


def _write(fd: int, data: bytes | memoryview, offset: int, path: str) -> None:
    """Write ``data`` at ``offset``: a short write goes on, or fails (ENOSPC), never leaves a hole."""
    done = os.pwrite(fd, data, offset)
    while done < len(data):
        n = os.pwrite(fd, memoryview(data)[done:], offset + done)
        if n <= 0:
            raise OSError(errno.EIO, f"{path}: short write")
        done += n


class Restorer:
    def __init__(self, repo: Repository, snapshot: Snapshot, options: RestoreOptions, *, reporter: Reporter):
        self.repo = repo
        self.snap = snapshot
        self.opts = options
        self.reporter = reporter
        self._nodes: dict[str, Node] = {}  # the files with data to write, by path
        self._spread: set[str] = set()  # those whose blobs lie in more than one read
        self._failed: dict[str, str] = {}  # staging path -> why (``partial``)
        self._unit: _Unit | None = None
        self._umask = _read_umask()  # now, not at import: a process may change it
        self.meta = fsmeta.Applier()

    # ------------------------------------------------------------------ planning

    def _units(self) -> list[_Unit]:
        top = self.repo.read_tree(self.snap.tree)
        by_name = {n.name: n for n in top}
        units: list[_Unit] = []
        selections = self.opts.includes or list(by_name)
        for sel in selections:
            parts = [p for p in sel.strip("/").split("/") if p]
            if not parts or parts[0] not in by_name:
                raise UsageError(f"{sel!r} is not in snapshot {self.snap.id[:8]}", hint="see `openclaw-backup ls`")
            root = parts[0]
            if root not in self.opts.destinations:
                raise UsageError(f"no destination for root {root!r}", hint="pass --target DIR")
            node = by_name[root]
            dest = self.opts.destinations[root]
            if dest.is_symlink() and node.type != "symlink" and dest.exists():
                # a root that is a link (a state directory on a mounted volume): the link stays, the
                # restore goes into its target, and is staged beside the target (same file system)
                dest = Path(os.path.realpath(dest))
            for part in parts[1:]:
                check_node_name(part)
                if node.type != "dir" or node.subtree is None:
                    raise UsageError(f"{sel!r} is not in snapshot {self.snap.id[:8]}")
                children = {n.name: n for n in self.repo.read_tree(node.subtree)}
                if part not in children:
                    raise UsageError(f"{sel!r} is not in snapshot {self.snap.id[:8]}")
                if dest.is_symlink():
                    raise UnsafeRestoreError(f"{dest} is a symlink; refusing to restore through it")
                node, dest = children[part], dest / part
            units.append(_Unit(sel, node, dest))
        return units

    def _collect(self, unit: _Unit) -> None:
        """List the unit's entries breadth first (parents before children), one tree level at a time."""
        files, dirs, links = unit.files, unit.dirs, unit.links
        level = [(os.fspath(unit.staging), unit.node)]
        (dirs if unit.node.type == "dir" else files if unit.node.type == "file" else links).append(level[0])
        if unit.node.type != "dir":
            return
        while level:
            trees = self._read_level({node.subtree or "" for _, node in level}, level, dirs)
            below: list[tuple[str, Node]] = []
            for parent, dnode in level:
                if (dnode.subtree or "") not in trees:
                    continue  # its listing is lost (``partial``): named in the failures
                for child in trees[dnode.subtree or ""]:
                    path = f"{parent}/{child.name}"  # a safe name: decode_tree checked it
                    kind = child.type
                    if kind == "file":
                        files.append((path, child))
                    elif kind == "dir":
                        dirs.append((path, child))
                        below.append((path, child))
                    else:
                        links.append((path, child))
            level = below

    def _read_level(self, ids: set[str], level: list[tuple[str, Node]], dirs: list[tuple[str, Node]]) -> dict[str, Any]:
        """The trees of one level; with ``partial``, one that cannot be read is left out (its folder
        is not created) and named."""
        try:
            return self.repo.read_trees(ids)
        except IntegrityError as e:
            if not self.opts.partial:
                raise IntegrityError(e.message, hint=_PARTIAL_HINT) from e
        trees: dict[str, Any] = {}
        for tid in ids:
            try:
                trees[tid] = self.repo.read_tree(tid)
            except IntegrityError as e:
                for path, node in level:
                    if node.subtree == tid:
                        self._failed[path] = f"its folder listing is lost: {e.message}"
                        if self._unit is None or path != os.fspath(self._unit.staging):
                            dirs.remove((path, node))  # not created (the top stays, empty)
        return trees

    # ------------------------------------------------------------------ building

    def _build(self, unit: _Unit) -> None:
        for path, _ in unit.dirs:
            os.mkdir(path, 0o700)
        locate = self.repo.locate
        wants: list[_Want] = []
        total = 0
        self._nodes = {}
        first: dict[str, tuple[str, Node]] = {}  # hard-link key -> the file that holds the data
        for path, node in unit.files:
            if node.hardlink:
                held = first.setdefault(node.hardlink, (path, node))
                if held[0] != path and held[1].content == node.content and held[1].size == node.size:
                    unit.hardlinks.append((path, held[0]))
                    continue
            offset, mine = 0, len(wants)
            for cid in node.content:
                bid = bytes.fromhex(cid)
                ref = locate(bid, BLOB_DATA)
                if ref is None:
                    why = f"data blob {cid[:16]} is missing from the repository"
                    if not self.opts.partial:
                        raise IntegrityError(f"{_final(unit, path)}: {why}", hint=_PARTIAL_HINT)
                    self._failed.setdefault(path, why)
                    del wants[mine:]
                    break
                wants.append((bid, ref, (path, offset)))
                offset += ref.raw_len
            if path in self._failed:
                continue
            if offset != node.size:
                name = path.rpartition("/")[2]
                raise IntegrityError(f"{unit.label}: {name} claims {node.size} bytes but its blobs hold {offset}")
            total += node.size
            if node.content:
                self._nodes[path] = node
            else:
                self._finish(path, self._create(path, node), node, 0)
        if self.opts.check_space and total:
            free = shutil.disk_usage(unit.dest.parent).free
            if total > free:
                raise NoSpaceError(
                    f"restoring needs {total} bytes but only {free} are free at {unit.dest.parent}; "
                    "nothing was changed",
                    hint="free some space, or restore part of the snapshot with --include",
                )
        self.reporter.phase("restore", total_bytes=total, total_items=len(unit.files))
        self._write_data(unit, wants)
        for path, target in unit.hardlinks:
            if target in self._failed:  # the data of the file it is a link to is lost: so is its own
                self._failed[path] = self._failed[target]
            else:
                os.link(target, path, follow_symlinks=False)
        linked = {path for path, _ in unit.hardlinks}
        for path, node in unit.files:  # owners and attributes (set by path: a forked writer counts nothing)
            if path not in linked and path not in self._failed:
                self.meta.owner(path, node, follow=False)
                if node.mode & 0o6000:
                    os.chmod(path, node.mode)  # a change of owner cleared the set-id bits
                if node.xattrs:
                    self.meta.xattrs(path, node, _final(unit, path))
        for path, node in unit.links:
            assert node.target is not None
            os.symlink(os.fsencode(node.target), path)
            self.meta.owner(path, node, follow=False)
            os.utime(path, ns=(node.mtime_ns, node.mtime_ns), follow_symlinks=False)
        for path, node in reversed(unit.dirs):  # breadth-first order reversed: deepest first
            self.meta.owner(path, node, follow=False)
            os.chmod(path, node.mode)
            if node.xattrs:
                self.meta.xattrs(path, node, _final(unit, path))
            os.utime(path, ns=(node.mtime_ns, node.mtime_ns))

    def _write_data(self, unit: _Unit, wants: list[_Want]) -> None:
        """Write every wanted blob, a merged ranged read per batch (so that every worker stays
        busy); finish the files spread over several reads; check that every file is finished or,
        with ``partial``, named; remove the staging copies of those that failed."""
        ranges = self.repo.plan_reads(wants)
        reads = Counter(path for r in ranges for path in {p for *_, (p, _) in r.wants})
        self._spread = {path for path, n in reads.items() if n > 1}
        for path in self._spread:
            os.close(self._create(path, None))
        workers = self.opts.workers
        workers = max(workers, self.repo.read_parallelism) if workers > 1 else 1  # a remote store: reads in flight
        nearby = self.repo.nearby
        results = run_batches(
            ranges, self._restore_range, cost=_cost, workers=workers, fork=self.opts.fork,
            # a worker reads a store far away through a handle of its own, half the reads in flight
            in_worker=None if nearby else self.repo.reopen_store, worker_threads=1 if nearby else workers // 2,
            progress=lambda nbytes, _: self.reporter.progress(done_bytes=nbytes),
        )  # fmt: skip
        written = Counter[str]()
        finished = 0
        for done, spread, failed in results:
            finished += done
            written.update(spread)
            for path, why in failed.items():
                self._failed.setdefault(path, why)
        whole = len(self._nodes) - len(self._spread)  # each batch finishes (or fails) the files all in it
        if finished + sum(1 for p in self._failed if p in self._nodes and p not in self._spread) != whole:
            raise IntegrityError(f"{unit.label}: {whole - finished} files were not completely restored")
        for path in self._spread:
            if path not in self._failed:
                fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                self._finish(path, fd, self._nodes[path], written[path], chmod=True)
        for path in self._failed:  # never half a file
            try:
                os.unlink(path)
            except (FileNotFoundError, IsADirectoryError):
                pass

    def _create(self, path: str, node: Node | None) -> int:
        """Create the file, with its final mode when the umask leaves that mode alone (saves a
        ``fchmod``; the descriptor is writable whatever the mode), else (or without ``node``: a
        file that is opened again to be written) private until finished."""
        mode = node.mode if node is not None and self._creates_with_mode(node.mode) else 0o600
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)

    def _creates_with_mode(self, mode: int) -> bool:
        return mode & ~self._umask == mode and not mode & 0o7000

    def _finish(self, path: str, fd: int, node: Node, written: int, *, chmod: bool = False) -> None:
        """Check the size (the bytes we wrote into this new file, which only we write), set the
        mode (unless created with it) and mtime through the open descriptor, and close it."""
        try:
            if written != node.size:
                raise IntegrityError(f"{path}: restored {written} bytes, expected {node.size}")
            if node.sparse:
                os.ftruncate(fd, node.size)  # a trailing hole: zero runs were skipped, not written
            if chmod or not self._creates_with_mode(node.mode):
                os.fchmod(fd, node.mode)
            os.utime(fd, ns=(node.mtime_ns, node.mtime_ns))
        finally:
            os.close(fd)

    def _restore_range(self, batch: ReadBatch[tuple[str, int]], progress: Progress) -> _Done:
        """Read one merged range of a pack (each blob in it verified), write each blob where it
        goes, finish the files that were all in it; how many it finished, the bytes written to
        files spread over several reads (finished by the caller, once all are done), and, with
        ``partial``, the files whose data is damaged or missing, and why."""
        left = Counter(path for *_, (path, _) in batch.wants)
        fds: dict[str, int] = {}
        written: Counter[str] = Counter()
        failed: dict[str, str] = {}
        finished = 0

        def put(path: str, offset: int, plain: bytes | memoryview) -> None:
            nonlocal finished
            fd = fds.get(path)
            if fd is None:
                flags = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
                fd = fds[path] = os.open(path, flags) if path in self._spread else self._create(path, self._nodes[path])
            if self._nodes[path].sparse:  # zero runs stay holes: write only the rest
                for start, end in fsmeta.data_runs(plain if isinstance(plain, bytes) else bytes(plain)):
                    _write(fd, memoryview(plain)[start:end], offset + start, path)
            else:
                _write(fd, plain, offset, path)
            written[path] += len(plain)
            left[path] -= 1
            if not left[path]:
                del fds[path]
                if path in self._spread:
                    os.close(fd)
                else:
                    self._finish(path, fd, self._nodes[path], written[path])
                    finished += 1

        k = 0
        try:
            try:
                for (path, offset), plain in self.repo.read_views(batch):  # raw blobs: views, no copy
                    put(path, offset, plain)
                    k += 1
            except IntegrityError as e:  # a damaged blob: which file(s)?
                if not self.opts.partial:
                    path = batch.wants[k][2][0]
                    where = _final(self._unit, path) if self._unit else path
                    raise IntegrityError(f"{where}: {e.message}", hint=_PARTIAL_HINT) from e
                for want in batch.wants[k:]:  # one at a time: only the damaged ones fail
                    path, offset = want[2]
                    try:
                        for _, plain in self.repo.read_blobs([want]):
                            if path not in failed:
                                put(path, offset, plain)
                    except IntegrityError as err:
                        failed.setdefault(path, err.message)
            except NotFoundError as e:  # the pack is gone (else a prune raced us: retried by restore())
                if not self.opts.partial:
                    raise
                for want in batch.wants[k:]:
                    failed.setdefault(want[2][0], f"{e.message} (missing from the store)")
        finally:
            for fd in fds.values():
                os.close(fd)
        progress(sum(written.values()), 0)
        return finished, {path: n for path, n in written.items() if path in self._spread}, failed

    # ------------------------------------------------------------------ swapping

    def _swap(self, unit: _Unit) -> None:
        dest, staging = unit.dest, unit.staging
        if not self.opts.delete and os.path.lexists(dest):
            unit.carried = merge_existing(dest, staging)
        keep = kept_name(dest) if self.opts.keep_replaced and holds_something(dest) else None
        if swap_into_place(staging, dest, keep=keep):
            unit.kept = keep
        for path, node in unit.files:
            if node.sqlite:
                final = _final(unit, path)
                for suffix in SIDECAR_SUFFIXES:
                    Path(f"{final}{suffix}").unlink(missing_ok=True)

    def run(self) -> RestoreResult:
        self.repo.load_index()
        units = self._units()
        result = RestoreResult(self.snap.id, {})
        for unit in units:
            unit.dest.parent.mkdir(parents=True, exist_ok=True)
            recover(unit.dest)
            unit.staging = unit.dest.with_name(f".{unit.dest.name}{STAGING_MARK}{secrets.token_hex(4)}")
            self._unit, self._failed = unit, {}
            self._collect(unit)
            try:
                self._build(unit)
                self._swap(unit)
            except BaseException:
                _remove(unit.staging)
                raise
            result.restored[unit.label] = str(unit.dest)
            result.carried += unit.carried
            result.hardlinks += len(unit.hardlinks)
            if unit.kept is not None:
                result.kept[str(unit.dest)] = str(unit.kept)
            result.failed.update({_final(unit, p): why for p, why in self._failed.items()})
            for path, node in unit.files:
                if path in self._failed:
                    continue
                final = _final(unit, path)
                result.files += 1
                result.bytes += node.size
                if node.sqlite_info and node.sqlite_info.get("capture") == "raw set":
                    # restored with its -wal beside it: SQLite replays it when the database is opened
                    if "sidecar_of" not in node.sqlite_info:
                        self.reporter.warn(
                            f"{final}: was damaged when backed up; restored as the raw set it was stored as"
                        )
                    continue  # never seed: the next backup captures it again through SQLite
                if not self.opts.seeds:
                    continue
                try:
                    st = os.lstat(final)
                except OSError:
                    continue
                result.seeds[final] = CachedFile(signature(st, ""), node.content, node.sqlite, node.sqlite_info)
        for problem in self.meta.problems:
            self.reporter.warn(problem)
        result.owners_not_restored = self.meta.owners_not_restored
        result.xattrs_not_restored = self.meta.xattrs_not_restored
        return result


def restore(repo: Repository, snapshot: Snapshot, options: RestoreOptions, *, reporter: Reporter) -> RestoreResult:
    """Restore ``snapshot`` (see the module docstring).

    If a pack vanished because a prune repacked the data after we read the index, the head is read
    again and the restore retried (twice at most) while the snapshot is still in the repository.
    """
    with memtune.collector_paused():
        for attempt in range(3):
            try:
                repo.load_index()
                repo.prefetch_trees()  # from a remote store: no round trip per level of folders
                return Restorer(repo, snapshot, options, reporter=reporter).run()
            except NotFoundError as e:
                repo.refresh()
                if snapshot.id not in repo.snapshot_ids():
                    raise
                if attempt == 2:  # still named, still missing: damage, not "no such snapshot"
                    raise IntegrityError(f"{e.message} (missing from the store)",
                                         hint="run `openclaw-backup check`; it names what is lost") from e  # fmt: skip
            finally:
                repo.forget_trees()
    raise AssertionError("unreachable")
