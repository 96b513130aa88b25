"""How the daemon reaches its backends, as stunnel does: ``local``, ``failover``, ``delay``,
``transparent``, ``socket = a|l|r:...`` on the right sockets. Real daemon, real TLS, on
loopback (and in two network namespaces the transparent test creates)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys

import pytest

from conftest import free_port, service_config, stop_process, wait_for
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


@pytest.mark.skipif(os.geteuid() != 0, reason="IP_TRANSPARENT needs root")
def test_transparent_source_shows_the_backend_the_clients_address(certs, thread_server,
                                                                   tlswrap):
    """``transparent = source``: the backend connection is bound to the client's own address
    (IP_TRANSPARENT), so the mail server logs and checks the real client. On loopback the
    routing stunnel's manual describes is not needed; between hosts it is."""
    backend = thread_server(_says_peer)
    port = free_port()
    tlswrap(service_config(certs, port, f"127.0.0.1:{backend.port}",
                           extra="transparent = source"), [port])
    ctx = certs.client_context()
    for source in ("127.0.0.7", "127.0.0.9"):
        with socket.create_connection(("127.0.0.1", port), timeout=10,
                                      source_address=(source, 0)) as raw, \
                ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.recv(100) == f"* OK from {source}\r\n".encode()


def test_transparent_source_with_setuid_is_refused_at_start(certs, tmp_path):
    conf = tmp_path / "t.conf"
    conf.write_text(f"setuid = nobody\n[imaps]\naccept = 127.0.0.1:{free_port()}\n"
                    f"connect = 143\ncert = {certs.cert_file}\nkey = {certs.key_file}\n"
                    "transparent = source\n")
    out = subprocess.run([sys.executable, "-m", "tlswrap", "check", str(conf)],
                         capture_output=True, text=True, timeout=60).stdout
    assert f"{conf}:7: error: [imaps] transparent = source: binding to the client's address " \
           "needs CAP_NET_ADMIN, which setuid drops" in out


NETNS_CLIENT = """
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
ctx.check_hostname = False
with socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=10) as raw, \\
        ctx.wrap_socket(raw) as tls:
    sys.stdout.write(tls.recv(100).decode())
"""
NETNS_BACKEND = """
import socket, sys
with socket.create_server((sys.argv[1], int(sys.argv[2]))) as s:
    s.settimeout(30)
    conn, peer = s.accept()
    conn.sendall(f"* OK from {peer[0]}\\r\\n".encode())
    conn.recv(10)
"""


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"),
                    reason="network namespaces need root and iproute2")
def test_transparent_source_between_two_network_namespaces(certs, tmp_path):
    """The real case: the client is another host (namespace A, 10.200.0.2), tlswrap and the
    mail server share host B. B sends the server's replies to the client's address back to
    itself (a routing rule on the server's source port, the part of stunnel's recipe that
    needs no firewall), so they reach tlswrap's transparent socket."""
    tag = f"tw{os.getpid() % 100000}"
    a, b, va, vb = f"{tag}a", f"{tag}b", f"{tag}va", f"{tag}vb"
    backend_port, port = 7143, 7993

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, timeout=10, capture_output=True)

    procs: list[subprocess.Popen] = []
    try:
        ip("netns", "add", a)
        ip("netns", "add", b)
        ip("link", "add", va, "type", "veth", "peer", "name", vb)
        ip("link", "set", va, "netns", a)
        ip("link", "set", vb, "netns", b)
        ip("-n", a, "addr", "add", "10.200.0.2/24", "dev", va)
        ip("-n", b, "addr", "add", "10.200.0.1/24", "dev", vb)
        for ns, dev in ((a, va), (b, vb)):
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "link", "set", dev, "up")
        ip("-n", b, "rule", "add", "ipproto", "tcp", "sport", str(backend_port), "lookup", "100")
        ip("-n", b, "route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "100")
        conf = tmp_path / "t.conf"
        conf.write_text(f"foreground = yes\n[imaps]\naccept = 10.200.0.1:{port}\n"
                        f"connect = 10.200.0.1:{backend_port}\ncert = {certs.cert_file}\n"
                        f"key = {certs.key_file}\ntransparent = source\nlibwrap = no\n")
        in_b = ["ip", "netns", "exec", b, sys.executable]
        procs.append(subprocess.Popen([*in_b, "-c", NETNS_BACKEND, "10.200.0.1",
                                       str(backend_port)]))
        log = open(tmp_path / "tlswrap.log", "wb")  # noqa: SIM115 - closed below
        procs.append(subprocess.Popen([*in_b, "-m", "tlswrap", str(conf)], stdout=log,
                                      stderr=subprocess.STDOUT))
        log.close()
        probe = ["ip", "netns", "exec", b, sys.executable, "-c",
                 f"import socket; socket.create_connection(('10.200.0.1', {port}), 1)"]
        wait_for(lambda: subprocess.run(probe, capture_output=True).returncode == 0, 20,
                 "tlswrap listening in namespace B")
        out = subprocess.run(["ip", "netns", "exec", a, sys.executable, "-c", NETNS_CLIENT,
                              str(certs.ca_file), "10.200.0.1", str(port)],
                             capture_output=True, text=True, timeout=30)
        assert out.stdout.strip() == "* OK from 10.200.0.2", (
            out.stderr + (tmp_path / "tlswrap.log").read_text(errors="replace"))
    finally:
        for proc in procs:
            stop_process(proc)
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
