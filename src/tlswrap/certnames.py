"""Names in certificates: which certificate serves a server name, and who a client is.

Pure: certificates come in as ``cryptography`` objects, names as text; nothing is read here.

- ``match_host(pattern, host)`` is RFC 6125 section 6.4.3 as browsers apply it: a ``*`` only as
  the whole left-most label, standing for exactly one non-empty label, and never directly
  under a top-level domain (``*.org``). Case-insensitive, a final dot ignored.
- ``cert_names(cert)``: the DNS names a server certificate is for: its subjectAltName DNS
  entries, or, without any, its Common Name (RFC 6125 allows the fallback; stunnel and old
  certificates rely on it).
- ``choose(table, name)``: the first entry whose names hold ``name`` exactly, else the first
  whose wildcard matches it, else None (the caller's default).
- ``PeerIdentity``: a verified client certificate as the log line, an exec'd program's
  environment (stunnel's SSL_CLIENT_DN and SSL_CLIENT_I_DN, and mod_ssl's fuller set) and the
  PROXY v2 header see it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

T = TypeVar("T")


def _labels(name: str) -> list[str]:
    return name.lower().rstrip(".").split(".")


def match_host(pattern: str, host: str) -> bool:
    """Whether the certificate name ``pattern`` (maybe ``*.example.org``) covers ``host``."""
    want, got = _labels(pattern), _labels(host)
    if not host or not pattern or len(want) != len(got) or "" in got:
        return False
    if want[0] != "*":
        return want == got
    if len(want) < 3 or any("*" in label for label in want[1:]):
        return False  # "*.org" would be a whole top-level domain; one wildcard only
    return want[1:] == got[1:]


def cert_names(cert: x509.Certificate) -> tuple[str, ...]:
    """The DNS names ``cert`` serves: its SAN DNS entries, or else its Common Names."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = tuple(name.lower().rstrip(".") for name in san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        dns = ()
    if dns:
        return dns
    return tuple(str(attr.value).lower().rstrip(".")
                 for attr in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME))


def choose(table: Sequence[tuple[Iterable[str], T]], name: str | None) -> T | None:
    """The item for server name ``name``: an exact name first, then a wildcard; None if none
    (or no name)."""
    if not name:
        return None
    host = name.lower().rstrip(".")
    for names, item in table:
        if any(n == host for n in names):
            return item
    for names, item in table:
        if any(n.startswith("*.") and match_host(n, host) for n in names):
            return item
    return None


def _san(cert: x509.Certificate) -> x509.SubjectAlternativeName | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None


def email_addresses(cert: x509.Certificate) -> tuple[str, ...]:
    """The certificate's email addresses: SAN rfc822Name entries, then subject emailAddress."""
    san = _san(cert)
    found = list(san.get_values_for_type(x509.RFC822Name)) if san else []
    found += [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)]
    return tuple(found)


def check_names(cert: x509.Certificate, hosts: Sequence[str], emails: Sequence[str],
                ips: Sequence[str]) -> str | None:
    """stunnel's checkHost/checkEmail/checkIP on a peer certificate: the kind that fails
    ("host", "email" or "ip"), or None. Each kind given must match one of its values."""
    if hosts and not any(match_host(pattern, host) for pattern in cert_names(cert)
                         for host in hosts):
        return "host"
    if emails:
        have = {e.lower() for e in email_addresses(cert)}
        if not any(e.lower() in have for e in emails):
            return "email"
    if ips:
        san = _san(cert)
        have_ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} if san else set()
        if not any(str(ipaddress.ip_address(ip)) in have_ips for ip in ips):
            return "ip"
    return None


def oneline(name: x509.Name) -> str:
    """An x509.Name as OpenSSL's X509_NAME_oneline: /C=CA/O=Example/CN=mail.example.org."""
    def short(attr: x509.NameAttribute[Any]) -> str:
        return "emailAddress" if attr.oid == NameOID.EMAIL_ADDRESS else attr.rfc4514_attribute_name

    def text(value: str | bytes) -> str:
        return value if isinstance(value, str) else value.hex()

    return "".join(f"/{short(a)}={text(a.value)}" for rdn in name.rdns for a in rdn)


@dataclass(frozen=True)
class PeerIdentity:
    """A peer's certificate, as text: who it names, who issued it, which one it is."""

    subject: str  # X509_NAME_oneline form, as stunnel's SSL_CLIENT_DN
    issuer: str
    serial: str  # upper-case hex, as mod_ssl's SSL_CLIENT_M_SERIAL
    sha256: str  # lower-case hex of the DER
    cn: str | None
    emails: tuple[str, ...]
    not_before: str
    not_after: str
    verified: str  # "SUCCESS", "NONE" or "FAILED:reason" (mod_ssl's SSL_CLIENT_VERIFY)

    @classmethod
    def of(cls, cert: x509.Certificate, verified: str = "SUCCESS") -> PeerIdentity:
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return cls(subject=oneline(cert.subject), issuer=oneline(cert.issuer),
                   serial=f"{cert.serial_number:X}",
                   sha256=cert.fingerprint(hashes.SHA256()).hex(),
                   cn=str(cns[0].value) if cns else None, emails=email_addresses(cert),
                   not_before=f"{cert.not_valid_before_utc:%b %d %H:%M:%S %Y} GMT",
                   not_after=f"{cert.not_valid_after_utc:%b %d %H:%M:%S %Y} GMT",
                   verified=verified)

    def environment(self) -> dict[str, str]:
        """The variables an exec'd program gets: stunnel's two and mod_ssl's names."""
        env = {"SSL_CLIENT_DN": self.subject, "SSL_CLIENT_I_DN": self.issuer,
               "SSL_CLIENT_S_DN": self.subject, "SSL_CLIENT_M_SERIAL": self.serial,
               "SSL_CLIENT_V_START": self.not_before, "SSL_CLIENT_V_END": self.not_after,
               "SSL_CLIENT_VERIFY": self.verified,
               "SSL_CLIENT_CERT_SHA256": self.sha256}
        if self.cn is not None:
            env["SSL_CLIENT_S_DN_CN"] = self.cn
        for i, email in enumerate(self.emails):
            env[f"SSL_CLIENT_SAN_Email_{i}"] = email
        return env

    def describe(self, role: str = "client") -> str:
        """For the log line: names quoted with repr, since the peer chose them."""
        emails = f", email {', '.join(self.emails)}" if self.emails else ""
        return (f"{role} certificate {self.subject!r} issued by {self.issuer!r}, serial "
                f"{self.serial}, sha256 {self.sha256}{emails}, verify {self.verified}")
