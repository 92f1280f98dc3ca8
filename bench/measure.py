"""Tiny launcher: run a command, write its wall time and rusage as JSON.

    python -I bench/measure.py RESULT.json -- COMMAND [ARGS...]

Why a separate process: on Linux a child's ru_maxrss starts at the high-water mark of the
memory it was forked/vforked from (and exec keeps it), so a command started directly by the big
benchmark process would report at least the benchmark's own peak RSS. Started from this small
process, the floor is this launcher's size (~10 MB). stdin/stdout/stderr are inherited. Exits with
the command's exit code.
"""

import json
import os
import subprocess
import sys
import time


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
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = code = os.waitstatus_to_exitcode(status)
    with open(out, "w") as f:
        json.dump(
            {
                "wall_s": wall,
                "user_s": ru.ru_utime,
                "sys_s": ru.ru_stime,
                "cpu_s": ru.ru_utime + ru.ru_stime,
                "rss_kb": ru.ru_maxrss,  # KiB on Linux: max of the child and its waited-for descendants
                "exit": code,
            },
            f,
        )
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
