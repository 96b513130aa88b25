"""PROXY protocol towards the backend: the header a real backend reads before any client byte
says who the client is (and, in v2, how it spoke TLS)."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys

import pytest

from conftest import free_port, greet_echo, service_config, wait_for
from tlswrap import proxyproto


def proxy_backend(seen: list[proxyproto.ProxyHeader]):
    """Reads the PROXY header (nothing before it), then greets and echoes."""
    def serve(conn: socket.socket) -> None:
        data = b""
        while (got := proxyproto.decode(data)) is None:
            chunk = conn.recv(1)  # one byte at a time: the header must be complete on its own
            if not chunk:
                return
            data += chunk
        header, used = got
        assert used == len(data)
        seen.append(header)
        conn.sendall(b"* OK proxied\r\n")
        while chunk := conn.recv(65536):
            conn.sendall(chunk)
    return serve


@pytest.mark.parametrize("option", ["protocol = proxy", "proxyProtocol = v1",
                                    "proxyProtocol = v2"])
def test_the_backend_learns_the_client_address(certs, thread_server, tlswrap, option):
    seen: list[proxyproto.ProxyHeader] = []
    srv = thread_server(proxy_backend(seen))
    port = free_port()
    tlswrap(service_config(certs, port, f"127.0.0.1:{srv.port}", extra=option), [port])
    ctx = certs.client_context()
    ctx.set_alpn_protocols(["imap"])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        assert tls.recv(100) == b"* OK proxied\r\n"
        tls.sendall(b"a1 NOOP\r\n")
        assert tls.recv(100) == b"a1 NOOP\r\n"
        client_port = tls.getsockname()[1]
        version = tls.version()
    wait_for(lambda: len(seen) == 1, 5, "the header")
    header = seen[0]
    assert header.command == proxyproto.PROXY
    assert header.source == ("127.0.0.1", client_port)
    assert header.destination == ("127.0.0.1", port)
    if option.endswith("v2"):
        assert header.version == 2
        ssl_info = header.ssl()
        assert ssl_info is not None
        assert ssl_info.client & proxyproto.PP2_CLIENT_SSL
        assert ssl_info.version == version
        assert ssl_info.cipher
        assert header.tlv(proxyproto.PP2_TYPE_AUTHORITY) == b"localhost"
    else:
        assert header.version == 1


def test_a_proxy_header_is_not_for_exec_programs(certs, tlswrap, tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text(f"[x]\naccept = 127.0.0.1:{free_port()}\nexec = /bin/cat\n"
                    f"cert = {certs.cert_file}\nproxyProtocol = v2\n")
    out = subprocess.run([sys.executable, "-m", "tlswrap", "check", str(conf)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert (f"{conf}:5: error: [x] proxyProtocol: a PROXY header goes to a 'connect' backend"
            in out.stdout)


def proxy_config(certs, port: int, backend_port: int, extra: str, tmp_path) -> str:
    allow, deny = tmp_path / "hosts.allow", tmp_path / "hosts.deny"
    allow.write_text("imaps: 192.0.2.7\n")
    deny.write_text("imaps: ALL\n")
    return service_config(certs, port, f"127.0.0.1:{backend_port}",
                          global_extra=f"hostsAllow = {allow}\nhostsDeny = {deny}",
                          extra=extra)


def tls_through(certs, port: int, header: bytes) -> bytes:
    """Send ``header`` and then a TLS handshake in one go; the first bytes the client reads
    (b"" when the connection was refused)."""
    from test_e2e_stunnel_options import MemoryTLS  # the test owns the socket: no leak when
    # a refusal resets it before the handshake (ssl.wrap_socket can then lose its socket)

    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        try:
            raw.sendall(header)
            data = MemoryTLS(certs.client_context(), raw).recv()
        except (ssl.SSLError, OSError):
            return b""
    return data if isinstance(data, bytes) else b""


def test_a_trusted_balancer_s_header_is_the_client_everywhere(certs, thread_server, tlswrap,
                                                               tmp_path):
    """hosts.allow, the log and the PROXY header to the backend all see the inner address."""
    seen: list[proxyproto.ProxyHeader] = []
    srv = thread_server(proxy_backend(seen))
    port = free_port()
    proc = tlswrap(proxy_config(certs, port, srv.port, "acceptProxy = any\n"
                                "proxyTrusted = 127.0.0.0/8\nproxyProtocol = v2", tmp_path),
                   [port])
    allowed = proxyproto.encode_v2(proxyproto.ProxyHeader(
        proxyproto.PROXY, ("192.0.2.7", 5555), ("198.51.100.1", 993)))
    assert tls_through(certs, port, allowed) == b"* OK proxied\r\n"
    wait_for(lambda: len(seen) == 1, 5, "the backend's header")
    assert seen[0].source == ("192.0.2.7", 5555)
    assert seen[0].destination == ("198.51.100.1", 993)
    denied = proxyproto.encode_v1(("192.0.2.8", 5556), ("198.51.100.1", 993))
    assert tls_through(certs, port, denied) == b""  # hosts.deny refuses the inner address
    wait_for(lambda: "refused connect from 192.0.2.8" in proc.log(), 5, "the refusal")
    log = proc.log()
    assert "[imaps] 192.0.2.7:5555 accepted connection (via 127.0.0.1:" in log
    assert len(seen) == 1


@pytest.mark.parametrize(("trusted", "header", "why"), [
    ("10.0.0.0/8", proxyproto.encode_v1(("192.0.2.7", 1), ("192.0.2.1", 993)),
     "127.0.0.1 is not in proxyTrusted"),
    ("127.0.0.1", b"PROXY TCP4 192.0.2.7 nonsense\r\n", "PROXY v1: "),
    ("127.0.0.1", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40, "PROXY"),
    ("127.0.0.1", proxyproto.PP2_SIGNATURE + b"\x21\x11\xff\xff", "over the 4096-byte limit"),
])
def test_untrusted_or_malformed_headers_are_refused_before_tls(certs, thread_server, tlswrap,
                                                               tmp_path, trusted, header, why):
    seen: list[proxyproto.ProxyHeader] = []
    srv = thread_server(proxy_backend(seen))
    port = free_port()
    proc = tlswrap(proxy_config(certs, port, srv.port, "acceptProxy = any\n"
                                f"proxyTrusted = {trusted}", tmp_path), [port])
    assert tls_through(certs, port, header) == b""

    def refusals() -> list[str]:  # (the fixture's port probe is refused too: no header)
        return [x for x in proc.log().splitlines() if "PROXY header refused: " in x
                and "ended inside the header" not in x]

    wait_for(lambda: bool(refusals()), 5, "the refusal")
    assert why in refusals()[0], refusals()
    assert not seen  # no backend connection, no TLS work


def test_a_balancer_that_sends_no_header_is_cut_after_timeout_busy(certs, thread_server,
                                                                   tlswrap, tmp_path):
    srv = thread_server(proxy_backend([]))
    port = free_port()
    proc = tlswrap(proxy_config(certs, port, srv.port, "acceptProxy = v2\n"
                                "proxyTrusted = 127.0.0.1\nTIMEOUTbusy = 1", tmp_path), [port])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(b"PROXY ")  # and nothing more
        assert raw.recv(100) == b""
    wait_for(lambda: "PROXY header refused: none within 1s" in proc.log(), 5, "the refusal")


def greeting_after_header_in_one_packet(certs, port: int, header: bytes) -> bytes:
    """The header and the ClientHello in a single send, as a balancer forwards them."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = certs.client_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        prefix = header
        while True:
            try:
                tls.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            if data := outgoing.read():
                raw.sendall(prefix + data)
                prefix = b""
            if done:
                break
            incoming.write(raw.recv(65536) or b"")
        while True:
            try:
                return tls.read(100)
            except ssl.SSLWantReadError:
                incoming.write(raw.recv(65536))


def test_tls_bytes_in_the_header_s_packet_are_not_lost(certs, thread_server, tlswrap,
                                                      tmp_path):
    srv = thread_server(greet_echo)
    port = free_port()
    tlswrap(proxy_config(certs, port, srv.port, "acceptProxy = v1\nproxyTrusted = 127.0.0.1",
                         tmp_path), [port])
    header = proxyproto.encode_v1(("192.0.2.7", 5555), ("198.51.100.1", 993))
    assert greeting_after_header_in_one_packet(certs, port, header) == b"* OK echo ready\r\n"
