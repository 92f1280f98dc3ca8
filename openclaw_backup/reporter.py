"""Progress and warnings flow up through a reporter; the core never prints.

Operations call :meth:`Reporter.phase`, :meth:`Reporter.progress` and :meth:`Reporter.warn`;
the CLI chooses the implementation (a progress bar on a terminal, JSON lines, or nothing).
Reporters must be thread-safe: workers report from several threads. Sizes they print go through
:func:`.units.human_size`.

:func:`printable` makes a message or a file name safe for one line of a terminal: whoever prints
for people escapes with it (a file name with a newline or an escape sequence must not forge lines).
"""

from __future__ import annotations

import re
import threading

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\udc80-\udcff]")


def printable(text: str) -> str:
    """``text`` with control characters (newline, escape, …), bidirectional overrides and
    undecodable bytes (surrogate escapes) shown as ``\\xNN`` / ``\\uNNNN``."""

    def esc(m: re.Match[str]) -> str:
        c = ord(m.group())
        if 0xDC80 <= c <= 0xDCFF:
            return f"\\x{c - 0xDC00:02x}"
        return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"

    return _UNSAFE.sub(esc, text)


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
