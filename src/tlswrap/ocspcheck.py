"""OCSP checks of the peer's certificates: stunnel's ``OCSPaia``, ``OCSP = URL``,
``OCSPflag``, ``OCSPnonce``, ``OCSPrequire`` and ``TIMEOUTocsp``.

General theory of operation (stunnel's ocsp.c, run once the handshake is done rather than in
OpenSSL's verify callback, which cannot wait for a responder): only a chain OpenSSL verified
is checked, each certificate but the trust anchor in turn, the peer's own first. For that one
a response the server stapled comes first (client mode), then the ``OCSP = URL`` responder;
then, with ``OCSPaia = yes``, each responder the certificate's Authority Information Access
names, until one answers conclusively. GOOD goes on to the next certificate; REVOKED refuses
the peer; no conclusive answer refuses it as well unless ``OCSPrequire = no``. A certificate
no responder was asked about passes (stunnel's rule: there was nothing to ask).

A response counts only when it is successful, signed by the issuer or by a responder
certificate the issuer signed for OCSP signing (``OCSPflag`` loosens or tightens that as
OpenSSL's OCSP_basic_verify flags do), holds the certificate's status, is current within a
minute's leeway, and (``OCSPnonce = yes``) echoes the request's nonce.

``judge`` is pure; ``check_chain`` is the shell: each request goes out in a thread, with
TIMEOUTocsp to connect and TIMEOUTbusy for the whole exchange.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import trio
from cryptography import x509
from cryptography.x509 import ocsp

from .certnames import oneline
from .config import Service
from .ocspstaple import http_post, request_der, responder_ok, responder_urls

log = logging.getLogger("tlswrap.ocspcheck")

GOOD, REVOKED, UNKNOWN = "good", "revoked", "unknown"
LEEWAY = datetime.timedelta(minutes=1)  # stunnel's for thisUpdate and nextUpdate
NONCE_SIZE = 16
@dataclass(frozen=True)
class Answer:
    status: str  # GOOD, REVOKED or UNKNOWN (inconclusive, whatever the reason)
    why: str  # for the log


def judge(der: bytes, cert: x509.Certificate, issuer: x509.Certificate,
          now: datetime.datetime, flags: Sequence[str] = (),
          nonce: bytes | None = None) -> Answer:
    """What the DER response ``der`` says of ``cert`` (issued by ``issuer``) at ``now``,
    checked as described above; ``nonce`` is the one the request carried, if any."""
    try:
        resp = ocsp.load_der_ocsp_response(der)
    except ValueError as exc:
        return Answer(UNKNOWN, f"not an OCSP response ({exc})")
    if resp.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        return Answer(UNKNOWN, f"the responder answered {resp.response_status.name}")
    if nonce is not None:
        try:
            echoed = resp.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
        except (x509.ExtensionNotFound, ValueError):
            echoed = None
        if echoed != nonce:
            return Answer(UNKNOWN, "the response does not echo the request's nonce")
    if "NOSIGS" not in flags and not responder_ok(
            resp, issuer, by_issuer="NOCASIGN" not in flags,
            delegated="NODELEGATED" not in flags and "NOINTERN" not in flags):
        return Answer(UNKNOWN, "the response is not signed by the issuer or its responder")
    single = _single(resp, cert, issuer)
    if single is None:
        return Answer(UNKNOWN, "the response says nothing of this certificate")
    if single.this_update_utc > now + LEEWAY:
        return Answer(UNKNOWN, "the response is not yet valid")
    if single.next_update_utc is not None and single.next_update_utc < now - LEEWAY:
        return Answer(UNKNOWN, f"the response expired at "
                               f"{single.next_update_utc:%Y-%m-%d %H:%M:%S} UTC")
    status = single.certificate_status
    if status == ocsp.OCSPCertStatus.GOOD:
        return Answer(GOOD, "good")
    if status == ocsp.OCSPCertStatus.REVOKED:
        reason = single.revocation_reason
        at = single.revocation_time_utc
        return Answer(REVOKED, "revoked" + (f" ({reason.name})" if reason else "")
                      + (f" at {at:%Y-%m-%d %H:%M:%S} UTC" if at else ""))
    return Answer(UNKNOWN, "the responder does not know the certificate")


def _single(resp: ocsp.OCSPResponse, cert: x509.Certificate,
            issuer: x509.Certificate) -> ocsp.OCSPSingleResponse | None:
    """The response's entry for ``cert``: same serial, issuer name and key hashes."""
    for single in resp.responses:
        if single.serial_number != cert.serial_number:
            continue
        want = ocsp.OCSPRequestBuilder().add_certificate(
            cert, issuer, single.hash_algorithm).build()
        if (single.issuer_key_hash == want.issuer_key_hash
                and single.issuer_name_hash == want.issuer_name_hash):
            return single
    return None


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


async def check_chain(svc: Service, chain: Sequence[x509.Certificate], stapled: bytes | None,
                      who: str, post: Callable[[str, bytes, float], bytes] = http_post
                      ) -> str | None:
    """Check the verified ``chain`` (the peer's certificate first, the trust anchor last) as
    described above; None when the peer passes, else why it is refused. ``stapled`` is the
    response the server stapled (client mode), ``who`` the connection's log prefix."""
    for depth, cert in enumerate(chain[:-1]):
        issuer = chain[depth + 1]
        asked, answer = await _ask(svc, cert, issuer, stapled if depth == 0 else None,
                                   depth == 0, who, post)
        subject = repr(oneline(cert.subject))
        if not asked:
            continue
        if answer.status == GOOD:
            log.info("%s OCSP: certificate at depth %d %s: good", who, depth, subject)
            continue
        if answer.status == REVOKED:
            return f"OCSP: certificate at depth {depth} {subject} {answer.why}"
        if svc.ocsp_require:
            return (f"OCSP: no conclusive answer for the certificate at depth {depth} "
                    f"{subject} ({answer.why}; OCSPrequire = yes)")
        log.warning("%s OCSP: no conclusive answer for the certificate at depth %d %s (%s): "
                    "accepted (OCSPrequire = no)", who, depth, subject, answer.why)
    return None


async def _ask(svc: Service, cert: x509.Certificate, issuer: x509.Certificate,
               stapled: bytes | None, leaf: bool, who: str,
               post: Callable[[str, bytes, float], bytes]) -> tuple[bool, Answer]:
    """(whether anyone was asked, the last answer) for one certificate."""
    answer = Answer(UNKNOWN, "no responder")
    asked = False
    if stapled is not None:
        answer = judge(stapled, cert, issuer, _now(), svc.ocsp_flags)
        if answer.status != UNKNOWN:
            return True, answer
        log.info("%s OCSP: the stapled response is no help: %s", who, answer.why)
    urls = [svc.ocsp_url] if leaf and svc.ocsp_url else []
    if svc.ocsp_aia:
        aia = responder_urls(cert)
        if not aia:
            log.info("%s OCSP: %r names no responder", who, oneline(cert.subject))
        urls += aia
    for url in urls:
        if not url.lower().startswith("http://"):
            log.info("%s OCSP: %r skipped: only http:// responders are asked", who, url)
            continue
        asked = True
        answer = await _request(svc, url, cert, issuer, post)
        if answer.status != UNKNOWN:
            break
        log.info("%s OCSP: %s: %s", who, url, answer.why)
    return asked, answer


async def _request(svc: Service, url: str, cert: x509.Certificate, issuer: x509.Certificate,
                   post: Callable[[str, bytes, float], bytes]) -> Answer:
    nonce = os.urandom(NONCE_SIZE) if svc.ocsp_nonce else None
    body = request_der(cert, issuer, nonce)
    with trio.move_on_after(svc.timeout_busy):
        try:
            der = await trio.to_thread.run_sync(post, url, body, svc.timeout_ocsp,
                                                abandon_on_cancel=True)
        except (OSError, ValueError) as exc:
            return Answer(UNKNOWN, f"{url}: {exc}")
        return judge(der, cert, issuer, _now(), svc.ocsp_flags, nonce)
    return Answer(UNKNOWN, f"{url}: no answer within {svc.timeout_busy:g}s")
