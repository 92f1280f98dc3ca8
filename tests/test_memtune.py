"""The process's malloc tuning (:mod:`openclaw_backup.memtune`), observed through page faults.

Each case runs in a child interpreter: ``tune`` changes malloc for the whole process.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from openclaw_backup import memtune

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or memtune._libc() is None, reason="glibc malloc tuning (Linux)"
)

_DERIVE = """
import json, resource, sys
from openclaw_backup import memtune
from openclaw_backup.crypto import KdfParams, derive_key
memtune.tune()
params = KdfParams()
if sys.argv[1] == "ready":
    memtune.ready_heap(params.memory_kib * 1024)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
key = derive_key(b"a password", b"0123456789abcdef", params)
print(json.dumps({"faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, "key": key.hex()}))
"""


def _derive(mode: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", _DERIVE, mode], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_a_heap_made_ready_spares_the_password_derivation_its_page_faults() -> None:
    """Argon2id's 19 MiB, taken from a heap touched beforehand (while the open waits for the key
    file), costs next to no page faults; taken fresh, one per page. The key is the same."""
    cold, ready = _derive("cold"), _derive("ready")
    assert ready["key"] == cold["key"]
    pages = 19456 * 1024 // 4096
    assert cold["faults"] >= pages * 0.9, cold  # type: ignore[operator]
    assert ready["faults"] < pages // 10, ready  # type: ignore[operator]


def test_ready_heap_does_nothing_untuned_or_beyond_the_heap() -> None:
    """Untuned, the allocation would be mapped on its own (touching the heap first would only cost);
    beyond the heap's bound likewise. Neither allocates anything."""
    code = """
import resource
from openclaw_backup import memtune
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
memtune.ready_heap(16 << 20)
untuned = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
memtune.tune()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
memtune.ready_heap(64 << 20)
print(untuned, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    untuned, beyond = map(int, out.stdout.split())
    assert untuned < 100 and beyond < 100, out.stdout
