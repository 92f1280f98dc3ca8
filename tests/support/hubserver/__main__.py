"""Run the fake Hub: ``python -m tests.support.hubserver --port-file F [--data-dir D] [--port N]``.

Binds 127.0.0.1 only. Once listening it writes its port to ``--port-file`` (atomically) and prints
it. SIGTERM/SIGINT stop it.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from .model import HubState
from .server import make_server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.hubserver", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--port-file", type=Path, help="write the chosen port here once listening")
    parser.add_argument("--data-dir", type=Path, help="keep LFS bytes here (default: in memory)")
    parser.add_argument("--user", default="tester", help="the account every accepted token belongs to")
    parser.add_argument("--token", action="append", default=[], help="accepted token (default: any non-empty)")
    args = parser.parse_args(argv)

    state = HubState(args.data_dir, user=args.user, tokens=frozenset(args.token))
    server = make_server(state, args.port)
    port = server.server_address[1]

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.port_file is not None:
        tmp = args.port_file.with_name(args.port_file.name + ".tmp")
        tmp.write_text(f"{port}\n")
        os.replace(tmp, args.port_file)
    print(port, flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
