"""Default excludes never touch the user's files; what they leave out is accounted; ``backup --dry-run``.

The defaults are anchored where OpenClaw keeps its regenerable bulk (``openclaw-state/cache/``,
``openclaw-state/tmp/``, …, ``root-npm/_cacache/``): each excludes its place at the state root, and
the same names anywhere deeper — a workspace project's lockfiles, ``logs/``, ``tmp/``, ``*.log``,
``Cache/``, ``node_modules/`` — survive a backup and a restore, exactly.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openclaw_backup.repository import walk
from openclaw_backup.sources import (
    DEFAULT_EXCLUDES,
    Excluder,
    ExclusionReport,
    Root,
    default_patterns,
    scan_root,
)
from tests.support.cli import cli_env, json_out, run_cli
from tests.support.repos import new_repo, run_backup
from tests.support.trees import fingerprint, fp_diff, past_ns, set_mtimes, write

#: For each default rule, a path at its place (relative to its root's parent) that it must exclude.
AT_ROOT: dict[str, list[str]] = {
    "openclaw-state/cache/": ["openclaw-state/cache/control-ui-assets/gen/app.js"],
    "openclaw-state/tmp/": ["openclaw-state/tmp/plugin-captures/x.json"],
    "openclaw-state/npm/": ["openclaw-state/npm/node_modules/p/index.js"],
    "openclaw-state/npm-runtime/": ["openclaw-state/npm-runtime/v1/x.js"],
    "openclaw-state/git/": ["openclaw-state/git/plugin/README.md"],
    "openclaw-state/dev/": ["openclaw-state/dev/state.json"],
    "openclaw-state/tools/": ["openclaw-state/tools/node/bin/node"],
    "openclaw-state/plugin-skills/": ["openclaw-state/plugin-skills/skill/SKILL.md"],
    "openclaw-state/extensions/*/node_modules/": ["openclaw-state/extensions/myplugin/node_modules/dep/index.js"],
    "openclaw-state/agents/*/agent/**/tmp/": [
        "openclaw-state/agents/main/agent/tmp/x",
        "openclaw-state/agents/ops/agent/deep/er/tmp/y",
    ],
    "openclaw-state/agents/*/agent/**/.tmp/": ["openclaw-state/agents/main/agent/.tmp/x"],
    "openclaw-state/sandbox/skills-workspaces/": ["openclaw-state/sandbox/skills-workspaces/workspace-main/SKILL.md"],
    "openclaw-state/agents/*/agent/*.sqlite.generation-lock.sqlite*": [
        "openclaw-state/agents/main/agent/openclaw-agent.sqlite.generation-lock.sqlite",
    ],
    "openclaw-state/agents/*/agent/*.sqlite.generation-writer.sqlite*": [
        "openclaw-state/agents/main/agent/openclaw-agent.sqlite.generation-writer.sqlite",
        "openclaw-state/agents/main/agent/openclaw-agent.sqlite.generation-writer.sqlite-journal",
    ],
    "openclaw-state/agents/*/agent/*.sqlite.reindex-lock.sqlite*": [
        "openclaw-state/agents/main/agent/openclaw-agent.sqlite.reindex-lock.sqlite",
    ],
    "root-npm/_cacache/": ["root-npm/_cacache/index-v5/00/x"],
    "root-npm/_npx/": ["root-npm/_npx/abc/package.json"],
}

#: Kept beside what the rules exclude: the rules are no wider than their place.
KEPT_AT_ROOT = [
    "openclaw-state/openclaw.json",
    "openclaw-state/cache-notes.md",
    "openclaw-state/extensions/myplugin/index.js",
    "openclaw-state/extensions/myplugin/package.json",
    "openclaw-state/agents/main/agent/openclaw-agent.sqlite",
    "openclaw-state/agents/main/agent/notes/tmpfile",
    "openclaw-state/agents/main/sessions/tmp/kept.jsonl",  # not under agent/
    "openclaw-state/sandbox/registry.json",
    "openclaw-state/state/openclaw.sqlite",
    "root-npm/bin/npx",
    "root-npm/sub/_cacache/x",
    "root-config/tmp/x",
    "root-config/cache/x",
    "root-config/openclaw-state/cache/x",  # the defaults match from the top only, not inside a root
    "root-config/root-npm/_cacache/x",
]

#: The issue's workspace project (and what the old any-depth defaults dropped).
PROJECT = [
    "Cargo.lock", "yarn.lock", "poetry.lock", "package-lock.json", "x.log", "logs/app.txt", "logs/build.log",
    "tmp/scratch.txt", "temp/t", "Cache/data", "Code Cache/js", "GPUCache/g", ".cache/c",
    "__pycache__/m.cpython-311.pyc", "node_modules/left-pad/index.js", "run.pid", "_cacache/index", "_npx/x",
    "src/main.rs",
]  # fmt: skip

WORKSPACES = ["openclaw-state/workspace", "openclaw-state/workspace-dev", "openclaw-state/workspace/deep/er"]


def _deep_copies() -> list[str]:
    """Every default rule's own paths, mirrored inside workspaces (they must all survive)."""
    out = []
    for examples in AT_ROOT.values():
        for rel in examples:
            inner = rel.split("/", 1)[1]
            out += [f"{w}/{inner}" for w in WORKSPACES]
            out.append(f"openclaw-state/workspace/{rel}")  # even a copy of the whole layout
    return out


def _build(top: Path, rels: list[str]) -> None:
    for rel in rels:
        write(top / rel, rel.encode() * 3)


# ---------------------------------------------------------------------------- the rules themselves


def test_every_default_rule_has_a_reason_and_an_example() -> None:
    assert set(AT_ROOT) == set(default_patterns())
    for pattern, why in DEFAULT_EXCLUDES:
        assert why.strip(), pattern
        assert pattern.startswith(("openclaw-state/", "root-npm/")), f"{pattern} is not anchored at a root"


def test_each_default_excludes_its_place_and_nothing_deeper() -> None:
    ex = Excluder(default_patterns())

    def verdict(rel: str) -> str | None:
        """The rule that excludes ``rel`` or one of its parents (as the scan would see it)."""
        parts = rel.split("/")
        for i in range(2, len(parts) + 1):
            is_dir = i < len(parts)
            if ex.excluded("/".join(parts[:i]), is_dir=is_dir):
                return ex.rule_for("/".join(parts[:i]), is_dir=is_dir)
        return None

    for pattern, examples in AT_ROOT.items():
        for rel in examples:
            assert verdict(rel) == pattern, rel
    for rel in KEPT_AT_ROOT + _deep_copies() + [f"{w}/{p}" for w in WORKSPACES for p in PROJECT]:
        assert verdict(rel) is None, rel


_VOCAB = sorted({c for ex in AT_ROOT.values() for rel in ex for c in rel.split("/")} | {"workspace", "a"})


@settings(max_examples=300, deadline=None)
@given(
    ws=st.sampled_from(["workspace", "workspace-dev", "workspace-main"]),
    parts=st.lists(st.sampled_from(_VOCAB), min_size=1, max_size=8),
    is_dir=st.booleans(),
)
def test_nothing_in_a_workspace_is_excluded_by_default(ws: str, parts: list[str], is_dir: bool) -> None:
    rel = "/".join(["openclaw-state", ws, *parts])
    assert not Excluder(default_patterns()).excluded(rel, is_dir=is_dir), rel


_PATTERNS = ["*.log", "tmp/", "a/b", "s/a/**/tmp/", "s/x/*/y", "!keep.log", "!s/tmp/", "**/z", "s/a*", "b/",
             "r/s/tmp/", "r/**/z", "!r/s/a"]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    patterns=st.lists(st.sampled_from(_PATTERNS), max_size=6),
    top_only=st.sets(st.sampled_from(_PATTERNS)),
    parts=st.lists(st.sampled_from(["s", "a", "b", "x", "y", "z", "tmp", "keep.log", "d.log"]), min_size=1, max_size=6),
    is_dir=st.booleans(),
)
def test_the_fast_path_agrees_with_the_rule_it_names(
    patterns: list[str], top_only: set[str], parts: list[str], is_dir: bool
) -> None:
    rel = "/".join(["r", *parts])
    ex = Excluder(patterns, top_only=top_only)
    assert ex.excluded(rel, is_dir=is_dir) is (ex.rule_for(rel, is_dir=is_dir) is not None)
    plain = Excluder([p for p in patterns if not p.startswith("!")], top_only=top_only)  # the combined regex
    assert plain.excluded(rel, is_dir=is_dir) is (plain.rule_for(rel, is_dir=is_dir) is not None)


def test_defaults_match_from_the_top_user_patterns_in_every_root() -> None:
    defaults = Excluder(default_patterns())
    assert defaults.excluded("openclaw-state/cache", is_dir=True)
    assert not defaults.excluded("src/openclaw-state/cache", is_dir=True)  # a --source root holding a copy
    user = Excluder(["agents/*/tmp/", "openclaw-state/cache/"], top_only=())
    assert user.excluded("openclaw-state/agents/main/tmp", is_dir=True)  # from the root
    assert user.excluded("root-x/agents/main/tmp", is_dir=True)
    assert user.excluded("src/openclaw-state/cache", is_dir=True)


def test_rule_for_names_the_last_matching_rule() -> None:
    ex = Excluder(["*.log", "logs/*.log", "!keep.log"])
    assert ex.rule_for("s/logs/a.log", is_dir=False) == "logs/*.log"
    assert ex.rule_for("s/a.log", is_dir=False) == "*.log"
    assert ex.rule_for("s/logs/keep.log", is_dir=False) is None
    assert ex.rule_for("s/a.txt", is_dir=False) is None
    assert Excluder(["tmp/"]).rule_for("s/tmp", is_dir=False) is None  # a file: dir-only rule


def test_re_include_overrides_a_default() -> None:
    for override in ("!openclaw-state/cache/", "!cache/"):
        ex = Excluder([*default_patterns(), override])
        assert not ex.excluded("openclaw-state/cache", is_dir=True), override
        assert ex.excluded("openclaw-state/tmp", is_dir=True)


# ---------------------------------------------------------------------------- accounting


def test_exclusion_report_counts_by_rule(tmp_path: Path) -> None:
    state = tmp_path / "state"
    write(state / "keep.txt", b"k")
    write(state / "cache/a/b.bin", b"x" * 1000)
    write(state / "cache/c.bin", b"x" * 500)
    write(state / "d.log", b"y" * 70)
    write(state / "sub/e.log", b"y" * 30)
    ex = Excluder(["s/cache/", "*.log"])

    report = ExclusionReport()
    top = scan_root(Root("s", str(state)), ex, warn=pytest.fail, report=report)
    assert top is not None and {c.name for c in top.children} == {"keep.txt", "sub"}
    # a backup does not walk an excluded folder: one entry, its size unknown
    assert report.to_json() == {
        "s/cache/": {"entries": 1, "files": 0, "bytes": 0},
        "*.log": {"entries": 2, "files": 2, "bytes": 100},
    }
    assert (report.entries, report.bytes) == (3, 100)

    measured = ExclusionReport(measure=True)
    scan_root(Root("s", str(state)), ex, warn=pytest.fail, report=measured)
    doc = measured.to_json()
    folder = {"path": "s/cache", "kind": "dir", "files": 2, "bytes": 1500}
    assert doc["s/cache/"] == {"entries": 1, "files": 2, "bytes": 1500, "paths": [folder]}
    assert sorted(p["path"] for p in doc["*.log"]["paths"]) == ["s/d.log", "s/sub/e.log"]


def test_default_rules_in_a_backup(tmp_path: Path) -> None:
    """Through the engine: what each default leaves out of a real backup, and what it keeps."""
    rels = [r for ex in AT_ROOT.values() for r in ex] + KEPT_AT_ROOT + _deep_copies()
    _build(tmp_path, rels)
    roots = {name: tmp_path / name for name in ("openclaw-state", "root-npm", "root-config")}
    repo = new_repo()
    res = run_backup(repo, roots, excludes=default_patterns())
    assert res.snapshot_id and not res.warnings, res.warnings
    repo.load_index()
    stored = {p for p, node in walk(repo, repo.find_snapshot("latest").tree) if node.type == "file"}
    kept = set(KEPT_AT_ROOT + _deep_copies())
    assert stored == kept, (sorted(stored - kept), sorted(kept - stored))


# ---------------------------------------------------------------------------- through the CLI


def _state_with_project(home: Path) -> Path:
    state = home / ".openclaw"
    for rel in [r for ex in AT_ROOT.values() for r in ex if r.startswith("openclaw-state/")] + [
        r for r in KEPT_AT_ROOT if r.startswith("openclaw-state/")
    ]:
        write(state / rel.split("/", 1)[1], rel.encode())
    for w in ("workspace/proj", "workspace-dev/proj"):
        for rel in PROJECT:
            write(state / w / rel, f"{w}/{rel}\n".encode() * 10)
    write(state / "cache/control-ui-assets/gen/big.js", os.urandom(200_000))
    set_mtimes(state, past_ns(60))
    return state


_EXCLUDED_HERE = re.compile(
    r"^(cache|tmp|npm|npm-runtime|git|dev|tools|plugin-skills|extensions/[^/]+/node_modules"
    r"|agents/[^/]+/agent/(.*/)?\.?tmp|sandbox/skills-workspaces"
    r"|agents/[^/]+/agent/[^/]+\.sqlite\.(generation-lock|generation-writer|reindex-lock)\.sqlite[^/]*)(/|$)"
)


def test_workspace_project_survives_backup_and_restore(tmp_path: Path) -> None:
    home = tmp_path / "home"
    state = _state_with_project(home)
    env = cli_env(tmp_path)
    assert run_cli(["init"], env).returncode == 0
    proc = run_cli(["backup", "--json"], env)
    assert proc.returncode == 0, proc.stderr
    doc = json_out(proc)
    assert doc["snapshot"] and not doc["warnings"]

    expected = fingerprint(state, skip=lambda rel: bool(_EXCLUDED_HERE.match(rel)))
    assert "workspace/proj/Cargo.lock" in expected and "workspace-dev/proj/node_modules/left-pad" in expected
    proc = run_cli(["restore", "--target", str(tmp_path / "out")], env)
    assert proc.returncode == 0, proc.stderr
    got = fingerprint(tmp_path / "out/openclaw-state")
    assert got == expected, fp_diff(expected, got)

    # a restore in place gives every file of the workspace back, exactly
    project = fingerprint(state / "workspace")
    shutil.rmtree(state)
    proc = run_cli(["restore"], env)
    assert proc.returncode == 0, proc.stderr
    assert fingerprint(state / "workspace") == project


def test_dry_run_lists_rules_and_sizes_and_writes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    state = _state_with_project(home)
    env = cli_env(tmp_path)

    # before any repository: a plan all the same, and nothing created
    before_home = fingerprint(tmp_path)
    proc = run_cli(["backup", "--dry-run", "--json"], env)
    assert proc.returncode == 0, proc.stderr
    plan = json_out(proc)
    assert fingerprint(tmp_path) == before_home, fp_diff(before_home, fingerprint(tmp_path))
    assert plan["dry_run"] and "no repository" in plan["note"]
    assert plan["totals"]["files_to_read"] == plan["totals"]["files"] > 0
    cache_rule = plan["excluded"]["openclaw-state/cache/"]
    assert cache_rule["entries"] == 1 and cache_rule["bytes"] > 200_000 and cache_rule["files"] == 2
    assert cache_rule["paths"] == [
        {"path": "openclaw-state/cache", "kind": "dir", "files": 2, "bytes": cache_rule["bytes"]}
    ]
    assert set(plan["excluded"]) == {p for p in AT_ROOT if p.startswith("openclaw-state/")}

    assert run_cli(["init"], env).returncode == 0
    first = json_out(run_cli(["backup", "--json"], env))
    assert first["snapshot"]
    repo_dir = tmp_path / "xdg-data/openclaw-backup/repository"
    repo_before, cache_before = fingerprint(repo_dir), fingerprint(tmp_path / "xdg-cache")

    write(state / "workspace/proj/new.md", b"new\n" * 100, mtime_ns=past_ns(60))
    proc = run_cli(["backup", "--dry-run"], env)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "dry run" in text and "left out by exclude rules" in text
    for pattern, why in DEFAULT_EXCLUDES:
        if pattern.startswith("openclaw-state/"):
            assert pattern in text and why in text, pattern
    assert "openclaw-state/cache  (" in text  # the measured folder, with its size
    assert "would read 1 file (400 B)" in text, text
    assert "openclaw-state/workspace/proj/new.md" in text

    doc = json_out(run_cli(["backup", "--dry-run", "--json"], env))
    assert doc["totals"]["files_to_read"] == 1 and doc["totals"]["files_cached"] == first["stats"]["files"]
    assert doc["note"] == "" and doc["cache_used"] is True

    assert fingerprint(repo_dir) == repo_before, "a dry run wrote to the repository"
    assert fingerprint(tmp_path / "xdg-cache") == cache_before, "a dry run wrote to the cache"
    snaps = json_out(run_cli(["snapshots", "--json"], env))["snapshots"]
    assert [s["id"] for s in snaps] == [first["snapshot"]]

    # no password needed: the cache is found from the repository's (unencrypted) config
    no_pw = {k: v for k, v in env.items() if k != "OPENCLAW_BACKUP_PASSWORD"}
    doc = json_out(run_cli(["backup", "--dry-run", "--json"], no_pw))
    assert doc["totals"]["files_to_read"] == 1


def test_excludes_command_lists_anchored_defaults_with_reasons(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    proc = run_cli(["excludes"], env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for pattern, why in DEFAULT_EXCLUDES:
        assert any(ln.startswith(pattern + " ") and ln.rstrip().endswith(why) for ln in lines), pattern
    assert "nothing in a workspace" in proc.stdout
    rows = json_out(run_cli(["excludes", "--json"], env))["excludes"]
    assert [(r["pattern"], r["why"]) for r in rows] == list(DEFAULT_EXCLUDES)


def test_re_include_overrides_a_default_in_a_backup(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _state_with_project(home)
    env = cli_env(tmp_path)
    assert run_cli(["init"], env).returncode == 0
    proc = run_cli(["backup", "--json", "--exclude", "!openclaw-state/cache/"], env)
    assert proc.returncode == 0, proc.stderr
    paths = {e["path"] for e in json_out(run_cli(["ls", "--json"], env))["entries"]}
    assert "openclaw-state/cache/control-ui-assets/gen/big.js" in paths
    assert "openclaw-state/tmp" not in paths  # the other defaults still apply
