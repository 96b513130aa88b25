"""TLS policy at the wire: versions, the post-quantum group, the chain."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time

import pytest
from OpenSSL import SSL

from conftest import download_of, free_port, greet_echo, service_config
from tlsclients import s_client, wait_log


@pytest.fixture
def proxy_port(certs, thread_server, tlswrap):
    srv = thread_server(greet_echo)
    port = free_port()
    tlswrap(service_config(certs, port, f"127.0.0.1:{srv.port}"), [port])
    return port


def _stdlib_handshake(certs, port: int, version: ssl.TLSVersion) -> str:
    ctx = certs.client_context()
    ctx.minimum_version = ctx.maximum_version = version
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            assert s.recv(100) == b"* OK echo ready\r\n"
            return s.version()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls12_and_tls13_succeed(certs, proxy_port, version):
    assert _stdlib_handshake(certs, proxy_port, version) == version.name.replace("_", ".")


@pytest.mark.skipif(not shutil.which("openssl"), reason="openssl not installed")
@pytest.mark.parametrize("flag", ["-tls1", "-tls1_1"])
def test_tls10_and_tls11_refused(proxy_port, flag):
    # the system openssl still speaks TLS 1.0/1.1 at security level 0
    out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{proxy_port}", flag,
                          "-cipher", "DEFAULT:@SECLEVEL=0"],
                         input=b"", capture_output=True, timeout=20)
    assert out.returncode != 0
    assert b"* OK echo ready" not in out.stdout
    assert b"Cipher is (NONE)" in out.stdout or b"alert" in out.stderr


def _pyopenssl_connect(ctx: SSL.Context, port: int) -> tuple[SSL.Connection, socket.socket]:
    """A pyOpenSSL client connection through the proxy, handshake done (blocking socket)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.settimeout(None)
    conn = SSL.Connection(ctx, sock)
    conn.set_connect_state()
    try:
        conn.do_handshake()
    except BaseException:
        sock.close()
        raise
    return conn, sock


def _pyopenssl_group(port: int, groups: bytes) -> str | None:
    from cryptography.hazmat.bindings.openssl.binding import Binding

    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    assert Binding.lib.SSL_CTX_set1_curves_list(ctx._context, groups) == 1
    conn, sock = _pyopenssl_connect(ctx, port)
    with sock:
        return conn.get_group_name()


def _has_mlkem() -> bool:
    from cryptography.hazmat.bindings.openssl.binding import Binding

    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ok = Binding.lib.SSL_CTX_set1_curves_list(ctx._context, b"X25519MLKEM768") == 1
    Binding.lib.ERR_clear_error()
    return ok


@pytest.mark.skipif(not _has_mlkem(), reason="this OpenSSL has no X25519MLKEM768")
def test_client_offering_x25519mlkem768_negotiates_it(proxy_port):
    assert _pyopenssl_group(proxy_port, b"X25519MLKEM768:X25519") == "X25519MLKEM768"


def test_classic_client_gets_x25519(proxy_port):
    assert _pyopenssl_group(proxy_port, b"X25519:P-256") == "x25519"


def test_no_compression_and_no_renegotiation(proxy_port):
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
    conn, sock = _pyopenssl_connect(ctx, proxy_port)
    try:
        assert conn.recv(100) == b"* OK echo ready\r\n"
        assert conn.renegotiate()  # the request is sent...
        with pytest.raises(SSL.Error):
            conn.do_handshake()  # ...and refused by the server
            conn.recv(100)
    finally:
        sock.close()


def test_sslversion_pins_tls12_and_socket_options_apply(certs, thread_server, tlswrap):
    srv = thread_server(greet_echo)
    port = free_port()
    tlswrap(service_config(certs, port, f"127.0.0.1:{srv.port}",
                           extra="sslVersion = TLSv1.2\noptions = NO_TICKET\n"
                                 "socket = a:SO_KEEPALIVE=1\nsocket = r:SO_KEEPALIVE=1\n"
                                 "socket = l:SO_RCVBUF=65536"), [port])
    assert _stdlib_handshake(certs, port, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    with pytest.raises(ssl.SSLError):
        _stdlib_handshake(certs, port, ssl.TLSVersion.TLSv1_3)


@pytest.mark.parametrize(("tls13", "tls12", "expected"), [
    (b"TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384", None,
     "TLS_CHACHA20_POLY1305_SHA256"),
    (b"TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384", None, "TLS_AES_128_GCM_SHA256"),
    (None, b"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES256-GCM-SHA384",
     "ECDHE-ECDSA-CHACHA20-POLY1305"),
])
def test_the_client_chooses_among_the_aead_suites(proxy_port, tls13, tls12, expected):
    """Every suite tlswrap offers is AEAD with forward secrecy, so the client's order wins
    (current guidance): a phone without AES instructions gets ChaCha20 if it asks first."""
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    if tls13:
        ctx.set_tls13_ciphersuites(tls13)
    else:
        ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
        ctx.set_cipher_list(tls12)
    conn, sock = _pyopenssl_connect(ctx, proxy_port)
    with sock:
        assert conn.get_cipher_name() == expected


AES128, AES256 = "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384"


@pytest.mark.skipif(not shutil.which("openssl"), reason="openssl not installed")
@pytest.mark.parametrize(("options", "expected"), [("", AES256),
                                                   ("options = CIPHER_SERVER_PREFERENCE", AES128)])
def test_cipher_server_preference_restores_the_servers_order_in_tls12(
        certs, thread_server, tlswrap, options, expected):
    """The server lists AES128 first, the client AES256 first: the client's order wins, unless
    ``options = CIPHER_SERVER_PREFERENCE``."""
    srv = thread_server(greet_echo)
    port = free_port()
    proxy = tlswrap(service_config(certs, port, f"127.0.0.1:{srv.port}",
                                   extra=f"ciphers = {AES128}:{AES256}\n{options}"), [port])
    out = s_client(port, "-tls1_2", "-cipher", f"{AES256}:{AES128}", "-CAfile",
                   str(certs.ca_file))
    assert b"* OK echo ready" in out.stdout, out
    assert f"New, TLSv1.2, Cipher is {expected}\n".encode() in out.stdout, out.stdout
    assert f"closed: TLSv1.2 {expected} " in wait_log(proxy, " closed: TLSv1.2")


@pytest.mark.skipif(not shutil.which("openssl"), reason="openssl not installed")
def test_a_tls12_session_is_not_resumed_after_session_cache_timeout(certs, thread_server,
                                                                      tlswrap, tmp_path):
    """Two services, sessionCacheTimeout = 1 and the default (300 s): two seconds after each
    issued a session (id and ticket), the second resumes its own and the first refuses."""
    srv = thread_server(greet_echo)
    short, default = free_port(), free_port()
    config = service_config(certs, short, f"127.0.0.1:{srv.port}", name="short",
                            extra="sessionCacheTimeout = 1")
    config += (f"[default]\naccept = 127.0.0.1:{default}\nconnect = 127.0.0.1:{srv.port}\n"
               f"cert = {certs.cert_file}\nkey = {certs.key_file}\n")
    tlswrap(config, [short, default])
    issued = {}
    for port in (short, default):
        session = tmp_path / f"{port}.sess"
        first = s_client(port, "-tls1_2", "-sess_out", str(session))
        assert b"New, TLSv1.2" in first.stdout and session.stat().st_size > 0, first
        issued[port] = (session, time.monotonic())
    time.sleep(max(0.0, issued[short][1] + 2.0 - time.monotonic()))  # the timeout is past
    again = {port: s_client(port, "-tls1_2", "-sess_in", str(session)).stdout
             for port, (session, _) in issued.items()}
    assert b"Reused, TLSv1.2" in again[default], again[default]
    assert b"New, TLSv1.2" in again[short] and b"* OK echo ready" in again[short], again[short]


def test_keyupdates_during_a_download_keep_the_connection(certs, thread_server, tlswrap,
                                                          keyupdate_client):
    """A client asks for a KeyUpdate every 256 KiB while the server's writes are backed up:
    the server's KeyUpdate reply (written from SSL_read) must wait for the pending write, or
    OpenSSL fails the connection ("bad length" / "bad write retry")."""
    size = 6 * 1024 * 1024
    srv = thread_server(download_of(size))
    port = free_port()
    proc = tlswrap(service_config(certs, port, f"127.0.0.1:{srv.port}"), [port])
    for _ in range(8):
        out = subprocess.run([keyupdate_client, str(port), str(size), str(256 * 1024)],
                             capture_output=True, text=True, timeout=120)
        assert out.stdout.strip() == f"ok {size}", (out.stdout, proc.log()[-2000:])
    assert "TLS error" not in proc.log()
