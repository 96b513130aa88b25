"""How the daemon reaches its backends, as stunnel does: ``local``, ``failover``, ``delay``,
``socket = a|l|r:...`` on the right sockets. Real daemon, real TLS, loopback only."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess

import pytest

from conftest import free_port, service_config
from tlswrap.backend import Target
from tlswrap.config import Address


def _greeting(certs, port: int) -> bytes:
    ctx = certs.client_context()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        return tls.recv(100)


def _says_peer(conn: socket.socket) -> None:
    conn.sendall(f"* OK from {conn.getpeername()[0]}\r\n".encode())


def _says(name: str):
    def handler(conn: socket.socket) -> None:
        conn.sendall(f"* OK {name}\r\n".encode())
    return handler


def test_local_sets_the_source_address_of_backend_connections(certs, thread_server, tlswrap):
    backend = thread_server(_says_peer)
    port = free_port()
    tlswrap(service_config(certs, port, f"127.0.0.1:{backend.port}", extra="local = 127.0.0.2"),
            [port])
    assert _greeting(certs, port) == b"* OK from 127.0.0.2\r\n"


@pytest.mark.parametrize(("failover", "expected"), [
    ("rr", [b"A", b"B", b"A", b"B"]), ("prio", [b"A", b"A", b"A", b"A"]), (None, [b"A"] * 4)])
def test_failover_rr_takes_turns_and_prio_keeps_the_order(certs, thread_server, tlswrap,
                                                          failover, expected):
    a, b = thread_server(_says("A")), thread_server(_says("B"))
    port = free_port()
    extra = f"failover = {failover}" if failover else ""
    tlswrap(service_config(certs, port, [f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"],
                           extra=extra), [port])
    got = [_greeting(certs, port)[5:6] for _ in range(4)]
    assert got == expected


def test_failover_rr_skips_a_target_that_is_down(certs, thread_server, tlswrap):
    a = thread_server(_says("A"))
    port = free_port()
    tlswrap(service_config(certs, port, [f"127.0.0.1:{free_port()}", f"127.0.0.1:{a.port}"],
                           extra="failover = rr"), [port])
    assert [_greeting(certs, port)[5:6] for _ in range(3)] == [b"A"] * 3


def test_delay_no_resolves_at_start_and_falls_back_when_it_cannot():
    assert Target.from_address(Address("localhost", 143), resolve=True).resolved
    assert Target.from_address(Address("localhost", 143), resolve=False).resolved is None
    assert Target.from_address(Address("no-such-host.invalid", 143), resolve=True).resolved \
        is None  # looked up at each connection instead, as stunnel's delayed resolver


def _skmem(args: list[str], port: int) -> list[dict[str, int]]:
    out = subprocess.run(["ss", "-tnmH", *args, f"( sport = :{port} )"], capture_output=True,
                         text=True, timeout=10).stdout
    return [{k: int(v) for k, v in re.findall(r"\b(rb|tb)(\d+)", m)}
            for m in re.findall(r"skmem:\(([^)]*)\)", out)]


@pytest.mark.skipif(not shutil.which("ss"), reason="ss (iproute2) not installed")
def test_socket_roles_are_stunnels_a_listening_l_client_r_backend(certs, thread_server,
                                                                   tlswrap):
    """``a:`` sets the listening socket, ``l:`` each client connection (stunnel's meanings);
    the kernel reports buffer sizes doubled (socket(7))."""
    backend = thread_server(lambda conn: (conn.sendall(b"* OK\r\n"), conn.recv(10)))
    port = free_port()
    tlswrap(service_config(certs, port, f"127.0.0.1:{backend.port}",
                           extra="socket = a:SO_RCVBUF=40000\nsocket = l:SO_SNDBUF=30000\n"
                                 "socket = r:SO_SNDBUF=20000"), [port])
    assert [m["rb"] for m in _skmem(["-l"], port)] == [80000]
    ctx = certs.client_context()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        assert tls.recv(10) == b"* OK\r\n"
        assert [m["tb"] for m in _skmem([], port)] == [60000]  # the daemon's end
        out = subprocess.run(["ss", "-tnmH", f"( dport = :{backend.port} )"],
                             capture_output=True, text=True, timeout=10).stdout
        assert "tb40000" in out  # the daemon's backend connection
