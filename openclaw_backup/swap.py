"""Putting a restored tree in place: the atomic swap of a staging tree with its destination
(``renameat2(RENAME_EXCHANGE)``, else two renames that :func:`recover` completes or undoes after
an interruption), keeping what it replaces beside it (:func:`kept_name`), and carrying into the
staging tree what the destination holds that the snapshot lacks (:func:`merge_existing`).
Used by :mod:`.restorer` and the service; names the marks that staging and old copies carry."""

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
from pathlib import Path
from typing import Any

from .backends.local import fsync_dir
from .reporter import printable

STAGING_MARK = ".openclaw-restore-"
OLD_MARK = ".openclaw-old-"
KEPT_MARK = ".pre-restore-"
_RENAME_EXCHANGE = 2


def holds_something(p: Path) -> bool:
    """``p`` exists and is not an empty directory (an empty one holds nothing worth keeping)."""
    if not os.path.lexists(p):
        return False
    if p.is_dir() and not p.is_symlink():
        with os.scandir(p) as it:
            return next(it, None) is not None
    return True


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


KEPT_NOTE_AT = 3  # a restore says so when more copies than this are kept beside a destination


def kept_copies(dest: Path) -> list[Path]:
    """The copies restores kept beside ``dest`` (:func:`kept_name`), oldest first. This tool never
    removes them: they hold what restores replaced, which may exist nowhere else."""
    prefix = f".{dest.name.lstrip('.')}{KEPT_MARK}"
    try:
        names = sorted(n for n in os.listdir(dest.parent) if n.startswith(prefix))
    except OSError:
        return []
    return [dest.with_name(n) for n in names]


def kept_copies_note(dest: Path) -> str | None:
    """A line saying how many copies restores have kept beside ``dest``, once they pile up (more
    than :data:`KEPT_NOTE_AT`: each is as large as the state, and only the user removes them)."""
    copies = kept_copies(dest)
    if len(copies) <= KEPT_NOTE_AT:
        return None
    return (f"note: {len(copies)} copies of what restores replaced are kept beside {printable(str(dest))} "
            f"(oldest: {printable(copies[0].name)}); nothing removes them for you: remove those you no "
            "longer need")  # fmt: skip


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
