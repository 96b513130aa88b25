"""OCSP stapling from a file (``OCSPstaple = FILE``, a DER response): ``openssl s_client
-status`` sees it; a response for another certificate or past its nextUpdate is never stapled;
a new file is picked up without a reload. ``OCSPstaple = auto`` (the default) staples what
the responder the certificate names says; ``no`` asks nobody."""

from __future__ import annotations

import datetime
import os
import socket

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from conftest import free_port, greet_echo, service_config
from tlsclients import needs_openssl, s_client

pytestmark = needs_openssl
NOW = datetime.datetime.now(datetime.UTC)


def ocsp_response(certs, cert_pem: bytes, next_update: datetime.datetime,
                  status: ocsp.OCSPCertStatus = ocsp.OCSPCertStatus.GOOD) -> bytes:
    """A response signed by the test CA, saying ``status`` for the certificate."""
    ca_cert = x509.load_pem_x509_certificate(certs.ca.cert_pem.bytes())
    ca_key = serialization.load_pem_private_key(certs.ca.private_key_pem.bytes(), None)
    cert = x509.load_pem_x509_certificate(cert_pem)
    builder = ocsp.OCSPResponseBuilder().add_response(
        cert=cert, issuer=ca_cert, algorithm=hashes.SHA1(), cert_status=status,
        this_update=NOW - datetime.timedelta(hours=1), next_update=next_update,
        revocation_time=None, revocation_reason=None,
    ).responder_id(ocsp.OCSPResponderEncoding.HASH, ca_cert)
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(  # type: ignore[arg-type]
        serialization.Encoding.DER)


@pytest.fixture
def stapling(certs, thread_server, tlswrap, tmp_path):
    srv = thread_server(greet_echo)
    port = free_port()
    staple = tmp_path / "ocsp.der"
    staple.write_bytes(ocsp_response(certs, certs.cert_file.read_bytes(),
                                     NOW + datetime.timedelta(days=3)))
    tlswrap(service_config(certs, port, f"127.0.0.1:{srv.port}",
                           extra=f"OCSPstaple = {staple}"), [port])
    return port, staple


def replace(path, data: bytes) -> None:
    tmp = path.with_suffix(".new")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def test_s_client_status_shows_the_stapled_response(stapling):
    port, _ = stapling
    out = s_client(port, "-status")
    assert b"OCSP Response Status: successful" in out.stdout
    assert b"Cert Status: good" in out.stdout
    assert b"* OK echo ready" in out.stdout


def test_a_client_that_does_not_ask_gets_no_staple(stapling):
    port, _ = stapling
    out = s_client(port)
    assert b"OCSP response" not in out.stdout
    assert b"* OK echo ready" in out.stdout


def test_a_new_file_is_used_without_a_reload(certs, stapling):
    port, staple = stapling
    replace(staple, ocsp_response(certs, certs.cert_file.read_bytes(),
                                  NOW + datetime.timedelta(days=3),
                                  ocsp.OCSPCertStatus.UNKNOWN))
    assert b"Cert Status: unknown" in s_client(port, "-status").stdout


def test_a_response_for_another_certificate_or_expired_is_not_stapled(certs, stapling):
    port, staple = stapling
    other = certs.ca.issue_cert("other.example.org").cert_chain_pems[0].bytes()
    replace(staple, ocsp_response(certs, other, NOW + datetime.timedelta(days=3)))
    out = s_client(port, "-status")
    assert b"OCSP response: no response sent" in out.stdout
    assert b"* OK echo ready" in out.stdout
    replace(staple, ocsp_response(certs, certs.cert_file.read_bytes(),
                                  NOW - datetime.timedelta(minutes=1)))
    out = s_client(port, "-status")
    assert b"OCSP response: no response sent" in out.stdout
    assert b"* OK echo ready" in out.stdout


def _wait_staple(port: int) -> bytes:
    """s_client -status until a staple comes (the first handshakes start the fetch and get
    none: a handshake never waits for the responder)."""
    import time

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        out = s_client(port, "-status", "-servername", "mail.example.org")
        assert b"* OK echo ready" in out.stdout
        if b"OCSP Response Status: successful" in out.stdout:
            return out.stdout
        time.sleep(0.2)
    raise AssertionError("no stapled response within 20 s")


def test_a_response_fetched_from_openssl_ocsp_is_stapled_and_outlives_the_responder(
        thread_server, tlswrap, tmp_path):
    """OCSPstaple = auto, the default: the certificate names a responder, so its answer is
    stapled (as stunnel does)."""
    from ocspresponder import CAFiles

    ca = CAFiles(tmp_path)
    handler = ca.responder()
    responder = thread_server(handler)
    url = f"http://127.0.0.1:{responder.port}/"
    cert, key, _ = ca.issue("mail.example.org", url)
    srv = thread_server(greet_echo)
    port = free_port()
    tlswrap(f"foreground = yes\n[imaps]\naccept = 127.0.0.1:{port}\n"
            f"connect = 127.0.0.1:{srv.port}\ncert = {cert}\nkey = {key}\n", [port])
    out = _wait_staple(port)
    assert b"Cert Status: good" in out
    assert handler.count[0] >= 1
    responder.close()  # the responder goes away: handshakes go on, with the cached response
    for _ in range(3):
        out = s_client(port, "-status", "-servername", "mail.example.org")
        assert b"* OK echo ready" in out.stdout
        assert b"Cert Status: good" in out.stdout


def test_ocspstaple_no_asks_no_responder(thread_server, tlswrap, tmp_path):
    from ocspresponder import CAFiles

    ca = CAFiles(tmp_path)
    handler = ca.responder()
    responder = thread_server(handler)
    cert, key, _ = ca.issue("mail.example.org", f"http://127.0.0.1:{responder.port}/")
    srv = thread_server(greet_echo)
    port = free_port()
    tlswrap(f"foreground = yes\n[imaps]\naccept = 127.0.0.1:{port}\n"
            f"connect = 127.0.0.1:{srv.port}\ncert = {cert}\nkey = {key}\n"
            "OCSPstaple = no\n", [port])
    for _ in range(3):
        out = s_client(port, "-status")
        assert b"* OK echo ready" in out.stdout
        assert b"OCSP response: no response sent" in out.stdout
    assert handler.count[0] == 0


def test_a_responder_that_is_down_never_stops_a_handshake(thread_server, tlswrap, tmp_path):
    from ocspresponder import CAFiles

    ca = CAFiles(tmp_path)
    cert, key, _ = ca.issue("mail.example.org", f"http://127.0.0.1:{free_port()}/")
    srv = thread_server(greet_echo)
    port = free_port()
    proxy = tlswrap(f"foreground = yes\n[imaps]\naccept = 127.0.0.1:{port}\n"
                    f"connect = 127.0.0.1:{srv.port}\ncert = {cert}\nkey = {key}\n", [port])
    for _ in range(3):
        out = s_client(port, "-status")
        assert b"* OK echo ready" in out.stdout
        assert b"OCSP response: no response sent" in out.stdout
    from tlsclients import wait_log

    assert "OCSP fetch failed, retrying in 60s" in wait_log(proxy, "OCSP fetch failed")


def test_a_silent_responder_never_holds_a_handshake(thread_server, tlswrap, tmp_path):
    """The responder takes the connection and never answers: while tlswrap's fetch waits on
    it, handshakes go on, without a staple (the fetch is off the handshake's path)."""
    from ocspresponder import CAFiles

    silent = socket.create_server(("127.0.0.1", 0))
    silent.settimeout(20)
    ca = CAFiles(tmp_path)
    cert, key, _ = ca.issue("mail.example.org",
                            f"http://127.0.0.1:{silent.getsockname()[1]}/")
    srv = thread_server(greet_echo)
    port = free_port()
    with silent:
        tlswrap(f"foreground = yes\n[imaps]\naccept = 127.0.0.1:{port}\n"
                f"connect = 127.0.0.1:{srv.port}\ncert = {cert}\nkey = {key}\n", [port])
        first = s_client(port, "-status", timeout=5)  # asks for a staple: the fetch starts
        assert b"* OK echo ready" in first.stdout
        fetch, _ = silent.accept()  # tlswrap's fetch, left waiting for an answer
        with fetch:
            for _ in range(3):
                out = s_client(port, "-status", timeout=5)
                assert b"* OK echo ready" in out.stdout
                assert b"OCSP response: no response sent" in out.stdout
            fetch.settimeout(0)
            request = b""
            with pytest.raises(BlockingIOError):  # no EOF: the fetch was waiting all along
                while chunk := fetch.recv(65536):
                    request += chunk
            assert request.startswith(b"POST ")


def test_the_stapled_responses_next_update_is_a_metric(certs, thread_server, tlswrap, tmp_path):
    from test_e2e_metrics import scrape

    srv = thread_server(greet_echo)
    port, mport = free_port(), free_port()
    staple = tmp_path / "ocsp.der"
    next_update = (NOW + datetime.timedelta(days=3)).replace(microsecond=0)
    staple.write_bytes(ocsp_response(certs, certs.cert_file.read_bytes(), next_update))
    tlswrap(f"metrics = 127.0.0.1:{mport}\n"
            + service_config(certs, port, f"127.0.0.1:{srv.port}",
                             extra=f"OCSPstaple = {staple}"), [port, mport])
    got = scrape(mport)
    assert got[("tlswrap_ocsp_next_update_seconds", (("service", "imaps"),))] == \
        next_update.timestamp()
