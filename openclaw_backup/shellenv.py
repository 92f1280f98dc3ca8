"""Plain assignments read from shell files (the legacy script's env files), never evaluated.

Only ``[export] NAME=value`` lines, quoted or not, are read; anything that would need a shell to
evaluate (``$(…)``, backticks, ``$VAR``) is skipped, never executed. :mod:`.settings` decides which
files and what the variables mean.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path

_ASSIGN = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def env_file_assignments(env: Mapping[str, str], files: tuple[str, ...]) -> list[tuple[str, dict[str, str]]]:
    """(path, its plain assignments) for each of ``files`` that can be read."""
    found: list[tuple[str, dict[str, str]]] = []
    home = env.get("HOME") or str(Path.home())
    for pattern in files:
        path = pattern.format(home=home)
        try:
            text = Path(path).read_text()
        except (OSError, UnicodeDecodeError):
            continue
        assignments: dict[str, str] = {}
        for line in text.splitlines():
            m = _ASSIGN.match(line)
            if not m or m.group(1) in assignments:
                continue
            try:
                lexer = shlex.shlex(m.group(2), posix=True)
                lexer.whitespace_split = True
                lexer.commenters = ""  # a '#' starts a comment only at the start of a word, as in bash
                parts = list(lexer)
            except ValueError:
                continue
            for i, word in enumerate(parts):
                if word.startswith("#"):
                    parts = parts[:i]
                    break
            raw = m.group(2)
            if len(parts) > 1 or "$(" in raw or "`" in raw or ("$" in raw and not raw.startswith("'")):
                continue
            assignments[m.group(1)] = parts[0] if parts else ""
        found.append((path, assignments))
    return found
