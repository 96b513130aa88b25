#!/usr/bin/env python3
"""Fallback load client, used only when client.c cannot be compiled (no gcc or libssl-dev).

Same command line and JSON lines as client.c (see its header), built from blocking stdlib ssl
sockets in threads. It costs far more CPU per connection than the C client, and on a 2-core
machine that compresses every ratio: the harness labels results made with it.
"""

from __future__ import annotations

import argparse
import json
import resource
import socket
import ssl
import sys
import threading
import time
from typing import Any

import pattern  # bench/pattern.py: this script runs from bench/, so it is on sys.path


def cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def make_ctx() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Conn:
    """One TLS connection: connect, handshake (offering ``session`` if given), greeting."""

    def __init__(self, ctx: ssl.SSLContext, port: int, host: str, timeout: float,
                 session: ssl.SSLSession | None = None) -> None:
        raw = socket.create_connection((host, port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.s = ctx.wrap_socket(raw, session=session)
        buf = b""
        while b"\n" not in buf:
            chunk = self.s.recv(4096)
            if not chunk:
                raise ConnectionError("closed before the greeting")
            buf += chunk

    def roundtrip(self, req: bytes) -> None:
        self.s.sendall(req)
        got = 0
        while got < len(req):
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("closed during a round trip")
            got += len(chunk)

    def close(self) -> None:
        try:
            self.s.close()
        except OSError:
            pass


def pct(lat: list[float], p: float) -> float:
    if not lat:
        return -1.0
    lat.sort()
    return lat[int(p * (len(lat) - 1) + 0.5)] * 1000


def tls_info(c: Conn) -> str:
    cipher = c.s.cipher()
    return f"{c.s.version()} {cipher[0] if cipher else '?'} ? ?"


def run_timed(a: argparse.Namespace) -> dict[str, Any]:
    ctx = make_ctx()
    req = request(a.size)
    t_start = time.monotonic() + a.warmup
    t_end = t_start + a.duration
    lock = threading.Lock()
    stats = {"count": 0, "errors": 0, "resumed": 0}
    lat: list[float] = []
    info: list[str] = []

    def worker() -> None:
        sess = None
        conn = None
        while time.monotonic() < t_end:
            try:
                if a.mode == "hs":
                    t0 = time.monotonic()
                    c = Conn(ctx, a.port, a.host, a.conn_timeout, sess if a.resume else None)
                    t1 = time.monotonic()
                    if not info:
                        info.append(tls_info(c))
                    reused = c.s.session_reused
                    if a.resume:
                        sess = c.s.session
                    c.close()
                    if t0 >= t_start:
                        with lock:
                            stats["count"] += 1
                            stats["resumed"] += bool(reused)
                            lat.append(t1 - t0)
                else:
                    if conn is None:
                        conn = Conn(ctx, a.port, a.host, a.conn_timeout)
                        if not info:
                            info.append(tls_info(conn))
                    t0 = time.monotonic()
                    conn.roundtrip(req)
                    t1 = time.monotonic()
                    if t0 >= t_start:
                        with lock:
                            stats["count"] += 1
                            lat.append(t1 - t0)
            except (OSError, ConnectionError):
                if conn:
                    conn.close()
                    conn = None
                if time.monotonic() >= t_start:
                    with lock:
                        stats["errors"] += 1
        if conn:
            conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(a.conc)]
    for t in threads:
        t.start()
    time.sleep(max(0.0, t_start - time.monotonic()))
    c0, w0 = cpu(), time.monotonic()
    for t in threads:
        t.join(timeout=a.duration + a.warmup + a.conn_timeout + 5)
    wall, used = time.monotonic() - w0, cpu() - c0
    out: dict[str, Any] = {"mode": a.mode, "count": stats["count"],
                           "rate": stats["count"] / wall if wall else 0, "errors": stats["errors"]}
    if a.mode == "hs":
        out["resumed"] = stats["resumed"]
    out.update({"p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99), "client_cpu_s": used,
                "wall_s": wall, "client_cpu_frac": used / wall if wall else 0,
                "tls": info[0] if info else ""})
    return out


def request(size: int) -> bytes:
    head = b"a0001 UID FETCH 1:* (FLAGS INTERNALDATE RFC822.SIZE) "
    body = (head + b"x" * size)[: size - 2]
    return body + b"\r\n"


def run_bulk(a: argparse.Namespace) -> dict[str, Any]:
    c = Conn(make_ctx(), a.port, a.host, a.timeout)
    c.s.settimeout(a.timeout)
    down = a.dir == "down"
    c0, t0 = cpu(), time.monotonic()
    c.s.sendall(f"BULK {'DOWN' if down else 'UP'} {a.bytes}\r\n".encode())
    moved = bad = 0
    if down:
        while moved < a.bytes:
            chunk = c.s.recv(65536)
            if not chunk:
                break
            bad += pattern.mismatches(chunk, moved)
            moved += len(chunk)
    else:
        while moved < a.bytes:
            n = min(pattern.MAX_CHUNK, a.bytes - moved)
            c.s.sendall(pattern.chunk(moved, n))
            moved += n
        line = b""
        while not line.endswith(b"\n"):
            chunk = c.s.recv(128)
            if not chunk:
                break
            line += chunk
        parts = line.split()
        if len(parts) == 3 and parts[0] == b"OK" and int(parts[1]) == a.bytes:
            bad = int(parts[2])
        else:
            bad = -1
    wall, used = time.monotonic() - t0, cpu() - c0
    info = tls_info(c)
    c.close()
    ok = moved == a.bytes and bad == 0
    return {"mode": "bulk", "dir": a.dir, "bytes": moved, "bad_bytes": bad, "ok": ok,
            "mb_s": moved / wall / 1e6, "client_cpu_s": used, "wall_s": wall,
            "client_cpu_frac": used / wall, "tls": info}


def run_hold(a: argparse.Namespace) -> int:
    ctx = make_ctx()
    held: list[Conn] = []
    failed = 0
    lock = threading.Lock()
    deadline = time.monotonic() + a.timeout
    todo = list(range(a.target))
    t0 = time.monotonic()

    def opener() -> None:
        nonlocal failed
        while time.monotonic() < deadline:
            with lock:
                if not todo or failed > a.maxfail:
                    return
                todo.pop()
            try:
                c = Conn(ctx, a.port, a.host, a.conn_timeout)
                c.s.settimeout(a.conn_timeout)
                with lock:
                    held.append(c)
            except (OSError, ConnectionError):
                with lock:
                    failed += 1

    threads = [threading.Thread(target=opener, daemon=True) for _ in range(min(a.conc, 64))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(0.1, deadline - time.monotonic() + a.conn_timeout))
    print(json.dumps({"mode": "hold", "held": len(held), "failed": failed,
                      "open_s": time.monotonic() - t0, "tls": ""}), flush=True)
    req = request(a.size)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "ping":
            t = time.monotonic()
            alive = 0
            for c in held:
                try:
                    c.roundtrip(req)
                    alive += 1
                except (OSError, ConnectionError):
                    pass
            print(json.dumps({"mode": "ping", "alive": alive, "asked": len(held),
                              "s": time.monotonic() - t}), flush=True)
        elif cmd == "check":
            t = time.monotonic()
            ok = False
            try:
                c = Conn(ctx, a.port, a.host, a.conn_timeout)
                c.s.settimeout(a.conn_timeout)
                c.roundtrip(req)
                c.close()
                ok = True
            except (OSError, ConnectionError):
                pass
            print(json.dumps({"mode": "check", "ok": ok, "ms": (time.monotonic() - t) * 1000}),
                  flush=True)
        elif cmd == "quit":
            break
    for c in held:
        c.close()
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["hs", "rr", "bulk", "hold"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--conc", type=int, default=32)
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--warmup", type=float, default=1)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--size", type=int, default=120)
    ap.add_argument("--bytes", type=int, default=100 << 20)
    ap.add_argument("--dir", choices=["down", "up"], default="down")
    ap.add_argument("--target", type=int, default=1000)
    ap.add_argument("--maxfail", type=int, default=50)
    ap.add_argument("--conn-timeout", type=float, default=10)
    ap.add_argument("--timeout", type=float, default=120)
    a = ap.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if a.mode == "hold":
        return run_hold(a)
    out = run_bulk(a) if a.mode == "bulk" else run_timed(a)
    print(json.dumps(out), flush=True)
    return 0 if out.get("ok", True) else 1


if __name__ == "__main__":
    sys.exit(main())
