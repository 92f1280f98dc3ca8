"""File metadata beyond permission bits and mtimes: owners, extended attributes, hard links and
holes — read from the file system at backup, put back at restore.

Owns the rules of what is kept (docs/fidelity.md): owners are recorded always and restored when
running as root; ``user.*`` attributes are recorded and restored (a failure to restore one is a
warning: it was the user's), attributes of other namespaces (``security.*``, ``trusted.*``,
``system.*`` ACLs) are recorded and restored where the process is permitted to (a refusal is
counted, not warned about); files with more than one link carry a key that groups them within a
snapshot; files with holes (found with ``SEEK_HOLE``) are marked so the restore leaves their zero
runs unwritten. Nothing here prints; problems are returned to the caller as text.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .tree import Node

_QUIET = {errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOENT, errno.ENODATA}


def read_xattrs(path: str) -> tuple[dict[str, bytes] | None, str | None]:
    """``(attributes or None, problem or None)`` of ``path`` itself (links are not followed).
    A file system without attributes has none; a failure to read one that exists is a problem."""
    if not hasattr(os, "listxattr"):
        return None, None
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        return None, (None if e.errno in _QUIET else f"cannot list its extended attributes ({e.strerror})")
    if not names:
        return None, None
    out: dict[str, bytes] = {}
    problem = None
    for name in sorted(names):
        try:
            out[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError as e:
            if e.errno not in _QUIET:  # removed meanwhile is fine; unreadable is not
                problem = f"cannot read extended attribute {name} ({e.strerror})"
    return out or None, problem


def hardlink_key(st: os.stat_result) -> str | None:
    """The key grouping a regular file's links within one snapshot, when it has more than one."""
    if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
        return f"{st.st_dev}:{st.st_ino}"
    return None


def has_holes(path: str, st: os.stat_result) -> bool:
    """Whether the file has holes: fewer blocks than its size needs, confirmed with ``SEEK_HOLE``
    (a compressed or inline file also has few blocks, and no holes)."""
    if st.st_size == 0 or st.st_blocks * 512 >= st.st_size or not hasattr(os, "SEEK_HOLE"):
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        return os.lseek(fd, 0, os.SEEK_HOLE) < st.st_size
    except OSError:
        return False
    finally:
        os.close(fd)


HOLE_BLOCK = 4096  # the granularity at which a restore leaves zero runs unwritten


def data_runs(data: bytes) -> list[tuple[int, int]]:
    """The ``(start, end)`` ranges of ``data`` to write so that its zero runs (in whole
    :data:`HOLE_BLOCK` blocks) stay holes; empty when it is all zeros."""
    if data.count(0) == len(data):
        return []
    runs: list[tuple[int, int]] = []
    start = -1
    for off in range(0, len(data), HOLE_BLOCK):
        zero = data.count(0, off, off + HOLE_BLOCK) == min(HOLE_BLOCK, len(data) - off)
        if not zero and start < 0:
            start = off
        elif zero and start >= 0:
            runs.append((start, off))
            start = -1
    if start >= 0:
        runs.append((start, len(data)))
    return runs


@dataclass
class Applier:
    """Puts a node's owner and attributes back on what a restore created; counts what it could not.

    ``as_root`` decides whether owners are restored (only root can give files away)."""

    as_root: bool = field(default_factory=lambda: hasattr(os, "geteuid") and os.geteuid() == 0)
    owners_not_restored: int = 0
    xattrs_not_restored: int = 0
    problems: list[str] = field(default_factory=list)

    def owner(self, target: int | str, node: Node, *, follow: bool = True) -> None:
        """Give ``target`` (a descriptor or a path) the node's owner, when running as root. Call
        before setting the mode: a change of owner clears set-id bits."""
        if node.uid is None and node.gid is None:
            return
        if not self.as_root:
            if (node.uid is not None and node.uid != os.geteuid()) or (
                node.gid is not None and node.gid != os.getegid()
            ):
                self.owners_not_restored += 1
            return
        uid = -1 if node.uid is None else node.uid
        gid = -1 if node.gid is None else node.gid
        if isinstance(target, int):
            os.fchown(target, uid, gid)
        else:
            os.chown(target, uid, gid, follow_symlinks=follow)

    def xattrs(self, target: int | str, node: Node, label: str) -> None:
        """Set the node's extended attributes on ``target`` (a descriptor or a path)."""
        for name, value in (node.xattrs or {}).items():
            try:
                os.setxattr(target, name, value)
            except OSError as e:
                if name.startswith("user."):
                    self.problems.append(f"{label}: extended attribute {name} not restored ({e.strerror})")
                else:
                    self.xattrs_not_restored += 1
