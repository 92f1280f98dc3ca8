"""How this process manages memory: glibc's malloc tuned once at start and handed back after
each job, and the cyclic garbage collector paused while a backup or restore runs.

glibc only (``mallopt``/``malloc_trim`` through ctypes); a no-op elsewhere. The settings trade a
little retained memory for far fewer page faults: the chunk, read and decompression buffers of a
backup or restore (up to 8 MiB each) come from two reusable heaps instead of fresh mappings that
the kernel must fault in and zero again for every chunk. Pack buffers (16 MiB and more) are still
mapped and unmapped on their own, and nothing freed stays beyond 32 MiB per heap. A long-running
supervisor calls :func:`give_back` after each job, so an idle process holds no freed memory.
Measured effect in docs/performance.md.

A backup or restore makes tens of thousands of short-lived objects and hardly any reference
cycles: the collector's passes would only cost time (and hold the GIL), so
:func:`collector_paused` turns it off for the duration.
"""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8


def _libc() -> Any:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def tune() -> None:
    """Two malloc arenas (one per worker thread would keep its own freed buffers), allocations
    up to 16 MiB from the heap, and up to 32 MiB of freed heap kept for reuse."""
    libc = _libc()
    try:
        if libc is not None:
            libc.mallopt(_M_ARENA_MAX, 2)
            libc.mallopt(_M_MMAP_THRESHOLD, 16 << 20)
            libc.mallopt(_M_TRIM_THRESHOLD, 32 << 20)
    except AttributeError:
        pass


def give_back() -> None:
    """Return freed heap memory to the system (after a backup, in a long-running process)."""
    libc = _libc()
    try:
        if libc is not None:
            libc.malloc_trim(0)
    except AttributeError:
        pass


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection inside the ``with`` (restored as it was after)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
