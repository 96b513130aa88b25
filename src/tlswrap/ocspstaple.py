"""Automatic OCSP stapling (``OCSPstaple = auto``, the default, as stunnel): the response is
fetched from the responder the certificate's Authority Information Access names, checked,
cached and refreshed. The pure helpers also serve the checks of a peer's certificates
(``ocspcheck``).

General theory of operation: a handshake never waits for the responder. The status callback
asks ``Stapler.response()``, which returns the cached response if it is still good (and
nothing otherwise) and, when a refresh is due and none is running, starts one in a thread.
The first clients after a start therefore get no staple, as when the responder is down: OCSP
stapling is an optimisation, and a client without a staple asks the responder itself or does
without. A response is stapled only when ``check_response`` accepts it: successful, for this
certificate (issuer name and key hashes, serial), signed by the issuer or by a responder
certificate the issuer signed for OCSP signing, thisUpdate not in the future and nextUpdate
not passed. It is refreshed halfway to nextUpdate; a failed fetch is retried after
``RETRY_SECONDS``; a response past its nextUpdate is dropped, whatever the responder does.

``check_response``, ``request_der`` and ``refresh_time`` are pure; the fetch is the shell.
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

log = logging.getLogger("tlswrap.ocspstaple")

FETCH_TIMEOUT = 10.0  # seconds for one request to the responder
RESPONSE_MAX = 64 << 10  # a response larger than 64 KiB is not one
RETRY_SECONDS = 60.0  # after a failed fetch
EXCHANGE_READS = 3  # the whole exchange: at most this many times the per-read timeout
MIN_REFRESH = datetime.timedelta(minutes=1)  # never ask more often than this


def responder_urls(cert: x509.Certificate) -> list[str]:
    """The OCSP addresses of the certificate's Authority Information Access, in its order."""
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except (x509.ExtensionNotFound, ValueError):
        return []
    return [desc.access_location.value for desc in aia
            if desc.access_method == AuthorityInformationAccessOID.OCSP
            and isinstance(desc.access_location.value, str)]


def responder_url(cert: x509.Certificate) -> str | None:
    """The first http:// OCSP address of the certificate's Authority Information Access."""
    return next((url for url in responder_urls(cert) if url.lower().startswith("http://")),
                None)


def request_der(leaf: x509.Certificate, issuer: x509.Certificate,
                nonce: bytes | None = None) -> bytes:
    """The DER OCSP request for ``leaf`` (SHA-1 CertID, what every responder understands),
    with a nonce extension if one is given."""
    builder = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1())
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def _signed_by(key: object, signature: bytes, data: bytes,
               algorithm: hashes.HashAlgorithm | None) -> bool:
    try:
        if isinstance(key, rsa.RSAPublicKey) and algorithm is not None:
            key.verify(signature, data, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey) and algorithm is not None:
            key.verify(signature, data, ec.ECDSA(algorithm))
        elif isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            key.verify(signature, data)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def responder_ok(resp: ocsp.OCSPResponse, issuer: x509.Certificate, *,
                 by_issuer: bool = True, delegated: bool = True) -> bool:
    """The response is signed by the issuer (``by_issuer``), or (``delegated``) by a
    certificate in the response that the issuer signed with the OCSP signing purpose (RFC 6960
    section 4.2.2.2). A responder certificate must be signed by the issuer directly, so there
    is no responder chain to build."""
    data, sig, alg = resp.tbs_response_bytes, resp.signature, resp.signature_hash_algorithm
    if by_issuer and _signed_by(issuer.public_key(), sig, data, alg):
        return True
    for cert in resp.certificates if delegated else ():
        if cert.issuer != issuer.subject or not _signed_by(
                issuer.public_key(), cert.signature, cert.tbs_certificate_bytes,
                cert.signature_hash_algorithm):
            continue
        try:
            eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            continue
        if ExtendedKeyUsageOID.OCSP_SIGNING in eku and _signed_by(
                cert.public_key(), sig, data, alg):
            return True
    return False


def check_response(der: bytes, leaf: x509.Certificate, issuer: x509.Certificate,
                   now: datetime.datetime) -> ocsp.OCSPResponse | str:
    """The parsed response if it may be stapled for ``leaf`` at ``now``, else why not."""
    try:
        resp = ocsp.load_der_ocsp_response(der)
    except ValueError as exc:
        return f"not an OCSP response ({exc})"
    if resp.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        return f"the responder answered {resp.response_status.name}"
    if resp.serial_number != leaf.serial_number:
        return "the response is for another certificate"
    want = ocsp.OCSPRequestBuilder().add_certificate(
        leaf, issuer, resp.hash_algorithm).build()
    if (resp.issuer_key_hash != want.issuer_key_hash
            or resp.issuer_name_hash != want.issuer_name_hash):
        return "the response is for another issuer's certificate"
    if not responder_ok(resp, issuer):
        return "the response's signature does not verify against the issuer"
    if resp.this_update_utc > now + datetime.timedelta(minutes=5):  # a little clock skew
        return "the response is not yet valid"
    if resp.next_update_utc is None:
        return "the response has no nextUpdate (it could never be known stale)"
    if resp.next_update_utc <= now:
        return f"the response expired at {resp.next_update_utc:%Y-%m-%d %H:%M:%S} UTC"
    return resp


def refresh_time(resp: ocsp.OCSPResponse, now: datetime.datetime) -> datetime.datetime:
    """When to fetch again: halfway from now to nextUpdate, not sooner than MIN_REFRESH."""
    end = resp.next_update_utc or now
    return now + max((end - now) / 2, MIN_REFRESH)


@dataclass
class _Held:
    der: bytes
    expires: datetime.datetime
    refresh: datetime.datetime


def http_post(url: str, body: bytes, timeout: float = FETCH_TIMEOUT) -> bytes:
    """POST an OCSP request (RFC 6960 appendix A.1); the response body, bounded in size and
    in time: ``timeout`` bounds the connect and each read, and the whole exchange takes at most
    ``EXCHANGE_READS`` times that (a responder dripping bytes cannot hold the thread)."""
    import http.client
    import time
    import urllib.request

    deadline = time.monotonic() + timeout * EXCHANGE_READS
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/ocsp-request",
                                          "Accept": "application/ocsp-response"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # direct, as stunnel
    data = b""
    try:
        with opener.open(req, timeout=timeout) as reply:
            while len(data) <= RESPONSE_MAX:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no whole answer within {timeout * EXCHANGE_READS:g}s")
                chunk: bytes = reply.read1(16384)  # what one recv gives: the clock is seen
                if not chunk:
                    break
                data += chunk
    except http.client.HTTPException as exc:  # a reply that is not HTTP
        raise ValueError(f"not an HTTP reply ({type(exc).__name__})") from None
    if len(data) > RESPONSE_MAX:
        raise ValueError(f"a response of more than {RESPONSE_MAX} bytes")
    return data


class Stapler:
    """The current response for one certificate, fetched in the background when due."""

    def __init__(self, url: str, leaf: x509.Certificate, issuer: x509.Certificate,
                 label: str, post: Callable[[str, bytes], bytes] = http_post,
                 clock: Callable[[], datetime.datetime] | None = None):
        self.url, self.leaf, self.issuer, self.label = url, leaf, issuer, label
        self._post = post
        self._now = clock or (lambda: datetime.datetime.now(datetime.UTC))
        self._held: _Held | None = None
        self.next_try = self._now()  # no fetch before this (after a failed one)
        self._running = False
        self._failing = False  # the last fetch failed
        self._lock = threading.Lock()

    def response(self) -> bytes | None:
        """For the status callback: the good response or None; never blocks."""
        now = self._now()
        held = self._held
        if (held is None or now >= held.refresh) and now >= self.next_try:
            self._start()
        if held is None or now >= held.expires:
            return None
        return held.der

    def _start(self) -> None:
        with self._lock:
            if self._running:
                return
            self._running = True
        threading.Thread(target=self.fetch_once, name="tlswrap-ocsp", daemon=True).start()

    def fetch_once(self) -> None:
        """Ask the responder once; keep the answer if it is good (else keep the old one)."""
        try:
            try:
                der = self._post(self.url, request_der(self.leaf, self.issuer))
            except (OSError, ValueError) as exc:
                self._failed(f"{self.url}: {exc}")
                return
            now = self._now()
            got = check_response(der, self.leaf, self.issuer, now)
            if isinstance(got, str):
                self._failed(f"{self.url}: {got}")
                return
            assert got.next_update_utc is not None  # check_response says so
            self._held = _Held(der, got.next_update_utc, refresh_time(got, now))
            self._failing = False
            log.info("%s OCSP response from %s: %s, next update %s", self.label, self.url,
                     got.certificate_status.name.lower(), f"{got.next_update_utc:%H:%M:%S}")
        finally:
            with self._lock:
                self._running = False

    def _failed(self, why: str) -> None:
        """Retry later; a warning for the first failure in a row, then info (a host that
        cannot reach the responder is told once, not every minute)."""
        self.next_try = self._now() + datetime.timedelta(seconds=RETRY_SECONDS)
        level = logging.INFO if self._failing else logging.WARNING
        self._failing = True
        log.log(level, "%s OCSP fetch failed, retrying in %gs: %s", self.label, RETRY_SECONDS,
                why)
