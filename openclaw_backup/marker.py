"""The state marker: a small record, beside the agent's state directory
(``~/.openclaw`` → ``~/.openclaw.openclaw-backup.json``), of the repository and snapshot this state
was last restored from or backed up to. Beside, not inside: the state stays exactly what the user
and the agent put there (a restore makes it the snapshot, byte for byte), and the marker lives as
long as the disk the state directory is named on.

It decides what "the state is missing" means for the supervisor's restore-if-missing: a state
directory without a marker was never restored or backed up here — an image's skeleton (a default
``openclaw.json``), not the user's state — so it does not stop a restore (see
:meth:`.service.Service.restore_if_needed`). The marker is never backed up (``INTERNAL_EXCLUDES``),
and writing it leaves the directory's mtime as it was, so it never makes a backup see a change.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

MARKER_SUFFIX = ".openclaw-backup.json"


def marker_path(state_dir: Path) -> Path:
    return state_dir.with_name(f".{state_dir.name.lstrip('.')}{MARKER_SUFFIX}")


def read_marker(state_dir: Path) -> dict[str, Any] | None:
    """The marker's record, or None when there is none (or it is unreadable)."""
    try:
        doc = json.loads(marker_path(state_dir).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def write_marker(state_dir: Path, *, repository: str, snapshot: str | None, how: str) -> None:
    """Record that ``state_dir`` was restored from / backed up to ``repository`` (best effort:
    a state directory we cannot write to is not an error of the backup or restore)."""
    if not state_dir.is_dir():
        return
    path = marker_path(state_dir)
    doc = {"repository": repository, "snapshot": snapshot, "how": how,
           "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
    tmp = path.with_name(path.name + ".tmp")
    try:
        st = os.stat(path.parent)
        tmp.write_text(json.dumps(doc, sort_keys=True) + "\n")
        os.replace(tmp, path)
        os.utime(path.parent, ns=(st.st_atime_ns, st.st_mtime_ns))  # a backed-up parent sees no change
    except OSError:
        tmp.unlink(missing_ok=True)
