#!/usr/bin/env python3
"""Benchmark openclaw-backup against restic, borg and the legacy tar.gz+openssl approach.

    python bench/run.py [--scale 1.0] [--runs 3] [--out bench/results.json]
                        [--tools ours,restic,borg,legacy] [--seed 1] [--workdir DIR] [--keep]

For every tool and run (fresh repository, fresh copy of the same generated data, fresh caches):
init, initial backup, unchanged backup, backup after one mutation (bench/mutate.py), full restore
into an empty dir, then a check of the restored tree against the source. Each metric is the median
over the runs. See bench/README.md.  Stdlib only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
import generate  # noqa: E402
import mutate  # noqa: E402

NAME = "openclaw"  # basename of the backed-up dir (root name)
PASSWORD = "bench-password-not-secret"
ALL_TOOLS = ["ours", "restic", "borg", "legacy"]
STEPS = ["init", "initial", "unchanged", "mutated", "restore"]
BACKUP_STEPS = ["initial", "unchanged", "mutated"]


# ---------------------------------------------------------------------------------------------
# measuring


def du(path: Path) -> int:
    """Apparent size (sum of st_size) of regular files under path; 0 if missing."""
    total = 0
    if not path.exists():
        return 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(dirpath, f))
            except FileNotFoundError:
                continue
            if not os.path.islink(os.path.join(dirpath, f)):
                total += st.st_size
    return total


class CmdFailed(Exception):
    pass


def run_measured(argv: list[str], cwd: Path, env: dict, logdir: Path, tag: str) -> dict:
    """Run one command through bench/measure.py: wall time, user+sys CPU and peak RSS (os.wait4)."""
    out, err, res = logdir / f"{tag}.out", logdir / f"{tag}.err", logdir / f"{tag}.rusage.json"
    launcher = [sys.executable, "-I", str(BENCH / "measure.py"), str(res), "--", *argv]
    with open(out, "wb") as so, open(err, "wb") as se:
        rc = subprocess.call(launcher, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=so, stderr=se)
    if rc != 0 or not res.exists():
        tail = err.read_bytes()[-2000:].decode(errors="replace") or out.read_bytes()[-2000:].decode(errors="replace")
        raise CmdFailed(f"exit {rc}: {' '.join(argv)}\n{tail}")
    m = json.loads(res.read_text())
    del m["exit"]
    return m


SETTLE_S = 1.0  # --settle


def settle() -> None:
    """Flush dirty pages and let the disk go quiet before a timed step. On VM disks, metadata
    operations right after large writes or deletions (the previous step, the previous run's
    cleanup) stall for hundreds of milliseconds, which would be charged to whichever tool runs next."""
    os.sync()
    time.sleep(SETTLE_S)


def run_step(cmds: list[tuple[list[str], Path]], env: dict, logdir: Path, tag: str) -> dict:
    acc = {"wall_s": 0.0, "user_s": 0.0, "sys_s": 0.0, "cpu_s": 0.0, "rss_kb": 0, "pss_kb": 0}
    settle()
    for i, (argv, cwd) in enumerate(cmds):
        m = run_measured(argv, cwd, env, logdir, f"{tag}.{i}")
        for k in ("wall_s", "user_s", "sys_s", "cpu_s"):
            acc[k] += m[k]
        acc["rss_kb"] = max(acc["rss_kb"], m["rss_kb"])
        acc["pss_kb"] = max(acc["pss_kb"], m.get("pss_kb", 0))
    return acc


# ---------------------------------------------------------------------------------------------
# verification


def tree(root: Path) -> tuple[dict, dict]:
    """relpath -> ("file", size, sha256) | ("link", target) | ("dir",) | ("other",); plus metadata."""
    entries: dict[str, tuple] = {}
    meta: dict[str, tuple] = {}

    def walk(d: str, rel: str) -> None:
        with os.scandir(d) as it:
            items = sorted(it, key=lambda e: e.name)
        for e in items:
            r = rel + e.name
            st = e.stat(follow_symlinks=False)
            if e.is_symlink():
                entries[r] = ("link", os.readlink(e.path))
            elif e.is_dir(follow_symlinks=False):
                entries[r] = ("dir",)
                meta[r] = (st.st_mode & 0o7777, None)
                walk(e.path, r + "/")
            elif e.is_file(follow_symlinks=False):
                h = hashlib.sha256()
                with open(e.path, "rb") as f:
                    while buf := f.read(1 << 20):
                        h.update(buf)
                entries[r] = ("file", st.st_size, h.hexdigest())
                meta[r] = (st.st_mode & 0o7777, int(st.st_mtime))
            else:
                entries[r] = ("other",)

    walk(str(root), "")
    return entries, meta


SQLITE_MAGIC = b"SQLite format 3\x00"


def sqlite_digest(path: Path) -> str | None:
    """Digest of an SQLite file's logical content (schema + every table's rows), or None.

    A tool that captures databases through SQLite's backup API stores a logically equal file
    whose header bytes may differ; that is not data loss. Works on a private copy so neither tree
    gets -wal/-shm files.
    """
    try:
        with open(path, "rb") as f:
            if f.read(16) != SQLITE_MAGIC:
                return None
    except OSError:
        return None
    with tempfile.TemporaryDirectory() as td:
        cp = Path(td) / "db.sqlite"
        shutil.copyfile(path, cp)
        try:
            db = sqlite3.connect(cp)
            try:
                h = hashlib.sha256()
                q = "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
                schema = db.execute(q).fetchall()
                h.update(repr(schema).encode())
                for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name").fetchall():
                    rows = sorted(repr(r) for r in db.execute(f'SELECT * FROM "{name}"'))
                    h.update(name.encode())
                    for r in rows:
                        h.update(r.encode())
                for p in ("user_version", "application_id"):
                    h.update(repr(db.execute(f"PRAGMA {p}").fetchone()).encode())
                return h.hexdigest()
            finally:
                db.close()
        except sqlite3.Error:
            return None


def verify(src: Path, restored: Path) -> dict:
    if not restored.is_dir():
        return {"ok": False, "error": f"restored root {restored} missing"}
    a, am = tree(src)
    b, bm = tree(restored)
    missing = sorted(set(a) - set(b))
    extra = sorted(set(b) - set(a))
    differ = sorted(k for k in set(a) & set(b) if a[k] != b[k])
    sqlite_equal = []  # bytes differ but the databases hold the same schema and rows
    for k in list(differ):
        if a[k][0] == b[k][0] == "file":
            da = sqlite_digest(src / k)
            if da is not None and da == sqlite_digest(restored / k):
                sqlite_equal.append(k)
                differ.remove(k)
    mode_diff = sorted(k for k in set(am) & set(bm) if am[k][0] != bm[k][0])
    mtime_diff = sorted(k for k in set(am) & set(bm) if am[k][1] is not None and am[k][1] != bm[k][1])
    res = {
        "ok": not (missing or extra or differ),
        "entries": len(a),
        "missing": len(missing),
        "extra": len(extra),
        "differ": len(differ),
        "sqlite_logically_equal": len(sqlite_equal),
        "mode_mismatch": len(mode_diff),
        "mtime_mismatch_s": len(mtime_diff),
    }
    examples = {
        "missing": missing[:5],
        "extra": extra[:5],
        "differ": differ[:5],
        "sqlite_logically_equal": sqlite_equal[:5],
        "mode_mismatch": mode_diff[:5],
        "mtime_mismatch_s": mtime_diff[:5],
    }
    res["examples"] = {k: v for k, v in examples.items() if v}
    return res


# ---------------------------------------------------------------------------------------------
# tools


class Ctx:
    def __init__(self, rundir: Path):
        self.dir = rundir
        self.src_parent = rundir / "src"
        self.src = self.src_parent / NAME
        self.repo = rundir / "repo"
        self.restore = rundir / "restore"
        self.cache = rundir / "cache"
        self.home = rundir / "home"
        self.config = rundir / "config"
        self.logs = rundir / "logs"
        self.state: dict = {}
        for d in (self.src_parent, self.restore, self.cache, self.home, self.config, self.logs):
            d.mkdir(parents=True, exist_ok=True)
        self.pwfile = self.config / "password"
        self.pwfile.write_text(PASSWORD)
        self.pwfile.chmod(0o600)

    def env(self) -> dict:
        e = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("RESTIC_", "BORG_", "OPENCLAW_", "XDG_", "GOMAXPROCS", "GOGC"))
        }
        e.update(
            {
                "HOME": str(self.home),
                "XDG_CACHE_HOME": str(self.cache),
                "XDG_CONFIG_HOME": str(self.config / "xdg"),
                "XDG_DATA_HOME": str(self.config / "xdg-data"),
                "LC_ALL": "C.UTF-8",
                "TZ": "UTC",
            }
        )
        return e


class Tool:
    name = ""

    def probe(self) -> tuple[bool, str]:
        raise NotImplementedError

    def env(self, ctx: Ctx) -> dict:
        return ctx.env()

    def init(self, ctx: Ctx) -> list:
        raise NotImplementedError

    def backup(self, ctx: Ctx, n: int) -> list:
        raise NotImplementedError

    def restore(self, ctx: Ctx) -> list:
        raise NotImplementedError


def _version(argv: list[str]) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        return (r.stdout or r.stderr).strip().splitlines()[0] if r.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError, IndexError):
        return ""


class Ours(Tool):
    name = "ours"

    def __init__(self):
        script = ROOT / ".venv/bin/openclaw-backup"
        py = ROOT / ".venv/bin/python"
        self.py = str(py if py.exists() else sys.executable)
        if os.environ.get("OPENCLAW_BENCH_OURS_CMD"):  # e.g. "/opt/venv/bin/openclaw-backup"
            self.cmd = shlex.split(os.environ["OPENCLAW_BENCH_OURS_CMD"])
        elif script.exists():
            self.cmd = [str(script)]
        elif (ROOT / "openclaw_backup/__main__.py").exists():
            self.cmd = [self.py, "-m", "openclaw_backup"]
        else:
            self.cmd = None

    def probe(self):
        if self.cmd is None:
            return False, "no .venv/bin/openclaw-backup and no openclaw_backup/__main__.py"
        if (ROOT / "openclaw_backup").is_dir():
            # An installed package is byte-compiled by pip; this source checkout may not be (and the
            # runs below must not write bytecode mid-measurement), so compile it once, up front.
            e = {k: v for k, v in self._base_env().items() if k != "PYTHONDONTWRITEBYTECODE"}
            subprocess.run([self.py, "-m", "compileall", "-q", str(ROOT / "openclaw_backup")], env=e, check=False,
                           stdout=subprocess.DEVNULL)  # fmt: skip
        r = subprocess.run([*self.cmd, "--help"], capture_output=True, text=True, env=self._base_env())
        if r.returncode != 0:
            last = ((r.stderr or r.stdout).strip().splitlines() or ["?"])[-1]
            return False, f"`{' '.join(self.cmd)} --help` failed: {last[-300:]}"
        return True, _version([*self.cmd, "--version"]) or "openclaw-backup (version unknown)"

    def _base_env(self):
        e = dict(os.environ)
        e["PYTHONPATH"] = str(ROOT) + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
        return e

    def env(self, ctx):
        e = ctx.env()
        e["OPENCLAW_BACKUP_PASSWORD"] = PASSWORD
        e["PYTHONPATH"] = str(ROOT)
        e["PYTHONDONTWRITEBYTECODE"] = "1"
        return e

    def init(self, ctx):
        return [([*self.cmd, "--repo", str(ctx.repo), "init"], ctx.dir)]

    def backup(self, ctx, n):
        # every tool must store the same tree: the built-in excludes (logs/, *.log, tmp/, ...) would
        # drop parts of the generated data that restic, borg and tar keep
        argv = [*self.cmd, "--repo", str(ctx.repo), "backup", "--source", str(ctx.src), "--no-default-excludes"]
        return [(argv, ctx.dir)]

    def restore(self, ctx):
        return [([*self.cmd, "--repo", str(ctx.repo), "restore", "latest", "--target", str(ctx.restore)], ctx.dir)]


class Restic(Tool):
    name = "restic"

    def probe(self):
        if not shutil.which("restic"):
            return False, "restic not on PATH"
        return True, _version(["restic", "version"])

    def env(self, ctx):
        e = ctx.env()
        e.update({"RESTIC_PASSWORD": PASSWORD, "RESTIC_CACHE_DIR": str(ctx.cache / "restic")})
        return e

    def init(self, ctx):  # repository format "stable" = v2 in 0.14, compression auto (zstd)
        return [(["restic", "-r", str(ctx.repo), "init"], ctx.dir)]

    def backup(self, ctx, n):
        return [(["restic", "-r", str(ctx.repo), "backup", NAME], ctx.src_parent)]

    def restore(self, ctx):
        return [(["restic", "-r", str(ctx.repo), "restore", "latest", "--target", str(ctx.restore)], ctx.dir)]


class Borg(Tool):
    name = "borg"

    def probe(self):
        if not shutil.which("borg"):
            return False, "borg not on PATH"
        return True, _version(["borg", "--version"])

    def env(self, ctx):
        e = ctx.env()
        b = ctx.config / "borg"
        e.update(
            {
                "BORG_PASSPHRASE": PASSWORD,
                "BORG_BASE_DIR": str(b),
                "BORG_CACHE_DIR": str(ctx.cache / "borg"),
                "BORG_CONFIG_DIR": str(b / "config"),
                "BORG_SECURITY_DIR": str(b / "security"),
                "BORG_KEYS_DIR": str(b / "keys"),
                "BORG_DISPLAY_PASSPHRASE": "no",
                "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
                "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes",
            }
        )
        return e

    def init(self, ctx):  # repokey = AES-256-CTR + HMAC-SHA256, key in the repo; default compression lz4
        return [(["borg", "init", "-e", "repokey", str(ctx.repo)], ctx.dir)]

    def backup(self, ctx, n):
        ctx.state["archive"] = f"b{n}"
        return [(["borg", "create", "--stats", f"{ctx.repo}::b{n}", NAME], ctx.src_parent)]

    def restore(self, ctx):
        return [(["borg", "extract", f"{ctx.repo}::{ctx.state['archive']}"], ctx.restore)]


class Legacy(Tool):
    """tar.gz full + mtime-based incrementals (GNU tar --newer-mtime), openssl AES-256-CBC, sha256."""

    name = "legacy"

    def probe(self):
        missing = [t for t in ("tar", "gzip", "openssl", "bash", "sha256sum") if not shutil.which(t)]
        if missing:
            return False, "missing " + ",".join(missing)
        return True, f"{_version(['tar', '--version'])}; {_version(['openssl', 'version'])}"

    def init(self, ctx):
        return [(["mkdir", "-p", str(ctx.repo)], ctx.dir)]

    def backup(self, ctx, n):
        prev = ctx.state.get("last_backup_start")
        # the legacy script stamps a backup with the time it ran; the next incremental takes files
        # whose mtime is newer. Floor to the second: a superset, never misses a change.
        ctx.state["last_backup_start"] = int(time.time())
        kind = "full" if prev is None else "incr"
        out = ctx.repo / f"openclaw-backup-{n:04d}-{kind}.tar.gz.enc"
        ctx.state.setdefault("archives", []).append(out)
        newer = "" if prev is None else f"--newer-mtime=@{prev} "
        script = (
            "set -eo pipefail\n"
            f"tar -czf - {newer}-C '{ctx.src_parent}' {NAME} "
            f"| openssl enc -aes-256-cbc -salt -pbkdf2 -pass 'file:{ctx.pwfile}' -out '{out}'\n"
            f"cd '{ctx.repo}' && sha256sum '{out.name}' > '{out.name}.sha256'\n"
        )
        return [(["bash", "-c", script], ctx.dir)]

    def restore(self, ctx):
        lines = ["set -eo pipefail"]
        for a in ctx.state["archives"]:  # full first, then incrementals in order (overlay)
            lines.append(f"(cd '{ctx.repo}' && sha256sum --quiet -c '{a.name}.sha256')")
            lines.append(
                f"openssl enc -d -aes-256-cbc -pbkdf2 -pass 'file:{ctx.pwfile}' -in '{a}' "
                f"| tar -xzf - -C '{ctx.restore}'"
            )
        return [(["bash", "-c", "\n".join(lines) + "\n"], ctx.dir)]


TOOL_CLASSES = {"ours": Ours, "restic": Restic, "borg": Borg, "legacy": Legacy}


# ---------------------------------------------------------------------------------------------
# one run of one tool


def one_run(tool: Tool, pristine: Path, rundir: Path, seed: int, keep: bool) -> dict:
    ctx = Ctx(rundir)
    subprocess.run(["cp", "-a", str(pristine), str(ctx.src)], check=True)
    env = tool.env(ctx)
    res: dict = {"steps": {}, "commands": {}}
    prev_repo = 0
    try:
        for step in STEPS:
            if step == "mutated":
                res["mutation"] = mutate.mutate(ctx.src, step=1, seed=seed)
            if step == "init":
                cmds = tool.init(ctx)
            elif step == "restore":
                cmds = tool.restore(ctx)
            else:
                cmds = tool.backup(ctx, BACKUP_STEPS.index(step) + 1)
            res["commands"][step] = [" ".join(a) for a, _ in cmds]
            m = run_step(cmds, env, ctx.logs, step)
            repo = du(ctx.repo)
            m["repo_bytes"] = repo
            m["added_bytes"] = repo - prev_repo
            m["cache_bytes"] = du(ctx.cache)
            prev_repo = repo
            res["steps"][step] = m
        res["verify"] = verify(ctx.src, ctx.restore / NAME)
        res["ok"] = True
    except CmdFailed as e:
        res["ok"] = False
        res["error"] = str(e)
    finally:
        if not keep:
            shutil.rmtree(rundir, ignore_errors=True)
    return res


# ---------------------------------------------------------------------------------------------
# report

METRICS = [  # (key in step dict, label, scale divisor)
    ("wall_s", "wall s", 1),
    ("cpu_s", "cpu s", 1),
    ("rss_kb", "peak RSS MB", 1024),
    ("pss_kb", "peak PSS MB", 1024),
    ("repo_bytes", "repo MB", 1e6),
    ("added_bytes", "added MB", 1e6),
    ("cache_bytes", "cache MB", 1e6),
]
STEP_METRICS = {
    "init": ["wall_s", "cpu_s", "rss_kb", "pss_kb", "repo_bytes"],
    "initial": ["wall_s", "cpu_s", "rss_kb", "pss_kb", "repo_bytes", "added_bytes", "cache_bytes"],
    "unchanged": ["wall_s", "cpu_s", "rss_kb", "pss_kb", "added_bytes"],
    "mutated": ["wall_s", "cpu_s", "rss_kb", "pss_kb", "repo_bytes", "added_bytes", "cache_bytes"],
    "restore": ["wall_s", "cpu_s", "rss_kb", "pss_kb"],
}


def medians(runs: list[dict]) -> dict:
    good = [r for r in runs if r.get("ok")]
    out: dict = {}
    for step in STEPS:
        vals = [r["steps"][step] for r in good if step in r["steps"]]
        if vals:
            out[step] = {k: statistics.median(v[k] for v in vals) for k in vals[0]}
    return out


def fmt(v: float | None) -> str:
    if v is None:
        return "-"
    a = abs(v)
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def build_table(results: dict, tools: list[str]) -> list[dict]:
    rows = []
    for step in STEPS:
        for key in STEP_METRICS[step]:
            label, div = next((lbl, d) for k, lbl, d in METRICS if k == key)
            vals = {}
            for t in tools:
                med = results[t].get("median", {})
                vals[t] = med[step][key] / div if step in med else None
            # best of restic/borg: lowest value among the present, valid ones
            cands = [
                (vals[t], t)
                for t in ("restic", "borg")
                if t in vals and vals[t] is not None and results[t]["status"] == "ok"
            ]
            best = min(cands) if cands else (None, None)
            ours = vals.get("ours")
            rows.append(
                {
                    "step": step,
                    "metric": label,
                    "values": vals,
                    "best_ref": best[1],
                    "ours_over_best": ratio(ours, best[0]),
                    "ours_over_legacy": ratio(ours, vals.get("legacy")),
                }
            )
    return rows


def print_table(rows: list[dict], tools: list[str], results: dict, file=sys.stdout) -> None:
    heads = []
    for t in tools:
        st = results[t]["status"]
        heads.append(t + ("" if st == "ok" else f"[{st}]"))
    cols = ["step", "metric", *heads, "ours/best(r,b)", "ours/legacy"]
    table = []
    for r in rows:
        best = "-" if r["ours_over_best"] is None else f"{r['ours_over_best']:.2f} ({r['best_ref']})"
        leg = "-" if r["ours_over_legacy"] is None else f"{r['ours_over_legacy']:.2f}"
        table.append([r["step"], r["metric"]] + [fmt(r["values"][t]) for t in tools] + [best, leg])
    w = [max(len(str(x)) for x in col) for col in zip(cols, *table, strict=False)]
    line = lambda xs: "  ".join(str(x).ljust(w[i]) if i < 2 else str(x).rjust(w[i]) for i, x in enumerate(xs))  # noqa: E731
    print(line(cols), file=file)
    print("  ".join("-" * x for x in w), file=file)
    last = None
    for row in table:
        if last is not None and row[0] != last:
            print(file=file)
        last = row[0]
        print(line(row), file=file)


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=str(BENCH / "results.json"))
    ap.add_argument("--tools", default=",".join(ALL_TOOLS))
    ap.add_argument("--workdir", help="scratch dir (default: a new temp dir, removed at the end)")
    ap.add_argument("--keep", action="store_true", help="keep repositories, restores and logs")
    ap.add_argument("--settle", type=float, default=1.0, help="seconds of quiet (after a sync) before each step")
    a = ap.parse_args(argv)
    globals()["SETTLE_S"] = a.settle

    tools = [t.strip() for t in a.tools.split(",") if t.strip()]
    bad = [t for t in tools if t not in TOOL_CLASSES]
    if bad:
        ap.error(f"unknown tools {bad}; choose from {ALL_TOOLS}")
    t_start = time.perf_counter()
    work = Path(a.workdir) if a.workdir else Path(tempfile.mkdtemp(prefix="openclaw-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    cpus = os.cpu_count()
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
    if affinity != cpus:
        print(f"warning: this process may use {affinity} of {cpus} CPUs", file=sys.stderr)

    pristine = work / "data" / NAME
    if pristine.exists():
        shutil.rmtree(pristine.parent)
    t0 = time.perf_counter()
    generate.generate(pristine, a.scale, a.seed)
    gen_s = time.perf_counter() - t0
    files = sum(1 for p in pristine.rglob("*") if p.is_file() and not p.is_symlink())
    size = du(pristine)
    print(
        f"data: {size / 1e6:.1f} MB in {files} files (scale {a.scale}, seed {a.seed}, "
        f"generated in {gen_s:.1f}s) at {pristine}",
        file=sys.stderr,
    )

    results: dict = {}
    instances: dict[str, Tool] = {}
    for t in tools:
        inst = TOOL_CLASSES[t]()
        ok, info = inst.probe()
        results[t] = {
            "status": "ok" if ok else "absent",
            "version": info if ok else None,
            "note": None if ok else info,
            "runs": [],
        }
        if ok:
            instances[t] = inst
        else:
            print(f"{t}: absent ({info})", file=sys.stderr)

    for r in range(a.runs):
        for t, inst in instances.items():  # interleave tools within a run to spread drift
            t0 = time.perf_counter()
            res = one_run(inst, pristine, work / f"run{r}-{t}", a.seed, a.keep)
            results[t]["runs"].append(res)
            v = res.get("verify", {})
            if not res["ok"]:
                state = "FAILED: " + res["error"].splitlines()[0]
            elif v.get("ok"):
                state = "verified"
            else:
                bad = {k: v[k] for k in ("missing", "extra", "differ") if k in v}
                state = f"INVALID restore {bad}"
            print(f"run {r + 1}/{a.runs} {t}: {time.perf_counter() - t0:.1f}s, {state}", file=sys.stderr)

    for t in tools:
        R = results[t]
        if R["status"] == "absent":
            continue
        if not R["runs"] or not all(x["ok"] for x in R["runs"]):
            R["status"] = "failed"
        if any(x.get("ok") and not x["verify"]["ok"] for x in R["runs"]):
            R["status"] = "invalid"
        R["median"] = medians(R["runs"])

    rows = build_table(results, tools)
    total_s = time.perf_counter() - t_start
    doc = {
        "meta": {
            "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "scale": a.scale,
            "runs": a.runs,
            "seed": a.seed,
            "tools": tools,
            "data_bytes": size,
            "data_files": files,
            "host": {
                "python": platform.python_version(),
                "platform": platform.platform(),
                "cpus": cpus,
                "cpus_usable": affinity,
            },
            "total_seconds": total_s,
        },
        "tools": results,
        "table": rows,
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(doc, indent=2, default=str) + "\n")

    print(
        f"\nscale {a.scale}: {size / 1e6:.1f} MB, {files} files; median of {a.runs} run(s); "
        f"lower is better; ratio < 1 means ours is better"
    )
    print_table(rows, tools, results)
    for t in tools:
        R = results[t]
        if R["status"] != "ok":
            detail = R.get("note") or next(
                (
                    x.get("error") or json.dumps(x["verify"])
                    for x in R["runs"]
                    if not x.get("ok") or not x["verify"]["ok"]
                ),
                "",
            )
            print(f"\n{t}: {R['status']}: {detail.strip()[:600]}")
    print(f"\nwrote {a.out}; total {total_s:.0f}s; workdir {work}{' (kept)' if a.keep else ''}")
    if not a.keep and not a.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
