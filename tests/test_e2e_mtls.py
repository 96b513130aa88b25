"""Client certificates (stunnel's verify options): a certificate from the CA passes; none,
another CA's, a revoked (CRLfile) and an expired one fail with the alert OpenSSL sends for
each and a log line saying why; checkHost/checkEmail let only the named client in; verify = 4
accepts only the certificates in CAfile; an exec'd program sees SSL_CLIENT_DN; redirect sends
a failing client to another backend."""

from __future__ import annotations

import datetime
import os
import socket
import ssl
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from conftest import free_port, greet_echo, service_config
from tlsclients import needs_openssl, s_client, wait_log

pytestmark = needs_openssl
NOW = datetime.datetime.now(datetime.UTC)


class Client:
    """A client certificate and key as files."""

    def __init__(self, ca: trustme.CA, tmp: Path, label: str, *names: str, **kw: object):
        self.issued = ca.issue_cert(*names, **kw)  # type: ignore[arg-type]
        self.cert = tmp / f"{label}.pem"
        self.key = tmp / f"{label}.key"
        self.issued.cert_chain_pems[0].write_to_path(str(self.cert))
        self.issued.private_key_pem.write_to_path(str(self.key))
        self.x509 = x509.load_pem_x509_certificate(self.issued.cert_chain_pems[0].bytes())

    def args(self) -> list[str]:
        return ["-cert", str(self.cert), "-key", str(self.key)]


@pytest.fixture
def pki(certs, tmp_path):
    """Client certificates from the test CA (the server's), one from another CA, a CRL."""
    ca = certs.ca
    made = {
        "good": Client(ca, tmp_path, "good", "alice@example.org", common_name="alice"),
        "bob": Client(ca, tmp_path, "bob", "bob@example.org", "bob.example.org",
                      common_name="bob"),
        "revoked": Client(ca, tmp_path, "revoked", "mallory@example.org"),
        "expired": Client(ca, tmp_path, "expired", "old@example.org",
                          not_before=NOW - datetime.timedelta(days=30),
                          not_after=NOW - datetime.timedelta(days=1)),
        "stranger": Client(trustme.CA(), tmp_path, "stranger", "eve@example.org"),
    }
    key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    crl = (x509.CertificateRevocationListBuilder()
           .issuer_name(ca_cert.subject).last_update(NOW - datetime.timedelta(hours=1))
           .next_update(NOW + datetime.timedelta(days=7))
           .add_revoked_certificate(x509.RevokedCertificateBuilder()
                                    .serial_number(made["revoked"].x509.serial_number)
                                    .revocation_date(NOW - datetime.timedelta(hours=1)).build())
           .sign(key, hashes.SHA256()))  # type: ignore[arg-type]
    crl_file = tmp_path / "ca.crl"
    crl_file.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    return made, crl_file


@pytest.fixture
def mtls(certs, pki, thread_server, tlswrap):
    made, crl = pki
    srv = thread_server(greet_echo)
    port = free_port()
    proxy = tlswrap(service_config(certs, port, f"127.0.0.1:{srv.port}",
                                   extra=f"verify = 2\nCAfile = {certs.ca_file}\n"
                                         f"CRLfile = {crl}"), [port])
    return proxy, port, made


def test_a_certificate_from_the_ca_passes_and_is_logged(certs, mtls):
    proxy, port, made = mtls
    ctx = certs.client_context()
    ctx.load_cert_chain(made["good"].cert, made["good"].key)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            assert s.recv(100) == b"* OK echo ready\r\n"
    log = wait_log(proxy, "client certificate '")
    assert "/CN=alice' issued by" in log
    assert "email alice@example.org, verify SUCCESS" in log
    sha = made["good"].x509.fingerprint(hashes.SHA256()).hex()
    assert f"sha256 {sha}" in log


@pytest.mark.parametrize(("who", "alert", "logged"), [
    (None, b"certificate required", "peer did not return a certificate"),
    ("stranger", b"unknown ca", "unable to get local issuer certificate"),
    ("revoked", b"certificate revoked", "certificate revoked"),
    ("expired", b"certificate expired", "certificate has expired"),
])
def test_failing_clients_get_the_alert_and_a_log_line(mtls, who, alert, logged):
    proxy, port, made = mtls
    out = s_client(port, *(made[who].args() if who else []))
    assert alert in out.stderr
    assert b"* OK echo ready" not in out.stdout
    assert logged in wait_log(proxy, logged)
    assert "TLS handshake failed" in proxy.log()


@pytest.mark.parametrize(("option", "allowed", "refused"), [
    ("checkHost = bob.example.org", "bob", "good"),
    ("checkEmail = alice@example.org", "good", "bob"),
])
def test_check_host_and_email_let_only_the_named_client_in(certs, pki, thread_server, tlswrap,
                                                          option, allowed, refused):
    made, _ = pki
    srv = thread_server(greet_echo)
    port = free_port()
    proxy = tlswrap(service_config(certs, port, f"127.0.0.1:{srv.port}",
                                   extra=f"verify = 2\nCAfile = {certs.ca_file}\n{option}"),
                    [port])
    assert b"* OK echo ready" in s_client(port, *made[allowed].args()).stdout
    out = s_client(port, *made[refused].args())
    assert b"* OK echo ready" not in out.stdout
    assert b"alert" in out.stderr
    assert "mismatch" in wait_log(proxy, "mismatch")


def test_verify_4_accepts_only_the_certificates_in_cafile(certs, pki, thread_server, tlswrap,
                                                          tmp_path):
    made, _ = pki
    srv = thread_server(greet_echo)
    port = free_port()
    pinned = tmp_path / "pinned.pem"
    pinned.write_bytes(made["stranger"].cert.read_bytes())  # a CA tlswrap knows nothing of
    tlswrap(service_config(certs, port, f"127.0.0.1:{srv.port}",
                           extra=f"verify = 4\nCAfile = {pinned}"), [port])
    assert b"* OK echo ready" in s_client(port, *made["stranger"].args()).stdout
    out = s_client(port, *made["good"].args())  # from a real CA, but not pinned
    assert b"* OK echo ready" not in out.stdout


def test_an_exec_program_sees_the_client_certificate(certs, pki, tlswrap, tmp_path):
    made, _ = pki
    port = free_port()
    script = tmp_path / "who.sh"
    script.write_text('#!/bin/sh\nprintf "* OK %s|%s|%s\\r\\n" "$SSL_CLIENT_DN" '
                      '"$SSL_CLIENT_I_DN" "$SSL_CLIENT_VERIFY"\n')
    os.chmod(script, 0o755)
    tlswrap(f"foreground = yes\n[who]\naccept = 127.0.0.1:{port}\nexec = {script}\n"
            f"cert = {certs.cert_file}\nkey = {certs.key_file}\nverify = 2\n"
            f"CAfile = {certs.ca_file}\n", [port])
    out = s_client(port, *made["good"].args(), until=b"SUCCESS")
    cert = made["good"].x509
    from tlswrap.certnames import oneline

    assert f"* OK {oneline(cert.subject)}|{oneline(cert.issuer)}|SUCCESS".encode() in out.stdout


def test_redirect_sends_failing_clients_to_the_other_backend(certs, pki, thread_server,
                                                              tlswrap):
    made, _ = pki

    def greeter(text: bytes):  # type: ignore[no-untyped-def]
        def handler(conn: socket.socket) -> None:
            conn.sendall(text)
            while conn.recv(65536):
                pass
        return handler

    main = thread_server(greeter(b"* OK main\r\n"))
    honeypot = thread_server(greeter(b"* OK redirected\r\n"))
    port = free_port()
    proxy = tlswrap(service_config(certs, port, f"127.0.0.1:{main.port}",
                                   extra=f"verify = 2\nCAfile = {certs.ca_file}\n"
                                         f"redirect = 127.0.0.1:{honeypot.port}"), [port])
    assert b"* OK main" in s_client(port, *made["good"].args(), until=b"* OK main").stdout
    for who in ("stranger", None):
        out = s_client(port, *(made[who].args() if who else []), until=b"* OK redirected")
        assert b"* OK redirected" in out.stdout, who
    assert "redirected" in wait_log(proxy, "redirected")


def test_a_python_client_without_a_certificate_learns_it_was_refused(certs, mtls):
    _, port, _ = mtls
    ctx = certs.client_context()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with pytest.raises(ssl.SSLError, match="certificate required"):
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.recv(100)  # TLS 1.3: the alert comes after the client's Finished


def test_the_proxy_v2_header_carries_the_verified_common_name(certs, pki, thread_server,
                                                              tlswrap, tmp_path):
    from conftest import wait_for
    from test_e2e_proxy import proxy_backend
    from tlswrap import proxyproto

    made, _ = pki
    seen: list[proxyproto.ProxyHeader] = []
    srv = thread_server(proxy_backend(seen))
    port = free_port()
    tlswrap(service_config(certs, port, f"127.0.0.1:{srv.port}",
                           extra=f"verify = 2\nCAfile = {certs.ca_file}\nproxyProtocol = v2"),
            [port])
    session = tmp_path / "session.pem"
    out = s_client(port, *made["good"].args(), "-sess_out", str(session), until=b"* OK proxied")
    assert b"* OK proxied" in out.stdout
    wait_for(lambda: len(seen) == 1, 5, "the header")
    info = seen[0].ssl()
    assert info is not None
    assert info.client == proxyproto.PP2_CLIENT_SSL | proxyproto.PP2_CLIENT_CERT_CONN
    assert info.verify == 0
    assert info.cn == "alice"
    # resumed: the certificate was sent in the session, not on this connection
    out = s_client(port, "-sess_in", str(session), until=b"* OK proxied")
    assert b"Reused" in out.stdout
    wait_for(lambda: len(seen) == 2, 5, "the second header")
    info = seen[1].ssl()
    assert info is not None
    assert info.client == proxyproto.PP2_CLIENT_SSL | proxyproto.PP2_CLIENT_CERT_SESS
    assert info.cn == "alice"


def test_an_unverified_certificate_puts_no_common_name_in_the_proxy_header(
        certs, thread_server, tlswrap, tmp_path):
    """verify = 0 accepts any certificate; the header says one was sent and not verified,
    and names nobody: a backend that takes the CN as the user (Dovecot's
    auth_ssl_username_from_cert) must not get a name anyone can put in a certificate."""
    from conftest import wait_for
    from test_e2e_proxy import proxy_backend
    from tlswrap import proxyproto

    forged = Client(trustme.CA(), tmp_path, "forged", "alice@example.org", common_name="alice")
    seen: list[proxyproto.ProxyHeader] = []
    srv = thread_server(proxy_backend(seen))
    port = free_port()
    tlswrap(service_config(certs, port, f"127.0.0.1:{srv.port}",
                           extra=f"verify = 0\nCAfile = {certs.ca_file}\nproxyProtocol = v2"),
            [port])
    out = s_client(port, *forged.args(), until=b"* OK proxied")
    assert b"* OK proxied" in out.stdout
    wait_for(lambda: len(seen) == 1, 5, "the header")
    info = seen[0].ssl()
    assert info is not None
    assert info.client == proxyproto.PP2_CLIENT_SSL | proxyproto.PP2_CLIENT_CERT_CONN
    assert info.verify != 0
    assert info.cn is None
