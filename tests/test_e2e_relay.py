"""The relay end to end: bulk integrity, half-close both ways, backend failover and failure."""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import struct
import threading

import pytest
import trio
from OpenSSL import SSL

from conftest import free_port, greet_echo, service_config, wait_for

MB = 1024 * 1024


def pyopenssl_client(certs, port: int) -> tuple[SSL.Connection, socket.socket]:
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.load_verify_locations(str(certs.ca_file))
    ctx.set_verify(SSL.VERIFY_PEER, None)
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.settimeout(None)  # pyOpenSSL wants a blocking socket; the kernel bounds each wait
    for opt in (socket.SO_RCVTIMEO, socket.SO_SNDTIMEO):
        sock.setsockopt(socket.SOL_SOCKET, opt, struct.pack("ll", 20, 0))
    conn = SSL.Connection(ctx, sock)
    conn.set_tlsext_host_name(b"localhost")
    conn.set_connect_state()
    conn.do_handshake()
    return conn, sock


def read_to_close_notify(conn: SSL.Connection) -> bytes:
    chunks = []
    while True:
        try:
            chunks.append(conn.recv(65536))
        except SSL.ZeroReturnError:
            return b"".join(chunks)


def random_stream(total: int, sink) -> str:
    """Feed ``total`` random bytes to ``sink`` in chunks; return their SHA-256."""
    h = hashlib.sha256()
    left = total
    while left:
        chunk = os.urandom(min(left, 1 * MB))
        h.update(chunk)
        sink(chunk)
        left -= len(chunk)
    return h.hexdigest()


async def test_100mb_each_way_at_once_arrives_intact(certs, thread_server, tlswrap):
    size = 100 * MB
    got = {}

    def backend(conn: socket.socket) -> None:
        def reader():
            h, n = hashlib.sha256(), 0
            while data := conn.recv(262144):
                h.update(data)
                n += len(data)
            got["backend_received"] = (n, h.hexdigest())
        t = threading.Thread(target=reader)
        t.start()
        got["backend_sent"] = random_stream(size, conn.sendall)
        conn.shutdown(socket.SHUT_WR)
        t.join(120)

    srv = thread_server(backend)
    port = free_port()
    tlswrap(service_config(certs, port, f"127.0.0.1:{srv.port}"), [port])

    ctx = certs.client_context()
    stream = await trio.open_ssl_over_tcp_stream("localhost", port, ssl_context=ctx)
    received = {}

    async def send():
        chunks = []
        sent = await trio.to_thread.run_sync(random_stream, size, chunks.append)
        for c in chunks:
            await stream.send_all(c)
        got["client_sent"] = sent
        # TLS has no half-close in trio's SSLStream: close the TCP write side after the data
        await stream.transport_stream.send_eof()

    async def recv():
        h, n = hashlib.sha256(), 0
        while True:
            try:
                data = await stream.receive_some(262144)
            except trio.BrokenResourceError:
                break
            if not data:
                break
            h.update(data)
            n += len(data)
        received["n"], received["sha"] = n, h.hexdigest()

    with trio.fail_after(240):
        async with trio.open_nursery() as n:
            n.start_soon(send)
            n.start_soon(recv)
    await trio.aclose_forcefully(stream)
    wait_for(lambda: "backend_received" in got, 30, "the backend to see EOF")
    assert received == {"n": size, "sha": got["backend_sent"]}
    assert got["backend_received"] == (size, got["client_sent"])


def test_client_close_notify_then_backend_reply(certs, thread_server, tlswrap):
    """Client sends a request and close_notify; the backend answers only after EOF."""
    def backend(conn: socket.socket) -> None:
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
        conn.sendall(b"saw %d bytes then EOF: %s\r\n" % (len(data), data.strip()))

    srv = thread_server(backend)
    port = free_port()
    tlswrap(service_config(certs, port, f"127.0.0.1:{srv.port}"), [port])
    conn, sock = pyopenssl_client(certs, port)
    try:
        conn.sendall(b"a1 HELLO\r\n")
        conn.shutdown()  # close_notify: our write side is done, the read side stays open
        reply = read_to_close_notify(conn)
    finally:
        sock.close()
    assert reply == b"saw 10 bytes then EOF: a1 HELLO\r\n"


def test_backend_fin_becomes_close_notify_after_the_data(certs, thread_server, tlswrap):
    payload = os.urandom(300_000)

    def backend(conn: socket.socket) -> None:
        conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)
        conn.recv(1)

    srv = thread_server(backend)
    port = free_port()
    tlswrap(service_config(certs, port, f"127.0.0.1:{srv.port}"), [port])
    conn, sock = pyopenssl_client(certs, port)
    try:
        assert read_to_close_notify(conn) == payload  # ends in ZeroReturnError: a clean close
    finally:
        sock.close()


def test_failover_to_second_connect_when_first_refuses(certs, thread_server, tlswrap):
    srv = thread_server(greet_echo)
    dead = free_port()  # nothing listens there: connection refused
    port = free_port()
    proc = tlswrap(service_config(certs, port, [f"127.0.0.1:{dead}", f"127.0.0.1:{srv.port}"]),
                   [port])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with certs.client_context().wrap_socket(raw, server_hostname="localhost") as s:
            assert s.recv(100) == b"* OK echo ready\r\n"
            s.sendall(b"ping\r\n")
            assert s.recv(100) == b"ping\r\n"
    assert srv.accepted == 1
    assert proc.proc.poll() is None


def test_failover_when_first_backend_times_out(certs, thread_server, tlswrap):
    # A listener whose accept queue is full drops new SYNs: connect() hangs until the timeout.
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(0)
    fillers = []
    try:
        for _ in range(4):
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(blackhole.getsockname())
            fillers.append(f)
        srv = thread_server(greet_echo)
        port = free_port()
        tlswrap(service_config(certs, port, [f"127.0.0.1:{blackhole.getsockname()[1]}",
                                             f"127.0.0.1:{srv.port}"],
                               extra="TIMEOUTconnect = 1"), [port])
        with socket.create_connection(("127.0.0.1", port), timeout=15) as raw:
            with certs.client_context().wrap_socket(raw, server_hostname="localhost") as s:
                assert s.recv(100) == b"* OK echo ready\r\n"
    finally:
        for f in fillers:
            f.close()
        blackhole.close()


def test_no_backend_closes_cleanly_and_logs(certs, tlswrap):
    dead = free_port()
    port = free_port()
    proc = tlswrap(service_config(certs, port, f"127.0.0.1:{dead}"), [port])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with certs.client_context().wrap_socket(raw, server_hostname="localhost") as s:
            try:
                data = s.recv(100)
            except ssl.SSLEOFError:  # pragma: no cover - depends on timing
                data = b""
            assert data == b""  # close_notify, no payload
    wait_for(lambda: "backend unavailable" in proc.log(), 5, "the log line")
    assert f"127.0.0.1:{dead}" in proc.log()
    assert "Connection refused" in proc.log()
    assert proc.proc.poll() is None  # still serving


def test_unix_socket_backend(certs, tmp_path, tlswrap):
    path = str(tmp_path / "imapd.sock")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(4)

    def serve():
        conn, _ = srv.accept()
        with conn:
            greet_echo(conn)
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    port = free_port()
    try:
        tlswrap(service_config(certs, port, path), [port])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with certs.client_context().wrap_socket(raw, server_hostname="localhost") as s:
                assert s.recv(100) == b"* OK echo ready\r\n"
    finally:
        srv.close()
        t.join(5)


@pytest.mark.parametrize("host", ["::1"])
def test_ipv6_accept_and_connect(certs, thread_server, tlswrap, host):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    srv = thread_server(greet_echo, host)
    port = free_port(host)
    cfg = service_config(certs, port, f"[{host}]:{srv.port}").replace(
        f"accept = 127.0.0.1:{port}", f"accept = [{host}]:{port}")
    proc = tlswrap(cfg)
    from conftest import port_open
    wait_for(lambda: port_open(port, host), 10, "IPv6 listener")
    with socket.create_connection((host, port), timeout=10) as raw:
        with certs.client_context().wrap_socket(raw, server_hostname="localhost") as s:
            assert s.recv(100) == b"* OK echo ready\r\n"
    wait_for(lambda: f"[{host}]:" in proc.log(), 5, "log line with the IPv6 peer")
