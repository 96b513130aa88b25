"""ocspcheck: what a response says of a certificate (``judge``), with OpenSSL's OCSPflag
meanings, and the walk down a chain (``check_chain``) with stunnel's rules: the URL for the
peer's own certificate only, AIA responders for each, OCSPrequire for no conclusive answer."""

from __future__ import annotations

import datetime
from dataclasses import replace

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from tlswrap.config import Service
from tlswrap.config.checks import config_notes
from tlswrap.config.parse import parse_config
from tlswrap.ocspcheck import GOOD, REVOKED, UNKNOWN, check_chain, judge

NOW = datetime.datetime.now(datetime.UTC)
Status = ocsp.OCSPCertStatus


def _load(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def _key(blob):  # type: ignore[no-untyped-def]
    return serialization.load_pem_private_key(blob.bytes(), None)


@pytest.fixture(scope="module")
def pki():
    ca = trustme.CA()
    leaf = ca.issue_cert("mail.example.org")
    other = ca.issue_cert("other.example.org")
    responder = ca.issue_cert("ocsp.example.org")  # no OCSP signing purpose
    return ca, leaf, other, responder


def response(ca, cert_pem: bytes, status=Status.GOOD, *, signer=None, signer_key=None,
             this_update=None, next_update=None, nonce: bytes | None = None,
             certs=()) -> bytes:
    issuer = _load(ca.cert_pem.bytes())
    revoked = status == Status.REVOKED
    builder = ocsp.OCSPResponseBuilder().add_response(
        cert=_load(cert_pem), issuer=issuer, algorithm=hashes.SHA1(), cert_status=status,
        this_update=this_update or NOW - datetime.timedelta(minutes=5),
        next_update=next_update or NOW + datetime.timedelta(hours=1),
        revocation_time=NOW if revoked else None,
        revocation_reason=x509.ReasonFlags.key_compromise if revoked else None,
    ).responder_id(ocsp.OCSPResponderEncoding.HASH, signer or issuer)
    if certs:
        builder = builder.certificates(list(certs))
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    key = signer_key or _key(ca.private_key_pem)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def delegated(ca, ocsp_signing: bool = True):  # type: ignore[no-untyped-def]
    """A responder certificate the CA signed (with the OCSP signing purpose), and its key."""
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    issuer = _load(ca.cert_pem.bytes())
    builder = (x509.CertificateBuilder().subject_name(x509.Name.from_rfc4514_string("CN=ocsp"))
               .issuer_name(issuer.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(NOW - datetime.timedelta(days=1))
               .not_valid_after(NOW + datetime.timedelta(days=1)))
    if ocsp_signing:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
    return builder.sign(_key(ca.private_key_pem), hashes.SHA256()), key


def verdict(pki, der: bytes, flags=(), nonce=None) -> str:
    ca, leaf, _, _ = pki
    return judge(der, _load(leaf.cert_chain_pems[0].bytes()), _load(ca.cert_pem.bytes()), NOW,
                 flags, nonce).status


def test_good_and_revoked_signed_by_the_issuer(pki):
    ca, leaf, _, _ = pki
    pem = leaf.cert_chain_pems[0].bytes()
    assert verdict(pki, response(ca, pem)) == GOOD
    got = judge(response(ca, pem, Status.REVOKED), _load(pem), _load(ca.cert_pem.bytes()), NOW)
    assert got.status == REVOKED and got.why.startswith("revoked (key_compromise) at ")
    assert verdict(pki, response(ca, pem, Status.UNKNOWN)) == UNKNOWN


def test_what_is_not_an_answer_about_this_certificate_is_inconclusive(pki):
    ca, leaf, other, responder = pki
    pem = leaf.cert_chain_pems[0].bytes()
    assert verdict(pki, b"junk") == UNKNOWN
    assert verdict(pki, ocsp.OCSPResponseBuilder.build_unsuccessful(
        ocsp.OCSPResponseStatus.TRY_LATER).public_bytes(serialization.Encoding.DER)) == UNKNOWN
    assert verdict(pki, response(ca, other.cert_chain_pems[0].bytes())) == UNKNOWN
    assert verdict(pki, response(ca, pem, next_update=NOW - datetime.timedelta(minutes=2),
                                 this_update=NOW - datetime.timedelta(hours=1))) == UNKNOWN
    assert verdict(pki, response(ca, pem, this_update=NOW + datetime.timedelta(minutes=2),
                                 next_update=NOW + datetime.timedelta(hours=1))) == UNKNOWN
    # within the minute's leeway
    assert verdict(pki, response(ca, pem, this_update=NOW + datetime.timedelta(seconds=30),
                                 next_update=NOW + datetime.timedelta(hours=1))) == GOOD
    # signed by a certificate the CA issued, but not for OCSP signing
    forged = response(ca, pem, signer=_load(responder.cert_chain_pems[0].bytes()),
                      signer_key=_key(responder.private_key_pem),
                      certs=[_load(responder.cert_chain_pems[0].bytes())])
    assert verdict(pki, forged) == UNKNOWN
    assert verdict(pki, forged, flags=("NOSIGS",)) == GOOD  # OpenSSL's: no signature check


def test_a_delegated_responder_unless_nodelegated_or_nointern(pki):
    ca, leaf, _, _ = pki
    pem = leaf.cert_chain_pems[0].bytes()
    cert, key = delegated(ca)
    der = response(ca, pem, signer=cert, signer_key=key, certs=[cert])
    assert verdict(pki, der) == GOOD
    assert verdict(pki, der, flags=("NODELEGATED",)) == UNKNOWN
    assert verdict(pki, der, flags=("NOINTERN",)) == UNKNOWN
    no_purpose, key2 = delegated(ca, ocsp_signing=False)
    assert verdict(pki, response(ca, pem, signer=no_purpose, signer_key=key2,
                                 certs=[no_purpose])) == UNKNOWN


def test_nocasign_refuses_the_issuers_own_signature(pki):
    ca, leaf, _, _ = pki
    assert verdict(pki, response(ca, leaf.cert_chain_pems[0].bytes()),
                   flags=("NOCASIGN",)) == UNKNOWN


def test_the_nonce_must_come_back(pki):
    ca, leaf, _, _ = pki
    pem = leaf.cert_chain_pems[0].bytes()
    assert verdict(pki, response(ca, pem, nonce=b"n" * 16), nonce=b"n" * 16) == GOOD
    assert verdict(pki, response(ca, pem, nonce=b"m" * 16), nonce=b"n" * 16) == UNKNOWN
    assert verdict(pki, response(ca, pem), nonce=b"n" * 16) == UNKNOWN


# check_chain: the walk, with a fake responder

class Issuer:
    """A CA made here (trustme makes no AIA): ``cert_pem`` and ``private_key_pem`` as
    trustme's, so ``response`` takes either."""

    def __init__(self, name: str, parent: Issuer | None = None, aia: str | None = None):
        from cryptography.hazmat.primitives.asymmetric import ec

        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name.from_rfc4514_string(f"CN={name}")
        builder = (x509.CertificateBuilder().subject_name(subject)
                   .issuer_name(parent.cert.subject if parent else subject)
                   .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(NOW - datetime.timedelta(days=1))
                   .not_valid_after(NOW + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), True))
        if aia:
            builder = builder.add_extension(x509.AuthorityInformationAccess([
                x509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                                       x509.UniformResourceIdentifier(aia))]), False)
        self.cert = builder.sign(parent.key if parent else self.key, hashes.SHA256())
        self.cert_pem = _Blob(self.cert.public_bytes(serialization.Encoding.PEM))
        self.private_key_pem = _Blob(self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))


class _Blob:
    def __init__(self, data: bytes):
        self.data = data

    def bytes(self) -> bytes:
        return self.data


def chain_of_three(aia: str | None = None):  # type: ignore[no-untyped-def]
    """root -> intermediate (naming ``aia`` as its responder) -> leaf, and the chain."""
    root = Issuer("root")
    inter = Issuer("inter", root, aia)
    leaf = Issuer("leaf", inter)
    return root, inter, leaf, [leaf.cert, inter.cert, root.cert]


def service(**kw) -> Service:  # type: ignore[no-untyped-def]
    return replace(Service(name="svc"), **kw)


async def test_url_is_for_the_peer_and_aia_for_each_certificate():
    root, inter, leaf, certs = chain_of_three("http://inter/")
    asked: list[str] = []
    answers = {
        "http://leaf/": response(inter, leaf.cert_pem.bytes()),
        "http://inter/": response(root, inter.cert_pem.bytes()),
    }

    def post(url: str, body: bytes, timeout: float) -> bytes:
        asked.append(url)
        return answers[url]

    svc = service(ocsp_url="http://leaf/")
    assert await check_chain(svc, certs, None, "t", post) is None
    assert asked == ["http://leaf/"]  # the URL only for the peer's own; no AIA asked
    asked.clear()
    svc = service(ocsp_url="http://leaf/", ocsp_aia=True)
    assert await check_chain(svc, certs, None, "t", post) is None
    assert asked == ["http://leaf/", "http://inter/"]


async def test_an_intermediate_revoked_refuses_and_no_answer_depends_on_ocsprequire():
    root, inter, _leaf, chain = chain_of_three("http://inter/")

    def revoked(url: str, body: bytes, timeout: float) -> bytes:
        return response(root, inter.cert_pem.bytes(), Status.REVOKED)

    refusal = await check_chain(service(ocsp_aia=True), chain, None, "t", revoked)
    assert refusal is not None and "depth 1" in refusal and "revoked" in refusal

    def down(url: str, body: bytes, timeout: float) -> bytes:
        raise ConnectionRefusedError(111, "Connection refused")

    refusal = await check_chain(service(ocsp_aia=True), chain, None, "t", down)
    assert refusal is not None and "no conclusive answer" in refusal
    assert await check_chain(service(ocsp_aia=True, ocsp_require=False), chain, None, "t",
                             down) is None


async def test_a_stapled_answer_comes_first():
    _root, inter, leaf, certs = chain_of_three()

    def never(url: str, body: bytes, timeout: float) -> bytes:
        raise AssertionError("asked")

    stapled = response(inter, leaf.cert_pem.bytes(), Status.REVOKED)
    refusal = await check_chain(service(ocsp_url="http://leaf/"), certs, stapled, "t", never)
    assert refusal is not None and "depth 0" in refusal and "revoked" in refusal


def test_ocspflag_values_with_no_effect_get_a_note():
    text = ("[imaps]\naccept = 993\nconnect = 143\ncert = /c.pem\nverify = 2\nCAfile = /ca\n"
            "OCSPaia = yes\nOCSPflag = NOVERIFY\nOCSPflag = NOSIGS\nOCSPflag = RESPID_KEY\n")
    notes = [(n.lineno, str(n)) for n in config_notes(parse_config(text, "t.conf"))]
    assert [line for line, _ in notes] == [8, 10]
    assert "OCSPflag = NOVERIFY: no effect" in notes[0][1]
