"""Reader of the legacy script's backups: find them, fetch, verify, decrypt and extract a chain.

This module owns turning legacy ``tar.gz[.enc][.part-*]`` archives into plain folders in a staging
directory; locating backups and resolving chains is in :mod:`openclaw_backup.legacy_meta`, whose
public names are re-exported here. Words (beyond those defined there):

- *staging directory*: an empty folder the caller owns; after :func:`extract_chain` it holds one
  entry per *archive root*.
- *archive root*: a top-level entry of a legacy archive (``openclaw-state/``, ``root-config/``,
  an extra file such as ``my-file``…); the caller maps each to a local place.
- *overlay*: extracting a chain's archives oldest first into the same tree, a later archive's
  entry replacing an earlier one's (the legacy format cannot express deletions).

Guarantees of :func:`extract_chain`: each archive's sha256 is checked against its metadata before
it is decrypted or extracted; decryption (OpenSSL ``enc -aes-256-cbc -salt -pbkdf2``) is done in
Python and streamed through temporary files inside the staging directory; nothing is ever written
outside the staging directory (absolute names, ``..``, paths through a symlink, devices and fifos,
hard links leaving their root are refused with :class:`UnsafeArchiveError`); on any error the
staging directory is emptied again, so partial output can't be mistaken for a restore. Every
failure is a :class:`~openclaw_backup.errors.BackupError` subclass.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO

from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from openclaw_backup.errors import IntegrityError, NotFoundError, UnsafeRestoreError, WrongPasswordError
from openclaw_backup.legacy_meta import (
    LATEST_POINTER,
    MAX_CHAIN_STEPS,
    ArchiveNotFoundError,
    BrokenChainError,
    LegacyBackup,
    LegacyError,
    LegacyFormatError,
    LegacyStore,
    Warn,
    find_archive,
    find_latest,
    list_backups,
    load_backup,
    parse_meta,
    resolve_chain,
)

__all__ = [
    "LATEST_POINTER",
    "MAX_CHAIN_STEPS",
    "ArchiveNotFoundError",
    "BrokenChainError",
    "ChecksumMismatchError",
    "CorruptArchiveError",
    "LegacyBackup",
    "LegacyError",
    "LegacyFormatError",
    "LegacyStore",
    "PasswordRequiredError",
    "UnsafeArchiveError",
    "WrongLegacyPasswordError",
    "decrypt_openssl",
    "extract_chain",
    "find_archive",
    "find_latest",
    "list_backups",
    "load_backup",
    "parse_meta",
    "resolve_chain",
]

OPENSSL_MAGIC = b"Salted__"
PBKDF2_ITERATIONS = 10_000
"""OpenSSL's default for ``enc -pbkdf2``; the legacy script never changed it."""
_CHUNK = 1 << 20
_WORK_PREFIX = ".legacy-work-"
_GZIP_MAGIC = b"\x1f\x8b"


class ChecksumMismatchError(LegacyError, IntegrityError):
    """The stored bytes of an archive don't hash to the metadata's ``checksum``."""


class CorruptArchiveError(LegacyError, IntegrityError):
    """An archive can't be decrypted or read as gzip'd tar (framing, truncation, bad headers)."""


class WrongLegacyPasswordError(LegacyError, WrongPasswordError):
    """The password doesn't decrypt an (intact) encrypted archive."""


class PasswordRequiredError(WrongLegacyPasswordError):
    """An archive is encrypted and no password was given."""


class UnsafeArchiveError(LegacyError, UnsafeRestoreError):
    """An archive member would escape the staging directory, or is a device, fifo or bad link."""


def _no_warn(message: str) -> None:
    del message


# -- fetching and decrypting ------------------------------------------------------------------


def _fetch(store: LegacyStore, backup: LegacyBackup, dest: Path, *, warn: Warn) -> None:
    """Concatenate the volumes into ``dest``, hashing as we write, and check the checksum."""
    digest = hashlib.sha256()
    with dest.open("wb") as out:
        for volume in backup.volumes:
            try:
                data = store.get(volume)
            except NotFoundError as exc:
                raise BrokenChainError(
                    f"volume {volume} of {backup.archive_name} is missing",
                    hint="the backup is incomplete (an interrupted upload?); restore another one by name",
                ) from exc
            digest.update(data)
            out.write(data)
            del data
    if backup.checksum is None:
        warn(f"{backup.archive_name} has no checksum in its metadata; it is restored unverified")
    elif digest.hexdigest() != backup.checksum:
        raise ChecksumMismatchError(
            f"{backup.archive_name}: sha256 is {digest.hexdigest()}, its metadata says {backup.checksum}",
            hint="the stored archive is corrupt or incomplete; restore another backup by name",
        )


def _openssl_key(password: str, salt: bytes) -> tuple[bytes, bytes]:
    """Key and IV as ``openssl enc -pbkdf2 -pass file:`` derives them.

    ``-pass file:`` uses the file's first line without its newline, at most 1023 bytes; we do the
    same so a password that was written with a trailing newline still opens its archives.
    """
    secret = password.encode("utf-8").split(b"\n", 1)[0][:1023]
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=48, salt=salt, iterations=PBKDF2_ITERATIONS)
    material = kdf.derive(secret)
    return material[:32], material[32:]


def decrypt_openssl(src: IO[bytes], dst: IO[bytes], *, password: str) -> None:
    """Stream-decrypt ``openssl enc -aes-256-cbc -salt -pbkdf2`` output from ``src`` into ``dst``.

    Raises :class:`CorruptArchiveError` when the framing is wrong (no ``Salted__`` header, length
    not a whole number of blocks) and :class:`WrongLegacyPasswordError` when the padding is bad —
    with an intact file that means the password is wrong (there is no authentication to tell).
    """
    header = src.read(16)
    if len(header) != 16 or not header.startswith(OPENSSL_MAGIC):
        raise CorruptArchiveError("encrypted archive lacks the OpenSSL 'Salted__' header")
    key, iv = _openssl_key(password, header[8:])
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    while chunk := src.read(_CHUNK):
        dst.write(unpadder.update(decryptor.update(chunk)))
    try:
        tail = decryptor.finalize()
    except ValueError as exc:
        raise CorruptArchiveError("encrypted archive is not a whole number of AES blocks") from exc
    try:
        dst.write(unpadder.update(tail) + unpadder.finalize())
    except ValueError as exc:
        raise WrongLegacyPasswordError(
            "wrong password for the legacy backup (bad padding after decryption)",
            hint="use the OPENCLAW_BACKUP_ENCRYPTION_PASSWORD the backup was made with",
        ) from exc


def _plain_archive(backup: LegacyBackup, stored: Path, work: Path, *, password: str | None) -> Path:
    """Path of the gzip'd tar for ``backup``: ``stored`` itself, or its decryption."""
    if not backup.encrypted:
        return stored
    if password is None:
        raise PasswordRequiredError(
            f"{backup.archive_name} is encrypted and no password was given",
            hint="set the password the backups were made with (OPENCLAW_BACKUP_ENCRYPTION_PASSWORD)",
        )
    plain = work / "archive.tar.gz"
    with stored.open("rb") as src, plain.open("wb") as dst:
        decrypt_openssl(src, dst, password=password)
    stored.unlink()
    with plain.open("rb") as f:
        if f.read(2) != _GZIP_MAGIC:
            # Padding happens to look valid for ~1/256 wrong passwords; gzip's magic catches most.
            raise WrongLegacyPasswordError(
                f"wrong password for {backup.archive_name} (decrypted data is not gzip)",
                hint="use the OPENCLAW_BACKUP_ENCRYPTION_PASSWORD the backup was made with",
            )
    return plain


# -- safe extraction ----------------------------------------------------------------------------

_READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError, ValueError, UnicodeError)


def _member_parts(name: str, *, archive: str) -> tuple[str, ...]:
    """Components of a member name; refuses absolute names, ``..`` and NUL."""
    if "\x00" in name or name.startswith("/"):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute or invalid name")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} contains '..'")
    return parts


class _Overlay:
    """Extracts archives one after another into ``root``, never following a symlink."""

    def __init__(self, root: Path, *, reserved: str) -> None:
        self.root = root
        self.reserved = reserved
        self.dir_meta: dict[tuple[str, ...], tuple[int, float]] = {}
        self.made_dirs: set[tuple[str, ...]] = set()

    def _path(self, parts: Sequence[str]) -> Path:
        return self.root.joinpath(*parts)

    def _parent(self, parts: tuple[str, ...], *, archive: str, name: str, create: bool = True) -> Path:
        """The directory that will hold ``parts[-1]``; each component must be a real directory."""
        here = self.root
        for depth in range(1, len(parts)):
            here = here / parts[depth - 1]
            try:
                st = os.lstat(here)
            except FileNotFoundError:
                if not create:
                    raise UnsafeArchiveError(f"{archive}: link {name!r} points at a missing file") from None
                os.mkdir(here)
                self.made_dirs.add(parts[:depth])
                continue
            if stat.S_ISLNK(st.st_mode):
                raise UnsafeArchiveError(f"{archive}: member {name!r} would be written through a symlink")
            if not stat.S_ISDIR(st.st_mode):
                if not create:
                    raise UnsafeArchiveError(f"{archive}: link {name!r} points through a non-directory")
                os.unlink(here)  # a later archive turned a file into a folder
                os.mkdir(here)
                self.made_dirs.add(parts[:depth])
        return here

    @staticmethod
    def _clear(path: Path) -> None:
        """Remove what is at ``path`` (never following a symlink) so a new entry can take its place."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(path)
        else:
            os.unlink(path)

    def extract(self, tar_path: Path, *, archive: str) -> None:
        with gzip.open(tar_path, "rb") as unzipped:
            try:
                # gzip.GzipFile, not tarfile's own "r|gz" reader, which fails untyped on short headers.
                tf = tarfile.open(fileobj=unzipped, mode="r|")  # noqa: SIM115 (closed by the `with` below)
            except _READ_ERRORS as exc:
                if _is_empty_tar(tar_path):
                    return  # `tar -T /dev/null`: an incremental without changes
                with tar_path.open("rb") as f:
                    hint = "it looks encrypted, but its metadata says not" if f.read(8) == OPENSSL_MAGIC else None
                raise CorruptArchiveError(f"{archive} is not a gzip'd tar archive: {exc}", hint=hint) from exc
            self._members(tf, archive=archive)

    def _members(self, tf: tarfile.TarFile, *, archive: str) -> None:
        files: set[tuple[str, ...]] = set()
        with tf:
            while True:
                try:
                    member = tf.next()
                except _READ_ERRORS as exc:
                    raise CorruptArchiveError(f"{archive} is corrupt or truncated: {exc}") from exc
                if member is None:
                    return
                self._member(tf, member, archive=archive, files=files)

    def _member(
        self, tf: tarfile.TarFile, member: tarfile.TarInfo, *, archive: str, files: set[tuple[str, ...]]
    ) -> None:
        name = member.name
        parts = _member_parts(name, archive=archive)
        if not parts:
            if member.isdir():
                return  # the "./" entry of `tar -C dir .`
            raise UnsafeArchiveError(f"{archive}: member {name!r} has no name")
        if parts[0] == self.reserved:
            raise UnsafeArchiveError(f"{archive}: member {name!r} uses a reserved name")
        if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
            raise UnsafeArchiveError(f"{archive}: member {name!r} is a device, fifo or unknown type; refused")
        target = self._parent(parts, archive=archive, name=name) / parts[-1]
        mode = member.mode & 0o777
        if member.isdir():
            try:
                is_dir = stat.S_ISDIR(os.lstat(target).st_mode)
            except FileNotFoundError:
                is_dir = False
            if not is_dir:
                self._clear(target)
                os.mkdir(target)
            self.made_dirs.add(parts)
            self.dir_meta[parts] = (mode, member.mtime)
            return
        if member.issym():
            if "\x00" in member.linkname or not member.linkname:
                raise UnsafeArchiveError(f"{archive}: symlink {name!r} has an invalid target")
            self._clear(target)
            os.symlink(member.linkname, target)
            self._utime(target, member.mtime, archive=archive, follow=False)
            files.discard(parts)
            return
        if member.islnk():
            link = _member_parts(member.linkname, archive=archive)
            if not link or link[0] != parts[0] or link == parts or link not in files:
                raise UnsafeArchiveError(
                    f"{archive}: hard link {name!r} -> {member.linkname!r} does not point at a file "
                    "extracted earlier under the same root"
                )
            source = self._parent(link, archive=archive, name=name, create=False) / link[-1]
            if not stat.S_ISREG(os.lstat(source).st_mode):
                raise UnsafeArchiveError(f"{archive}: hard link {name!r} points at a non-file")
            self._clear(target)
            os.link(source, target, follow_symlinks=False)
            files.add(parts)
            return
        self._clear(target)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            try:
                src = tf.extractfile(member)
            except _READ_ERRORS as exc:
                raise CorruptArchiveError(f"{archive}: can't read {name!r}: {exc}") from exc
            if src is not None:
                while True:
                    try:
                        chunk = src.read(_CHUNK)
                    except _READ_ERRORS as exc:
                        raise CorruptArchiveError(f"{archive}: can't read {name!r}: {exc}") from exc
                    if not chunk:
                        break
                    out.write(chunk)
            os.fchmod(out.fileno(), mode)
        self._utime(target, member.mtime, archive=archive, follow=True)
        files.add(parts)

    @staticmethod
    def _utime(path: Path, mtime: float, *, archive: str, follow: bool) -> None:
        try:
            os.utime(path, (mtime, mtime), follow_symlinks=follow)
        except (OverflowError, ValueError) as exc:
            raise CorruptArchiveError(f"{archive}: {path.name!r} has an invalid mtime {mtime!r}") from exc

    def finish(self) -> None:
        """Apply directory modes and mtimes last (writing into a folder changes its mtime, and a
        read-only folder would have blocked later members); deepest first."""
        for parts in sorted(self.made_dirs, key=len, reverse=True):
            path = self._path(parts)
            try:
                if not stat.S_ISDIR(os.lstat(path).st_mode):
                    continue  # replaced by a file or symlink later in the chain
            except FileNotFoundError:
                continue
            mode, mtime = self.dir_meta.get(parts, (0o755, None))
            os.chmod(path, mode)
            if mtime is not None:
                self._utime(path, mtime, archive="chain", follow=False)


def _is_empty_tar(path: Path) -> bool:
    """Whether ``path`` is a gzip'd tar holding no member (only end-of-archive zero blocks)."""
    size = 0
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                if chunk.count(0) != len(chunk):
                    return False
                size += len(chunk)
    except (OSError, EOFError, zlib.error):
        return False
    return size > 0 and size % tarfile.RECORDSIZE == 0


def _make_writable(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        os.chmod(path, 0o700)
        for child in path.iterdir():
            _make_writable(child)


def _wipe(root: Path) -> None:
    """Empty ``root`` even when extraction left read-only folders behind."""
    for entry in list(root.iterdir()):
        if entry.is_dir() and not entry.is_symlink():
            _make_writable(entry)
            shutil.rmtree(entry)
        else:
            entry.unlink()


def extract_chain(
    store: LegacyStore,
    chain: Iterable[LegacyBackup],
    *,
    password: str | None,
    staging_dir: Path,
    warn: Warn | None = None,
) -> dict[str, Path]:
    """Overlay ``chain`` (oldest first, as :func:`resolve_chain` returns it) into ``staging_dir``.

    ``staging_dir`` must be empty or absent. Returns ``{archive root: path}`` for each top-level
    entry, e.g. ``{"openclaw-state": staging_dir / "openclaw-state", "my-file": …}``. Modes
    (permission bits only) and mtimes are kept; ownership isn't. On any error nothing is left in
    ``staging_dir`` and the error propagates.
    """
    report = warn or _no_warn
    backups = list(chain)
    if not backups:
        raise LegacyError("no legacy backups to extract")
    staging_dir.mkdir(parents=True, exist_ok=True)
    if any(staging_dir.iterdir()):
        raise LegacyError(f"staging directory {staging_dir} is not empty")
    work = Path(tempfile.mkdtemp(prefix=_WORK_PREFIX, dir=staging_dir))
    overlay = _Overlay(staging_dir, reserved=work.name)
    try:
        for backup in backups:
            try:
                stored = work / "archive.stored"
                _fetch(store, backup, stored, warn=report)
                plain = _plain_archive(backup, stored, work, password=password)
                overlay.extract(plain, archive=backup.archive_name)
                plain.unlink()
            except OSError as exc:  # local disk: full, name too long, permissions…
                raise LegacyError(f"extracting {backup.archive_name} failed: {exc}") from exc
        shutil.rmtree(work)
        try:
            overlay.finish()
        except OSError as exc:
            raise LegacyError(f"setting folder modes and times failed: {exc}") from exc
    except BaseException:
        _wipe(staging_dir)
        raise
    return {entry.name: entry for entry in sorted(staging_dir.iterdir())}
