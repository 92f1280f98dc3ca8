"""Restoring a snapshot: verified, built beside the target, swapped in atomically.

For each **unit** (a root, or a path picked with ``--include``) the restorer:

1. builds the whole tree in a fresh **staging** directory next to the destination
   (``.<name>.openclaw-restore-<random>``), creating directories and files itself with
   ``O_EXCL|O_NOFOLLOW`` and symlinks last, so nothing is ever written through a link;
2. reads the trees a level at a time and then the data, each needed part of a pack once (merged
   ranged reads: :meth:`.Repository.read_batch`, which authenticates and verifies every blob
   against its id), and writes each blob at its offsets; checks every file's size. Each read is a
   batch for :mod:`.batches` (worker threads, or — from a store on this machine — a forked worker
   too); a file whose blobs all lie in one read is created, written and finished by that batch, a
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

An interruption before step 4 leaves the old state and a staging directory that the next run
removes; an interruption inside the two-rename fallback is undone by :func:`recover` on the next
run. Tree names are validated by :func:`openclaw_backup.tree.decode_tree`; with ``--include``,
no existing symlink on the way to the destination is followed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import os
import secrets
import shutil
import stat
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import fsmeta, memtune
from .backends.local import fsync_dir
from .batches import Progress, run_batches
from .errors import IntegrityError, NoSpaceError, NotFoundError, UnsafeRestoreError, UsageError
from .filecache import CachedFile, signature
from .index import BLOB_DATA, BlobRef
from .pack import ReadBatch
from .reporter import Reporter
from .repository import Repository
from .snapshot import Snapshot
from .sources import SIDECAR_SUFFIXES
from .tree import Node, check_node_name

STAGING_MARK = ".openclaw-restore-"
OLD_MARK = ".openclaw-old-"
KEPT_MARK = ".pre-restore-"
_WANT_COST = 16 * 1024  # the work of one blob write (file creation, system calls), in bytes of data
_RENAME_EXCHANGE = 2


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
    #: Share the reading, decoding and writing with a forked worker process (:mod:`.batches`), from
    #: a store on this machine: None when there is enough to restore, True whenever the platform
    #: allows, False never.
    fork: bool | None = None


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

    def to_json(self) -> dict[str, Any]:
        return {"snapshot": self.snapshot_id, "restored": self.restored, "files": self.files, "bytes": self.bytes,
                "kept": self.kept, "left_in_place": self.carried, "hardlinks": self.hardlinks,
                "owners_not_restored": self.owners_not_restored,
                "xattrs_not_restored": self.xattrs_not_restored}  # fmt: skip


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


def holds_something(p: Path) -> bool:
    """``p`` exists and is not an empty directory (an empty one holds nothing worth keeping)."""
    if not os.path.lexists(p):
        return False
    if p.is_dir() and not p.is_symlink():
        with os.scandir(p) as it:
            return next(it, None) is not None
    return True


def _final(unit: _Unit, path: str) -> str:
    """Where ``path`` (inside the staging tree) ends up once swapped in."""
    return os.fspath(unit.dest) + path[len(os.fspath(unit.staging)) :]


_Want = tuple[bytes, BlobRef, tuple[str, int]]  # a blob's id, where it is, the path and offset it goes to


def _cost(batch: ReadBatch[tuple[str, int]]) -> int:
    return batch.end - batch.start + _WANT_COST * len(batch.wants)


@functools.cache
def _libc_renameat2() -> Any:
    """glibc's renameat2, looked up on first use (``find_library`` may run ``ldconfig``)."""
    for name in ("libc.so.6", None):
        try:
            name = name or ctypes.util.find_library("c")
            fn = ctypes.CDLL(name, use_errno=True).renameat2
        except (OSError, AttributeError, TypeError):
            continue
        fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        return fn
    return None


_AT_FDCWD = -100


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths; False when the system cannot (caller falls back)."""
    renameat2 = _libc_renameat2()
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def recover(dest: Path) -> None:
    """Finish or undo an interrupted restore at ``dest`` (see the module docstring)."""
    parent = dest.parent
    if not parent.is_dir():
        return
    prefix_old = f".{dest.name}{OLD_MARK}"
    prefix_staging = f".{dest.name}{STAGING_MARK}"
    for entry in os.scandir(parent):
        p = Path(entry.path)
        if entry.name.startswith(prefix_old):
            if not os.path.lexists(dest):
                os.rename(p, dest)  # the swap stopped half way: put the old state back
            else:
                _remove(p)
        elif entry.name.startswith(prefix_staging):
            _remove(p)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def kept_name(dest: Path) -> Path:
    """Where a restore keeps the state it replaced: ``.<name>.pre-restore-<UTC time>`` beside it
    (hidden, and never backed up: see ``commands/backup.py``'s internal excludes)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    base = dest.with_name(f".{dest.name.lstrip('.')}{KEPT_MARK}{stamp}")
    n, out = 1, base
    while os.path.lexists(out):
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out


def swap_into_place(staging: Path, dest: Path, *, keep: Path | None = None) -> bool:
    """Replace ``dest`` (file, directory or nothing) by ``staging`` atomically; the old state is
    removed, or — with ``keep`` — kept at ``keep`` (beside ``dest``). True when something was kept.

    With ``keep``, the staged tree is first renamed to ``keep`` and then exchanged with ``dest``:
    at no moment is the old state under a name that an interrupted run's clean-up removes.
    ``staging`` should be beside ``dest``; when it is on another file system it is first copied
    next to ``dest`` (symlinks kept), then swapped.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    if staging.parent != dest.parent:
        local = dest.with_name(f".{dest.name}{STAGING_MARK}{secrets.token_hex(4)}")
        try:
            os.rename(staging, local)
        except OSError as e:
            if e.errno != errno.EXDEV:
                raise
            if staging.is_dir() and not staging.is_symlink():
                shutil.copytree(staging, local, symlinks=True)
            else:
                shutil.copy2(staging, local, follow_symlinks=False)
        staging = local
    kept = False
    try:
        if not os.path.lexists(dest):
            os.rename(staging, dest)
        elif keep is not None:
            os.rename(staging, keep)  # the new state, under a name no clean-up removes
            if not exchange(keep, dest):  # now `keep` holds the old state
                os.rename(keep, staging)
                old = dest.with_name(f".{dest.name}{OLD_MARK}{secrets.token_hex(4)}")
                os.rename(dest, old)  # an interruption here is undone by recover()
                os.rename(staging, dest)
                os.rename(old, keep)
            kept = True
        elif exchange(staging, dest):
            _remove(staging)  # now holds the old state
        else:
            old = dest.with_name(f".{dest.name}{OLD_MARK}{secrets.token_hex(4)}")
            os.rename(dest, old)
            os.rename(staging, dest)
            _remove(old)
    except BaseException:
        if os.path.lexists(staging) and staging.name.startswith(f".{dest.name}{STAGING_MARK}"):
            _remove(staging)
        raise
    fsync_dir(dest.parent)
    return kept


def merge_existing(dest: Path, staging: Path) -> int:
    """Carry into ``staging`` what ``dest`` holds and the snapshot does not (hard links, else
    copies; directories recreated; symlinks as links), so a swap adds and replaces but deletes
    nothing. Where the two disagree on a path's type, the snapshot's entry wins (the old one is
    kept with the replaced state). Returns how many entries were carried over."""
    carried = 0
    if not (dest.is_dir() and not dest.is_symlink() and staging.is_dir() and not staging.is_symlink()):
        return 0
    with os.scandir(dest) as it:
        entries = list(it)
    for entry in entries:
        target = staging / entry.name
        if os.path.lexists(target):
            if entry.is_dir(follow_symlinks=False) and target.is_dir() and not target.is_symlink():
                carried += merge_existing(Path(entry.path), target)
            continue
        if entry.is_symlink():
            os.symlink(os.readlink(entry.path), target)
        elif entry.is_dir(follow_symlinks=False):
            target.mkdir(mode=0o700)
            carried += merge_existing(Path(entry.path), target)
            st = entry.stat(follow_symlinks=False)
            os.chmod(target, stat.S_IMODE(st.st_mode))
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
        elif entry.is_file(follow_symlinks=False):
            try:
                os.link(entry.path, target)
            except OSError:
                shutil.copy2(entry.path, target, follow_symlinks=False)
        else:
            continue  # sockets, fifos, devices: never created by a restore
        carried += 1
    return carried


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
            trees = self.repo.read_trees({node.subtree or "" for _, node in level})
            below: list[tuple[str, Node]] = []
            for parent, dnode in level:
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
            offset = 0
            for cid in node.content:
                bid = bytes.fromhex(cid)
                ref = locate(bid, BLOB_DATA)
                if ref is None:
                    raise IntegrityError(f"{path}: data blob {cid[:16]} is missing from the repository")
                wants.append((bid, ref, (path, offset)))
                offset += ref.raw_len
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
        # Work units are ranged reads (not whole packs) so that every worker stays busy.
        ranges = self.repo.plan_reads(wants)
        reads = Counter(path for r in ranges for path in {p for *_, (p, _) in r.wants})
        self._spread = {path for path, n in reads.items() if n > 1}
        for path in self._spread:
            os.close(self._create(path, None))
        workers = self.opts.workers
        if workers > 1 and not self.repo.nearby:
            workers = max(workers, self.repo.read_parallelism)  # a remote store: reads in flight
        results = run_batches(
            ranges, self._restore_range, cost=_cost, workers=workers,
            fork=self.opts.fork if self.repo.nearby else False,  # a worker reads the store itself
            progress=lambda nbytes, _: self.reporter.progress(done_bytes=nbytes),
        )  # fmt: skip
        written = Counter[str]()
        finished = 0
        for done, spread in results:
            finished += done
            written.update(spread)
        if finished + len(self._spread) != len(self._nodes):  # each batch finishes what was all in it
            left = len(self._nodes) - len(self._spread) - finished
            raise IntegrityError(f"{unit.label}: {left} files were not completely restored")
        for path in self._spread:
            fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            self._finish(path, fd, self._nodes[path], written[path], chmod=True)
        for path, target in unit.hardlinks:
            os.link(target, path, follow_symlinks=False)
        linked = {path for path, _ in unit.hardlinks}
        for path, node in unit.files:  # owners and attributes (set by path: a forked writer counts nothing)
            if path not in linked:
                self.meta.owner(path, node, follow=False)
                if node.mode & 0o6000:
                    os.chmod(path, node.mode)  # a change of owner cleared the set-id bits
                self.meta.xattrs(path, node, _final(unit, path))
        for path, node in unit.links:
            assert node.target is not None
            os.symlink(os.fsencode(node.target), path)
            self.meta.owner(path, node, follow=False)
            os.utime(path, ns=(node.mtime_ns, node.mtime_ns), follow_symlinks=False)
        for path, node in reversed(unit.dirs):  # breadth-first order reversed: deepest first
            self.meta.owner(path, node, follow=False)
            os.chmod(path, node.mode)
            self.meta.xattrs(path, node, _final(unit, path))
            os.utime(path, ns=(node.mtime_ns, node.mtime_ns))

    def _restore_range(self, batch: ReadBatch[tuple[str, int]], progress: Progress) -> tuple[int, dict[str, int]]:
        """Read one merged range of a pack (each blob in it verified), write each blob where it
        goes, finish the files that were all in it; how many it finished, and the bytes written to
        files spread over several reads (finished by the caller, once all are done)."""
        left = Counter(path for *_, (path, _) in batch.wants)
        fds: dict[str, int] = {}
        written: Counter[str] = Counter()
        finished = 0
        try:
            for (path, offset), plain in self.repo.read_batch(batch):
                fd = fds.get(path)
                if fd is None:
                    spread = path in self._spread
                    flags = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
                    fd = fds[path] = os.open(path, flags) if spread else self._create(path, self._nodes[path])
                if self._nodes[path].sparse:  # zero runs stay holes: write only the rest
                    for start, end in fsmeta.data_runs(plain):
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
        finally:
            for fd in fds.values():
                os.close(fd)
        progress(sum(written.values()), 0)
        return finished, {path: n for path, n in written.items() if path in self._spread}

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
            for path, node in unit.files:
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
                return Restorer(repo, snapshot, options, reporter=reporter).run()
            except NotFoundError:
                if attempt == 2:
                    raise
                repo.refresh()
                if snapshot.id not in repo.snapshot_ids():
                    raise
                repo.load_index()
    raise AssertionError("unreachable")
