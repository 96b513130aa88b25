"""ocspstaple: which responses may be stapled (checked against the issuer, the certificate and
the time), when they are refreshed, and the stapler's cache with an injected clock."""

from __future__ import annotations

import datetime

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from tlswrap.ocspstaple import (
    MIN_REFRESH,
    Stapler,
    check_response,
    refresh_time,
    request_der,
    responder_url,
)

NOW = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.UTC)


def _load(ca: trustme.CA, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(ca.issue_cert(name).cert_chain_pems[0].bytes())


@pytest.fixture(scope="module")
def pki():
    ca, other = trustme.CA(), trustme.CA()
    return ca, _load(ca, "mail.example.org"), _load(ca, "other.example.org"), other


def response(ca: trustme.CA, cert: x509.Certificate, *, signer: trustme.CA | None = None,
             this: datetime.datetime = NOW - datetime.timedelta(hours=1),
             nxt: datetime.datetime | None = NOW + datetime.timedelta(hours=4)) -> bytes:
    signer = signer or ca
    issuer = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    key = serialization.load_pem_private_key(signer.private_key_pem.bytes(), None)
    signer_cert = x509.load_pem_x509_certificate(signer.cert_pem.bytes())
    built = ocsp.OCSPResponseBuilder().add_response(
        cert=cert, issuer=issuer, algorithm=hashes.SHA1(), cert_status=ocsp.OCSPCertStatus.GOOD,
        this_update=this, next_update=nxt, revocation_time=None, revocation_reason=None,
    ).responder_id(ocsp.OCSPResponderEncoding.HASH, signer_cert)
    return built.sign(key, hashes.SHA256()).public_bytes(  # type: ignore[arg-type]
        serialization.Encoding.DER)


def issuer_of(ca: trustme.CA) -> x509.Certificate:
    return x509.load_pem_x509_certificate(ca.cert_pem.bytes())


def test_a_good_response_is_accepted(pki):
    ca, leaf, _, _ = pki
    got = check_response(response(ca, leaf), leaf, issuer_of(ca), NOW)
    assert isinstance(got, ocsp.OCSPResponse)
    assert got.certificate_status == ocsp.OCSPCertStatus.GOOD


def test_responses_that_must_not_be_stapled(pki):
    ca, leaf, other_leaf, other_ca = pki
    issuer = issuer_of(ca)
    cases = {
        "another certificate": response(ca, other_leaf),
        "signature does not verify": response(ca, leaf, signer=other_ca),
        "expired at": response(ca, leaf, nxt=NOW - datetime.timedelta(seconds=1)),
        "no nextUpdate": response(ca, leaf, nxt=None),
        "not yet valid": response(ca, leaf, this=NOW + datetime.timedelta(hours=1)),
        "not an OCSP response": b"\x30\x03\x02\x01\x00",
        "answered UNAUTHORIZED": ocsp.OCSPResponseBuilder.build_unsuccessful(
            ocsp.OCSPResponseStatus.UNAUTHORIZED).public_bytes(serialization.Encoding.DER),
    }
    for why, der in cases.items():
        got = check_response(der, leaf, issuer, NOW)
        assert isinstance(got, str) and why in got, (why, got)


def test_refresh_halfway_to_next_update_but_not_too_often(pki):
    ca, leaf, _, _ = pki
    resp = ocsp.load_der_ocsp_response(response(ca, leaf))
    assert refresh_time(resp, NOW) == NOW + datetime.timedelta(hours=2)
    soon = ocsp.load_der_ocsp_response(response(ca, leaf, nxt=NOW + datetime.timedelta(
        seconds=10)))
    assert refresh_time(soon, NOW) == NOW + MIN_REFRESH


def test_the_request_names_the_certificate(pki):
    ca, leaf, _, _ = pki
    req = ocsp.load_der_ocsp_request(request_der(leaf, issuer_of(ca)))
    assert req.serial_number == leaf.serial_number
    assert responder_url(leaf) is None


def test_the_stapler_serves_the_cached_response_until_next_update(pki):
    ca, leaf, _, _ = pki
    now = [NOW]
    asked: list[bytes] = []
    good = response(ca, leaf)

    def post(url: str, body: bytes) -> bytes:
        asked.append(body)
        return good

    stapler = Stapler("http://127.0.0.1:1/", leaf, issuer_of(ca), "[t]", post,
                      clock=lambda: now[0])
    stapler.fetch_once()  # what response() starts in a thread
    assert asked and stapler.response() == good
    now[0] = NOW + datetime.timedelta(hours=4)  # nextUpdate: dropped, whatever comes next
    stapler.next_try = now[0] + datetime.timedelta(days=1)  # no new fetch in this test
    assert stapler.response() is None


def test_a_failed_fetch_keeps_the_good_response_and_waits_to_retry(pki):
    ca, leaf, _, _ = pki
    now = [NOW]
    answers = [response(ca, leaf), OSError("connection refused")]

    def post(url: str, body: bytes) -> bytes:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    stapler = Stapler("http://127.0.0.1:1/", leaf, issuer_of(ca), "[t]", post,
                      clock=lambda: now[0])
    stapler.fetch_once()
    first = stapler.response()
    assert first is not None
    stapler.fetch_once()  # the responder is down now
    assert stapler.response() == first
    assert stapler.next_try == NOW + datetime.timedelta(seconds=60)


def test_a_responder_dripping_its_answer_is_cut_off(thread_server):
    """Each read within the timeout, the whole not: the fetch ends (its thread is freed)."""
    import threading
    import time

    from tlswrap.ocspstaple import http_post

    stop = threading.Event()

    def drip(conn) -> None:  # type: ignore[no-untyped-def]
        conn.recv(65536)
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 60000\r\n\r\n")
        while not stop.is_set():
            try:
                conn.sendall(b"x")
            except OSError:
                return
            time.sleep(0.02)

    srv = thread_server(drip)
    try:
        with pytest.raises(TimeoutError, match="no whole answer"):
            http_post(f"http://127.0.0.1:{srv.port}/", b"request", timeout=0.2)
    finally:
        stop.set()
