"""Reporters for the command line: a live bar on a terminal, plain lines elsewhere, JSON lines, or silence.

Chosen by the CLI (see :func:`make_reporter`); the core only knows :class:`~.reporter.Reporter`.
When stderr is not a terminal (a Space's log, a pipe, a file), :class:`TextReporter` writes a plain
progress line (phase, bytes, rate, ETA when the total is known) at most every
:data:`PLAIN_EVERY` seconds during long work, and a summary line at the end when there was any.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import IO, Any

from .reporter import Reporter
from .units import human_size

PLAIN_EVERY = 10.0  # seconds between plain progress lines


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds + 0.5))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class JsonLinesReporter(Reporter):
    """One JSON object per event on ``stream`` (progress at most 4 times a second)."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__()
        self.stream = stream
        self._last = 0.0
        self._bytes = 0
        self._items = 0
        self._phase = ""

    def _emit(self, doc: dict[str, Any]) -> None:
        with self._lock:
            self.stream.write(json.dumps(doc) + "\n")
            self.stream.flush()

    def phase(self, name: str, *, total_bytes: int | None = None, total_items: int | None = None) -> None:
        self._phase, self._bytes, self._items = name, 0, 0
        self._emit({"event": "phase", "phase": name, "total_bytes": total_bytes, "total_items": total_items})

    def progress(self, *, done_bytes: int = 0, done_items: int = 0) -> None:
        self._bytes += done_bytes
        self._items += done_items
        now = time.monotonic()
        if now - self._last >= 0.25:
            self._last = now
            self._emit({"event": "progress", "phase": self._phase, "bytes": self._bytes, "items": self._items})

    def warn(self, message: str) -> None:
        super().warn(message)
        self._emit({"event": "warning", "message": message})

    def info(self, message: str) -> None:
        self._emit({"event": "info", "message": message})


class TextReporter(Reporter):
    """Warnings as lines on ``stream``; a rich progress bar (with ETA and a file count) when it is a
    terminal (``live``), else plain progress lines at most every ``every`` seconds and a summary."""

    def __init__(
        self,
        stream: IO[str],
        *,
        live: bool,
        verbose: bool = False,
        every: float = PLAIN_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.stream = stream
        self.verbose = verbose
        self._progress: Any = None
        self._task: Any = None
        self._every = every
        self._clock = clock
        self._started = clock()
        self._phase = ""
        self._phase_started = self._started
        self._total: int | None = None
        self._bytes = 0
        self._items = 0
        self._all_bytes = 0
        self._all_items = 0
        self._last_line = self._started
        self._lines = 0
        self._live = live

    def _start(self) -> Any:
        """The live bar, started at the first phase: never before (a password may be asked first,
        and a live display would hide the cursor and redraw over the question)."""
        if self._progress is None and self._live:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[items]} files"),
                console=Console(file=self.stream),
                transient=True,
            )
            self._progress.start()
        return self._progress

    def phase(self, name: str, *, total_bytes: int | None = None, total_items: int | None = None) -> None:
        with self._lock:
            self._phase, self._total, self._bytes, self._items = name, total_bytes, 0, 0
            self._phase_started = self._clock()
        if self._start() is not None:
            if self._task is not None:
                self._progress.remove_task(self._task)
            self._task = self._progress.add_task(name, total=total_bytes, items=0)

    def progress(self, *, done_bytes: int = 0, done_items: int = 0) -> None:
        with self._lock:
            self._bytes += done_bytes
            self._items += done_items
            self._all_bytes += done_bytes
            self._all_items += done_items
        if self._live:
            if self._progress is not None and self._task is not None and (done_bytes or done_items):
                self._progress.update(self._task, advance=done_bytes, items=self._items)
            return
        now = self._clock()
        if now - self._last_line < self._every:
            return
        with self._lock:
            if now - self._last_line < self._every:
                return
            self._last_line = now
            self._lines += 1
            self.stream.write(self._plain_line(now) + "\n")
            self.stream.flush()

    def _plain_line(self, now: float) -> str:
        took = max(now - self._phase_started, 1e-6)
        rate = self._bytes / took
        line = f"{self._phase or 'working'}: {human_size(self._bytes)}"
        if self._total:
            line += f" of {human_size(self._total)} ({100 * self._bytes / self._total:.0f}%)"
        line += f", {self._items:,} files, {human_size(rate)}/s"
        if self._total and rate > 0 and self._bytes < self._total:
            line += f", ETA {_duration((self._total - self._bytes) / rate)}"
        return line

    def warn(self, message: str) -> None:
        super().warn(message)
        with self._lock:
            if self._progress is not None:
                self._progress.console.print(f"warning: {message}", markup=False, highlight=False)
            else:
                self.stream.write(f"warning: {message}\n")

    def info(self, message: str) -> None:
        if self.verbose:
            self.stream.write(f"{message}\n")

    def done(self) -> None:
        if self._progress is not None:
            self._live = False  # never again over what follows (a question, the summary)
            self._progress.stop()
            self._progress = None
            return
        if self._lines:  # long enough to have shown progress: say how it ended
            took = self._clock() - self._started
            self.stream.write(
                f"done: {human_size(self._all_bytes)}, {self._all_items:,} files in {_duration(took)} "
                f"({human_size(self._all_bytes / max(took, 1e-6))}/s)\n"
            )
            self.stream.flush()


def make_reporter(*, json_mode: bool, quiet: bool, verbose: bool = False) -> Reporter:
    if json_mode:
        return JsonLinesReporter(sys.stderr)
    if quiet:
        return Reporter()
    return TextReporter(sys.stderr, live=sys.stderr.isatty(), verbose=verbose)
