"""The package's shape, as issue 16 drew it: no import cycle (every import counts, those under
``TYPE_CHECKING`` and inside functions too), the environment read only at the edge (settings, and
the CLI handing ``os.environ`` to it), and no module over 600 lines."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.imports import cycles, import_graph

PACKAGE = Path(__file__).resolve().parents[1] / "openclaw_backup"
MAX_LINES = 600


def test_the_checker_finds_a_cycle_through_a_function_level_import(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .sub.c import x\n")
    (pkg / "sub" / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .. import a\n")
    (pkg / "b.py").write_text("def f():\n    from . import a\n")
    assert cycles(import_graph(pkg)) == [["pkg.a", "pkg.sub.c"]]


def test_no_import_cycle_in_the_package() -> None:
    graph = import_graph(PACKAGE)
    assert len(graph) > 40 and graph["openclaw_backup.cli"]  # the walk saw the package
    assert cycles(graph) == []


def test_the_environment_is_read_only_at_the_edge() -> None:
    reads = re.compile(r"os\.environ|os\.getenv|getenv\(|environ\[")
    allowed = {PACKAGE / "cli.py"}  # hands os.environ to settings, once
    offenders = [
        f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path not in allowed and PACKAGE / "settings" not in path.parents
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if reads.search(line) and not line.lstrip().startswith("#")
    ]
    assert offenders == []



def test_no_module_over_600_lines() -> None:
    sizes = {str(path.relative_to(PACKAGE)): len(path.read_text().splitlines()) for path in PACKAGE.rglob("*.py")}
    assert len(sizes) > 40 and sizes["archiver.py"] > 100  # the walk saw the package
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}
