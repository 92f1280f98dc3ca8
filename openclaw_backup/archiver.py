"""Taking a snapshot: scan the roots, store what changed, build trees, publish once.

Steps: scan (stat only) → for each regular file, reuse the cached content ids when its signature
is unchanged, else read it (SQLite databases through :mod:`.sqlite_capture`) in batches of equal-sized
files run by :mod:`.batches` (worker threads, or a forked worker too), cutting, hashing, compressing
and sealing chunks into packs; what happened to each file is accounted for here, once, from the
batches' results → build the trees bottom-up
→ if the root tree equals the parent snapshot's, stop: nothing changed, nothing is published →
else write the index, the snapshot, and publish the head (one compare-and-swap).

Files that change while they are read: a file read up to the size it had when opened, whose size
only grew meanwhile and whose first and last bytes read are unchanged (an appended log, a JSONL
transcript) is stored up to that size — a state it really had — and counted in ``files_grown``.
Any other change (rewritten in place, shrunk, replaced) makes us read it again, up to
``read_attempts`` times; if it never holds still, or cannot be read (or, for a SQLite database,
captured), the parent snapshot's version is kept (else the local cache's), with a warning — or, when
no earlier version exists, the file is left out with a warning. A torn mix is never stored.

SQLite databases are captured through :mod:`.sqlite_capture`; a damaged one is stored as a *raw
set* (the main file and its ``-wal``/``-journal``, copied together, stored as sibling entries and
restored together), with a warning. What is stored for a database never depends on the local cache:
degraded outcomes are never cached, and the cache only remembers what it may skip reading.

Every warning of a backup means that the snapshot holds less than, or other than, what the sources
had: :attr:`BackupResult.degraded` is then true and the edges report it as such.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path

from . import __version__, fsmeta, memtune
from .backup_model import BackupOptions, BackupResult, Outcome, Recorder, Unread
from .batches import Progress, run_batches
from .errors import BackupError, ConflictError, UsageError
from .filecache import RACY_WINDOW_NS, CachedFile, FileCache, signature
from .index import BLOB_DATA, BLOB_TREE
from .reporter import Reporter
from .repository import HEAD_FRESH, Repository
from .snapshot import Snapshot
from .sources import SQLITE_MAGIC, Entry, Excluder, ExclusionReport, scan_root
from .sqlite_capture import SqliteCaptureError, snapshot
from .tree import Node, encode_tree

_SHRINK_MIN = 10  # files in the parent snapshot before a fall to under half of them is called a shrink
#: Paths that hold secrets; an unencrypted backup names each one it stores.
SECRET_PATTERNS = re.compile(
    r"(^|/)(credentials|identity|\.ssh|root-ssh|root-env|secrets?)(/|$)|(^|/)\.env(\.|$)|auth[-_]?profiles?"
    r"|(^|/)[^/]*\.(pem|key)$|(^|/)id_(rsa|ed25519|ecdsa)"
)


_SQLITE_MIN_SIZE = 512  # the smallest page size: anything shorter is not a database
_FILE_COST = 16 * 1024  # the work of one file (open, read, a blob), in bytes of data (measured)


def _walk_files(e: Entry) -> Iterator[Entry]:
    if e.kind == "file":
        yield e
    for c in e.children:
        yield from _walk_files(c)


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_size, a.st_mtime_ns, a.st_ino) == (b.st_size, b.st_mtime_ns, b.st_ino)


#: How often a backup on a Hub repo (whose API calls are budgeted) lists the store's packs to find
#: any the index names that were lost: at most this stale (seconds) at one commit of the repository;
#: any commit (another writer's, a file deleted by hand) lists again. Other stores list every backup.
PACK_LISTING_EVERY = 3600.0


class Archiver:
    """One backup run. Create, then call :meth:`run` once."""

    def __init__(self, repo: Repository, options: BackupOptions, *, reporter: Reporter, cache: FileCache) -> None:
        self.repo = repo
        self.opts = options
        self.reporter = reporter
        self.cache = cache
        self.writer = repo.pack_writer()
        self.needed: set[bytes] = set()
        self._big = threading.Semaphore(1)
        self.stats = {
            "files": 0, "dirs": 0, "symlinks": 0, "bytes": 0, "files_read": 0, "bytes_read": 0,
            "files_cached": 0, "sqlite_captured": 0, "blobs_added": 0, "bytes_added": 0, "files_skipped": 0,
            "files_grown": 0, "files_previous": 0, "sqlite_degraded": 0,
        }  # fmt: skip
        self.unread: dict[str, str] = {}  # path -> why it could not be stored as it is
        self._parent_snap: Snapshot | None = None
        self._parent_trees: dict[str, dict[str, Node]] = {}
        self.start_ns = time.time_ns()
        self._sid: str | None = None  # our snapshot, once stored (published or not)
        self._stored: list[str] = []  # our index file and snapshot, once stored
        self.scratch = options.scratch_dir or Path(tempfile.gettempdir())

    # -------------------------------------------------------------- reading files

    def _read_files(self, todo: list[Entry], outcomes: dict[str, Outcome | None]) -> None:
        """Read every file in ``todo`` (:mod:`.batches`: in threads, or with a forked worker),
        filling ``outcomes``, then account for what happened to each. Files of equal size are one
        batch: copies of a file are read, and deduplicated, by the same thread or process."""
        ordered = sorted(todo, key=lambda f: f.st.st_size)
        cards = [list(same) for _, same in itertools.groupby(ordered, key=lambda f: f.st.st_size)]
        results = run_batches(
            cards, self._read_card, cost=lambda card: sum(f.st.st_size + _FILE_COST for f in card),
            workers=self.opts.workers, fork=self.opts.fork if self.repo.nearby else bool(self.opts.fork),
            output=self.writer,
            progress=lambda nbytes, items: self.reporter.progress(done_bytes=nbytes, done_items=items),
        )  # fmt: skip
        for card, reads in zip(cards, results, strict=True):
            for f, (out, why) in zip(card, reads, strict=True):
                outcomes[f.path] = out
                self._account(f, out, why)

    def _read_card(self, card: list[Entry], progress: Progress) -> list[tuple[Outcome | None, str | None]]:
        """Store each file of ``card`` as it is now: its outcome (None when it vanished, or when it
        could not be stored as it is: then with the reason)."""
        out: list[tuple[Outcome | None, str | None]] = []
        for f in card:
            try:
                out.append((self._read_file(f, progress), None))
            except Unread as err:
                out.append((None, err.reason))
            progress(0, 1)
        return out

    def _account(self, f: Entry, out: Outcome | None, why: str | None) -> None:
        if why is not None:
            self.unread[f.path] = why
        elif out is None:
            self.reporter.info(f"{f.path}: removed during the backup; not in this snapshot")
        else:
            self.stats["files_read"] += 1
            self.stats["bytes_read"] += out.size + sum(n for *_, n in out.sidecars)
            self.stats["sqlite_captured"] += out.sqlite
            if out.damage:
                self.stats["sqlite_degraded"] += 1
                self.reporter.warn(f"{f.path}: {out.damage}")
            if out.grown:
                self.stats["files_grown"] += 1
                self.reporter.info(f"{f.path}: grew while read; stored as it was when opened ({out.size} bytes)")

    def _store_chunks(self, chunks: Iterator[bytes | memoryview], progress: Progress) -> tuple[list[str], int]:
        ids: list[str] = []
        total = 0
        for chunk in chunks:
            bid = self.writer.store(BLOB_DATA, chunk)
            ids.append(bid.hex())
            total += len(chunk)
            progress(len(chunk), 0)
        return ids, total

    def _read_sqlite(self, e: Entry, st: os.stat_result, progress: Progress) -> Outcome:
        try:
            with snapshot(e.path, self.scratch) as cap:
                ids, size = self._store_chunks(self.repo.sqlite_chunker.cut_stream(cap.image), progress)
                sidecars = [
                    (suffix, *self._store_chunks(self.repo.chunker.cut_stream(f), progress))
                    for suffix, f in sorted(cap.sidecars.items())
                ]
        except SqliteCaptureError as err:
            raise Unread(f"cannot capture the SQLite database ({err.message.partition(': ')[2]})") from err
        if cap.degraded is None:
            return Outcome(ids, size, True, st, signature(st, e.wal_sig), True, e.wal_mtime_ns, cap.info)
        if e.rel.count("/") == 0:
            raise Unread(f"{cap.degraded}; a database given as a root cannot be stored as a raw set")
        names = " and ".join(s for s, *_ in sidecars)
        kept = f"the file with its {names}, copied together, restored together" if names else "the file as it is"
        # never cached (no signature): read again, and captured if it can be, next time
        return Outcome(ids, size, False, st, "", True, e.wal_mtime_ns, cap.info, sidecars,
                       damage=f"{cap.degraded}; stored as a raw set ({kept})")  # fmt: skip

    def _read_file(self, e: Entry, progress: Progress) -> Outcome | None:
        """Store ``e`` as it is now (see the module docstring); None when it vanished. Raises
        :class:`Unread` when it cannot be stored as it is."""
        limit = self.repo.chunker.profile.max_size
        for attempt in range(self.opts.read_attempts):
            try:
                small = attempt == 0 and e.st.st_size <= limit
                out = self._read_small(e, progress) if small else self._read_any(e, progress)
            except FileNotFoundError:
                return None
            except OSError as err:
                raise Unread(f"cannot read ({err.strerror})") from err
            if out is not None:
                return out
            time.sleep(0.05 * (attempt + 1))
        raise Unread("kept changing while read")

    def _read_small(self, e: Entry, progress: Progress) -> Outcome | None:
        """A file no larger than one chunk, in one read; the scan's lstat serves as the "before"
        (open, read, close: the fewest system calls, each of which hands the GIL around).
        None when it changed since the scan (read again, the careful way)."""
        fd = os.open(e.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.read(fd, e.st.st_size + 1)
        finally:
            os.close(fd)
        if len(data) != e.st.st_size:
            return None  # it grew or shrank since the scan
        if len(data) >= _SQLITE_MIN_SIZE and data[:16] == SQLITE_MAGIC:
            return self._read_sqlite(e, e.st, progress)
        ids, size = self._store_chunks(self.repo.chunker.cut_bytes(data), progress)
        # Still the file we stat'ed (a replacement is a new inode), same size and mtime:
        # nothing was written to it between that stat and the end of our read.
        if not _same(e.st, os.lstat(e.path)):
            return None
        return Outcome(ids, size, False, e.st, signature(e.st, e.wal_sig), True)

    def _read_any(self, e: Entry, progress: Progress) -> Outcome | None:
        """Read the file up to the size it has when opened; None when it changed other than by growing."""
        with open(e.path, "rb", buffering=0) as f:
            st = os.fstat(f.fileno())
            if st.st_size >= _SQLITE_MIN_SIZE and os.pread(f.fileno(), 16, 0) == SQLITE_MAGIC:
                return self._read_sqlite(e, st, progress)
            rec = Recorder(f, st.st_size)
            # One large file at a time: each needs a 2 x max-chunk buffer (bounds peak memory).
            with self._big if st.st_size > self.repo.chunker.profile.max_size else nullcontext():
                ids, size = self._store_chunks(self.repo.chunker.cut_stream(rec, size_hint=st.st_size), progress)
            now = os.fstat(f.fileno())
            if size != st.st_size:
                return None  # shrank while read
            if _same(st, now) and _same(st, os.lstat(e.path)):
                return Outcome(ids, size, False, st, signature(st, e.wal_sig), True)
            grew = now.st_size > st.st_size and os.lstat(e.path).st_ino == st.st_ino
            if not grew or not self._prefix_intact(f.fileno(), rec, size):
                return None
        return Outcome(ids, size, False, st, "", True, grown=True)  # no signature: read again next time

    @staticmethod
    def _prefix_intact(fd: int, rec: Recorder, size: int) -> bool:
        """The first and last bytes we read are still there: the file was appended to, not rewritten."""
        head = os.pread(fd, len(rec.head), 0)
        tail = os.pread(fd, len(rec.tail), size - len(rec.tail))
        return head == rec.head and tail == rec.tail

    # -------------------------------------------------------------- trees

    def _cached(self, e: Entry) -> Outcome | None:
        sig = signature(e.st, e.wal_sig)
        hit = self.cache.lookup(e.path, sig)
        if hit is None or not self.repo.has_blobs(hit.content):
            return None
        return Outcome(
            hit.content, e.st.st_size if not hit.sqlite else -1, hit.sqlite, e.st, sig, False, e.wal_mtime_ns, hit.info
        )

    def _node(self, e: Entry, outcomes: dict[str, Outcome | None]) -> Node | None:
        mode = stat.S_IMODE(e.st.st_mode)
        if e.kind == "symlink":
            self.stats["symlinks"] += 1
            return self._meta(e, e.st, Node(e.name, "symlink", 0o777, e.st.st_mtime_ns,
                                            target=os.fsdecode(e.target or "")))  # fmt: skip
        if e.kind == "dir":
            children = [n for c in e.children if (n := self._node(c, outcomes)) is not None]
            taken = {n.name for n in children}
            children += [
                n for c in e.children if c.kind == "file"
                for n in self._sidecar_nodes(c, outcomes) if n.name not in taken
            ]  # fmt: skip
            data = encode_tree(children)
            tid = self.writer.store(BLOB_TREE, data)
            self.needed.add(tid)
            self.stats["dirs"] += 1
            return self._meta(e, e.st, Node(e.name, "dir", mode, e.st.st_mtime_ns, subtree=tid.hex()))
        out = outcomes.get(e.path)
        if out is None:
            if e.path not in self.unread:
                return None  # removed during the backup
            return self._earlier_version(e, self.unread[e.path])
        size = out.size
        if size < 0:  # reused content whose size we did not measure (SQLite copy / kept version)
            size = self.repo.content_size(out.content)
        self.needed.update(bytes.fromhex(c) for c in out.content)
        self.stats["files"] += 1
        self.stats["bytes"] += size
        return self._meta(e, out.st, Node(e.name, "file", stat.S_IMODE(out.st.st_mode), out.st.st_mtime_ns,
                                          size=size, content=out.content, sqlite=out.sqlite, sqlite_info=out.info))

    def _meta(self, e: Entry, st: os.stat_result, node: Node) -> Node:
        """Add what :mod:`.fsmeta` keeps: owner, extended attributes, hard-link key, holes."""
        node.uid, node.gid = st.st_uid, st.st_gid
        if node.type != "symlink":  # Linux allows no user attributes on links
            node.xattrs, problem = fsmeta.read_xattrs(e.path)
            if problem:
                self.reporter.warn(f"{e.path}: {problem}")
        if node.type == "file" and not node.sqlite:
            node.hardlink = fsmeta.hardlink_key(st)
            node.sparse = fsmeta.has_holes(e.path, st)
        return node

    def _sidecar_nodes(self, e: Entry, outcomes: dict[str, Outcome | None]) -> list[Node]:
        """The raw set's ``-wal``/``-journal`` of a damaged database, stored beside it."""
        out = outcomes.get(e.path)
        if out is None or not out.sidecars:
            return []
        nodes = []
        for suffix, ids, size in out.sidecars:
            self.needed.update(bytes.fromhex(c) for c in ids)
            self.stats["files"] += 1
            self.stats["bytes"] += size
            info = {"capture": "raw set", "sidecar_of": e.name}
            nodes.append(Node(e.name + suffix, "file", stat.S_IMODE(out.st.st_mode), out.st.st_mtime_ns,
                              size=size, content=ids, sqlite_info=info, uid=out.st.st_uid, gid=out.st.st_gid))
        return nodes

    def _earlier_version(self, e: Entry, reason: str) -> Node | None:
        """The parent snapshot's version of a file we could not store as it is (else the local
        cache's), with a warning; None (and a warning) when there is none."""
        prev = self._parent_node(e.rel)
        if prev is not None and self.repo.has_blobs(prev.content):
            self.reporter.warn(f"{e.path}: {reason}; the previous snapshot's version is kept")
            node = dataclasses.replace(prev)  # all it recorded (owner, attributes, …) with its content
        elif (hit := self.cache.entries.get(e.path)) is not None and self.repo.has_blobs(hit.content):
            self.reporter.warn(f"{e.path}: {reason}; the last backed-up version is kept")
            size = self.repo.content_size(hit.content)
            node = Node(e.name, "file", stat.S_IMODE(e.st.st_mode), e.st.st_mtime_ns, size=size,
                        content=hit.content, sqlite=hit.sqlite, sqlite_info=hit.info, uid=e.st.st_uid,
                        gid=e.st.st_gid)  # fmt: skip
        else:
            self.stats["files_skipped"] += 1
            self.reporter.warn(f"{e.path}: {reason}; NOT in this snapshot (no earlier version to keep)")
            return None
        self.stats["files_previous"] += 1
        self.needed.update(bytes.fromhex(c) for c in node.content)
        self.stats["files"] += 1
        self.stats["bytes"] += node.size
        return node

    def _parent_node(self, rel: str) -> Node | None:
        """The file at ``rel`` (root name first) in the parent snapshot, walking its trees."""
        if self._parent_snap is None:
            return None
        tree_id: str | None = self._parent_snap.tree
        node: Node | None = None
        for part in rel.split("/"):
            if tree_id is None:
                return None
            nodes = self._parent_trees.get(tree_id)
            if nodes is None:
                try:
                    nodes = self._parent_trees[tree_id] = {n.name: n for n in self.repo.read_tree(tree_id)}
                except BackupError:
                    return None  # an unreadable parent tree: no earlier version from there
            node = nodes.get(part)
            if node is None:
                return None
            tree_id = node.subtree
        return node if node is not None and node.type == "file" else None

    # -------------------------------------------------------------- run

    def run(self) -> BackupResult:
        with memtune.collector_paused():
            try:
                return self._run()
            except BaseException:  # a failed backup leaves no orphans behind (re-raised)
                self.writer.flush_quietly()
                self.repo.discard_unpublished(self.writer.packs, self._stored, snapshot=self._sid)
                raise

    def _run(self) -> BackupResult:
        repo, opts = self.repo, self.opts
        first_warning = len(self.reporter.warnings)  # warnings of this backup only, not the caller's
        repo.refresh(max_age=HEAD_FRESH)  # the head may have moved (or our last publication's answer was lost)
        repo.load_index(backup=True)  # adopts what an earlier, refused backup uploaded
        every = PACK_LISTING_EVERY if repo.staged_uploads else 0.0  # a Hub repo's API calls are budgeted
        if lost := repo.distrust_missing_packs(every=every):  # their blobs: stored again, from the sources
            self.reporter.warn(f"{len(lost)} pack(s) the index names are missing from the store (e.g. {lost[0][:16]}); "
                               "what the sources still hold is stored again; run `openclaw-backup check`")  # fmt: skip
        excluder = Excluder(opts.excludes)
        self.excluded = ExclusionReport()
        self.reporter.phase("scan")
        scanned: list[Entry] = []
        roots: dict[str, dict[str, str]] = {}
        for root in opts.roots:
            entry = scan_root(
                root, excluder, warn=self.reporter.warn, sqlite_hint=self.cache.is_sqlite, report=self.excluded
            )
            if entry is not None:
                scanned.append(entry)
                roots[root.name] = {"path": opts.recorded_paths.get(root.name, root.path), "type": entry.kind}
        if not scanned:
            raise UsageError(
                "nothing to back up: none of the sources exist (" + ", ".join(r.path for r in opts.roots) + ")",
                hint="set OPENCLAW_STATE_DIR or pass --source",
            )
        self._parent_snap = self._parent(roots)
        files = [f for e in scanned for f in _walk_files(e)]
        outcomes: dict[str, Outcome | None] = {}
        todo: list[Entry] = []
        for f in files:
            hit = self._cached(f)
            if hit is not None:
                outcomes[f.path] = hit
                self.stats["files_cached"] += 1
            else:
                todo.append(f)
        self.reporter.phase("backup", total_bytes=sum(f.st.st_size for f in todo), total_items=len(todo))
        self._read_files(todo, outcomes)
        top_nodes = [n for e in scanned if (n := self._node(e, outcomes)) is not None]
        top_data = encode_tree(top_nodes)
        top_id = self.writer.store(BLOB_TREE, top_data)
        self.needed.add(top_id)
        parent = self._parent_snap
        result_stats = dict(self.stats, excluded_entries=self.excluded.entries, excluded_bytes=self.excluded.bytes,
                            special_files=len(self.excluded.specials))  # fmt: skip
        before = parent.summary.get("files", 0) if parent is not None else 0
        if parent is not None and before >= _SHRINK_MIN and result_stats["files"] * 2 < before:
            result_stats["shrank"] = 1  # retention keeps the parent (see retention.apply_policy)
            self.reporter.warn(
                f"the sources shrank drastically: {result_stats['files']} files, against {before} in the previous "
                f"snapshot {parent.id[:8]}; if that is not intended, bring them back with "
                f"`openclaw-backup restore {parent.id[:8]}` (it is kept by retention)"
            )
        self.writer.flush()
        # unchanged, and nothing stored again (a blob stored again heals the repository: published)
        if parent is not None and parent.tree == top_id.hex() and not opts.force and not self.writer.packs:
            self._save_cache(outcomes)
            return BackupResult(None, parent.id, True, result_stats, self.reporter.warnings[first_warning:], [],
                                self.excluded.to_json(), self.excluded.specials)  # fmt: skip
        index_name = repo.save_index(self.writer.packs, backup=True)
        self._stored += [f"index/{index_name}"] if index_name else []
        result_stats["blobs_added"] = self.writer.blobs_written
        result_stats["bytes_added"] = self.writer.bytes_written
        clear = [] if repo.encrypted else self._clear_secrets(scanned)
        snap = Snapshot(
            tree=top_id.hex(),
            roots=roots,
            time=(opts.time or datetime.now(UTC)).isoformat(timespec="microseconds"),
            host=opts.host,
            username=opts.username,
            tags=sorted(set(opts.tags)),
            parent=parent.id if parent else None,
            tool_version=__version__,
            agent_version=opts.agent_version,
            origin=opts.origin,
            summary=result_stats,
            warnings=len(self.reporter.warnings) - first_warning,  # this backup's own
        )
        sid = self._sid = repo.save_snapshot(snap)
        self._stored.append(f"snapshots/{sid}")
        repo.publish(add_snapshots=[sid], add_indexes=[index_name] if index_name else [], needs=self._check_needed)
        self._save_cache(outcomes)
        warnings = self.reporter.warnings[first_warning:]  # problems with inputs (exit 3), not the notices below
        for path in clear:
            self.reporter.warn(f"stored in the clear (repository is not encrypted): {path}")
        return BackupResult(sid, snap.parent, False, result_stats, warnings, clear, self.excluded.to_json(),
                            self.excluded.specials)  # fmt: skip

    def _check_needed(self) -> None:
        """Before publishing over a head other than the one the index was loaded under (after a
        conflict, or after the head was read again meanwhile): is everything this snapshot
        references still there?

        Blobs from the index must still be indexed (a prune may have dropped them), and our own
        new packs must still exist (a prune may have taken them for a crashed writer's leftovers).
        """
        missing = len(self.writer.unstored(self.needed)) + len(self.writer.vanished_packs())
        if missing:
            raise ConflictError(
                f"a concurrent prune removed {missing} blobs this backup reuses; nothing was published",
                hint="run the backup again",
            )

    def _parent(self, roots: dict[str, dict[str, str]]) -> Snapshot | None:
        names = set(roots)
        for snap in reversed(self.repo.snapshots()):
            if set(snap.roots) == names and snap.host == self.opts.host:
                return snap
        return None

    def _save_cache(self, outcomes: dict[str, Outcome | None]) -> None:
        limit = self.start_ns - RACY_WINDOW_NS
        entries: dict[str, CachedFile] = {}
        for path, out in outcomes.items():
            if out is None or not out.sig:
                continue
            if max(out.st.st_mtime_ns, out.wal_mtime_ns) >= limit:
                continue  # racy: read it again next time
            entries[path] = CachedFile(out.sig, out.content, out.sqlite, out.info)
        self.cache.replace(entries)

    def _clear_secrets(self, scanned: list[Entry]) -> list[str]:
        out: list[str] = []

        def visit(e: Entry) -> None:
            if e.kind == "file" and SECRET_PATTERNS.search(e.rel):
                out.append(e.path)
            for c in e.children:
                visit(c)

        for e in scanned:
            visit(e)
        return out


def backup(repo: Repository, options: BackupOptions, *, reporter: Reporter, cache: FileCache) -> BackupResult:
    """Take one snapshot (see the module docstring)."""
    return Archiver(repo, options, reporter=reporter, cache=cache).run()
