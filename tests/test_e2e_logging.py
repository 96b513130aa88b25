"""Log levels mean what they mean in stunnel: at its default, debug = 5 (notice), every
connection's start and end, and every failed handshake, are logged."""

from __future__ import annotations

import socket

import pytest

from conftest import free_port, greet_echo, service_config, wait_for


@pytest.mark.parametrize("debug", ["5", "notice", "daemon.notice"])
def test_connections_and_failed_handshakes_are_logged_at_notice(certs, thread_server, tlswrap,
                                                                 debug):
    srv = thread_server(greet_echo)
    port = free_port()
    proc = tlswrap(service_config(certs, port, f"127.0.0.1:{srv.port}", debug=debug), [port])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            certs.client_context().wrap_socket(raw, server_hostname="localhost") as tls:
        assert tls.recv(100) == b"* OK echo ready\r\n"
        ours = f"127.0.0.1:{tls.getsockname()[1]}"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as bad:
        bad.sendall(b"GET / HTTP/1.0\r\n\r\n")  # not TLS
        try:
            bad.recv(100)  # an alert, then the close (or a reset)
        except ConnectionResetError:
            pass
        theirs = f"127.0.0.1:{bad.getsockname()[1]}"
    wait_for(lambda: f"{theirs} closed:" in proc.log() and f"{ours} closed:" in proc.log(), 10,
             "both closing lines")
    log = proc.log()
    assert f"NOTICE [imaps] {ours} accepted connection" in log
    assert f"NOTICE [imaps] {ours} closed: TLSv1.3" in log
    assert f"NOTICE [imaps] {theirs} accepted connection" in log
    line = next(x for x in log.splitlines() if f"{theirs} closed:" in x)
    assert "NOTICE" in line and "TLS handshake failed" in line, line


def test_at_warning_connections_are_quiet(certs, thread_server, tlswrap):
    srv = thread_server(greet_echo)
    port = free_port()
    proc = tlswrap(service_config(certs, port, f"127.0.0.1:{srv.port}", debug="warning"),
                   [port])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            certs.client_context().wrap_socket(raw, server_hostname="localhost") as tls:
        assert tls.recv(100) == b"* OK echo ready\r\n"
    assert "accepted connection" not in proc.log()
