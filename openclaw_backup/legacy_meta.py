"""Reading the legacy script's metadata: which backups exist and how they chain.

This module owns everything about the legacy repository *before* any archive byte is read: the
storage protocol the reader needs, the parsed form of a ``.meta.json``, and the rules that turn
"the latest backup" into the ordered list of archives a restore must overlay. Extraction lives in
:mod:`openclaw_backup.legacy`, which re-exports this module's public names.

Words used here (see ``docs/legacy.md`` and ``LEGACY_FORMAT.md``):

- *repo path*: a ``/``-separated path relative to the repository root, e.g.
  ``backups/openclaw-backup-20260425-013501.tar.gz.meta.json``.
- *prefix*: the folder holding the backups (the legacy ``OPENCLAW_BACKUP_PATH_PREFIX``, default
  ``backups``; ``""`` means the repository root). ``latest-backup.json`` is always at the root.
- *archive name*: the stored name of one backup's archive without prefix, e.g.
  ``openclaw-backup-20260425-013501.tar.gz`` or ``….tar.gz.enc``; its metadata file is
  ``<prefix>/<archive name>.meta.json``.
- *volume*: one stored piece of an archive (the whole archive, or a ``.part-aa`` … piece).
- *chain*: a full backup followed by the incrementals built on it, oldest first; restoring means
  overlaying them in that order.
- *link*: the reference from an incremental to its parent (``parent``), or, when the legacy script
  wrote ``null`` there, the shared ``chain_id``.

Guarantees: parsing never raises anything but a :class:`~openclaw_backup.errors.BackupError`
subclass, whatever bytes the store returns; a chain is returned only when every link resolves
(a missing one is a :class:`BrokenChainError` naming it — the legacy script silently restored a
partial state instead).
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from openclaw_backup.errors import BackupError, IntegrityError, NotFoundError

LATEST_POINTER = "latest-backup.json"
META_SUFFIX = ".meta.json"
CHECKPOINT_SUFFIX = ".checkpoint.json"
MAX_CHAIN_STEPS = 100
"""The legacy script followed at most this many ``parent`` pointers; so do we."""

_NAME_TIME = re.compile(r"(\d{8}-\d{6})")
_CHECKSUM = re.compile(r"sha256:([0-9a-fA-F]{64})")

Warn = Callable[[str], None]


class LegacyError(BackupError):
    """Base of the errors raised while reading a legacy repository."""


class LegacyFormatError(LegacyError):
    """A metadata file (``.meta.json`` or ``latest-backup.json``) is unreadable or malformed."""


class BrokenChainError(LegacyError, IntegrityError):
    """A piece a restore needs (parent, full backup, volume) is missing or the links loop."""


class ArchiveNotFoundError(LegacyError, NotFoundError):
    """The archive asked for by name (``OPENCLAW_RESTORE_ARCHIVE``) has no metadata file."""


class LegacyStore(Protocol):
    """The two read operations the legacy reader needs; every project backend provides them."""

    def get(self, name: str) -> bytes:
        """Whole content of ``name``; raises :class:`~openclaw_backup.errors.NotFoundError` if absent."""
        ...

    def list(self, prefix: str) -> list[str]:
        """Repo paths starting with ``prefix`` (plain string prefix, not a folder)."""
        ...


@dataclass(frozen=True)
class LegacyBackup:
    """One legacy backup as its ``.meta.json`` describes it, with missing fields filled in.

    ``volumes`` are repo paths (the metadata stores them without prefix), in concatenation order.
    ``created_at`` is always UTC-aware. ``raw`` keeps the parsed JSON for informational fields.
    """

    meta_path: str
    archive_name: str
    backup_type: str
    chain_id: str | None
    parent: str | None
    volumes: tuple[str, ...]
    encrypted: bool
    checksum: str | None
    created_at: datetime
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def is_full(self) -> bool:
        return self.backup_type == "full"


def _folder(path: str) -> str:
    return posixpath.dirname(path)


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def _clean_ref(ref: str, *, what: str) -> str:
    """A repo path from metadata, refused when it could name something outside the repository."""
    cleaned = ref.strip().lstrip("/")
    parts = cleaned.split("/")
    if not cleaned or "\x00" in cleaned or any(p in ("", ".", "..") for p in parts):
        raise LegacyFormatError(f"{what} {ref!r} is not a valid repository path")
    return cleaned


def _parse_json(data: bytes, *, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise LegacyFormatError(f"{where} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise LegacyFormatError(f"{where} is not a JSON object")
    return doc


def _opt_str(doc: Mapping[str, Any], key: str, *, where: str) -> str | None:
    value = doc.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise LegacyFormatError(f"{where}: field {key!r} should be a string, not {type(value).__name__}")
    return value


def _opt_bool(doc: Mapping[str, Any], key: str, *, where: str) -> bool | None:
    value = doc.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise LegacyFormatError(f"{where}: field {key!r} should be a boolean, not {value!r}")


def parse_time(value: str, *, where: str) -> datetime:
    """ISO-8601 as the legacy script wrote it; naive values are UTC (they were taken in UTC)."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise LegacyFormatError(f"{where}: {value!r} is not an ISO-8601 time") from exc
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise LegacyFormatError(f"{where}: {value!r} is out of range") from exc


def _time_from_name(name: str) -> datetime | None:
    match = _NAME_TIME.search(name)
    if not match:
        return None
    try:
        return datetime.strptime(match.group(1), "%Y%m%d-%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def _discover_volumes(store: LegacyStore, folder: str, archive_name: str, is_split: bool | None) -> list[str]:
    """Volume names for old metadata without ``volumes``: the archive itself, else its parts."""
    whole = _join(folder, archive_name)
    if is_split is False:
        return [whole]
    names = set(store.list(whole))
    parts = sorted(n for n in names if n.startswith(whole + ".part-") and "/" not in n[len(whole) :])
    if is_split is None and whole in names:
        return [whole]
    return parts or [whole]


def parse_meta(data: bytes, meta_path: str, *, store: LegacyStore | None = None) -> LegacyBackup:
    """Parse one ``.meta.json`` (versions 1.0–2.1), filling what old versions lack.

    ``store`` is consulted only when the metadata lists no ``volumes`` (old versions), to find the
    archive or its parts next to the metadata file.
    """
    where = meta_path
    doc = _parse_json(data, where=where)
    base = posixpath.basename(meta_path)
    if not base.endswith(META_SUFFIX) or base == META_SUFFIX:
        raise LegacyFormatError(f"{meta_path!r} is not a legacy metadata name (…{META_SUFFIX})")
    archive_name = base[: -len(META_SUFFIX)]
    folder = _folder(meta_path)

    parent = _opt_str(doc, "parent", where=where)
    backup_type = _opt_str(doc, "backup_type", where=where) or ("incremental" if parent else "full")
    if backup_type not in ("full", "incremental"):
        raise LegacyFormatError(f"{where}: unknown backup_type {backup_type!r}")

    encrypted = _opt_bool(doc, "encrypted", where=where)
    if encrypted is None:
        encrypted = archive_name.endswith(".enc")

    checksum: str | None = None
    raw_sum = _opt_str(doc, "checksum", where=where)
    if raw_sum is not None:
        match = _CHECKSUM.fullmatch(raw_sum.strip())
        if not match:
            raise LegacyFormatError(f"{where}: checksum {raw_sum!r} is not 'sha256:<64 hex digits>'")
        checksum = match.group(1).lower()

    raw_volumes = doc.get("volumes")
    if raw_volumes is None or raw_volumes == []:
        if store is None:
            volumes = [_join(folder, archive_name)]
        else:
            volumes = _discover_volumes(store, folder, archive_name, _opt_bool(doc, "is_split", where=where))
    else:
        if not isinstance(raw_volumes, list) or not all(isinstance(v, str) for v in raw_volumes):
            raise LegacyFormatError(f"{where}: 'volumes' should be a list of names")
        volumes = []
        for vol in raw_volumes:
            name = _clean_ref(vol, what=f"{where}: volume")
            if folder and name.startswith(folder + "/"):
                name = name[len(folder) + 1 :]
            if "/" in name:
                raise LegacyFormatError(f"{where}: volume {vol!r} is not a file name next to the metadata")
            volumes.append(_join(folder, name))

    created_at: datetime | None = None
    for key in ("created_at_utc", "last_backup_time", "created_at", "timestamp"):
        text = _opt_str(doc, key, where=where)
        if text is not None:
            created_at = parse_time(text, where=f"{where}: {key}")
            break
    if created_at is None:
        created_at = _time_from_name(archive_name)
    if created_at is None:
        raise LegacyFormatError(f"{where}: no creation time in the metadata or the name")

    return LegacyBackup(
        meta_path=meta_path,
        archive_name=archive_name,
        backup_type=backup_type,
        chain_id=_opt_str(doc, "chain_id", where=where),
        parent=parent,
        volumes=tuple(volumes),
        encrypted=encrypted,
        checksum=checksum,
        created_at=created_at,
        raw=doc,
    )


def load_backup(store: LegacyStore, meta_path: str) -> LegacyBackup:
    """Read and parse ``meta_path``; a missing file is the store's ``NotFoundError``."""
    return parse_meta(store.get(meta_path), meta_path, store=store)


def _ref_candidates(ref: str, prefix: str) -> list[str]:
    """Where a reference from metadata may point: under the prefix first, then as written."""
    path = _clean_ref(ref, what="reference")
    if not path.endswith(META_SUFFIX):
        path += META_SUFFIX
    candidates = []
    if prefix and not path.startswith(prefix + "/"):
        candidates.append(_join(prefix, path))
    candidates.append(path)
    if prefix:
        candidates.append(_join(prefix, posixpath.basename(path)))
    return list(dict.fromkeys(candidates))


def _load_ref(store: LegacyStore, ref: str, *, prefix: str, named_by: str) -> LegacyBackup:
    candidates = _ref_candidates(ref, prefix)
    for candidate in candidates:
        try:
            return load_backup(store, candidate)
        except NotFoundError:
            continue
    raise BrokenChainError(
        f"{named_by} names {ref!r}, which does not exist (looked for {', '.join(candidates)})",
        hint="the backup chain is incomplete; restore an older complete backup by name, or a newer full one",
    )


def _clean_prefix(prefix: str) -> str:
    return prefix.strip("/")


def find_latest(store: LegacyStore, *, prefix: str = "backups") -> LegacyBackup | None:
    """The backup ``latest-backup.json`` names, or ``None`` when there is no such file.

    ``None`` means "nothing was ever backed up here" (the legacy script then restored nothing and
    succeeded); a pointer naming a missing backup is a :class:`BrokenChainError`.
    """
    try:
        data = store.get(LATEST_POINTER)
    except NotFoundError:
        return None
    doc = _parse_json(data, where=LATEST_POINTER)
    latest = _opt_str(doc, "latest", where=LATEST_POINTER)
    if latest is None:
        raise LegacyFormatError(f"{LATEST_POINTER} has no 'latest' field")
    return _load_ref(store, latest, prefix=_clean_prefix(prefix), named_by=LATEST_POINTER)


def find_archive(store: LegacyStore, *, prefix: str = "backups", archive_name: str) -> LegacyBackup:
    """The backup called ``archive_name`` (``OPENCLAW_RESTORE_ARCHIVE`` semantics).

    Accepts the archive name with or without ``.meta.json``, with or without the prefix, and
    without its ``.tar.gz[.enc]`` extension.
    """
    prefix = _clean_prefix(prefix)
    name = archive_name.strip().lstrip("/")
    if name.endswith(META_SUFFIX):
        name = name[: -len(META_SUFFIX)]
    if prefix and name.startswith(prefix + "/"):
        name = name[len(prefix) + 1 :]
    if not name or "/" in name or name in (".", ".."):
        raise ArchiveNotFoundError(f"{archive_name!r} is not a legacy archive name")
    tried = []
    for candidate in (name, name + ".tar.gz", name + ".tar.gz.enc"):
        path = _join(prefix, candidate + META_SUFFIX)
        tried.append(path)
        try:
            return load_backup(store, path)
        except NotFoundError:
            continue
    raise ArchiveNotFoundError(
        f"no legacy backup named {archive_name!r} (looked for {', '.join(tried)})",
        hint="names look like openclaw-backup-YYYYmmdd-HHMMSS.tar.gz[.enc]",
    )


def _sort_key(backup: LegacyBackup) -> tuple[datetime, str]:
    return (backup.created_at, backup.archive_name)


def list_backups(store: LegacyStore, *, prefix: str = "backups", warn: Warn | None = None) -> list[LegacyBackup]:
    """Every backup whose metadata sits directly in the prefix folder, oldest first.

    Checkpoint files of interrupted uploads are ignored. A malformed metadata file raises, unless
    ``warn`` is given: then it is reported and skipped.
    """
    prefix = _clean_prefix(prefix)
    found = []
    for name in sorted(store.list(prefix + "/" if prefix else "")):
        if not name.endswith(META_SUFFIX) or _folder(name) != prefix:
            continue
        try:
            found.append(load_backup(store, name))
        except (LegacyFormatError, NotFoundError) as exc:
            if warn is None:
                raise
            warn(f"skipping {name}: {exc}")
    return sorted(found, key=_sort_key)


def _chain_by_id(store: LegacyStore, orphan: LegacyBackup, *, prefix: str, warn: Warn | None) -> list[LegacyBackup]:
    """Full backup + incrementals of ``orphan``'s chain up to ``orphan`` (an incremental whose
    ``parent`` is null), oldest first."""
    if orphan.chain_id is None:
        raise BrokenChainError(
            f"{orphan.meta_path} is an incremental backup with neither a parent nor a chain_id",
        )
    same = [b for b in list_backups(store, prefix=prefix, warn=warn) if b.chain_id == orphan.chain_id]
    fulls = [b for b in same if b.is_full and b.created_at <= orphan.created_at]
    if not fulls:
        raise BrokenChainError(
            f"the full backup of chain {orphan.chain_id} (needed by {orphan.meta_path}) does not exist",
            hint="restore an older complete backup by name, or a newer full one",
        )
    full = max(fulls, key=_sort_key)
    middle = [
        b
        for b in same
        if not b.is_full and full.created_at <= b.created_at <= orphan.created_at and b.meta_path != orphan.meta_path
    ]
    return [full, *sorted(middle, key=_sort_key), orphan]


def resolve_chain(
    store: LegacyStore, latest: LegacyBackup, *, prefix: str = "backups", warn: Warn | None = None
) -> list[LegacyBackup]:
    """The backups to overlay to restore ``latest``: its full backup first, ``latest`` last.

    Follows ``parent`` (at most :data:`MAX_CHAIN_STEPS` steps, prefix optional in the pointer);
    an incremental with a null parent is completed from its ``chain_id`` (the full backup of that
    chain and its incrementals up to that time). Raises :class:`BrokenChainError` naming the first
    missing link, on a loop, or on a parent from another chain; never returns a partial chain.
    """
    prefix = _clean_prefix(prefix)
    newest_first = [latest]
    seen = {latest.meta_path}
    current = latest
    for _ in range(MAX_CHAIN_STEPS + 1):
        if current.is_full:
            return newest_first[::-1]
        if current.parent is None:
            head = _chain_by_id(store, current, prefix=prefix, warn=warn)
            return head + newest_first[::-1][1:]
        parent = _load_ref(store, current.parent, prefix=prefix, named_by=current.meta_path)
        if parent.meta_path in seen:
            raise BrokenChainError(f"the parent pointers loop at {parent.meta_path}")
        if parent.chain_id and current.chain_id and parent.chain_id != current.chain_id:
            raise BrokenChainError(
                f"{current.meta_path} (chain {current.chain_id}) names a parent of another chain: "
                f"{parent.meta_path} (chain {parent.chain_id})"
            )
        seen.add(parent.meta_path)
        newest_first.append(parent)
        current = parent
    raise BrokenChainError(
        f"no full backup within {MAX_CHAIN_STEPS} parent steps of {latest.meta_path}",
    )
