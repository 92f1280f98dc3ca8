"""Transitional, for ``tests/test_forked_io.py`` only (changed in parallel with the move to
:mod:`tests.support`): delete this module once that file imports from ``tests.support``."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from tests.support.repos import local_repo, new_repo, run_backup, run_restore
from tests.support.trees import Fingerprint, past_ns, sample_state, set_mtimes, write
from tests.support.trees import fingerprint as _fingerprint

__all__ = ["fingerprint", "local_repo", "new_repo", "past_ns", "run_backup", "run_restore", "sample_state",
           "set_mtimes", "write"]  # fmt: skip


def fingerprint(root: Path | str, *, skip: Callable[[bytes], bool] | None = None) -> Fingerprint:
    """:func:`tests.support.trees.fingerprint` with the old ``skip`` on encoded paths."""
    return _fingerprint(root, skip=None if skip is None else lambda rel: skip(os.fsencode(rel)))
