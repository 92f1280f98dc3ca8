"""Tiny launcher: run a command, write its wall time and rusage as JSON.

    python -I bench/measure.py RESULT.json -- COMMAND [ARGS...]

Why a separate process: on Linux a child's ru_maxrss starts at the high-water mark of the
memory it was forked/vforked from (and exec keeps it), so a command started directly by the big
benchmark process would report at least the benchmark's own peak RSS. Started from this small
process, the floor is this launcher's size (~10 MB). stdin/stdout/stderr are inherited. Exits with
the command's exit code.

``ru_maxrss`` is the peak of the largest single process. For commands that run several processes
at once (a pipeline; ours forks a worker for large backups and restores) the launcher also samples,
every 20 ms, the summed PSS of the command's whole process tree (``/proc/PID/smaps_rollup``: pages
shared between processes are split between them, so the sum counts each page once): the peak of
that sum is ``pss_kb``, the memory the command really held at its peak (within the sampling).
"""

import json
import os
import subprocess
import sys
import threading
import time


def _tree(pid: int) -> list[int]:
    out, i = [pid], 0
    while i < len(out):
        try:
            for task in os.listdir(f"/proc/{out[i]}/task"):
                with open(f"/proc/{out[i]}/task/{task}/children") as f:
                    out += [int(c) for c in f.read().split()]
        except OSError:
            pass
        i += 1
    return out


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _sample(pid: int, stop: threading.Event, peak: list[int]) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], sum(_pss_kb(p) for p in _tree(pid)))
        stop.wait(0.02)


def main() -> int:
    out, sep, *argv = sys.argv[1:]
    if sep != "--" or not argv:
        print("usage: measure.py RESULT.json -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    try:
        p = subprocess.Popen(argv)
    except OSError as e:
        print(f"measure.py: cannot run {argv[0]}: {e}", file=sys.stderr)
        return 127
    peak, stop = [0], threading.Event()
    sampler = threading.Thread(target=_sample, args=(p.pid, stop, peak), daemon=True)
    sampler.start()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    p.returncode = code = os.waitstatus_to_exitcode(status)
    with open(out, "w") as f:
        json.dump(
            {
                "wall_s": wall,
                "user_s": ru.ru_utime,
                "sys_s": ru.ru_stime,
                "cpu_s": ru.ru_utime + ru.ru_stime,
                "rss_kb": ru.ru_maxrss,  # KiB on Linux: max of the child and its waited-for descendants
                "pss_kb": peak[0],  # KiB: peak of the sampled PSS sum over the process tree
                "exit": code,
            },
            f,
        )
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
