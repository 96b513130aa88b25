"""Stalled peers (TIMEOUTbusy: the time to wait for expected data): a side that takes nothing
while data waits for it ends the connection; an exec'd program that never reads is killed
and reaped; nothing is left behind (no zombie, no descriptor)."""

from __future__ import annotations

import socket
import struct
import sys
import threading

from conftest import free_port, wait_for
from test_e2e_inetd import _children

BUSY, CLOSE = 1, 2
CHUNK = b"x" * 65536


def fill_then_reset(certs, port: int, expect: bytes | None = None) -> int:
    """Connect, send until tlswrap takes no more, then vanish with a reset; bytes sent."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    tls = certs.client_context().wrap_socket(raw, server_hostname="localhost")
    if expect is not None:
        got = b""
        while len(got) < len(expect) and (chunk := tls.recv(len(expect) - len(got))):
            got += chunk  # the program's line may come in two records
        assert got == expect
    tls.settimeout(1.0)
    sent = 0
    try:
        for _ in range(4096):  # 256 MiB at most: far more than any buffer on the way
            sent += tls.send(CHUNK)
    except (TimeoutError, OSError):
        pass
    tls.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    tls.close()
    assert sent < 4096 * len(CHUNK)  # it did stall
    return sent


def test_an_exec_program_that_never_reads_is_killed_and_reaped(certs, tlswrap, tmp_path):
    script = tmp_path / "never_reads.py"
    script.write_text("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                      "print('* OK not reading', flush=True)\ntime.sleep(600)\n")
    port = free_port()
    proc = tlswrap(f"foreground = yes\ndebug = info\n[imaps]\naccept = 127.0.0.1:{port}\n"
                   f"exec = {sys.executable}\nexecArgs = python3 {script}\n"
                   f"cert = {certs.cert_file}\nkey = {certs.key_file}\n"
                   f"TIMEOUTbusy = {BUSY}\nTIMEOUTclose = {CLOSE}\n", [port])
    idle_fds = proc.idle_fd_count()
    fill_then_reset(certs, port, b"* OK not reading\n")
    # killed (TERM ignored, then KILL after TIMEOUTclose) and reaped within the bound
    wait_for(lambda: not _children(proc.proc.pid), BUSY + CLOSE + 10, "the program reaped")
    wait_for(lambda: proc.fd_count() <= idle_fds, 10, "descriptors back")
    log = proc.log()
    assert "backend: stalled: read nothing for 1s (TIMEOUTbusy) while data waited" in log
    assert "its connection broke; terminating" in log
    assert "killed by signal 9" in log


def test_a_tcp_backend_that_stops_reading(certs, thread_server, tlswrap):
    release = threading.Event()

    def greet_then_never_read(conn: socket.socket) -> None:
        conn.sendall(b"* OK\r\n")
        release.wait(60)

    srv = thread_server(greet_then_never_read)
    port = free_port()
    proc = tlswrap(f"foreground = yes\ndebug = info\n[imaps]\naccept = 127.0.0.1:{port}\n"
                   f"connect = 127.0.0.1:{srv.port}\ncert = {certs.cert_file}\n"
                   f"key = {certs.key_file}\nTIMEOUTbusy = {BUSY}\n", [port])
    idle_fds = proc.idle_fd_count()
    try:
        fill_then_reset(certs, port, b"* OK\r\n")
        wait_for(lambda: "backend: stalled" in proc.log(), BUSY + 10, "the stall")
        wait_for(lambda: proc.fd_count() <= idle_fds, 10, "descriptors back")
    finally:
        release.set()


def test_a_client_that_stops_reading(certs, thread_server, tlswrap):
    outcome: list[str] = []

    def flood(conn: socket.socket) -> None:
        try:
            for _ in range(4096):
                conn.sendall(CHUNK)
            outcome.append("all sent")
        except OSError as exc:
            outcome.append(type(exc).__name__)

    srv = thread_server(flood)
    port = free_port()
    proc = tlswrap(f"foreground = yes\ndebug = info\n[imaps]\naccept = 127.0.0.1:{port}\n"
                   f"connect = 127.0.0.1:{srv.port}\ncert = {certs.cert_file}\n"
                   f"key = {certs.key_file}\nTIMEOUTbusy = {BUSY}\n", [port])
    idle_fds = proc.idle_fd_count()
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    with certs.client_context().wrap_socket(raw, server_hostname="localhost") as tls:
        tls.recv(100)  # then reads nothing more
        wait_for(lambda: "client: stalled" in proc.log(), BUSY + 10, "the stall")
        wait_for(lambda: outcome != [], 10, "the backend to see the end")
    assert outcome in (["ConnectionResetError"], ["BrokenPipeError"])  # reset, not finished
    wait_for(lambda: proc.fd_count() <= idle_fds, 10, "descriptors back")
