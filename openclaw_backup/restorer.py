"""Restoring a snapshot: verified, built beside the target, swapped in atomically.

For each **unit** (a root, or a path picked with ``--include``) the restorer:

1. builds the whole tree in a fresh **staging** directory next to the destination
   (``.<name>.openclaw-restore-<random>``), creating directories and files itself with
   ``O_EXCL|O_NOFOLLOW`` and symlinks last, so nothing is ever written through a link;
2. reads the trees a level at a time and then the data, each needed part of a pack once (merged
   ranged reads: :meth:`.Repository.read_batch`, which authenticates and verifies every blob
   against its id), and writes each blob at its offsets; checks every file's size. The data is
   written by worker threads — or, for a large restore from a store that survives a fork (local),
   by this process and a forked one, each taking whole files (:mod:`.forkwork`: the GIL lets two
   threads do little more than one);
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
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import forkwork, fsmeta, memtune
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
    #: With several workers on a store that survives a fork, restores with at least this much work
    #: (bytes, plus 16 KiB per blob write) split the files with a forked process (see forkwork).
    fork_threshold: int = 32 << 20
    #: Restore every file that can be restored, leaving out (and naming) those whose data is
    #: missing or damaged, rather than fail.
    partial: bool = False


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
_FilePlan = tuple[int, str, list[_Want]]  # cost (bytes, plus _WANT_COST per write), path, its blobs


def _halves(plan: list[_FilePlan]) -> tuple[list[_FilePlan], list[_FilePlan]]:
    """Split files in two of about equal cost, largest first into the lighter half."""
    halves: tuple[list[_FilePlan], list[_FilePlan]] = ([], [])
    load = [0, 0]
    for item in sorted(plan, key=lambda p: p[0], reverse=True):
        side = 0 if load[0] <= load[1] else 1
        halves[side].append(item)
        load[side] += item[0]
    return halves


class Restorer:
    def __init__(self, repo: Repository, snapshot: Snapshot, options: RestoreOptions, *, reporter: Reporter):
        self.repo = repo
        self.snap = snapshot
        self.opts = options
        self.reporter = reporter
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}
        self._pending: dict[str, list[Any]] = {}  # path -> [writes left, node, bytes written]
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

    def _fail(self, path: str, why: str) -> None:
        """Note a file that cannot be restored (``partial``); its staging copy goes at the end."""
        with self._lock:
            self._failed.setdefault(path, why)

    # ------------------------------------------------------------------ building

    def _build(self, unit: _Unit) -> None:
        for path, _ in unit.dirs:
            os.mkdir(path, 0o700)
        locate = self.repo.locate
        self._open = {}
        self._pending = {}
        plan: list[_FilePlan] = []
        total = 0
        first: dict[str, tuple[str, Node]] = {}  # hard-link key -> the file that holds the data
        for path, node in unit.files:
            if node.hardlink:
                held = first.setdefault(node.hardlink, (path, node))
                if held[0] != path and held[1].content == node.content and held[1].size == node.size:
                    unit.hardlinks.append((path, held[0]))
                    continue
            offset = 0
            wants: list[_Want] = []
            for cid in node.content:
                bid = bytes.fromhex(cid)
                ref = locate(bid, BLOB_DATA)
                if ref is None:
                    why = f"data blob {cid[:16]} is missing from the repository"
                    if not self.opts.partial:
                        raise IntegrityError(f"{_final(unit, path)}: {why}", hint=_PARTIAL_HINT)
                    self._fail(path, why)
                    break
                wants.append((bid, ref, (path, offset)))
                offset += ref.raw_len
            if path in self._failed:
                continue
            if offset != node.size:
                name = path.rpartition("/")[2]
                raise IntegrityError(f"{unit.label}: {name} claims {node.size} bytes but its blobs hold {offset}")
            total += node.size
            self._pending[path] = [len(node.content), node, 0]
            if wants:
                plan.append((node.size + _WANT_COST * (len(wants) + 1), path, wants))
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
        progress: Callable[[int], None] = lambda n: self.reporter.progress(done_bytes=n)  # noqa: E731
        try:
            if self._forks(plan):
                # Files split between this process and a forked one, each file wholly on one side.
                mine, theirs = _halves(plan)
                forkwork.run_split(lambda p: self._write_files(mine, 1, p), lambda p: self._write_files(theirs, 1, p),
                                   progress)  # fmt: skip
                for _, path, _ in theirs:
                    self._pending[path][0] = 0  # finished (and checked) by the child
                    if self.opts.partial and not os.path.lexists(path):
                        self._failed[path] = "its data is missing or damaged in the repository"  # the child's
            else:
                self._write_files(plan, self.opts.workers, progress)
        finally:
            for fd in self._open.values():
                os.close(fd)
            self._open.clear()
        unfinished = [p for p, (left, *_) in self._pending.items() if left and p not in self._failed]
        if unfinished:
            raise IntegrityError(f"{len(unfinished)} files were not completely restored (e.g. {unfinished[0]})")
        self._drop_failed()
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

    def _forks(self, plan: list[_FilePlan]) -> bool:
        """Whether to split the writing with a forked process: several workers wanted, a store
        that survives a fork, and enough work to be worth one."""
        return (
            self.opts.workers > 1
            and len(plan) > 1
            and forkwork.available()
            and self.repo.fork_safe
            and sum(cost for cost, _, _ in plan) >= self.opts.fork_threshold
        )

    def _write_files(self, plan: list[_FilePlan], workers: int, progress: Callable[[int], None]) -> None:
        """Restore the data of the files in ``plan`` with ``workers`` threads; check all are done."""
        # Work units are ranged reads (not whole packs) so that every worker stays busy; the
        # largest go first so that no long one is left for the end.
        ranges = self.repo.plan_reads(w for _, _, wants in plan for w in wants)
        ranges.sort(key=lambda r: r.start - r.end - _WANT_COST * len(r.wants))
        workers = max(workers, self.repo.read_parallelism) if workers > 1 else 1  # a remote store: reads in flight
        if workers == 1:
            for r in ranges:
                self._restore_range(r, progress)
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                futures = [pool.submit(self._restore_range, r, progress) for r in ranges]
                try:
                    for f in futures:
                        f.result()
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
        unfinished = [path for _, path, _ in plan if self._pending[path][0] and path not in self._failed]
        if unfinished:
            raise IntegrityError(f"{len(unfinished)} files were not completely restored (e.g. {unfinished[0]})")
        self._drop_failed()  # (in a forked child too: the parent sees the file is not there)

    def _drop_failed(self) -> None:
        """Remove the staging copies of the files that could not be restored: never half a file."""
        for path in self._failed:
            fd = self._open.pop(path, None)
            if fd is not None:
                os.close(fd)
            try:
                os.unlink(path)
            except (FileNotFoundError, IsADirectoryError):
                pass

    def _create(self, path: str, node: Node) -> int:
        """Create the file, with its final mode when the umask leaves that mode alone (saves a
        ``fchmod``; the descriptor is writable whatever the mode), else private until finished."""
        mode = node.mode if self._creates_with_mode(node.mode) else 0o600
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)

    def _creates_with_mode(self, mode: int) -> bool:
        return mode & ~self._umask == mode and not mode & 0o7000

    def _finish(self, path: str, fd: int, node: Node, written: int) -> None:
        """Check the size (the bytes we wrote into this new file, which only we write), set the
        mode (unless created with it) and mtime through the open descriptor, and close it."""
        try:
            if written != node.size:
                raise IntegrityError(f"{path}: restored {written} bytes, expected {node.size}")
            if node.sparse:
                os.ftruncate(fd, node.size)  # a trailing hole: zero runs were skipped, not written
            if not self._creates_with_mode(node.mode):
                os.fchmod(fd, node.mode)
            os.utime(fd, ns=(node.mtime_ns, node.mtime_ns))
        finally:
            os.close(fd)

    def _write(self, path: str, data: bytes, offset: int) -> None:
        """Write one blob; the file is created on its first write and finished after its last."""
        with self._lock:
            fd = self._open.get(path)
            if fd is None:
                fd = self._open[path] = self._create(path, self._pending[path][1])
            sparse = self._pending[path][1].sparse
        if sparse:  # zero runs stay holes: write only the rest
            for start, end in fsmeta.data_runs(bytes(data) if isinstance(data, memoryview) else data):
                self._pwrite_all(path, fd, memoryview(data)[start:end], offset + start)
            done = len(data)
        else:
            done = self._pwrite_all(path, fd, data, offset)
        with self._lock:
            entry = self._pending[path]
            entry[0] -= 1
            entry[2] += done
            last = entry[0] == 0
            if last:
                del self._open[path]
        if last:
            self._finish(path, fd, entry[1], entry[2])

    @staticmethod
    def _pwrite_all(path: str, fd: int, data: bytes | memoryview, offset: int) -> int:
        done = os.pwrite(fd, data, offset)
        while done < len(data):  # a short write: go on, or fail (ENOSPC) rather than leave a hole
            n = os.pwrite(fd, memoryview(data)[done:], offset + done)
            if n <= 0:
                raise OSError(errno.EIO, f"{path}: short write")
            done += n
        return done

    def _restore_range(self, batch: ReadBatch[tuple[str, int]], progress: Callable[[int], None]) -> None:
        """Read one merged range of a pack (each blob in it verified) and write each blob where it goes."""
        done = 0
        k = 0
        try:
            for (path, offset), plain in self.repo.read_batch(batch):
                if path not in self._failed:
                    self._write(path, plain, offset)
                done += len(plain)
                k += 1
        except IntegrityError as e:  # a damaged blob: which file(s)?
            if not self.opts.partial:
                path = batch.wants[k][2][0]
                where = _final(self._unit, path) if self._unit else path
                raise IntegrityError(f"{where}: {e.message}", hint=_PARTIAL_HINT) from e
            for want in batch.wants[k:]:  # one at a time: only the damaged ones fail
                (path, offset) = want[2]
                try:
                    for _, plain in self.repo.read_blobs([want]):
                        if path not in self._failed:
                            self._write(path, plain, offset)
                        done += len(plain)
                except IntegrityError as err:
                    self._fail(path, err.message)
        except NotFoundError as e:  # the pack is gone (else a prune raced us: retried by restore())
            if not self.opts.partial:
                raise
            for want in batch.wants[k:]:
                self._fail(want[2][0], f"{e.message} (missing from the store)")
        progress(done)

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
                try:
                    st = os.lstat(final)
                except OSError:
                    continue
                if node.sqlite_info and node.sqlite_info.get("capture") == "raw set":
                    # restored with its -wal beside it: SQLite replays it when the database is opened
                    if "sidecar_of" not in node.sqlite_info:
                        self.reporter.warn(
                            f"{final}: was damaged when backed up; restored as the raw set it was stored as"
                        )
                    continue  # never seed: the next backup captures it again through SQLite
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
