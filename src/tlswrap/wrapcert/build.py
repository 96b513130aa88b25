"""Keys, names, extensions and certificates, built with ``cryptography``.

No file or terminal I/O here: values in, objects (or PEM bytes) out. Defaults carry their
reasons: SHA-256 signatures, serials of 159 random bits from the OS CSPRNG (RFC 5280 allows 20
octets; random serials defeat chosen-prefix collisions), ``notBefore`` at the current second.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from collections.abc import Iterable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificatePublicKeyTypes,
    PrivateKeyTypes,
    PublicKeyTypes,
)
from cryptography.x509.oid import NameOID, ObjectIdentifier

from tlswrap.errors import ConfigError, TlswrapError
from tlswrap.wrapcert.dn import CN_OID, COUNTRY_OID, RDN
from tlswrap.wrapcert.extconf import ExtSpec
from tlswrap.wrapcert.reqconf import MIN_RSA_BITS, KeySpec

__all__ = [
    "auto_san",
    "build_csr",
    "build_extensions",
    "ca_extensions",
    "checked_ca_key",
    "checked_key",
    "generate_key",
    "issue",
    "key_description",
    "key_pem",
    "make_name",
    "server_extensions",
    "weak_key_reason",
]

NS_CERT_TYPE_OID = ObjectIdentifier("2.16.840.1.113730.1.1")
NS_COMMENT_OID = ObjectIdentifier("2.16.840.1.113730.1.13")
_CURVES: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
}
_HASHES: dict[str, hashes.SHA256 | hashes.SHA384 | hashes.SHA512] = {
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}
_HOSTNAME = re.compile(
    r"(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?\Z"
)

# The last moment a GeneralizedTime (YYYYMMDDHHMMSSZ) can hold, and so a notAfter.
LAST_DATE = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC)

# The keys wrapcert makes and accepts for a certificate of its own.
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
# The keys a CA given to 'issue' may have: any that signs X.509 with a classic algorithm.
IssuerKey = PrivateKey | ed448.Ed448PrivateKey | dsa.DSAPrivateKey


def generate_key(spec: KeySpec) -> PrivateKey:
    if spec.kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=spec.bits)
    if spec.kind == "ec":
        return ec.generate_private_key(_CURVES[spec.curve])
    return ed25519.Ed25519PrivateKey.generate()


def key_description(key: PrivateKeyTypes | PublicKeyTypes) -> str:
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return f"RSA {key.key_size}"
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return f"EC {key.curve.name}"
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return "Ed25519"
    return type(key).__name__


def weak_key_reason(public_key: PublicKeyTypes) -> str | None:
    if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size < MIN_RSA_BITS:
        return f"weak key: RSA {public_key.key_size} bits (need at least {MIN_RSA_BITS})"
    if isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.key_size < 256:
        return f"weak key: EC {public_key.curve.name}"
    if not isinstance(
        public_key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey)
    ):
        return f"unsupported key type {type(public_key).__name__}"
    return None


def checked_key(key: PrivateKeyTypes, source: str) -> PrivateKey:
    """*key*, if wrapcert makes certificates with keys of its type and size; else an error
    saying why, naming *source*."""
    reason = weak_key_reason(key.public_key())
    # no reason means an RSA, EC or Ed25519 public key, so the private key is one of those too
    if reason is None and isinstance(
        key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)
    ):
        return key
    raise TlswrapError(f"{source}: {reason}")


def checked_ca_key(key: PrivateKeyTypes, source: str) -> IssuerKey:
    """*key*, if it can sign certificates (a CA's key, of any size); else an error naming
    *source*."""
    if isinstance(
        key,
        (
            rsa.RSAPrivateKey,
            ec.EllipticCurvePrivateKey,
            ed25519.Ed25519PrivateKey,
            ed448.Ed448PrivateKey,
            dsa.DSAPrivateKey,
        ),
    ):
        return key
    raise TlswrapError(f"{source}: cannot sign certificates with a {type(key).__name__}")


def key_pem(key: PrivateKeyTypes) -> bytes:
    """PKCS#8, unencrypted (``BEGIN PRIVATE KEY``), as ``openssl req -nodes`` writes it."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_name(rdns: Sequence[RDN]) -> x509.Name:
    """An x509 Name; string types follow OpenSSL's (C PrintableString, email IA5, rest UTF-8)."""
    for rdn in rdns:
        for oid, value in rdn:
            if oid in (COUNTRY_OID, "1.3.6.1.4.1.311.60.2.1.3") and not (
                len(value) == 2 and value.isascii()
            ):
                raise TlswrapError(
                    f"bad subject: country {value!r} must be a 2-letter code such as CA"
                )
    try:
        return x509.Name(
            [
                x509.RelativeDistinguishedName(
                    [x509.NameAttribute(ObjectIdentifier(o), v) for o, v in rdn]
                )
                for rdn in rdns
            ]
        )
    except ValueError as exc:
        raise TlswrapError(f"bad subject: {exc}") from None


def auto_san(name: x509.Name) -> list[tuple[str, str]]:
    """The SAN a certificate gets when none is given: each CN, as IP or DNS name."""
    out = []
    for attr in name.get_attributes_for_oid(NameOID.COMMON_NAME):
        value = str(attr.value)
        try:
            out.append(("IP", str(ipaddress.ip_address(value))))
        except ValueError:
            if _HOSTNAME.match(value):
                out.append(("DNS", value))
    return out


def _bit_string(bits: Iterable[int]) -> bytes:
    """DER BIT STRING with named bits (bit 0 = most significant), trailing zeros dropped."""
    bits = sorted(set(bits))
    if not bits:
        return b"\x03\x01\x00"
    nbytes = bits[-1] // 8 + 1
    value = bytearray(nbytes)
    for bit in bits:
        value[bit // 8] |= 0x80 >> (bit % 8)
    unused = 7 - bits[-1] % 8
    return bytes([0x03, nbytes + 1, unused]) + bytes(value)


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _general_name(kind: str, value: str) -> x509.GeneralName:
    if kind == "DNS":
        return x509.DNSName(value)
    if kind == "IP":
        return x509.IPAddress(ipaddress.ip_address(value))
    if kind == "email":
        return x509.RFC822Name(value)
    if kind == "URI":
        return x509.UniformResourceIdentifier(value)
    return x509.RegisteredID(ObjectIdentifier(value))


def san_extension(names: Iterable[tuple[str, str]]) -> x509.SubjectAlternativeName:
    return x509.SubjectAlternativeName([_general_name(k, v) for k, v in names])


def server_extensions(
    key: PrivateKeyTypes | PublicKeyTypes, san: Sequence[tuple[str, str]]
) -> list[ExtSpec]:
    """The modern defaults for a TLS server certificate, when no extension section is given."""
    usage = (0, 2) if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)) else (0,)
    specs = [
        ExtSpec("basicConstraints", True, (False, None), "<default>", None),
        ExtSpec("keyUsage", True, usage, "<default>", None),
        ExtSpec("extendedKeyUsage", False, ("1.3.6.1.5.5.7.3.1",), "<default>", None),
        ExtSpec("subjectKeyIdentifier", False, "hash", "<default>", None),
        ExtSpec("authorityKeyIdentifier", False, ("", None), "<default>", None),
    ]
    if san:
        specs.append(ExtSpec("subjectAltName", False, tuple(san), "<default>", None))
    return specs


def ca_extensions() -> list[ExtSpec]:
    """A CA that may sign end-entity certificates only (pathlen 0)."""
    return [
        ExtSpec("basicConstraints", True, (True, 0), "<default>", None),
        ExtSpec("keyUsage", True, (5, 6), "<default>", None),
        ExtSpec("subjectKeyIdentifier", False, "hash", "<default>", None),
    ]


def build_extensions(
    specs: Iterable[ExtSpec],
    subject_key: CertificatePublicKeyTypes,
    issuer_key: CertificatePublicKeyTypes | None = None,
    issuer_name: x509.Name | None = None,
    issuer_serial: int | None = None,
) -> list[tuple[x509.ExtensionType, bool]]:
    """Turn specs into cryptography extensions. *issuer_key* None means a CSR (no AKI)."""
    out: list[tuple[x509.ExtensionType, bool]] = []
    for spec in specs:
        try:
            ext = _extension(spec, subject_key, issuer_key, issuer_name, issuer_serial)
        except ValueError as exc:  # a value extconf let through that cryptography refuses
            raise ConfigError(spec.filename, spec.lineno, f"{spec.name}: {exc}") from None
        if ext is not None:
            out.append((ext, spec.critical))
    return out


def _extension(
    spec: ExtSpec,
    subject_key: CertificatePublicKeyTypes,
    issuer_key: CertificatePublicKeyTypes | None,
    issuer_name: x509.Name | None,
    issuer_serial: int | None,
) -> x509.ExtensionType | None:
    """One spec as a cryptography extension; None: none to add."""
    v = spec.value
    if spec.name == "basicConstraints":
        return x509.BasicConstraints(ca=v[0], path_length=v[1])
    if spec.name == "keyUsage":
        flags = set(v)
        return x509.KeyUsage(
            digital_signature=0 in flags, content_commitment=1 in flags,
            key_encipherment=2 in flags, data_encipherment=3 in flags,
            key_agreement=4 in flags, key_cert_sign=5 in flags, crl_sign=6 in flags,
            encipher_only=7 in flags, decipher_only=8 in flags,
        )  # fmt: skip
    if spec.name == "extendedKeyUsage":
        return x509.ExtendedKeyUsage([ObjectIdentifier(o) for o in v])
    if spec.name == "subjectAltName":
        return san_extension(v)
    if spec.name == "nsCertType":
        return x509.UnrecognizedExtension(NS_CERT_TYPE_OID, _bit_string(v))
    if spec.name == "nsComment":
        raw = v.encode("ascii")
        return x509.UnrecognizedExtension(NS_COMMENT_OID, b"\x16" + _der_length(len(raw)) + raw)
    if spec.name == "subjectKeyIdentifier":
        return None if v == "none" else x509.SubjectKeyIdentifier.from_public_key(subject_key)
    if spec.name == "authorityKeyIdentifier":
        if issuer_key is None:
            return None
        keyid = (
            x509.SubjectKeyIdentifier.from_public_key(issuer_key).digest
            if v[0] is not None
            else None
        )
        with_issuer = v[1] == "always" or (v[1] == "" and keyid is None)
        return x509.AuthorityKeyIdentifier(
            keyid,
            [x509.DirectoryName(issuer_name)] if with_issuer and issuer_name else None,
            issuer_serial if with_issuer and issuer_name else None,
        )
    raise TlswrapError(f"extension {spec.name} not supported")  # pragma: no cover - see extconf


def _hash_for(
    key: IssuerKey, md: str | None
) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | None:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    return _HASHES[md or "sha256"]


def issue(
    subject_key: CertificatePublicKeyTypes,
    subject: x509.Name,
    signer: IssuerKey,
    issuer: x509.Name,
    specs: Iterable[ExtSpec],
    days: int,
    md: str | None = None,
    now: datetime.datetime | None = None,
) -> x509.Certificate:
    """Sign a certificate for *subject_key* (a public key) with *signer*.

    Self-signed when *signer* is the private half of *subject_key* and *issuer* is *subject*.
    """
    if days < 1:
        raise TlswrapError(f"-days {days}: must be at least 1")
    now = (now or datetime.datetime.now(datetime.UTC)).replace(microsecond=0)
    if days > (most := (LAST_DATE - now).days):
        # openssl req refuses too (exit 1, no message); cryptography would overflow
        raise TlswrapError(
            f"-days {days}: the certificate would expire after 9999-12-31, the last day an X.509"
            f" date can hold; at most {most} days from now"
        )
    serial = x509.random_serial_number()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(subject_key)
        .serial_number(serial)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=days))
    )
    for ext, critical in build_extensions(specs, subject_key, signer.public_key(), issuer, serial):
        builder = builder.add_extension(ext, critical=critical)
    try:
        return builder.sign(signer, _hash_for(signer, md))
    except ValueError as exc:
        raise TlswrapError(f"cannot build the certificate: {exc}") from None


def build_csr(
    key: PrivateKey, subject: x509.Name, specs: Iterable[ExtSpec], md: str | None = None
) -> x509.CertificateSigningRequest:
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    for ext, critical in build_extensions(specs, key.public_key()):
        builder = builder.add_extension(ext, critical=critical)
    try:
        return builder.sign(key, _hash_for(key, md))
    except ValueError as exc:
        raise TlswrapError(f"cannot build the request: {exc}") from None


def has_cn(name: x509.Name) -> bool:
    return any(a.oid.dotted_string == CN_OID for a in name)
