"""``client = yes``: plaintext accepted locally, TLS towards the remote server, its chain and
host name verified by default; a wrong name, an untrusted chain and an expired certificate are
refused and logged; the session is resumed on the next connection. Against openssl s_server
(-rev: each line comes back reversed)."""

from __future__ import annotations

import datetime
import socket

import pytest
import trustme

from conftest import free_port
from tlsclients import needs_openssl, s_server, wait_log

pytestmark = needs_openssl


def through(port: int, line: bytes = b"hello tls\n") -> bytes:
    """A plaintext client: one line in, what comes back (until the line end or EOF; a reset,
    tlswrap closing with the line unread, is EOF too)."""
    data = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(line)
        while not data.endswith(b"\n"):
            try:
                chunk = s.recv(1000)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    return data


def client_config(port: int, remote: int, extra: str) -> str:
    return (f"foreground = yes\ndebug = info\n[out]\nclient = yes\naccept = 127.0.0.1:{port}\n"
            f"connect = localhost:{remote}\n{extra}\n")


@pytest.fixture
def remote(certs, tmp_path):
    port = free_port()
    with s_server(port, str(certs.cert_file), str(certs.key_file), "-rev"):
        yield port


def test_a_plaintext_client_reaches_s_server_verified(certs, remote, tlswrap):
    port = free_port()
    proxy = tlswrap(client_config(port, remote, f"CAfile = {certs.ca_file}"), [port])
    assert through(port).startswith(b"slt olleh")
    log = wait_log(proxy, "closed: to backend TLSv1.3")
    assert "server certificate '/O=trustme" in log and "verify SUCCESS" in log


def test_the_next_connection_resumes_the_session(certs, remote, tlswrap):
    port = free_port()
    proxy = tlswrap(client_config(port, remote, f"CAfile = {certs.ca_file}"), [port])
    assert through(port).startswith(b"slt olleh")
    wait_log(proxy, "closed: to backend")  # the session is kept when the connection ends
    assert through(port).startswith(b"slt olleh")
    assert "(resumed)" in wait_log(proxy, "(resumed)")


@pytest.mark.parametrize(("extra", "logged"), [
    ("checkHost = mail.example.org", "hostname mismatch"),
    ("sni = mail.example.org", "hostname mismatch"),
    ("", "unable to get local issuer certificate"),  # the system's CAs do not know trustme
])
def test_a_wrong_name_or_an_untrusted_chain_is_refused(certs, remote, tlswrap, extra, logged):
    port = free_port()
    ca = f"CAfile = {certs.ca_file}\n" if extra else ""
    proxy = tlswrap(client_config(port, remote, ca + extra), [port])
    assert not through(port).startswith(b"slt olleh")
    log = wait_log(proxy, logged)
    assert "backend unavailable: TLS handshake failed" in log


def test_another_cas_certificate_is_refused(certs, remote, tlswrap, tmp_path):
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    port = free_port()
    proxy = tlswrap(client_config(port, remote, f"CAfile = {other}"), [port])
    assert through(port) == b""
    assert "unable to get local issuer certificate" in wait_log(proxy, "backend unavailable")


def test_an_expired_server_certificate_is_refused(certs, tlswrap, tmp_path):
    now = datetime.datetime.now(datetime.UTC)
    old = certs.ca.issue_cert("localhost", not_before=now - datetime.timedelta(days=30),
                              not_after=now - datetime.timedelta(days=1))
    cert, key = tmp_path / "old.pem", tmp_path / "old.key"
    old.cert_chain_pems[0].write_to_path(str(cert))
    old.private_key_pem.write_to_path(str(key))
    remote = free_port()
    port = free_port()
    with s_server(remote, str(cert), str(key), "-rev"):
        proxy = tlswrap(client_config(port, remote, f"CAfile = {certs.ca_file}"), [port])
        assert through(port) == b""
        assert "certificate has expired" in wait_log(proxy, "backend unavailable")


def test_verify_chain_no_is_explicit_and_serves(certs, remote, tlswrap):
    port = free_port()
    tlswrap(client_config(port, remote, "verifyChain = no"), [port])
    assert through(port).startswith(b"slt olleh")


def test_a_client_certificate_is_sent_when_the_server_asks(certs, tlswrap, tmp_path):
    client = certs.ca.issue_cert("client@example.org")
    cert, key = tmp_path / "c.pem", tmp_path / "c.key"
    client.cert_chain_pems[0].write_to_path(str(cert))
    client.private_key_pem.write_to_path(str(key))
    remote = free_port()
    port = free_port()
    with s_server(remote, str(certs.cert_file), str(certs.key_file), "-rev", "-Verify", "1",
                  "-CAfile", str(certs.ca_file), "-verify_return_error"):
        tlswrap(client_config(port, remote, f"CAfile = {certs.ca_file}\ncert = {cert}\n"
                                            f"key = {key}"), [port])
        assert through(port).startswith(b"slt olleh")


def test_an_address_in_connect_is_checked_against_the_certificate_s_addresses(certs, tlswrap,
                                                                              tmp_path):
    named = certs.ca.issue_cert("localhost")  # no IP address in it
    cert, key = tmp_path / "named.pem", tmp_path / "named.key"
    named.cert_chain_pems[0].write_to_path(str(cert))
    named.private_key_pem.write_to_path(str(key))
    with_ip, without_ip = free_port(), free_port()
    with s_server(with_ip, str(certs.cert_file), str(certs.key_file), "-rev"), \
            s_server(without_ip, str(cert), str(key), "-rev"):
        good, bad = free_port(), free_port()
        tlswrap(f"foreground = yes\nCAfile = {certs.ca_file}\n"
                f"[good]\nclient = yes\naccept = 127.0.0.1:{good}\n"
                f"connect = 127.0.0.1:{with_ip}\n", [good])
        proxy = tlswrap(f"foreground = yes\nCAfile = {certs.ca_file}\n"
                        f"[bad]\nclient = yes\naccept = 127.0.0.1:{bad}\n"
                        f"connect = 127.0.0.1:{without_ip}\n", [bad])
        assert through(good).startswith(b"slt olleh")
        assert through(bad) == b""
        assert "IP address mismatch" in wait_log(proxy, "backend unavailable")
