#!/usr/bin/env python3
"""Cold start through the Hub with latency: openclaw-backup vs the legacy tar.gz script, on the fake Hub.

Usage:  .venv/bin/python bench/hub_cold_start.py [--scale 1.0] [--snapshots 12] [--latency-ms 50]
                                                 [--seed 1] [--out FILE] [--workdir DIR] [--keep]

Starts the Hub test server (``python -m tests.support.hubserver``, 127.0.0.1, stopped by PID), generates
the agent home (bench/generate.py), and builds two repositories with the tools of bench/hub_day.py:
ours with ``--snapshots`` snapshots (a backup, then a bench/mutate.py step and a backup, again and
again), the legacy script's with one full archive of the final state (its best case: one download).
Then the server adds ``--latency-ms`` before answering every request, and each tool restores the
final state into an empty folder from a fresh HOME (no cache): ours with ``openclaw-backup restore
latest --target``; the legacy script by reading ``latest-backup.json``, its meta file and its archive
through ``resolve``, then ``openssl enc -d | tar -xz`` (as the legacy script does). Measured: wall
time, requests and bytes downloaded (server counters), and that both restores equal the source.
Target: ours ≤ 0.5x the legacy time. Exit status 0 when met, 1 when missed, 2 on an error.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import generate  # noqa: E402
import hub_day  # noqa: E402
import mutate  # noqa: E402

TARGET_TIME_RATIO = 0.5


def _tree_digest(root: Path) -> str:
    """Regular files and symlinks (path, bytes or target) under ``root``."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath, name)
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                h.update(f"L {rel} {os.readlink(p)}\n".encode())
            elif p.is_file():
                h.update(f"F {rel} ".encode() + hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def _config(hub: hub_day.Hub, **config: int) -> None:
    req = urllib.request.Request(hub.url + "/_test/config", data=json.dumps(config).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    with hub_day._OPENER.open(req, timeout=30) as r:
        r.read()


def _downloaded(hub: hub_day.Hub) -> tuple[int, int, dict[str, int]]:
    s = hub._get("/_test/stats")
    return int(s["requests_total"]), int(s["bytes_downloaded"]), dict(s["requests"])


def _legacy_restore(hub: hub_day.Hub, work: Path, dest: Path) -> None:
    headers = {"Authorization": f"Bearer {hub_day.TOKEN}"}

    def get(path: str) -> bytes:
        url = f"{hub.url}/datasets/{hub_day.LEGACY_REPO}/resolve/main/{path}"
        with hub_day._OPENER.open(urllib.request.Request(url, headers=headers), timeout=600) as r:
            return bytes(r.read())

    latest = json.loads(get("latest-backup.json"))
    meta = json.loads(get(latest["latest"]))
    archive = work / "legacy-download.tar.gz.enc"
    archive.write_bytes(get(f"{hub_day.PREFIX}/{meta['volumes'][0]}"))
    dest.mkdir(parents=True)
    pw = work / "legacy-password"
    dec = subprocess.Popen(
        ["openssl", "enc", "-d", "-aes-256-cbc", "-pbkdf2", "-pass", f"file:{pw}", "-in", str(archive)],
        stdout=subprocess.PIPE,
    )
    assert dec.stdout is not None
    rc_tar = subprocess.run(["tar", "-xzf", "-", "-C", str(dest)], stdin=dec.stdout).returncode
    dec.stdout.close()
    if dec.wait() or rc_tar:
        raise RuntimeError("legacy restore failed (openssl or tar)")


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    os.environ.update(HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_DISABLE_TELEMETRY="1")
    os.environ["HF_HOME"] = str(work / "hf-home")
    for k in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT"):
        os.environ.pop(k, None)
    hub_day._no_proxy(os.environ)  # type: ignore[arg-type]
    src = work / "root/.openclaw"
    src.parent.mkdir(parents=True)
    generate.generate(src, args.scale, args.seed)
    data_bytes = sum(f.stat().st_size for f in src.rglob("*") if f.is_file() and not f.is_symlink())
    print(f"agent home: {data_bytes / 1e6:.1f} MB", file=sys.stderr)
    hub = hub_day.Hub(work)
    try:
        ours, legacy = hub_day.Ours(hub, work, src), hub_day.Legacy(hub, work, src)
        ours.init()
        legacy.init()
        for step in range(args.snapshots):
            if step:
                mutate.mutate(src, step, args.seed)
            ours.backup(step * 60.0)
        legacy.backup(0.0)  # one full archive of the final state
        want = _tree_digest(src)
        _config(hub, latency_ms=args.latency_ms)
        results: dict[str, Any] = {}
        for name in ("ours", "legacy"):
            dest = work / f"restored-{name}"
            before, t = _downloaded(hub), time.monotonic()
            if name == "ours":
                home = work / "ours-cold-home"  # a fresh machine: no cache, no config
                env = dict(ours.env, HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
                r = subprocess.run(
                    [*ours.cmd, "--repo", ours.address, "--json", "restore", "latest", "--target", str(dest), "--yes"],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    text=True,
                    timeout=1800,
                )
                if r.returncode != 0:
                    raise RuntimeError(f"ours restore failed ({r.returncode}):\n{r.stderr[-3000:]}")
            else:
                _legacy_restore(hub, work, dest)
            wall = time.monotonic() - t
            after = _downloaded(hub)
            roots = [p for p in dest.iterdir() if p.is_dir()]
            restored = dest if name == "ours" else dest / "openclaw-state"
            if name == "ours" and len(roots) == 1 and not (dest / "agents").exists():
                restored = roots[0]
            results[name] = {
                "wall_s": round(wall, 2),
                "requests": after[0] - before[0],
                "bytes_downloaded": after[1] - before[1],
                "requests_by_kind": {k: n - b for k, n in after[2].items() if n > (b := before[2].get(k, 0))},
                "identical": _tree_digest(restored) == want,
            }
            print(f"{name:7} {wall:7.2f} s  {results[name]['requests']:5d} requests  "
                  f"{results[name]['bytes_downloaded'] / 1e6:8.1f} MB  identical={results[name]['identical']}",
                  file=sys.stderr)  # fmt: skip
    finally:
        hub.stop()
    time_ratio = results["ours"]["wall_s"] / max(results["legacy"]["wall_s"], 1e-6)
    return {
        "scale": args.scale,
        "snapshots": args.snapshots,
        "latency_ms": args.latency_ms,
        "data_bytes": data_bytes,
        "results": results,
        "time_ratio": round(time_ratio, 2),
        "target": f"<= {TARGET_TIME_RATIO}",
        "ok": time_ratio <= TARGET_TIME_RATIO and all(r["identical"] for r in results.values()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--snapshots", type=int, default=12)
    p.add_argument("--latency-ms", type=int, default=50)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path)
    p.add_argument("--workdir", type=Path)
    p.add_argument("--keep", action="store_true")
    args = p.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="hub-cold-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        res = run(args, work)
    except Exception as e:  # a bench reports, it does not trace
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(res, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
