"""Memory held per connection whose client stops reading while the backend keeps sending.

    python3 bench/stalled.py [--conns N]

tlswrap and stunnel read the same stunnel-format file (bench/run.py's) in front of one
backend that streams without end; N clients each complete the handshake, read the greeting,
ask for an endless download and never read again. After a settle, the proxy's RSS growth over
its idle baseline, divided by N, is what one stalled connection costs: the bound on what the
relay buffers per direction. Kernel socket buffers are not in RSS.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import REPO, conf_text, free_port, make_certs, session_pids, tree_rss_kb

CHUNK = b"x" * 65536


def backend() -> int:
    """Greets, then streams to every connection until it goes away."""
    lsock = socket.create_server(("127.0.0.1", 0), backlog=1024)

    def serve(conn: socket.socket) -> None:
        with conn:
            try:
                conn.sendall(b"* OK stall\r\n")
                conn.recv(100)
                while True:
                    conn.sendall(CHUNK)
            except OSError:
                pass

    def accept() -> None:
        while True:
            conn, _ = lsock.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return lsock.getsockname()[1]


def measure(argv: list[str], port: int, conns: int) -> float:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    held: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        time.sleep(1)
        base = tree_rss_kb(proc.pid)
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        for _ in range(conns):
            s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10))
            s.recv(100)
            s.sendall(b"STREAM\r\n")
            held.append(s)
        time.sleep(3)  # every relay fills its buffers and stalls
        grown = tree_rss_kb(proc.pid) - base
        assert session_pids(proc.pid), "the proxy died"
        return grown / conns
    finally:
        for s in held:
            s.close()
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--conns", type=int, default=200)
    args = ap.parse_args()
    bport = backend()
    stunnel = shutil.which("stunnel4") or shutil.which("stunnel")
    tlswrap = os.environ.get("BENCH_TLSWRAP", str(REPO / ".venv" / "bin" / "tlswrap")).split()
    with tempfile.TemporaryDirectory() as tmp:
        certs = make_certs(Path(tmp), "ec")
        rows = {}
        for name, cmd in (("tlswrap", tlswrap), ("stunnel", [stunnel] if stunnel else None)):
            if not cmd:
                continue
            port = free_port()
            conf = Path(tmp) / f"{name}.conf"
            conf.write_text(conf_text(port, bport, certs))
            rows[name] = measure([*cmd, str(conf)], port, args.conns)
    print(f"memory per stalled connection ({args.conns} clients that stopped reading)")
    for name, kb in rows.items():
        print(f"  {name:8s} {kb:8.1f} KB")
    if len(rows) == 2:
        print(f"  ratio    {rows['tlswrap'] / rows['stunnel']:8.2f}  (tlswrap/stunnel)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
