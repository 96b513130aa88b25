"""Distinguished-name attributes: OpenSSL's names for them and the ``-subj`` syntax.

Pure. The table gives each attribute OpenSSL's short name (what ``openssl x509 -subject``
prints) and long name; both are accepted wherever a field is named, as ``OBJ_txt2nid`` does
(case matters: ``SN`` is the surname, ``serialNumber`` the serial number). A dotted OID is
accepted too.
"""

from __future__ import annotations

import re

from tlswrap.errors import TlswrapError

__all__ = ["ATTRIBUTES", "RDN", "Attr", "canonical_oid", "format_subj", "lookup", "parse_subj"]

Attr = tuple[str, str]  # (dotted OID, value)
RDN = list[Attr]

# (dotted OID, short name, long name), as in OpenSSL's objects.txt.
ATTRIBUTES: tuple[tuple[str, str, str], ...] = (
    ("2.5.4.3", "CN", "commonName"),
    ("2.5.4.4", "SN", "surname"),
    ("2.5.4.5", "serialNumber", "serialNumber"),
    ("2.5.4.6", "C", "countryName"),
    ("2.5.4.7", "L", "localityName"),
    ("2.5.4.8", "ST", "stateOrProvinceName"),
    ("2.5.4.9", "street", "streetAddress"),
    ("2.5.4.10", "O", "organizationName"),
    ("2.5.4.11", "OU", "organizationalUnitName"),
    ("2.5.4.12", "title", "title"),
    ("2.5.4.13", "description", "description"),
    ("2.5.4.15", "businessCategory", "businessCategory"),
    ("2.5.4.16", "postalAddress", "postalAddress"),
    ("2.5.4.17", "postalCode", "postalCode"),
    ("2.5.4.18", "postOfficeBox", "postOfficeBox"),
    ("2.5.4.20", "telephoneNumber", "telephoneNumber"),
    ("2.5.4.41", "name", "name"),
    ("2.5.4.42", "GN", "givenName"),
    ("2.5.4.43", "initials", "initials"),
    ("2.5.4.44", "generationQualifier", "generationQualifier"),
    ("2.5.4.45", "x500UniqueIdentifier", "x500UniqueIdentifier"),
    ("2.5.4.46", "dnQualifier", "dnQualifier"),
    ("2.5.4.65", "pseudonym", "pseudonym"),
    ("2.5.4.72", "role", "role"),
    ("2.5.4.97", "organizationIdentifier", "organizationIdentifier"),
    ("1.2.840.113549.1.9.1", "emailAddress", "emailAddress"),
    ("1.2.840.113549.1.9.2", "unstructuredName", "unstructuredName"),
    ("0.9.2342.19200300.100.1.1", "UID", "userId"),
    ("0.9.2342.19200300.100.1.25", "DC", "domainComponent"),
    ("1.3.6.1.4.1.311.60.2.1.1", "jurisdictionL", "jurisdictionLocalityName"),
    ("1.3.6.1.4.1.311.60.2.1.2", "jurisdictionST", "jurisdictionStateOrProvinceName"),
    ("1.3.6.1.4.1.311.60.2.1.3", "jurisdictionC", "jurisdictionCountryName"),
)

SHORT_NAMES = {oid: sn for oid, sn, _ in ATTRIBUTES}
_BY_NAME = {sn: oid for oid, sn, _ in ATTRIBUTES} | {ln: oid for oid, _, ln in ATTRIBUTES}
DOTTED = re.compile(r"[0-9]+(\.[0-9]+)+\Z")  # written as an OID; see canonical_oid

# What an OID may hold to be encoded here: cryptography's ObjectIdentifier takes subidentifiers
# up to 2**128-1 and 63 bytes of DER content (a larger arc fails, or panics for the first
# subidentifier 40*X+Y); OpenSSL takes arcs of any size. X.660 limits the first arc to 0-2 and,
# under 0 and 1, the second to 0-39 (OpenSSL: "second number too large").
MAX_ARC = 2**128 - 1
MAX_OID_BYTES = 63
_TOO_LARGE = "an arc is too large (wrapcert takes arcs up to 2**128-1)"

CN_OID = "2.5.4.3"
COUNTRY_OID = "2.5.4.6"


def canonical_oid(text: str) -> str:
    """*text*, a dotted OID, in canonical form (``1.2.03`` is ``1.2.3``, as OpenSSL reads it);
    ValueError saying why when it is no OID or one that cannot be encoded."""
    if not DOTTED.match(text):
        raise ValueError("not a dotted OID such as 1.2.3")
    digits = [arc.lstrip("0") or "0" for arc in text.split(".")]
    if any(len(arc) > len(str(MAX_ARC)) for arc in digits):  # before int(): no 5000-digit ints
        raise ValueError(_TOO_LARGE)
    arcs = [int(arc) for arc in digits]
    if arcs[0] > 2:
        raise ValueError("the first arc must be 0, 1 or 2")
    if arcs[0] < 2 and arcs[1] >= 40:
        raise ValueError("the second arc must be below 40 when the first is 0 or 1")
    subids = [40 * arcs[0] + arcs[1], *arcs[2:]]
    if max(subids) > MAX_ARC:
        raise ValueError(_TOO_LARGE)
    if sum(max(1, -(-n.bit_length() // 7)) for n in subids) > MAX_OID_BYTES:
        raise ValueError(f"too long (at most {MAX_OID_BYTES} bytes encoded)")
    return ".".join(map(str, arcs))


def lookup(name: str) -> str | None:
    """The dotted OID for an attribute name (short, long or dotted), or None if unknown.

    A dotted name that cannot be encoded is a :class:`TlswrapError` saying why.
    """
    oid = _BY_NAME.get(name)
    if oid is None and DOTTED.match(name):
        try:
            oid = canonical_oid(name)
        except ValueError as exc:
            raise TlswrapError(f"bad OID {name!r}: {exc}") from None
    return oid


def parse_subj(text: str) -> list[RDN]:
    """Parse openssl's ``-subj`` form ``/type=value/type=value+type=value``.

    A backslash keeps the next character (``\\/``, ``\\+``, ``\\=``). Like ``openssl req``, an
    attribute with an empty value is left out. Unknown attribute names are an error here (openssl
    only warns and drops them, which silently loses a field).
    """
    if not text.startswith("/"):
        raise TlswrapError(f"subject {text!r} must start with '/', e.g. /C=CA/O=Example/CN=host")
    rdns: list[RDN] = []
    rdn: RDN = []
    key: list[str] = []
    val: list[str] = []
    in_value = False
    i = 1

    def finish(end_rdn: bool) -> None:
        nonlocal rdn, in_value
        name = "".join(key)
        if not name and not in_value and not rdn:
            return  # an empty segment, as in a trailing '/'
        if not in_value:
            raise TlswrapError(f"subject {text!r}: missing '=' after {name!r}")
        try:
            oid = lookup(name)
        except TlswrapError as exc:
            raise TlswrapError(f"subject {text!r}: {exc}") from None
        if oid is None:
            raise TlswrapError(f"subject {text!r}: unknown attribute {name!r}")
        value = "".join(val)
        if value:
            rdn.append((oid, value))
        key.clear()
        val.clear()
        in_value = False
        if end_rdn and rdn:
            rdns.append(rdn)
            rdn = []

    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            (val if in_value else key).append(text[i + 1])
            i += 2
            continue
        if ch == "/":
            finish(True)
        elif ch == "+" and in_value:
            finish(False)
        elif ch == "=" and not in_value:
            in_value = True
        else:
            (val if in_value else key).append(ch)
        i += 1
    if key or in_value:
        finish(True)
    if rdn:
        rdns.append(rdn)
    if not rdns:
        raise TlswrapError(f"subject {text!r} has no attributes")
    return rdns


def _escape_subj(value: str) -> str:
    return re.sub(r"([\\/+])", r"\\\1", value)


def format_subj(rdns: list[RDN]) -> str:
    """The ``-subj`` text for *rdns* (inverse of :func:`parse_subj`)."""
    parts = (
        "+".join(f"{SHORT_NAMES.get(oid, oid)}={_escape_subj(v)}" for oid, v in rdn) for rdn in rdns
    )
    return "/" + "/".join(parts)
