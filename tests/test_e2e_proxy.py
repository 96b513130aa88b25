"""PROXY protocol towards the backend: the header a real backend reads before any client byte
says who the client is (and, in v2, how it spoke TLS)."""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from conftest import free_port, greet_echo, service_config, wait_for
from test_e2e_mtls import Client
from tlsclients import needs_openssl, s_client
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


# -- every TLV, read by the spec --------------------------------------------------------------
def raw_header_backend(raw: list[bytes]):
    """Keeps the header's bytes as they came (read one at a time, nothing past its end), then
    greets and echoes."""
    def serve(conn: socket.socket) -> None:
        data = b""
        while proxyproto.decode(data) is None:
            chunk = conn.recv(1)
            if not chunk:
                return
            data += chunk
        raw.append(data)
        conn.sendall(b"* OK proxied\r\n")
        while chunk := conn.recv(65536):
            conn.sendall(chunk)
    return serve


def tlvs_by_the_spec(data: bytes) -> dict[int, bytes]:
    """Type-length-value vectors (section 2.2.1: a type byte, a big-endian 16-bit length, the
    value), read without tlswrap's codec; a type twice or a vector overrunning fails."""
    found: dict[int, bytes] = {}
    while data:
        assert len(data) >= 3, data
        kind, size = data[0], int.from_bytes(data[1:3], "big")
        assert kind not in found and 3 + size <= len(data), (kind, size, data)
        found[kind] = data[3:3 + size]
        data = data[3 + size:]
    return found


@needs_openssl
def test_a_v2_header_carries_every_tlv_for_a_client_certificate_and_alpn(certs, thread_server,
                                                                         tlswrap, tmp_path):
    """openssl s_client with a client certificate, ALPN imap and a server name; the backend's
    header holds each TLV tlswrap sends with the handshake's values, read both by the
    project's decoder and by hand from the spec's byte layout."""
    alice = Client(certs.ca, tmp_path, "alice", "alice@example.org", common_name="alice")
    raw: list[bytes] = []
    srv = thread_server(raw_header_backend(raw))
    port, client_port = free_port(), free_port()
    proc = tlswrap(service_config(
        certs, port, f"127.0.0.1:{srv.port}",
        extra=f"verify = 2\nCAfile = {certs.ca_file}\nalpn = imap\nlogId = unique\n"
              "proxyProtocol = v2\nproxyTLVs = ssl, cn, authority, alpn, unique_id"), [port])
    out = s_client(port, *alice.args(), "-alpn", "imap", "-servername", "imap.example.test",
                   "-bind", f"127.0.0.1:{client_port}", until=b"* OK proxied")
    assert b"* OK proxied" in out.stdout, out.stderr
    assert b"ALPN protocol: imap" in out.stdout
    version = re.search(rb"Protocol *: (\S+)", out.stdout)
    cipher = re.search(rb"Cipher *: (\S+)", out.stdout)
    assert version and cipher, out.stdout
    wait_for(lambda: len(raw) == 1, 5, "the header")
    data = raw[0]
    unique = re.search(rf"#(\S+) 127\.0\.0\.1:{client_port} ", proc.log())
    assert unique, proc.log()
    server = x509.load_pem_x509_certificate(certs.cert_file.read_bytes())
    key = server.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert server.signature_algorithm_oid == x509.SignatureAlgorithmOID.ECDSA_WITH_SHA256

    # by hand (section 2.2): signature, version 2 + PROXY, TCP over IPv4, length, addresses
    assert data[:16] == (b"\r\n\r\n\x00\r\nQUIT\n\x21\x11"
                         + (len(data) - 16).to_bytes(2, "big"))
    assert data[16:28] == (socket.inet_aton("127.0.0.1") + socket.inet_aton("127.0.0.1")
                           + client_port.to_bytes(2, "big") + port.to_bytes(2, "big"))
    tlvs = tlvs_by_the_spec(data[28:])
    assert sorted(tlvs) == [0x01, 0x02, 0x05, 0x20]  # ALPN, AUTHORITY, UNIQUE_ID, SSL
    assert tlvs[0x01] == b"imap"
    assert tlvs[0x02] == b"imap.example.test"
    assert tlvs[0x05] == unique[1].encode()
    ssl_tlv = tlvs[0x20]  # section 2.2.6: client bit field, 32-bit verify, sub-TLVs
    assert ssl_tlv[0] == 0x01 | 0x02  # PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN
    assert ssl_tlv[1:5] == b"\x00\x00\x00\x00"  # the certificate verified
    subs = tlvs_by_the_spec(ssl_tlv[5:])
    assert subs == {0x21: version[1], 0x22: b"alice", 0x23: cipher[1],
                    0x24: b"ecdsa-with-SHA256", 0x25: f"EC{key.key_size}".encode()}

    # by the project's decoder: the same values, and nothing else
    decoded = proxyproto.decode(data)
    assert decoded is not None and decoded[1] == len(data)
    header = decoded[0]
    assert (header.command, header.version) == (proxyproto.PROXY, 2)
    assert header.source == ("127.0.0.1", client_port)
    assert header.destination == ("127.0.0.1", port)
    assert header.tlv(proxyproto.PP2_TYPE_ALPN) == b"imap"
    assert header.tlv(proxyproto.PP2_TYPE_AUTHORITY) == b"imap.example.test"
    assert header.tlv(proxyproto.PP2_TYPE_UNIQUE_ID) == unique[1].encode()
    assert header.ssl() == proxyproto.SSLInfo(
        client=proxyproto.PP2_CLIENT_SSL | proxyproto.PP2_CLIENT_CERT_CONN, verify=0,
        version=version[1].decode(), cipher=cipher[1].decode(), sig_alg="ecdsa-with-SHA256",
        key_alg=f"EC{key.key_size}", cn="alice")
    assert len(header.tlvs) == 4


# -- PROXY in, an exec'd program --------------------------------------------------------------
_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"  # section 2.2, written out here as the balancer would


@pytest.mark.parametrize(("header", "expected"), [
    (b"PROXY TCP4 192.0.2.7 198.51.100.1 5555 993\r\n",
     "192.0.2.7 5555 192.0.2.7 5555 198.51.100.1 993"),
    (_SIGNATURE + b"\x21\x21\x00\x24" + socket.inet_pton(socket.AF_INET6, "2001:db8::7")
     + socket.inet_pton(socket.AF_INET6, "2001:db8::1") + b"\x15\xb4\x03\xe1",
     "2001:db8::7 5556 2001:db8::7 5556 2001:db8::1 993"),
    # LOCAL, a balancer's health check: its addresses are ignored (section 2.2), the
    # connection's own are used
    (_SIGNATURE + b"\x20\x11\x00\x0c" + socket.inet_aton("192.0.2.9")
     + socket.inet_aton("198.51.100.1") + b"\x15\xb5\x03\xe1",
     "127.0.0.1 {client} 127.0.0.1 {client} 127.0.0.1 {port}"),
], ids=["v1", "v2", "v2-local"])
def test_an_exec_program_sees_the_address_inside_the_header(certs, tlswrap, tmp_path, header,
                                                            expected):
    """Behind a trusted balancer, a program run by exec finds the client named in the header
    in REMOTE_HOST, TCPREMOTEIP and the rest, not the balancer's 127.0.0.1; a LOCAL header
    leaves it the connection's own endpoints."""
    from test_e2e_stunnel_options import MemoryTLS

    script = tmp_path / "env.sh"
    script.write_text('#!/bin/sh\nprintf "* OK %s %s %s %s %s %s\\r\\n" "$REMOTE_HOST" '
                      '"$REMOTE_PORT" "$TCPREMOTEIP" "$TCPREMOTEPORT" "$TCPLOCALIP" '
                      '"$TCPLOCALPORT"\n')
    script.chmod(0o755)
    port = free_port()
    tlswrap(f"foreground = yes\n[imaps]\naccept = 127.0.0.1:{port}\nexec = {script}\n"
            f"cert = {certs.cert_file}\nkey = {certs.key_file}\n"
            "acceptProxy = any\nproxyTrusted = 127.0.0.1\n", [port])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        client = raw.getsockname()[1]
        raw.sendall(header)
        tls = MemoryTLS(certs.client_context(), raw)
        line = b""
        while not line.endswith(b"\r\n") and isinstance(data := tls.recv(), bytes):
            line += data
    assert line == f"* OK {expected.format(client=client, port=port)}\r\n".encode()
