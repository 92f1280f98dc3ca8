"""How this process manages memory: glibc's malloc tuned once at start and handed back after
each job, and the cyclic garbage collector paused while a backup or restore runs.

glibc only (``mallopt``/``malloc_trim`` through ctypes); a no-op elsewhere. The settings trade a
little retained memory for far fewer page faults: the chunk, read and decompression buffers of a
backup or restore (up to 8 MiB each) come from two reusable heaps instead of fresh mappings that
the kernel must fault in and zero again for every chunk. Pack buffers are mapped and unmapped on
their own, and nothing freed stays beyond 32 MiB per heap. :func:`ready_heap` touches the memory
the password's derivation will take (Argon2id: 19 MiB) while the open waits for the key file, so
that the derivation — on the path of every command — finds it faulted in. A long-running
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


_HEAP_MAX = 24 << 20  # allocations up to this size come from the heap (Argon2id's default 19 MiB too)
_READY_SLACK = 2 << 20  # touched beyond what ready_heap is asked for: malloc's overhead, small allocations meanwhile
_tuned = False  # tune() set the bounds above


def tune() -> None:
    """Two malloc arenas (one per worker thread would keep its own freed buffers), allocations
    up to 24 MiB from the heap, and up to 32 MiB of freed heap kept for reuse."""
    global _tuned
    libc = _libc()
    try:
        if libc is not None:
            libc.mallopt(_M_ARENA_MAX, 2)
            libc.mallopt(_M_MMAP_THRESHOLD, _HEAP_MAX)
            libc.mallopt(_M_TRIM_THRESHOLD, 32 << 20)
            _tuned = True
    except AttributeError:
        pass


def ready_heap(nbytes: int) -> None:
    """Touch ``nbytes`` (and some slack) of this thread's heap and free them again (kept: below the
    trim threshold), so that an allocation of up to ``nbytes`` made next by this thread — the memory
    of the password's derivation — takes pages already faulted in, not fresh ones (measured:
    Argon2id at its default cost 45–50 → 31–34 ms). Call it where the thread would wait anyway.
    Does nothing unless :func:`tune` ran (else the allocation is mapped on its own), or beyond the
    heap's bound."""
    if _tuned and nbytes > 0 and nbytes + _READY_SLACK <= _HEAP_MAX - (1 << 20):
        touched = bytearray(nbytes + _READY_SLACK)  # zero-filled: every page written once
        del touched


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
