"""OCSP checks of the peer's certificate (stunnel's ``OCSPaia``, ``OCSP = URL``,
``OCSPrequire``, ``OCSPnonce``): a client certificate (server mode) and a server certificate
(client mode, against ``openssl s_server``), asked of an ``openssl ocsp`` responder on
loopback or read from the server's staple; good is served, revoked refused, no answer refused
unless ``OCSPrequire = no``."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from conftest import free_port, greet_echo
from test_e2e_clientmode import through
from tlsclients import GREETING, needs_openssl, s_client, s_server, wait_log

pytestmark = needs_openssl


@pytest.fixture
def world(tmp_path, thread_server):
    """A CA with an ``openssl ocsp`` responder, a server certificate (no responder named, so
    nothing is stapled) and a backend."""
    from ocspresponder import CAFiles

    ca = CAFiles(tmp_path)
    handler = ca.responder()
    responder = thread_server(handler)
    ca.url = f"http://127.0.0.1:{responder.port}/"
    ca.count = handler.count
    ca.server_cert, ca.server_key, _ = ca.issue("mail.example.org", None)
    ca.backend = thread_server(greet_echo)
    return ca


def server_config(ca, port: int, extra: str) -> str:
    return (f"foreground = yes\ndebug = info\n[imaps]\naccept = 127.0.0.1:{port}\n"
            f"connect = 127.0.0.1:{ca.backend.port}\ncert = {ca.server_cert}\n"
            f"key = {ca.server_key}\nverify = 2\nCAfile = {ca.cert}\n{extra}\n")


def with_cert(port: int, cert, key) -> bytes:
    out = s_client(port, "-cert", str(cert), "-key", str(key))
    return out.stdout


def test_a_good_client_certificate_is_served_and_a_revoked_one_refused(world, tlswrap):
    cert, key, parsed = world.issue("alice", world.url)
    port = free_port()
    proxy = tlswrap(server_config(world, port, "OCSPaia = yes"), [port])
    assert GREETING in with_cert(port, cert, key)
    assert world.count[0] == 1
    wait_log(proxy, "OCSP: certificate at depth 0 '/CN=alice': good")
    world.revoke(parsed)
    assert GREETING not in with_cert(port, cert, key)
    log = wait_log(proxy, "revoked")
    assert "refused: OCSP: certificate at depth 0 '/CN=alice' revoked (key_compromise)" in log
    assert world.count[0] == 2


def test_ocsp_url_asks_that_responder_about_a_certificate_naming_none(world, tlswrap):
    cert, key, parsed = world.issue("bob", None)
    port = free_port()
    tlswrap(server_config(world, port, f"OCSP = {world.url}"), [port])
    assert GREETING in with_cert(port, cert, key)
    assert world.count[0] == 1
    world.revoke(parsed)
    assert GREETING not in with_cert(port, cert, key)


def test_a_certificate_naming_no_responder_passes_unasked(world, tlswrap):
    cert, key, _ = world.issue("carol", None)
    port = free_port()
    tlswrap(server_config(world, port, "OCSPaia = yes"), [port])
    assert GREETING in with_cert(port, cert, key)
    assert world.count[0] == 0


@pytest.mark.parametrize("require", ["", "OCSPrequire = no"])
def test_a_responder_that_is_down_refuses_unless_ocsprequire_is_no(world, tlswrap, require):
    cert, key, _ = world.issue("dave", f"http://127.0.0.1:{free_port()}/")
    port = free_port()
    proxy = tlswrap(server_config(world, port, f"OCSPaia = yes\nTIMEOUTocsp = 2\n{require}"),
                    [port])
    served = GREETING in with_cert(port, cert, key)
    assert served == bool(require)
    if require:
        wait_log(proxy, "accepted (OCSPrequire = no)")
    else:
        wait_log(proxy, "refused: OCSP: no conclusive answer for the certificate at depth 0 "
                        "'/CN=dave'")


def test_a_nonce_is_sent_and_checked(world, tlswrap):
    cert, key, _ = world.issue("erin", world.url)
    port = free_port()
    tlswrap(server_config(world, port, "OCSPaia = yes\nOCSPnonce = yes"), [port])
    assert GREETING in with_cert(port, cert, key)
    request = x509.ocsp.load_der_ocsp_request((world.tmp / "req1.der").read_bytes())
    assert request.extensions.get_extension_for_class(x509.OCSPNonce)


def test_a_refused_client_certificate_goes_to_redirect(world, tlswrap, thread_server):
    other = thread_server(lambda conn: conn.sendall(b"* OK elsewhere\r\n"))
    cert, key, parsed = world.issue("frank", world.url)
    world.revoke(parsed)
    port = free_port()
    tlswrap(server_config(world, port, f"OCSPaia = yes\nredirect = 127.0.0.1:{other.port}"),
            [port])
    out = s_client(port, "-cert", str(cert), "-key", str(key), until=b"elsewhere")
    assert b"* OK elsewhere" in out.stdout


# client mode: tlswrap asks about the server's certificate

def client_config(ca, port: int, remote: int, extra: str) -> str:
    return (f"foreground = yes\ndebug = info\n[out]\nclient = yes\naccept = 127.0.0.1:{port}\n"
            f"connect = localhost:{remote}\nCAfile = {ca.cert}\n{extra}\n")


@pytest.mark.parametrize("revoked", [False, True])
def test_client_mode_checks_the_servers_certificate(world, tlswrap, revoked):
    """(A resumed session carries no chain and is not asked about again, as in stunnel.)"""
    cert, key, parsed = world.issue("localhost", world.url)
    if revoked:
        world.revoke(parsed)
    remote, port = free_port(), free_port()
    with s_server(remote, str(cert), str(key), "-rev"):
        proxy = tlswrap(client_config(world, port, remote, "OCSPaia = yes"), [port])
        assert through(port) == (b"" if revoked else b"slt olleh\n")
        wait_log(proxy, "refused the server: OCSP: certificate at depth 0 '/CN=localhost' "
                        "revoked" if revoked else "'/CN=localhost': good")
    assert world.count[0] >= 1  # (the start-up check's connection may have asked too)


def staple(ca, cert: x509.Certificate, status: ocsp.OCSPCertStatus) -> bytes:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), None)
    revoked = status == ocsp.OCSPCertStatus.REVOKED
    builder = ocsp.OCSPResponseBuilder().add_response(
        cert=cert, issuer=ca.x509, algorithm=hashes.SHA1(), cert_status=status,
        this_update=now - datetime.timedelta(minutes=5),
        next_update=now + datetime.timedelta(hours=1),
        revocation_time=now if revoked else None,
        revocation_reason=x509.ReasonFlags.key_compromise if revoked else None,
    ).responder_id(ocsp.OCSPResponderEncoding.HASH, ca.x509)
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(  # type: ignore[arg-type]
        serialization.Encoding.DER)


@pytest.mark.parametrize("status", [ocsp.OCSPCertStatus.GOOD, ocsp.OCSPCertStatus.REVOKED])
def test_client_mode_takes_the_servers_staple_first(world, tlswrap, status):
    """The server staples an answer: it decides, and the configured responder (down here) is
    not asked."""
    cert, key, parsed = world.issue("localhost", None)
    status_file = world.tmp / "staple.der"
    status_file.write_bytes(staple(world, parsed, status))
    remote, port = free_port(), free_port()
    with s_server(remote, str(cert), str(key), "-rev", "-status_file", str(status_file)):
        proxy = tlswrap(client_config(world, port, remote,
                                      f"OCSP = http://127.0.0.1:{free_port()}/"), [port])
        good = status == ocsp.OCSPCertStatus.GOOD
        assert through(port) == (b"slt olleh\n" if good else b"")
        wait_log(proxy, "good" if good else "revoked")
    assert world.count[0] == 0
