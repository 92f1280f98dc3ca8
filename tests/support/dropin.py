"""The legacy restore flags, for the container-lifecycle and drop-in tests (``test_supervisor``,
``test_legacy_dropin``).

The legacy flag files are fixed paths in ``/tmp``; a test that may touch or checks them holds an
exclusive ``flock`` on a lock file in ``/tmp`` (tests run under xdist), and starts with both flags
removed: :func:`restore_flags_locked`.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from openclaw_backup.service import FLAG_COMPLETED, FLAG_SKIPPED

FLAG_DONE = Path(FLAG_COMPLETED)
FLAG_NONE = Path(FLAG_SKIPPED)
FLAG_LOCK = Path("/tmp/openclaw-backup-tests-restore-flags.lock")


@contextmanager
def restore_flags_locked() -> Iterator[None]:
    """Hold the flag-file lock (blocking) with both flags removed; release on exit."""
    fd = os.open(FLAG_LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        for flag in (FLAG_DONE, FLAG_NONE):
            flag.unlink(missing_ok=True)
        yield
    finally:
        os.close(fd)  # releases the flock
