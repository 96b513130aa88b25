"""Metrics end to end: a known sequence of connections, then a scrape and ``tlswrap status``."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import urllib.request

from cryptography import x509

from conftest import Tlswrap, free_port, greet_echo, wait_for
from tlswrap.metrics import parse


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        assert answer.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = answer.read().decode()
    return {(name, tuple(sorted(labels.items()))): value for name, labels, value in parse(text)}


def tls_from(certs, port: int, source: str) -> socket.socket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    return certs.client_context().wrap_socket(raw, server_hostname="localhost")


def refused(port: int, source: str) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=10,
                                  source_address=(source, 0)) as s:
        s.sendall(b"\x16\x03\x01\x00\x05hello")
        try:
            return s.recv(100) == b""
        except ConnectionResetError:
            return True


def test_counters_after_a_known_sequence(certs, thread_server, tmp_path):
    srv = thread_server(greet_echo)
    imaps, down, mport = free_port(), free_port(), free_port()
    closed = free_port()  # nothing listens there: the backend is down
    (tmp_path / "hosts.allow").write_text("")
    (tmp_path / "hosts.deny").write_text("imaps: 127.0.0.2\n")
    text = (f"foreground = yes\ndebug = notice\nmetrics = 127.0.0.1:{mport}\n"
            f"hostsAllow = {tmp_path}/hosts.allow\nhostsDeny = {tmp_path}/hosts.deny\n"
            f"cert = {certs.cert_file}\nkey = {certs.key_file}\n"
            f"[imaps]\naccept = 127.0.0.1:{imaps}\nconnect = 127.0.0.1:{srv.port}\n"
            "maxClientConnections = 1\n"
            f"[down]\naccept = 127.0.0.1:{down}\nconnect = 127.0.0.1:{closed}\n")
    proc = Tlswrap(tmp_path, text, name="t.conf")  # no port probe: every connection counts
    try:
        wait_for(lambda: "started with 2 service(s)" in proc.log(), 15, "the start")
        svc = (("service", "imaps"),)
        before = scrape(mport)
        assert before[("tlswrap_connections_live", svc)] == 0
        assert ("tlswrap_connections_accepted_total", svc) not in before

        held = tls_from(certs, imaps, "127.0.0.1")  # served
        assert held.recv(100) == b"* OK echo ready\r\n"
        held.sendall(b"a1 NOOP\r\n")
        assert held.recv(100) == b"a1 NOOP\r\n"
        assert refused(imaps, "127.0.0.1")  # by the limit: one per client address
        assert refused(imaps, "127.0.0.2")  # by the rules
        with socket.create_connection(("127.0.0.1", imaps), timeout=10,
                                      source_address=("127.0.0.3", 0)) as bad:
            bad.sendall(b"GET / HTTP/1.0\r\n\r\n")  # a failed handshake
            try:
                while bad.recv(100):  # an alert, then the end
                    pass
            except ConnectionResetError:
                pass
        with tls_from(certs, down, "127.0.0.3") as gone:  # backend down
            assert gone.recv(100) == b""
        wait_for(lambda: scrape(mport).get(("tlswrap_connections_accepted_total", svc)) == 4
                 and scrape(mport).get(("tlswrap_backend_failures_total",
                                        (("service", "down"),
                                         ("target", f"127.0.0.1:{closed}")))) == 1,
                 10, "the counts")
        got = scrape(mport)
        assert got[("tlswrap_connections_live", svc)] == 1
        assert got[("tlswrap_connections_refused_total",
                    (("reason", "maxClientConnections"), *svc))] == 1
        assert got[("tlswrap_connections_refused_total", (("reason", "rules"), *svc))] == 1
        assert got[("tlswrap_handshake_failures_total", (("reason", "failed"), *svc))] == 1
        assert got[("tlswrap_connections_accepted_total", (("service", "down"),))] == 1
        assert got[("tlswrap_handshake_seconds_count", (("service", "down"),))] == 1
        assert ("tlswrap_handshake_seconds_count", svc) not in got  # counted at its end
        assert got[("tlswrap_handshakes_in_progress", ())] == 0
        not_after = x509.load_pem_x509_certificate(certs.cert_file.read_bytes()) \
            .not_valid_after_utc.timestamp()
        assert got[("tlswrap_certificate_not_after_seconds", svc)] == not_after

        held.close()
        wait_for(lambda: scrape(mport).get(("tlswrap_connections_served_total", svc)) == 1,
                 10, "the served connection to end")
        got = scrape(mport)
        assert got[("tlswrap_connections_live", svc)] == 0
        assert got[("tlswrap_bytes_to_backend_total", svc)] == 9
        assert got[("tlswrap_bytes_to_client_total", svc)] == 17 + 9
        assert got[("tlswrap_connect_seconds_count", svc)] == 1
        assert got[("tlswrap_handshake_seconds_count", svc)] == 1
        assert got[("tlswrap_connect_seconds_bucket", (("le", "+Inf"), *svc))] == 1

        proc.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: scrape(mport).get(("tlswrap_reloads_total",
                                            (("result", "ok"), ("what", "config")))) == 1,
                 10, "the reload to be counted")

        status = subprocess.run([sys.executable, "-m", "tlswrap", "status", str(proc.config)],
                                capture_output=True, text=True, timeout=30)
        assert status.returncode == 0, status
        rows = {line.split()[0]: line.split() for line in status.stdout.splitlines()
                if line and not line.startswith(" ")}
        assert rows["imaps"][1:9] == ["4", "2", "1", "0", "1", "0", "9", "26"]
        assert rows["down"][1:9] == ["1", "0", "0", "1", "0", "0", "0", "0"]
        assert "  [imaps] refused: maxClientConnections: 1" in status.stdout
        assert f"  [down] backend failed: 127.0.0.1:{closed}: 1" in status.stdout
    finally:
        assert proc.stop() == 0


def test_the_endpoint_answers_only_get_metrics(certs, tlswrap, thread_server):
    srv = thread_server(greet_echo)
    port, mport = free_port(), free_port()
    tlswrap(f"foreground = yes\nmetrics = {mport}\n[imaps]\naccept = 127.0.0.1:{port}\n"
            f"connect = 127.0.0.1:{srv.port}\ncert = {certs.cert_file}\n"
            f"key = {certs.key_file}\n", [port, mport])

    def ask(request: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", mport), timeout=10) as s:
            s.sendall(request)
            out = b""
            while chunk := s.recv(65536):
                out += chunk
            return out

    assert ask(b"GET /metrics HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 200 OK\r\n")
    assert ask(b"GET /secret HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 404 ")
    assert ask(b"POST /metrics HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 405 ")
    assert ask(b"GET /" + b"x" * 9000).startswith(b"HTTP/1.0 431 ")


def test_with_workers_the_supervisor_adds_up_the_workers(certs, thread_server, tlswrap):
    """workers = 2: connections spread over both; the supervisor's endpoint counts them all,
    and what a killed worker had counted stays in the totals."""
    import os

    from test_e2e_inetd import _children

    srv = thread_server(greet_echo)
    port, mport = free_port(), free_port()
    proc = tlswrap(f"foreground = yes\ndebug = notice\nworkers = 2\nmetrics = {mport}\n"
                   f"[imaps]\naccept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{srv.port}\n"
                   f"cert = {certs.cert_file}\nkey = {certs.key_file}\n", [port, mport])
    wait_for(lambda: len(_children(proc.proc.pid)) == 2, 10, "two workers")
    svc = (("service", "imaps"),)
    base = scrape(mport).get(("tlswrap_connections_served_total", svc), 0)
    for _ in range(20):
        with tls_from(certs, port, "127.0.0.1") as tls:
            assert tls.recv(100) == b"* OK echo ready\r\n"
    wait_for(lambda: scrape(mport).get(("tlswrap_connections_served_total", svc)) == base + 20,
             10, "all 20 counted")
    assert proc.log().count(" closed: TLSv") == 20
    victim = _children(proc.proc.pid)[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: len(_children(proc.proc.pid)) == 2 and victim not in
             _children(proc.proc.pid), 10, "the worker to be replaced")
    assert scrape(mport)[("tlswrap_connections_served_total", svc)] == base + 20
    with tls_from(certs, port, "127.0.0.1") as tls:
        assert tls.recv(100) == b"* OK echo ready\r\n"
    wait_for(lambda: scrape(mport).get(("tlswrap_connections_served_total", svc)) == base + 21,
             10, "one more")
