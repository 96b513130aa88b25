"""Limits end to end: refused before any TLS byte, logged, while other clients are served."""

from __future__ import annotations

import signal
import socket
from contextlib import ExitStack

from conftest import free_port, greet_echo, service_config, wait_for

SECOND = "127.0.0.2"  # other loopback addresses: other clients
THIRD = "127.0.0.3"


# Each test's log has one more connection than it makes: the fixture's probe that waits for
# the port (closed before its handshake).


def served(certs, port: int, source: str = "127.0.0.1") -> socket.socket:
    """A TLS connection that got the backend's greeting (the caller closes it)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    tls = certs.client_context().wrap_socket(raw, server_hostname="localhost")
    assert tls.recv(100) == b"* OK echo ready\r\n"
    return tls


def refused_before_tls(port: int, source: str = "127.0.0.1") -> bool:
    """True when tlswrap closes the connection without a byte, though the client sent a
    ClientHello-sized greeting: no TLS work was done for it."""
    with socket.create_connection(("127.0.0.1", port), timeout=10,
                                  source_address=(source, 0)) as s:
        try:
            s.sendall(b"\x16\x03\x01\x00\x05hello")
            return s.recv(100) == b""
        except ConnectionResetError:
            return True


def refusal_lines(proc, what: str) -> list[str]:
    """The refusal lines (at most one a second per reason: test_limits checks that)."""
    lines = [line for line in proc.log().splitlines() if f"refused before TLS: {what}" in line]
    assert lines, proc.log()
    return lines


def start(certs, thread_server, tlswrap, extra: str = "", global_extra: str = ""):
    srv = thread_server(greet_echo)
    port = free_port()
    proc = tlswrap(service_config(certs, port, f"127.0.0.1:{srv.port}", extra=extra,
                                  global_extra=global_extra, debug="notice"), [port])
    return proc, port


def test_max_connections_refuses_the_excess_of_the_service(certs, thread_server, tlswrap):
    proc, port = start(certs, thread_server, tlswrap, "maxConnections = 2")
    with ExitStack() as held:
        held.enter_context(served(certs, port))
        held.enter_context(served(certs, port, SECOND))
        assert refused_before_tls(port)
        assert refused_before_tls(port, SECOND)
    wait_for(lambda: proc.log().count(" closed: TLSv") == 2, 10, "the two connections to end")
    served(certs, port, SECOND).close()  # room again
    log = proc.log()
    assert "refused before TLS: maxConnections = 2 reached" in log
    assert log.count("accepted connection") == 1 + 3  # refusals write no connection lines


def test_max_client_connections_refuses_one_address_and_serves_another(certs, thread_server,
                                                                       tlswrap):
    proc, port = start(certs, thread_server, tlswrap, "maxClientConnections = 2")
    with ExitStack() as held:
        for _ in range(2):
            held.enter_context(served(certs, port))
        assert refused_before_tls(port)
        for _ in range(2):
            held.enter_context(served(certs, port, SECOND))
        assert refused_before_tls(port, SECOND)
    assert "[imaps] 127.0.0.1:" in refusal_lines(proc, "maxClientConnections = 2 reached")[0]


def test_a_rate_flood_from_one_address_is_refused_while_a_second_is_served(
        certs, thread_server, tlswrap):
    proc, port = start(certs, thread_server, tlswrap, "maxClientRate = 3/3600")
    for _ in range(3):
        served(certs, port, SECOND).close()
    flood = [refused_before_tls(port, SECOND) for _ in range(20)]
    assert flood == [True] * 20
    for _ in range(3):
        served(certs, port, THIRD).close()
    assert refused_before_tls(port, THIRD)
    assert "[imaps] 127.0.0.2:" in refusal_lines(proc, "maxClientRate = 3/3600 reached")[0]
    assert proc.log().count("accepted connection") == 1 + 6


def test_max_handshakes_bounds_handshakes_under_way(certs, thread_server, tlswrap):
    proc, port = start(certs, thread_server, tlswrap, global_extra="maxHandshakes = 2")
    wait_for(lambda: " closed: " in proc.log(), 10, "the probe's handshake slot to be free")
    with ExitStack() as held:
        for _ in range(2):  # two clients that never send their ClientHello
            held.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10))
        wait_for(lambda: proc.log().count("accepted connection") == 1 + 2, 10,
                 "two handshakes")
        assert refused_before_tls(port, SECOND)
    wait_for(lambda: proc.log().count(" closed: ") == 1 + 2, 10, "the stalled ones to end")
    with served(certs, port, SECOND), served(certs, port):  # done handshakes take no slot
        with served(certs, port):
            pass
    assert "refused before TLS: maxHandshakes = 2 reached" in proc.log()


def test_limits_survive_a_reload_without_resetting_live_counts(certs, thread_server, tlswrap):
    proc, port = start(certs, thread_server, tlswrap, "maxConnections = 1")
    with served(certs, port) as live:
        proc.config.write_text(proc.config.read_text() + "TIMEOUTidle = 3600\n")
        proc.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in proc.log(), 10, "the reload")
        assert refused_before_tls(port, SECOND)  # the live connection still counts
        proc.config.write_text(proc.config.read_text()
                               .replace("maxConnections = 1", "maxConnections = 2"))
        proc.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: proc.log().count("configuration reloaded") == 2, 10, "the reload")
        with served(certs, port, SECOND):
            assert refused_before_tls(port)  # 2 live now
        live.sendall(b"still here\r\n")
        assert live.recv(100) == b"still here\r\n"
