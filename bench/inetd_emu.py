#!/usr/bin/env python3
"""A minimal inetd ("nowait") for the benchmark: one process per connection, socket on fd 0/1.

    python bench/inetd_emu.py [--port N] -- COMMAND [ARG...]

Listens on 127.0.0.1 (port 0 picks one), prints "READY <port>", and for every accepted
connection runs COMMAND with the connection as stdin and stdout (stderr stays ours, so the
wrapper's complaints land in the harness log). Children are reaped as they exit; one still
running after --max-life seconds is killed. SIGTERM stops it and its children.
"""

from __future__ import annotations

import argparse
import select
import signal
import socket
import subprocess
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--max-life", type=float, default=60.0)
    ap.add_argument("command", nargs="+")
    a = ap.parse_args()
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", a.port))
    ls.listen(128)
    print(f"READY {ls.getsockname()[1]}", flush=True)
    children: list[tuple[subprocess.Popen[bytes], float]] = []
    while not stop:
        try:
            ready, _, _ = select.select([ls], [], [], 0.2)
        except InterruptedError:
            continue
        if ready:
            conn, _ = ls.accept()
            with conn:
                p = subprocess.Popen(a.command, stdin=conn.fileno(), stdout=conn.fileno(),
                                     close_fds=True)
            children.append((p, time.monotonic()))
        now = time.monotonic()
        alive = []
        for p, t in children:
            if p.poll() is None:
                if now - t > a.max_life:
                    p.kill()
                    p.wait(timeout=5)
                else:
                    alive.append((p, t))
        children = alive
    for p, _ in children:
        if p.poll() is None:
            p.terminate()
    for p, _ in children:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
