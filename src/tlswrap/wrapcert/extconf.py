"""X.509 v3 extensions written the ``openssl x509v3_config`` way, parsed into plain values.

Pure. ``parse_extension("keyUsage", "critical, digitalSignature", ...)`` returns an
:class:`ExtSpec`; the builders in :mod:`tlswrap.wrapcert.build` turn it into a real extension.
Every mistake is a :class:`ConfigError` at the line of the entry (the command line passes its own
"file" name, e.g. ``--san``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any

from tlswrap.errors import ConfigError
from tlswrap.wrapcert.dn import DOTTED, canonical_oid
from tlswrap.wrapcert.opensslconf import Conf, parse_number

__all__ = [
    "EKU_NAMES",
    "KEY_USAGE",
    "NS_CERT_TYPE",
    "ExtSpec",
    "SanNames",
    "parse_extension",
    "parse_san",
]

# subjectAltName entries: (kind, value), kind one of DNS, IP, email, URI, RID
SanNames = tuple[tuple[str, str], ...]

# (bit, long name, short name) as in OpenSSL's v3_bitst.c; both spellings are accepted.
KEY_USAGE = (
    (0, "Digital Signature", "digitalSignature"),
    (1, "Non Repudiation", "nonRepudiation"),
    (2, "Key Encipherment", "keyEncipherment"),
    (3, "Data Encipherment", "dataEncipherment"),
    (4, "Key Agreement", "keyAgreement"),
    (5, "Certificate Sign", "keyCertSign"),
    (6, "CRL Sign", "cRLSign"),
    (7, "Encipher Only", "encipherOnly"),
    (8, "Decipher Only", "decipherOnly"),
)
NS_CERT_TYPE = (
    (0, "SSL Client", "client"),
    (1, "SSL Server", "server"),
    (2, "S/MIME", "email"),
    (3, "Object Signing", "objsign"),
    (4, "Unused", "reserved"),
    (5, "SSL CA", "sslCA"),
    (6, "S/MIME CA", "emailCA"),
    (7, "Object Signing CA", "objCA"),
)
EKU_NAMES = {
    "serverAuth": "1.3.6.1.5.5.7.3.1",
    "clientAuth": "1.3.6.1.5.5.7.3.2",
    "codeSigning": "1.3.6.1.5.5.7.3.3",
    "emailProtection": "1.3.6.1.5.5.7.3.4",
    "timeStamping": "1.3.6.1.5.5.7.3.8",
    "OCSPSigning": "1.3.6.1.5.5.7.3.9",
    "TLS Web Server Authentication": "1.3.6.1.5.5.7.3.1",
    "TLS Web Client Authentication": "1.3.6.1.5.5.7.3.2",
    "Code Signing": "1.3.6.1.5.5.7.3.3",
    "E-mail Protection": "1.3.6.1.5.5.7.3.4",
    "Time Stamping": "1.3.6.1.5.5.7.3.8",
    "OCSP Signing": "1.3.6.1.5.5.7.3.9",
}
# Known to OpenSSL, not built by wrapcert: named so the message can say "not supported".
_UNSUPPORTED = frozenset({
    "issuerAltName", "authorityInfoAccess", "crlDistributionPoints", "certificatePolicies",
    "policyConstraints", "nameConstraints", "inhibitAnyPolicy", "policyMappings",
    "subjectInfoAccess", "tlsfeature", "nsBaseUrl", "nsRevocationUrl", "nsCaRevocationUrl",
    "nsRenewalUrl", "nsCaPolicyUrl", "nsSslServerName", "proxyCertInfo", "noCheck",
})  # fmt: skip
_SAN_KINDS = {"dns": "DNS", "ip": "IP", "email": "email", "uri": "URI", "rid": "RID"}
_BOOL = {"true": True, "y": True, "yes": True, "false": False, "n": False, "no": False}


@dataclass(frozen=True)
class ExtSpec:
    """One extension: its OpenSSL name, criticality and a plain payload.

    Payloads: basicConstraints ``(ca, pathlen|None)``; keyUsage, nsCertType: a tuple of bit
    numbers; extendedKeyUsage: a tuple of dotted OIDs; subjectAltName: a tuple of
    ``(kind, value)`` with kind one of DNS, IP, email, URI, RID; nsComment: the text;
    subjectKeyIdentifier: ``"hash"`` or ``"none"``; authorityKeyIdentifier:
    ``(keyid, issuer)``, each ``None``, ``""`` or ``"always"``.
    """

    name: str
    critical: bool
    value: Any
    filename: str
    lineno: int | None


def _items(value: str) -> list[str]:
    return [item.strip() for item in value.split(",")]


def _bits(
    table: tuple[tuple[int, str, str], ...], items: list[str], fail: Callable[[str], ConfigError]
) -> tuple[int, ...]:
    found = []
    for item in items:
        for bit, long, short in table:
            if item in (long, short):
                found.append(bit)
                break
        else:
            names = ", ".join(short for _, _, short in table)
            raise fail(f"unknown flag {item!r} (known: {names})")
    return tuple(sorted(set(found)))


def parse_san(value: str, filename: str, lineno: int | None, conf: Conf | None = None) -> SanNames:
    """``DNS:a, IP:1.2.3.4, email:x@y, URI:..., RID:1.2.3, @section`` -> ((kind, value), ...)."""

    def fail(line: int | None, msg: str) -> ConfigError:
        return ConfigError(filename, line, f"subjectAltName: {msg}")

    names: list[tuple[str, str]] = []
    pairs: list[tuple[str, str, int | None]] = []
    for item in _items(value):
        if item.startswith("@"):
            section = conf.section(item[1:]) if conf is not None else None
            if section is None:
                raise fail(lineno, f"section {item[1:]!r} not found")
            pairs.extend(
                (entry.name.split(".", 1)[0], entry.value.strip(), entry.lineno)
                for entry in section
            )
            continue
        kind, sep, text = item.partition(":")
        if not sep:
            raise fail(lineno, f"{item!r} needs a type, e.g. DNS:{item}")
        pairs.append((kind.strip(), text.strip(), lineno))
    for kind, text, line in pairs:
        canon = _SAN_KINDS.get(kind.lower())
        if canon is None:
            if kind in ("dirName", "otherName"):
                raise fail(line, f"{kind} is not supported")
            raise fail(line, f"unknown name type {kind!r}")
        if not text:
            raise fail(line, f"empty {canon} name")
        if canon == "IP":
            try:
                names.append((canon, str(ipaddress.ip_address(text))))
            except ValueError:
                raise fail(line, f"bad IP address {text!r}") from None
            continue
        if canon == "email" and text in ("copy", "move"):
            raise fail(line, f"email:{text} is not supported")
        if canon == "DNS" and (" " in text or text.endswith(".") or ".." in text):
            raise fail(line, f"bad DNS name {text!r}")
        try:
            names.append((canon, _ia5_name(canon, text)))
        except ValueError as exc:
            raise fail(line, str(exc)) from None
    return tuple(names)


def _a_label(domain: str) -> str:
    """*domain* with its labels in IDNA form (``bücher.example`` -> ``xn--bcher-kva.example``).

    A SAN name is an IA5String: ``openssl req -addext subjectAltName=DNS:bücher.example`` stores
    the UTF-8 bytes as they are, which is no valid IA5 and matches no name a client looks up.
    Clients look up the A-label, so that is what is written: IDNA 2008 with the UTS #46 mapping
    (``Bücher`` is ``bücher``), as browsers do. A leading ``*.`` stays a wildcard.
    """
    import idna  # a dependency of trio; only the rare non-ASCII name needs it

    wildcard = "*." if domain.startswith("*.") else ""
    try:
        return wildcard + idna.encode(domain[len(wildcard) :], uts46=True).decode("ascii")
    except UnicodeError as exc:  # idna.IDNAError and the codec errors it may pass on
        raise ValueError(f"bad DNS name {domain!r}: {exc}") from None


def _ia5_name(kind: str, text: str) -> str:
    """The IA5 (ASCII) form of a DNS, email, URI or RID name; ValueError saying why if none."""
    if kind == "RID":
        try:
            return canonical_oid(text)
        except ValueError as exc:
            raise ValueError(f"RID:{text}: bad OID: {exc}") from None
    if kind == "email":
        local, at, domain = text.rpartition("@")
        if not local.isascii():
            raise ValueError(
                f"email:{text}: the local part must be ASCII (an RFC 822 name is an IA5String; "
                "wrapcert does not make SmtpUTF8Mailbox names)"
            )
        address = local + at + (domain if domain.isascii() else _a_label(domain))
        if parseaddr(address) != ("", address.strip("<>")):  # as cryptography checks it
            raise ValueError(f"bad email address {text!r}")
        return address
    if text.isascii():
        return text
    if kind == "DNS":
        return _a_label(text)
    raise ValueError(
        f"{kind}:{text}: a URI must be ASCII (percent-encode it, and write the host as its xn--"
        " A-label)"
    )


def parse_extension(
    name: str, value: str, filename: str, lineno: int | None, conf: Conf | None = None
) -> ExtSpec:
    """Parse one ``name = value`` line of an extension section."""

    def fail(msg: str) -> ConfigError:
        return ConfigError(filename, lineno, f"{name}: {msg}")

    items = _items(value)
    critical = False
    if items and items[0] == "critical":
        critical = True
        items = items[1:]
    if not items or items == [""]:
        raise fail("no value")
    payload: Any
    if name == "basicConstraints":
        ca, pathlen = None, None
        for item in items:
            key, sep, val = item.partition(":")
            if key.upper() == "CA" and sep and val.strip().lower() in _BOOL:
                ca = _BOOL[val.strip().lower()]
            elif key.lower() == "pathlen" and sep and (n := parse_number(val)) is not None:
                pathlen = n
            else:
                raise fail(f"unknown item {item!r} (expected CA:TRUE, CA:FALSE or pathlen:N)")
        if ca is None:
            raise fail("CA:TRUE or CA:FALSE is required")
        if pathlen is not None and not ca:
            raise fail("pathlen only makes sense with CA:TRUE")
        payload = (ca, pathlen)
    elif name == "keyUsage":
        payload = _bits(KEY_USAGE, items, fail)
    elif name == "nsCertType":
        payload = _bits(NS_CERT_TYPE, items, fail)
    elif name == "extendedKeyUsage":
        oids = []
        for item in items:
            oid = EKU_NAMES.get(item)
            if oid is None and not DOTTED.match(item):
                raise fail(f"unknown purpose {item!r} (known: serverAuth, clientAuth, ...)")
            try:
                oids.append(oid or canonical_oid(item))
            except ValueError as exc:
                raise fail(f"bad OID {item!r}: {exc}") from None
        payload = tuple(oids)
    elif name == "subjectAltName":
        payload = parse_san(", ".join(items), filename, lineno, conf)
    elif name == "nsComment":
        text = value.strip()
        if not text.isascii():
            raise fail("the comment must be ASCII (it is an IA5String)")
        payload = text
    elif name == "subjectKeyIdentifier":
        if items not in (["hash"], ["none"]):
            raise fail("only 'hash' or 'none' is supported")
        payload = items[0]
    elif name == "authorityKeyIdentifier":
        keyid = issuer = None
        for item in items:
            key, _, mode = item.partition(":")
            if key not in ("keyid", "issuer") or mode not in ("", "always"):
                raise fail(f"unknown item {item!r} (expected keyid[:always], issuer[:always])")
            if key == "keyid":
                keyid = mode
            else:
                issuer = mode
        payload = (keyid, issuer)
    elif name in _UNSUPPORTED:
        raise ConfigError(filename, lineno, f"extension {name!r} is not supported by wrapcert")
    else:
        raise ConfigError(filename, lineno, f"unknown extension {name!r}")
    return ExtSpec(name, critical, payload, filename, lineno)


def parse_section(conf: Conf, section: str, ref_lineno: int | None) -> list[ExtSpec]:
    """Every extension of *section*; *ref_lineno* is where the section was named."""
    entries = conf.section(section)
    if entries is None:
        raise conf.error(ref_lineno, f"extension section [{section}] not found")
    specs: dict[str, ExtSpec] = {}
    for entry in entries:
        specs[entry.name] = parse_extension(
            entry.name, entry.value, conf.filename, entry.lineno, conf
        )
    return list(specs.values())
