"""Reporters for the command line: a live bar on a terminal, JSON lines, or silence.

Chosen by the CLI (see :func:`make_reporter`); the core only knows :class:`~.reporter.Reporter`.
"""

from __future__ import annotations

import json
import sys
import time
from typing import IO, Any

from .reporter import Reporter, printable


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
    """Warnings as lines on stderr; a rich progress bar when stderr is a terminal."""

    def __init__(self, stream: IO[str], *, live: bool, verbose: bool = False) -> None:
        super().__init__()
        self.stream = stream
        self.verbose = verbose
        self._progress: Any = None
        self._task: Any = None
        if live:
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                console=Console(file=stream),
                transient=True,
            )
            self._progress.start()

    def phase(self, name: str, *, total_bytes: int | None = None, total_items: int | None = None) -> None:
        if self._progress is not None:
            if self._task is not None:
                self._progress.remove_task(self._task)
            self._task = self._progress.add_task(name, total=total_bytes)

    def progress(self, *, done_bytes: int = 0, done_items: int = 0) -> None:
        if self._progress is not None and self._task is not None and done_bytes:
            self._progress.advance(self._task, done_bytes)

    def warn(self, message: str) -> None:
        super().warn(message)
        with self._lock:
            if self._progress is not None:
                self._progress.console.print(f"warning: {printable(message)}", markup=False, highlight=False)
            else:
                self.stream.write(f"warning: {printable(message)}\n")

    def info(self, message: str) -> None:
        if self.verbose:
            self.stream.write(f"{printable(message)}\n")

    def done(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def make_reporter(*, json_mode: bool, quiet: bool, verbose: bool = False) -> Reporter:
    if json_mode:
        return JsonLinesReporter(sys.stderr)
    if quiet:
        return Reporter()
    return TextReporter(sys.stderr, live=sys.stderr.isatty(), verbose=verbose)
