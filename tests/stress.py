"""The stress mode: the concurrency scenarios run many times, several at once, failures kept.

A race that loses data once in twenty runs passes the normal suite most days; this finds it. Not
part of the suite (pytest collects ``test_*.py`` only): run it by hand before merging a change to
publication, prune, staging or the reads of the head, or after a concurrency test failed once::

    python -m tests.stress --runs 80 --parallel 3            # the S3 scenario, 80 runs, 3 at a time
    python -m tests.stress --seconds 600 --kind s3 --kind hub
    python -m tests.stress --runs 20 --test "tests/test_prune_race.py"

Each run is its own ``pytest`` process (its own SeaweedFS or fake Hub server) running one
scenario, by default ``tests/test_concurrency.py::test_concurrent_backups_prune_and_restores``
for each ``--kind``. The workers of a run trace what they asked the store and decided
(:mod:`tests.support.racetrace`, via ``STRESS_TRACE_DIR``); a passing run's output and trace are
deleted, a failing one's kept under ``--out`` (``run-N.txt`` and ``run-N-trace/``; read the trace
merged in time order with ``python -m tests.support.racetrace <out>/run-N-trace``). It prints one
line per failure and a summary, and exits 1 when any run failed.

The machine's cores bound ``--parallel``: the scenario's five worker processes are busy, and an
overloaded machine turns races into timeouts.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.support.racetrace import ENV

PROJECT = Path(__file__).resolve().parents[1]
SCENARIO = "tests/test_concurrency.py::test_concurrent_backups_prune_and_restores[{kind}]"


def _first_problem(output: str) -> str:
    for line in output.splitlines():
        if line.startswith("E ") and line[1:].strip():
            return line[1:].strip()[:200]
    return output.strip().splitlines()[-1][:200] if output.strip() else "(no output)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.stress", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=0, help="runs in all (default: 30 unless --seconds)")
    parser.add_argument("--seconds", type=float, default=0.0, help="start runs until this many seconds have passed")
    parser.add_argument("--parallel", type=int, default=2, help="runs at once (default 2)")
    parser.add_argument("--kind", action="append", choices=["local", "s3", "hub"], help="store(s); default s3")
    parser.add_argument("--test", action="append", help="a pytest node id to run instead of the scenario")
    parser.add_argument("--out", type=Path, default=Path("/tmp/openclaw-backup-stress"), help="where failures go")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds one run may take")
    args = parser.parse_args(argv)
    tests = args.test or [SCENARIO.format(kind=k) for k in (args.kind or ["s3"])]
    runs = args.runs or (0 if args.seconds else 30)
    deadline = time.monotonic() + args.seconds if args.seconds else None
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)

    lock = threading.Lock()
    counter = iter(range(1, 1 << 30))
    tally: dict[str, list[int]] = {t: [0, 0] for t in tests}  # runs, failures

    def next_run() -> int | None:
        with lock:
            n = next(counter)
            if (runs and n > runs) or (deadline is not None and time.monotonic() > deadline):
                return None
            return n

    def loop() -> None:
        while (n := next_run()) is not None:
            test = tests[(n - 1) % len(tests)]
            trace = args.out / f"run-{n}-trace"
            env = {**os.environ, ENV: str(trace)}
            cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", test]
            try:
                done = subprocess.run(cmd, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=args.timeout)
                output, failed = done.stdout + done.stderr, done.returncode != 0
            except subprocess.TimeoutExpired as e:
                output, failed = f"{e.stdout or ''}\ntimed out after {args.timeout:.0f} s", True
            with lock:
                tally[test][0] += 1
                tally[test][1] += failed
                if failed:
                    (args.out / f"run-{n}.txt").write_text(output if isinstance(output, str) else str(output))
                    print(f"run {n} FAILED ({test}): {_first_problem(str(output))}", flush=True)
            if not failed:
                shutil.rmtree(trace, ignore_errors=True)

    with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
        for _ in range(max(1, args.parallel)):
            pool.submit(loop)
    for test, (n, bad) in tally.items():
        print(f"{test}: {n} runs, {bad} failed")
    if any(bad for _, bad in tally.values()):
        print(f"outputs and traces of the failed runs: {args.out}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
