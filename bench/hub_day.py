#!/usr/bin/env python3
"""Hub traffic over one simulated day: openclaw-backup vs the legacy tar.gz script, on the fake Hub.

Usage:  .venv/bin/python bench/hub_day.py [--scale 0.3] [--steps 48] [--out bench/hub_day.json]
                                          [--seed 1] [--workdir DIR] [--keep]

Starts the test Hub server (``python -m tests.support.hubserver``, 127.0.0.1, stopped by PID: TERM, then
KILL), generates the agent home (bench/generate.py), backs it up once with each tool, then applies
``--steps`` mutations (bench/mutate.py), one every 24 h / steps of simulated time, backing up with
both tools after each. Finally one more backup of each with nothing changed. Around every backup the
server's counters are read: commits (of that tool's repo), requests and bytes uploaded (global; the
tools run one after the other, never concurrently).

ours:   ``openclaw-backup --repo hf://datasets/bench/ours-day backup --source SRC --no-default-excludes``
legacy: what the legacy script does (/work/shared/LEGACY_FORMAT.md): ``tar | gzip -6 | openssl enc
        -aes-256-cbc -salt -pbkdf2``; full at the start, when 2 h of simulated time have passed since
        the last full, or after 10 incrementals; otherwise an incremental of the regular files whose
        mtime is newer than the start of the previous backup (real mtimes, set by mutate.py). Each
        backup is uploaded with huggingface_hub's ``HfApi.upload_file``: one commit for the archive,
        one for its ``.meta.json``, one for ``latest-backup.json``.

Needs the project venv (huggingface_hub) and ``tar``, ``gzip``, ``openssl`` on PATH. Exit status 0
when every target is met, 1 when one is missed, 2 on an error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import generate  # noqa: E402
import mutate  # noqa: E402

USER = "bench"
TOKEN = "hf_bench_hub_day_token"
PASSWORD = "bench-hub-day-password"
OURS_REPO = f"{USER}/ours-day"
LEGACY_REPO = f"{USER}/legacy-day"
PREFIX = "backups"
DAY_MIN = 24 * 60
FULL_INTERVAL_MIN = 120  # OPENCLAW_FULL_BACKUP_INTERVAL_HOURS=2
MAX_INCREMENTALS = 10  # OPENCLAW_MAX_INCREMENTAL_BACKUPS
GZIP_LEVEL = 6  # OPENCLAW_BACKUP_COMPRESSION_LEVEL
COMMIT_LIMIT_PER_HOUR = 128
TARGET_BYTES_RATIO = 5.0
SIM_START = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy


def _no_proxy(env: dict[str, str]) -> dict[str, str]:
    for k in ("NO_PROXY", "no_proxy"):
        env[k] = ",".join(filter(None, [env.get(k), "127.0.0.1", "localhost"]))
    return env


# ---------------------------------------------------------------------------------------------
# the Hub test server


class Hub:
    def __init__(self, work: Path):
        self.dir = work / "hub"
        self.dir.mkdir()
        port_file, self.log = self.dir / "port", self.dir / "server.log"
        args = [sys.executable, "-m", "tests.support.hubserver", "--port-file", str(port_file)]
        args += ["--data-dir", str(self.dir / "data"), "--user", USER, "--token", TOKEN]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                args, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 30
        while not port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the Hub test server did not start:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{int(port_file.read_text())}"
        self._get("/_test/health")

    def _get(self, path: str) -> Any:
        with _OPENER.open(self.url + path, timeout=30) as r:
            return json.loads(r.read())

    def counters(self) -> dict[str, Any]:
        s = self._get("/_test/stats")
        return {
            "requests": s["requests_total"],
            "requests_by_kind": s["requests"],
            "bytes_uploaded": s["bytes_uploaded"],
            "commits": {k: v["commits"] for k, v in s["repos"].items()},
            "stored_bytes": {k: v["stored_bytes"] for k, v in s["repos"].items()},
            "files": {k: len(v["files"]) for k, v in s["repos"].items()},
        }

    def stop(self) -> None:
        """TERM, then KILL after 5 s: only the process we started, by its PID."""
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


def delta(before: dict, after: dict, repo_key: str) -> dict[str, Any]:
    kinds = set(before["requests_by_kind"]) | set(after["requests_by_kind"])
    by_kind = {k: after["requests_by_kind"].get(k, 0) - before["requests_by_kind"].get(k, 0) for k in sorted(kinds)}
    return {
        "commits": after["commits"].get(repo_key, 0) - before["commits"].get(repo_key, 0),
        "requests": after["requests"] - before["requests"],
        "requests_by_kind": {k: v for k, v in by_kind.items() if v},
        "bytes_uploaded": after["bytes_uploaded"] - before["bytes_uploaded"],
    }


# ---------------------------------------------------------------------------------------------
# the two tools


def run_ours(cmd: list[str], address: str, args: list[str], env: dict[str, str], *, timeout: float = 600,
             what: str = "ours") -> subprocess.CompletedProcess[str]:  # fmt: skip
    """``openclaw-backup --repo ADDRESS --json ARGS`` (``cmd``: how to start it); raises on failure."""
    r = subprocess.run([*cmd, "--repo", address, "--json", *args], env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=timeout)  # fmt: skip
    if r.returncode != 0:
        raise RuntimeError(f"{what} {args[0]} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return r


class Ours:
    name = "ours"
    repo_key = f"datasets/{OURS_REPO}"

    def __init__(self, hub: Hub, work: Path, src: Path):
        script = ROOT / ".venv/bin/openclaw-backup"
        self.cmd = [str(script)] if script.exists() else [sys.executable, "-m", "openclaw_backup"]
        self.src = src
        home = work / "ours-home"
        home.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENCLAW_", "HF_", "HUGGINGFACE_", "XDG_"))}
        env.update(
            HOME=str(home),
            XDG_CACHE_HOME=str(home / ".cache"),
            XDG_CONFIG_HOME=str(home / ".config"),
            XDG_DATA_HOME=str(home / ".local/share"),
            HF_HOME=str(home / ".hf"),
            HF_ENDPOINT=hub.url,
            HF_TOKEN=TOKEN,
            HF_HUB_DISABLE_XET="1",
            HF_HUB_DISABLE_PROGRESS_BARS="1",
            HF_HUB_DISABLE_TELEMETRY="1",
            OPENCLAW_BACKUP_PASSWORD=PASSWORD,
            PYTHONPATH=str(ROOT),
            PYTHONDONTWRITEBYTECODE="1",
            LC_ALL="C.UTF-8",
            TZ="UTC",
        )
        self.env = _no_proxy(env)
        self.address = f"hf://datasets/{OURS_REPO}"

    def _run(self, args: list[str]) -> dict[str, Any]:
        r = run_ours(self.cmd, self.address, args, self.env)
        lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
        return json.loads(lines[-1]) if lines else {}

    def init(self) -> dict[str, Any]:
        self._run(["init"])
        return {}

    def backup(self, sim_min: float) -> dict[str, Any]:
        doc = self._run(["backup", "--source", str(self.src), "--no-default-excludes", "--host", "bench"])
        return {"unchanged": bool(doc.get("unchanged")), "snapshot": doc.get("snapshot")}


class Legacy:
    """The legacy script's archives and uploads (LEGACY_FORMAT.md), with split off (its default)."""

    name = "legacy"
    repo_key = f"datasets/{LEGACY_REPO}"

    def __init__(self, hub: Hub, work: Path, src: Path):
        from huggingface_hub import HfApi  # after HF_HUB_DISABLE_XET is set (read at import)

        self.api = HfApi(endpoint=hub.url, token=TOKEN)
        self.src = src  # <work>/root/.openclaw -> archive folder openclaw-state/
        self.out = work / "legacy-out"
        self.out.mkdir()
        self.pwfile = work / "legacy-password"
        self.pwfile.write_text(PASSWORD)
        self.pwfile.chmod(0o600)
        self.chain_id = ""
        self.last_full_sim: float | None = None
        self.last_start: float | None = None  # real time.time() at the start of the previous backup
        self.last_meta_path: str | None = None
        self.incrementals = 0

    def init(self) -> dict[str, Any]:
        self.api.create_repo(LEGACY_REPO, repo_type="dataset", private=True, exist_ok=True)
        return {}

    def _upload(self, what: Path | bytes, path_in_repo: str, message: str) -> None:
        """One ``upload_file``: one commit (LFS upload first when the server says so)."""
        self.api.upload_file(
            path_or_fileobj=what,
            path_in_repo=path_in_repo,
            repo_id=LEGACY_REPO,
            repo_type="dataset",
            commit_message=message,
        )

    def _changed_files(self, since: float) -> list[str]:
        names = []
        for dirpath, dirnames, filenames in os.walk(self.src):
            dirnames.sort()
            for f in sorted(filenames):
                p = os.path.join(dirpath, f)
                st = os.lstat(p)
                if (st.st_mode & 0o170000) == 0o100000 and st.st_mtime > since:  # regular files only
                    names.append(os.path.relpath(p, self.src.parent))
        return names

    def backup(self, sim_min: float) -> dict[str, Any]:
        start = time.time()
        full = (
            self.last_full_sim is None
            or sim_min - self.last_full_sim >= FULL_INTERVAL_MIN
            or self.incrementals >= MAX_INCREMENTALS
        )
        stamp = (SIM_START + dt.timedelta(minutes=sim_min)).strftime("%Y%m%d-%H%M%S")
        name = f"openclaw-backup-{stamp}.tar.gz.enc"
        archive = self.out / name
        transform = r"--transform=s,^\.openclaw,openclaw-state,S"  # S: not symlink targets
        tar = ["tar", "-cf", "-", "-C", str(self.src.parent), transform]
        if full:
            tar.append(self.src.name)
            file_count = None
        else:
            assert self.last_start is not None
            files = self._changed_files(self.last_start)
            file_count = len(files)
            listing = self.out / "files.list"
            listing.write_bytes(b"".join(f.encode() + b"\0" for f in files))
            tar += ["--no-recursion", "--null", "-T", str(listing)]
        with open(archive, "wb") as sink:
            p_tar = subprocess.Popen(tar, stdout=subprocess.PIPE)
            p_gz = subprocess.Popen(["gzip", f"-{GZIP_LEVEL}", "-c"], stdin=p_tar.stdout, stdout=subprocess.PIPE)
            p_ssl = subprocess.Popen(
                ["openssl", "enc", "-aes-256-cbc", "-salt", "-pbkdf2", "-pass", f"file:{self.pwfile}"],
                stdin=p_gz.stdout,
                stdout=sink,
            )
            assert p_tar.stdout is not None and p_gz.stdout is not None
            p_tar.stdout.close()
            p_gz.stdout.close()
            rcs = (p_ssl.wait(), p_gz.wait(), p_tar.wait())
        if any(rcs):
            raise RuntimeError(f"legacy pipeline failed: openssl/gzip/tar exit {rcs}")
        h = hashlib.sha256()
        with open(archive, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        if full:
            self.chain_id = secrets.token_hex(4)
            self.last_full_sim, self.incrementals = sim_min, 0
            file_count = sum(len(fs) for _, _, fs in os.walk(self.src))
        else:
            self.incrementals += 1
        created = (SIM_START + dt.timedelta(minutes=sim_min)).isoformat()
        meta_path = f"{PREFIX}/{name}.meta.json"
        meta = {
            "version": "2.1",
            "backup_type": "full" if full else "incremental",
            "chain_id": self.chain_id,
            "parent": None if full else self.last_meta_path,
            "volumes": [name],
            "is_split": False,
            "checksum": f"sha256:{h.hexdigest()}",
            "encrypted": True,
            "encryption_algorithm": "AES-256-CBC",
            "created_at_utc": created,
            "last_backup_time": created,
            "file_count": file_count,
            "archive_size": archive.stat().st_size,
            "incremental_count": self.incrementals,
            "last_full_backup_time": (SIM_START + dt.timedelta(minutes=self.last_full_sim or 0)).isoformat(),
            "is_latest": True,
            "created_by": "openclaw-backup",
        }
        latest = {"dataset": LEGACY_REPO, "latest": meta_path, "created_at_utc": created}
        self._upload(archive, f"{PREFIX}/{name}", f"Upload {name}")
        self._upload(json.dumps(meta, indent=2).encode(), meta_path, f"Upload {name}.meta.json")
        self._upload(json.dumps(latest, indent=2).encode(), "latest-backup.json", "Update latest-backup.json")
        self.last_start, self.last_meta_path = start, meta_path
        archive.unlink()
        return {"type": meta["backup_type"], "file_count": file_count, "archive_bytes": meta["archive_size"]}


# ---------------------------------------------------------------------------------------------
# the day


def peak_per_hour(records: list[dict]) -> int:
    """Most commits in any 60-minute window [t, t+60) of simulated time (windows start at a backup)."""
    times = [(r["sim_min"], r["commits"]) for r in records]
    return max((sum(c for t2, c in times if t <= t2 < t + 60) for t, _ in times), default=0)


def summarize(records: list[dict], unchanged: dict) -> dict[str, Any]:
    n = len(records)
    tot = {k: sum(r[k] for r in records) for k in ("commits", "requests", "bytes_uploaded")}
    later = records[1:]
    return {
        "backups": n,
        "total": tot,
        "per_backup": {k: v / n for k, v in tot.items()} if n else {},
        "after_initial": {k: sum(r[k] for r in later) for k in ("commits", "requests", "bytes_uploaded")},
        "commits_per_backup_min_max": [min(r["commits"] for r in records), max(r["commits"] for r in records)],
        "peak_commits_per_sim_hour": peak_per_hour(records),
        "unchanged": {k: unchanged[k] for k in ("commits", "requests", "bytes_uploaded")},
        "wall_s_total": round(sum(r["wall_s"] for r in records), 2),
    }


def ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def fmt_ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def print_table(res: dict) -> None:
    o, lg = res["summary"]["ours"], res["summary"]["legacy"]

    def mb(x: float, digits: int = 1) -> str:
        return f"{x / 1e6:.{digits}f}"

    def pair(part: str, key: str) -> tuple[Any, Any, str]:
        return o[part][key], lg[part][key], fmt_ratio(ratio(lg[part][key], o[part][key]))

    def mb_pair(part: str, digits: int = 1) -> tuple[str, str, str]:
        a, b, r = pair(part, "bytes_uploaded")
        return mb(a, digits), mb(b, digits), r

    per = o["per_backup"], lg["per_backup"]
    rows = [
        ("backups over the day", o["backups"], lg["backups"], ""),
        ("commits, total", *pair("total", "commits")),
        ("commits / backup", f"{per[0]['commits']:.2f}", f"{per[1]['commits']:.2f}", ""),
        ("commits, peak in 1 simulated hour", o["peak_commits_per_sim_hour"], lg["peak_commits_per_sim_hour"], ""),
        ("  (Hub limit per repo and hour)", COMMIT_LIMIT_PER_HOUR, COMMIT_LIMIT_PER_HOUR, ""),
        ("requests, total", *pair("total", "requests")),
        ("requests / backup", f"{per[0]['requests']:.1f}", f"{per[1]['requests']:.1f}", ""),
        ("MB uploaded, total", *mb_pair("total")),
        ("MB uploaded / backup", mb(per[0]["bytes_uploaded"], 2), mb(per[1]["bytes_uploaded"], 2), ""),
        ("MB uploaded after the initial backup", *mb_pair("after_initial")),
        ("unchanged backup: commits", o["unchanged"]["commits"], lg["unchanged"]["commits"], ""),
        ("unchanged backup: requests", o["unchanged"]["requests"], lg["unchanged"]["requests"], ""),
        ("unchanged backup: MB uploaded", *mb_pair("unchanged", 3)[:2], ""),
        ("MB stored on the server at the end", mb(res["final"]["ours_stored_bytes"]),
         mb(res["final"]["legacy_stored_bytes"]), ""),
    ]  # fmt: skip
    w = max(len(r[0]) for r in rows)
    print(f"\n{'metric':<{w}}  {'ours':>10}  {'legacy':>10}  {'legacy/ours':>11}")
    for label, a, b, r in rows:
        print(f"{label:<{w}}  {a!s:>10}  {b!s:>10}  {r:>11}")
    print()
    for t in res["targets"].values():
        print(f"{'PASS' if t['ok'] else 'FAIL'}  {t['what']}: {t['value']}  (target {t['target']})")


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    os.environ.update(HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_DISABLE_TELEMETRY="1")
    os.environ["HF_HOME"] = str(work / "hf-home")
    for k in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT"):
        os.environ.pop(k, None)
    _no_proxy(os.environ)  # type: ignore[arg-type]
    interval = DAY_MIN / args.steps
    t0 = time.monotonic()
    src = work / "root/.openclaw"
    src.parent.mkdir(parents=True)
    generate.generate(src, args.scale, args.seed)
    data_bytes = sum(f.stat().st_size for f in src.rglob("*") if f.is_file() and not f.is_symlink())
    print(f"agent home: {data_bytes / 1e6:.1f} MB at {src} ({time.monotonic() - t0:.1f} s)", file=sys.stderr)

    hub = Hub(work)
    try:
        tools: list[Ours | Legacy] = [Ours(hub, work, src), Legacy(hub, work, src)]
        setup: dict[str, Any] = {}
        for tool in tools:
            before = hub.counters()
            tool.init()
            setup[tool.name] = delta(before, hub.counters(), tool.repo_key)
        records: dict[str, list[dict]] = {t.name: [] for t in tools}
        mutations = []

        def backup_all(step: int, sim_min: float) -> dict[str, dict]:
            out = {}
            for tool in tools:
                before, t = hub.counters(), time.monotonic()
                info = tool.backup(sim_min)
                wall = time.monotonic() - t
                rec = {"step": step, "sim_min": sim_min, **delta(before, hub.counters(), tool.repo_key)}
                rec.update(info, wall_s=round(wall, 3))
                out[tool.name] = rec
            return out

        for step in range(args.steps + 1):
            sim_min = step * interval
            if step:
                rep = mutate.mutate(src, step, args.seed)
                mutations.append(
                    {k: rep[k] for k in ("step", "sessions_appended_bytes", "media_added", "media_deleted")}
                )
            for name, rec in backup_all(step, sim_min).items():
                records[name].append(rec)
            o, lg = records["ours"][-1], records["legacy"][-1]
            print(
                f"step {step:3d} t={sim_min / 60:5.2f}h  ours: {o['commits']} commit(s) {o['requests']:3d} req "
                f"{o['bytes_uploaded'] / 1e6:7.2f} MB | legacy {lg['type'][:4]}: {lg['commits']} commits "
                f"{lg['requests']:3d} req {lg['bytes_uploaded'] / 1e6:7.2f} MB  [{time.monotonic() - t0:.0f} s]",
                file=sys.stderr,
            )
        unchanged = backup_all(args.steps + 1, (args.steps + 1) * interval)  # after the day, nothing mutated
        final = hub.counters()
    finally:
        hub.stop()

    summary = {name: summarize(records[name], unchanged[name]) for name in records}
    o, lg = summary["ours"], summary["legacy"]
    changed = [r["commits"] for r in records["ours"] if not r["unchanged"]]
    ours_skipped = sum(1 for r in records["ours"] if r["unchanged"])
    bytes_ratio = ratio(lg["total"]["bytes_uploaded"], o["total"]["bytes_uploaded"])
    targets = {
        "bytes_ratio": {
            "what": "bytes uploaded over the day, legacy / ours",
            "value": f"{bytes_ratio:.2f}x" if bytes_ratio else "-",
            "target": f">= {TARGET_BYTES_RATIO:g}x",
            "ok": bool(bytes_ratio and bytes_ratio >= TARGET_BYTES_RATIO),
        },
        "ours_commits_per_changed_backup": {
            "what": f"ours, commits per changed backup ({len(changed)} backups)",
            "value": f"min {min(changed, default=0)}, max {max(changed, default=0)}",
            "target": "exactly 1",
            "ok": bool(changed) and all(c == 1 for c in changed) and ours_skipped == 0,
        },
        "ours_commits_unchanged": {
            "what": "ours, commits on the unchanged backup",
            "value": str(unchanged["ours"]["commits"])
            + ("" if unchanged["ours"]["unchanged"] else " (not reported as unchanged)"),
            "target": "0",
            "ok": unchanged["ours"]["commits"] == 0 and unchanged["ours"]["unchanged"],
        },
        "peak_commits_per_hour": {
            "what": "peak commits in one simulated hour, ours / legacy",
            "value": f"{o['peak_commits_per_sim_hour']} / {lg['peak_commits_per_sim_hour']}",
            "target": f"<= {COMMIT_LIMIT_PER_HOUR} (Hub limit per repo)",
            "ok": max(o["peak_commits_per_sim_hour"], lg["peak_commits_per_sim_hour"]) <= COMMIT_LIMIT_PER_HOUR,
        },
    }  # fmt: skip
    return {
        "meta": {
            "scale": args.scale,
            "seed": args.seed,
            "steps": args.steps,
            "interval_min": interval,
            "data_bytes": data_bytes,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "wall_s": round(time.monotonic() - t0, 1),
            "legacy_rules": {
                "full_interval_min": FULL_INTERVAL_MIN,
                "max_incrementals": MAX_INCREMENTALS,
                "gzip_level": GZIP_LEVEL,
                "commits_per_backup": "archive + .meta.json + latest-backup.json (no split, no checkpoint file)",
            },
        },
        "setup": setup,
        "summary": summary,
        "targets": targets,
        "unchanged": unchanged,
        "final": {
            "ours_stored_bytes": final["stored_bytes"].get(Ours.repo_key, 0),
            "legacy_stored_bytes": final["stored_bytes"].get(Legacy.repo_key, 0),
            "ours_files": final["files"].get(Ours.repo_key, 0),
            "legacy_files": final["files"].get(Legacy.repo_key, 0),
        },
        "records": records,
        "mutations": mutations,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=0.3, help="data size knob (1.0 ~ 180 MB; default 0.3)")
    ap.add_argument("--steps", type=int, default=48, help="mutation steps over the day (default 48: every 30 min)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=HERE / "hub_day.json")
    ap.add_argument("--workdir", type=Path, help="work here (default: a temp dir, deleted at the end)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    args = ap.parse_args(argv)
    if args.steps < 1:
        ap.error("--steps must be >= 1")
    missing = [t for t in ("tar", "gzip", "openssl") if not shutil.which(t)]
    if missing:
        print(f"missing on PATH: {', '.join(missing)}", file=sys.stderr)
        return 2
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="hub_day-", dir=args.workdir))
    else:
        work = Path(tempfile.mkdtemp(prefix="hub_day-"))
    try:
        res = run(args, work)
    except Exception as e:
        print(f"hub_day: {e}", file=sys.stderr)
        return 2
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print_table(res)
    print(f"\nwrote {args.out} ({res['meta']['wall_s']} s)")
    return 0 if all(t["ok"] for t in res["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
