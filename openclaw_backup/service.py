"""The jobs behind ``run``, ``backup`` and ``restore`` when used as a Space's backup service.

Glue at the edge: given :class:`~.settings.Settings`, it opens (or, on first use, creates) the
repository, decides whether and what to restore — the newest of our snapshots and the legacy
script's chain, falling back to the previous snapshot when the newest fails verification — and
runs backups and maintenance for the :class:`~.supervisor.Supervisor`.

Legacy conventions kept: ``/tmp/openclaw-restore-completed`` is touched after a successful restore
and ``/tmp/openclaw-restore-skipped-no-backup`` when there is nothing to restore (container
entrypoints wait on them); ``OPENCLAW_RESTORE_DATASET_REPO`` and ``OPENCLAW_RESTORE_ARCHIVE`` choose
another repository or a given legacy archive.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from . import legacy
from .archiver import BackupOptions, backup
from .backends import commit_budget, open_backend
from .backends.base import Backend
from .errors import (
    BackupError,
    IntegrityError,
    NotFoundError,
    RepositoryNotFoundError,
    UsageError,
    WrongPasswordError,
)
from .filecache import FileCache
from .marker import marker_path, read_marker, write_marker
from .reporter import Reporter
from .repository import Repository
from .restorer import RestoreOptions, restore
from .retention import DEFAULT_POLICY, Policy, snapshot_time
from .settings import Settings, restore_destinations
from .snapshot import Snapshot, agent_snapshots, written_by_newer
from .sources import INTERNAL_EXCLUDES, STATE_ROOT, Excluder, Root, default_patterns, scan_root
from .supervisor import Account, Description
from .swap import kept_copies_note, swap_into_place
from .units import human_size

FLAG_COMPLETED = "/tmp/openclaw-restore-completed"
#: The legacy script's own metadata folder inside its archives (not the user's data).
LEGACY_METADATA_FOLDER = "backup-info"
PASSWORD_HINT = (
    "set OPENCLAW_BACKUP_PASSWORD (in a Space: as a Space secret), or OPENCLAW_BACKUP_PASSWORD_FILE; "
    "`openclaw-backup config` shows where the password would come from"
)
FLAG_SKIPPED = "/tmp/openclaw-restore-skipped-no-backup"


class Service:
    """One configured agent home and its repository."""

    def __init__(
        self,
        settings: Settings,
        *,
        reporter: Reporter,
        roots: list[Root] | None = None,
        excludes: list[str] | None = None,
    ) -> None:
        self.s = settings
        self.reporter = reporter
        self.roots = roots
        self.excludes = (excludes if excludes is not None else default_patterns()) + list(INTERNAL_EXCLUDES)
        self._repo: Repository | None = None

    # ------------------------------------------------------------------ repository

    def repo(self, *, create: bool = True) -> Repository:
        if self._repo is not None:
            self._repo.refresh()
            return self._repo
        address = self.s.repository()
        try:
            backend = open_backend(address, self.s.backend_options(create=create))
            try:
                self._repo = Repository.open(backend, password=self.s.password(), cache_dir=self.s.cache_root())
            except WrongPasswordError:
                if self.s.password() is not None or not self.s.can_ask():
                    raise
                self._repo = Repository.open(backend, password=self.s.ask_password(), cache_dir=self.s.cache_root())
        except RepositoryNotFoundError:
            if not create:
                raise
            self._repo = self._init(open_backend(address, self.s.backend_options(create=True)))
        self._repo.report_to(self.reporter.warn)
        return self._repo

    def _init(self, backend: Backend) -> Repository:
        password = self.s.password()
        if not password:
            if not self.s.legacy_unencrypted_choice():
                raise UsageError(
                    f"no repository at {backend.location} and no password to create an encrypted one",
                    hint="set OPENCLAW_BACKUP_PASSWORD (or run `openclaw-backup init`)",
                )
            self.reporter.warn("creating an UNENCRYPTED repository (legacy configuration without encryption)")
        repo = Repository.init(
            backend,
            password=password or None,
            kdf=self.s.kdf_params(),
            cache_dir=self.s.cache_root(),
            hostname=self.s.host(),
            username=self.s.username(),
        )
        self.reporter.info(f"created repository {repo.id[:8]} at {backend.location}")
        return repo

    # ------------------------------------------------------------------ backup

    def backup_options(self, **kw: Any) -> BackupOptions:
        return BackupOptions(
            roots=self.roots or self.s.default_roots(),
            excludes=self.excludes,
            host=self.s.host(),
            username=self.s.username(),
            agent_version=self.s.agent_version(),
            scratch_dir=self.s.cache_root() / "tmp",
            **kw,
        )

    def preflight(self) -> UsageError | None:
        """What makes every backup of ``run`` useless or impossible, found before the agent starts:
        in a Space, a repository that does not outlive the container; anywhere, no password for an
        encrypted (or a not yet created) repository. None when all looks well or cannot be told yet
        (the store unreachable: the backups will say)."""
        problem = self.s.durability_problem()
        if problem is not None:
            return problem
        try:
            if self.s.password() is not None or self.s.legacy_unencrypted_choice():
                return None
        except UsageError as e:
            return e
        try:
            self.repo(create=False)  # opens only when it needs no password (an unencrypted repository)
        except RepositoryNotFoundError:
            return UsageError(
                f"no password: the repository {self.s.repository()} does not exist yet and cannot be created "
                "encrypted without one",
                hint=PASSWORD_HINT,
            )
        except (UsageError, WrongPasswordError) as e:
            return UsageError(f"no password: {e.message}", hint=PASSWORD_HINT)
        except BackupError:
            return None
        return None

    def backup(self) -> Account:
        problem = self.s.durability_problem()
        if problem is not None:
            raise problem
        repo = self.repo()
        cache = FileCache(repo.cache_dir / "files.db" if repo.cache_dir else None)
        opts = self.backup_options()
        res = backup(repo, opts, reporter=self.reporter, cache=cache)
        if any(r.name == STATE_ROOT for r in opts.roots):
            write_marker(Path(self.s.state_dir()), repository=repo.id, snapshot=res.snapshot_id or res.parent_id,
                         how="backup")  # fmt: skip
        st = res.stats
        if res.unchanged:
            text = f"no changes, nothing uploaded ({st['files']} files)"
        else:
            text = (
                f"snapshot {str(res.snapshot_id)[:8]}: {st['files_read']} of {st['files']} files changed "
                f"({human_size(st['bytes_read'])} read), {human_size(st['bytes_added'])} added"
            )
        return Account(text, tuple(res.warnings), changed=not res.unchanged)

    def describe(self) -> Description:
        roots = self.roots or self.s.default_roots()
        address = self.s.repository()
        return Description(
            repository=address, roots=[f"{r.name}={r.path}" for r in roots], commits_per_hour=commit_budget(address)
        )

    def change_token(self) -> str:
        h = hashlib.blake2b(digest_size=16)
        excluder = Excluder(self.excludes)

        def visit(e: Any) -> None:
            h.update(f"{e.rel}\0{e.st.st_size}\0{e.st.st_mtime_ns}\0{e.wal_sig}\n".encode("utf-8", "surrogateescape"))
            for c in e.children:
                visit(c)

        for root in self.roots or self.s.default_roots():
            entry = scan_root(root, excluder, warn=lambda m: None)
            if entry is not None:
                visit(entry)
        return h.hexdigest()

    def maintain(self, policy: Policy | None = None) -> str:
        from .prune import forget, prune

        repo = self.repo()
        policy = policy or self.s.keep_policy() or DEFAULT_POLICY
        gone = forget(repo, policy)
        pr = prune(repo, reporter=self.reporter, unindexed_grace=self.s.prune_grace())
        return f"forgot {len(gone.forgotten)} snapshots ({policy.describe()}); freed {human_size(pr.bytes_to_free)}"

    # ------------------------------------------------------------------ restore

    def state_missing(self) -> bool:
        state = Path(self.s.state_dir())
        try:
            return not any(state.iterdir())
        except (FileNotFoundError, NotADirectoryError):
            return True

    def restore_if_needed(self, *, force: bool) -> str:
        """Restore when the state is missing — absent or empty, or a skeleton: no marker (never
        restored or backed up here) and under half the files of the snapshot it would restore."""
        if force or self.state_missing():
            return self.restore_latest()
        state = Path(self.s.state_dir())
        if read_marker(state) is not None:
            return f"state present at {state} (marker {marker_path(state)}); not restoring over it"
        try:
            repo = Service(self._restore_source(), reporter=self.reporter).repo(create=False)
        except RepositoryNotFoundError:
            return f"state present at {state}; no repository to restore from"
        except BackupError as e:  # the state is there: never stop the agent for a check we cannot make
            self.reporter.warn(f"cannot compare the state at {state} with the repository ({e.message})")
            return f"state present at {state}; not restoring over it"
        snaps, _ = agent_snapshots(repo.snapshots(), host=self.s.host(), root=STATE_ROOT)
        if not snaps:
            return f"state present at {state}; no snapshot to restore"
        stored = snaps[-1].summary.get("files", 0)
        local = _count_files(state, limit=stored)
        if local * 2 >= stored:
            return f"state present at {state} ({local} files, no marker); not restoring over it"
        self.reporter.info(f"{state} holds {local} files and no marker against {stored} in the latest snapshot: "
                           "a skeleton state; restoring over it (it is kept beside it)")  # fmt: skip
        return self.restore_latest()

    def _restore_source(self) -> Settings:
        """``OPENCLAW_RESTORE_DATASET_REPO`` when set and it exists, else the backup repository."""
        configured = self.s.restore_repository()
        if configured is None:
            return self.s
        other, address = configured
        alt = self.s.with_repository(address)
        try:
            open_backend(alt.repository(), alt.backend_options()).read_head()  # a missing repo raises here
            return alt
        except RepositoryNotFoundError:
            self.reporter.warn(f"restore repository {other} does not exist; using the backup repository")
            return self.s

    def restore_latest(self, *, snapshot: str | None = None, target: Path | None = None) -> str:
        """Restore the newest good state (ours or legacy); touches the legacy flag files."""
        src = self._restore_source()
        archive = self.s.restore_archive()
        repo = None
        try:
            repo = Service(src, reporter=self.reporter).repo(create=False)
        except RepositoryNotFoundError:
            repo = None
        snaps = repo.snapshots() if repo is not None and not archive else []
        snaps, _ = agent_snapshots(snaps, host=self.s.host(), root=STATE_ROOT)  # never a one-off --source backup
        installed = self.s.installed_agent_version() if snaps else None
        readable = [sn for sn in snaps if not written_by_newer(sn, installed)]
        if snaps and not readable and (not snapshot or snapshot == "latest"):
            raise UsageError(
                f"every snapshot holds state written by a newer OpenClaw than the installed {installed} "
                f"(the latest by {snaps[-1].agent_version}); nothing was restored",
                hint="install that OpenClaw version, or restore a snapshot by id to override",
            )
        if len(readable) < len(snaps):
            self.reporter.warn(f"skipping {len(snaps) - len(readable)} newer snapshot(s) written by a newer OpenClaw "
                               f"than the installed {installed}")  # fmt: skip
        snaps = readable
        if snapshot and snapshot != "latest":
            if repo is None:
                raise RepositoryNotFoundError(f"no repository at {src.repository()}")
            snaps = [repo.find_snapshot(snapshot)]
        store = legacy_store(src)
        latest_legacy = None
        if store is not None and (not snapshot or snapshot == "latest"):
            prefix = self.s.legacy_prefix()
            try:
                latest_legacy = (
                    legacy.find_archive(store, prefix=prefix, archive_name=archive)
                    if archive
                    else legacy.find_latest(store, prefix=prefix)
                )
            except NotFoundError:
                if archive:
                    raise
        if latest_legacy is not None and (not snaps or latest_legacy.created_at > snapshot_time(snaps[-1])):
            account = self._restore_legacy(store, latest_legacy, target=target)
            _touch(FLAG_COMPLETED)
            return account
        if not snaps:
            _touch(FLAG_SKIPPED)
            return "nothing to restore (no snapshot yet)"
        assert repo is not None
        failures: list[str] = []
        for snap in reversed(snaps[-3:]):
            try:
                res = restore(
                    repo, snap, RestoreOptions(destinations=self._destinations(snap, target)), reporter=self.reporter
                )
            except IntegrityError as e:
                failures.append(f"{snap.id[:8]}: {e.message}")
                self.reporter.warn(f"snapshot {snap.id[:8]} failed verification ({e.message}); trying the previous one")
                continue
            for where in res.kept:
                if note := kept_copies_note(Path(where)):
                    self.reporter.info(note)
            if target is None and repo.cache_dir:
                FileCache(repo.cache_dir / "files.db").replace(res.seeds, merge=True)
            if target is None and STATE_ROOT in snap.roots:
                write_marker(Path(self.s.state_dir()), repository=repo.id, snapshot=snap.id, how="restore")
            _touch(FLAG_COMPLETED)
            note = f" (newer snapshots failed: {'; '.join(failures)})" if failures else ""
            return f"restored snapshot {snap.id[:8]} from {snap.time}: {res.files} files{note}"
        raise IntegrityError(
            "every recent snapshot failed verification: " + "; ".join(failures),
            hint="run `openclaw-backup check --read-data`",
        )

    def _destinations(self, snap: Snapshot, target: Path | None) -> dict[str, Path]:
        return restore_destinations(snap.roots, self.s, str(target) if target else None)

    def _restore_legacy(self, store: Any, latest: legacy.LegacyBackup, *, target: Path | None) -> str:
        prefix = self.s.legacy_prefix()
        chain = legacy.resolve_chain(store, latest, prefix=prefix, warn=self.reporter.warn)
        configured = {r.name: Path(r.path) for r in self.s.layout_roots()}
        base = Path(target) if target else Path(self.s.state_dir()).parent
        base.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".openclaw-legacy-restore-", dir=base))
        try:
            parts = legacy.extract_chain(
                store, chain, password=self.s.password(), staging_dir=staging / "x", warn=self.reporter.warn
            )
            done = []
            for name, path in parts.items():
                dest = (Path(target) / name) if target else configured.get(name)
                if dest is None:
                    self.reporter.warn(f"legacy archive folder {name!r} has no configured place; skipped")
                    continue
                swap_into_place(path, dest)
                done.append(name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return f"restored legacy backup {latest.archive_name} ({len(chain)} archives): {', '.join(done)}"


def migrate(service: Service, *, dry_run: bool = False) -> dict[str, Any]:
    """Import every legacy backup as a snapshot with its original time (oldest first, once each)."""
    s = service.s
    store = legacy_store(s)
    if store is None:
        raise NotFoundError(f"no legacy backups found in {s.repository()}")
    prefix = s.legacy_prefix()
    backups = legacy.list_backups(store, prefix=prefix, warn=service.reporter.warn)
    try:
        repo: Repository | None = service.repo(create=not dry_run)  # a dry run creates nothing
    except RepositoryNotFoundError:
        repo = None
    snaps = repo.snapshots() if repo is not None else []
    done = {t.removeprefix("legacy:") for snap in snaps for t in snap.tags if t.startswith("legacy:")}
    configured = {r.name: r.path for r in s.layout_roots()}
    imported: list[dict[str, Any]] = []
    skipped = [b.archive_name for b in backups if b.archive_name in done]
    for b in backups:
        if b.archive_name in done:
            continue
        if dry_run:
            imported.append({"archive": b.archive_name, "time": b.created_at.isoformat()})
            continue
        assert repo is not None
        chain = legacy.resolve_chain(store, b, prefix=prefix, warn=service.reporter.warn)
        with tempfile.TemporaryDirectory(prefix="openclaw-migrate-", dir=s.cache_root()) as tmp:
            parts = legacy.extract_chain(
                store, chain, password=s.password(), staging_dir=Path(tmp) / "x", warn=service.reporter.warn
            )
            kept = {n: p for n, p in parts.items() if n != LEGACY_METADATA_FOLDER}
            if len(kept) < len(parts):
                service.reporter.info(f"{b.archive_name}: {LEGACY_METADATA_FOLDER}/ (the legacy script's own "
                                      "metadata) is not imported")  # fmt: skip
            roots = [Root(name, str(path)) for name, path in sorted(kept.items())]
            # The roots keep their names (the archive folders are this tool's root names) and are
            # recorded where this machine keeps them, as a native backup here would record them; a
            # folder this machine does not configure (an extra dir of the old machine) under HOME.
            opts = service.backup_options(
                time=b.created_at,
                origin="legacy-import",
                tags=[f"legacy:{b.archive_name}"],
                force=True,
                recorded_paths={n: configured.get(n, str(s.home / n)) for n in kept},
            )
            opts = BackupOptions(**{**opts.__dict__, "roots": roots})
            res = backup(repo, opts, reporter=service.reporter, cache=FileCache(None))
        imported.append({"archive": b.archive_name, "time": b.created_at.isoformat(), "snapshot": res.snapshot_id})
    return {"imported": imported, "already_imported": skipped, "dry_run": dry_run}


def legacy_store(s: Settings) -> Any:
    """A read view of the repository's root, where the legacy script's files live (None if none)."""
    address = s.repository()
    if address.startswith("hf://"):
        from .legacy_hub import open_legacy_view

        try:
            return open_legacy_view(address, s.backend_options())
        except BackupError:
            return None
    if "://" in address:
        return None
    from .backends.local import LocalBackend

    root = Path(address)
    return LocalBackend(root) if (root / "latest-backup.json").exists() else None


def _count_files(top: Path, *, limit: int) -> int:
    """Files under ``top`` (symlinks not followed), counting stops past ``limit``."""
    n = 0
    for _base, _dirs, files in os.walk(top):
        n += len(files)
        if n > limit:
            break
    return n


def _touch(path: str) -> None:
    try:
        Path(path).touch()
    except OSError:
        pass
