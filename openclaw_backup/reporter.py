"""Progress and warnings flow up through a reporter; the core never prints.

Operations call :meth:`Reporter.phase`, :meth:`Reporter.progress` and :meth:`Reporter.warn`;
the CLI chooses the implementation (a progress bar on a terminal, JSON lines, or nothing).
Reporters must be thread-safe: workers report from several threads. Sizes they print go through
:func:`.units.human_size`.
"""

from __future__ import annotations

import threading


class Reporter:
    """Does nothing but remember warnings; the base of every reporter."""

    def __init__(self) -> None:
        self.warnings: list[str] = []
        self._lock = threading.Lock()

    def phase(self, name: str, *, total_bytes: int | None = None, total_items: int | None = None) -> None:
        """A new phase starts (``scan``, ``backup``, ``restore``, ``check``…)."""

    def progress(self, *, done_bytes: int = 0, done_items: int = 0) -> None:
        """Add to the current phase's progress."""

    def warn(self, message: str) -> None:
        """Something the user should know; the operation goes on (exit code 3 at the end)."""
        with self._lock:
            self.warnings.append(message)

    def info(self, message: str) -> None:
        """A notable event that is not a problem."""

    def done(self) -> None:
        """The operation ended; stop any live display."""
