"""Where roots come from and go: ``--source`` paths as roots, and where a restore sends each root.

Re-exported by :mod:`.settings` (which configures the layout these functions consult); reads no
environment itself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import UnsafeRestoreError
from .sources import Root

if TYPE_CHECKING:
    from .settings import Settings


def sources_from_paths(paths: list[str]) -> list[Root]:
    """``--source`` paths as roots named after their base names (made unique)."""
    roots: list[Root] = []
    used: set[str] = set()
    for p in paths:
        path = os.path.abspath(os.path.expanduser(p))
        base = "".join(c if c.isalnum() or c in "._-" else "_" for c in (os.path.basename(path) or "root"))
        base = base.strip(".") or "root"
        name, n = base, 2
        while name in used:
            name, n = f"{base}-{n}", n + 1
        used.add(name)
        roots.append(Root(name, path))
    return roots


def restore_destinations(roots: Mapping[str, Mapping[str, str]], s: Settings, target: str | None) -> dict[str, Path]:
    """Where each of a snapshot's ``roots`` goes: under ``target``, or to the place this machine configures.

    A root this machine does not configure goes back to its recorded path only when that path is
    inside the home directory; a repository cannot direct a restore at, say, ``/etc``.
    """
    if target:
        return {name: Path(target).absolute() / name for name in roots}
    configured = {r.name: Path(r.path) for r in s.layout_roots()}
    out: dict[str, Path] = {}
    home = s.home.absolute()
    for name, info in roots.items():
        if name in configured:
            out[name] = configured[name]
            continue
        recorded = Path(str(info.get("path", "")))
        # Resolve symlinks on the way: ~/link -> /etc must not let a repository aim at /etc.
        real = Path(os.path.realpath(recorded)) if recorded.is_absolute() else recorded
        if recorded.is_absolute() and ".." not in recorded.parts and Path(os.path.realpath(home)) in real.parents:
            out[name] = recorded
        else:
            raise UnsafeRestoreError(
                f"root {name!r} was backed up from {recorded}, outside this machine's configured places",
                hint="restore it with --target DIR",
            )
    return out
