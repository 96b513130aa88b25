"""Distinguished-name attributes: OpenSSL's names for them and the ``-subj`` syntax.

Pure. The table gives each attribute OpenSSL's short name (what ``openssl x509 -subject``
prints) and long name; both are accepted wherever a field is named, as ``OBJ_txt2nid`` does
(case matters: ``SN`` is the surname, ``serialNumber`` the serial number). A dotted OID is
accepted too.
"""

from __future__ import annotations

import re

from tlswrap.errors import TlswrapError

__all__ = ["ATTRIBUTES", "RDN", "Attr", "format_subj", "lookup", "parse_subj"]

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
_DOTTED = re.compile(r"[0-2](\.(0|[1-9][0-9]*))+\Z")

CN_OID = "2.5.4.3"
COUNTRY_OID = "2.5.4.6"


def lookup(name: str) -> str | None:
    """The dotted OID for an attribute name (short, long or dotted), or None."""
    oid = _BY_NAME.get(name)
    if oid is None and _DOTTED.match(name):
        oid = name
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
        oid = lookup(name)
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
