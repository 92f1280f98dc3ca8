"""The package's source as a build sees it, copied out of the checkout: building in the checkout
would leave ``build/`` and ``*.egg-info`` there, and a stale ``build/`` can leak old modules into
the next wheel."""

from __future__ import annotations

import shutil
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
#: What ``pip install .`` needs of the checkout (pyproject.toml names README.md and LICENSE).
SOURCE_FILES = ("pyproject.toml", "README.md", "LICENSE")


def source_copy(dest: Path) -> Path:
    """A copy of the package's source under ``dest`` (no caches, no build leftovers); returns it."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in SOURCE_FILES:
        shutil.copy2(REPO_ROOT / name, dest / name)
    shutil.copytree(REPO_ROOT / "openclaw_backup", dest / "openclaw_backup",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))  # fmt: skip
    return dest
