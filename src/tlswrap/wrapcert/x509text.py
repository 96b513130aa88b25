"""Print certificates exactly as ``openssl x509`` (OpenSSL 3) does.

Pure: bytes in, text out. The certificate is read with a small DER reader rather than through
``cryptography`` so that what is printed is what is encoded: the string type of each attribute,
the order of the members of a multi-valued RDN, fractional seconds in a GeneralizedTime.

``openssl x509 -subject`` prints names with the ``oneline`` name option of OpenSSL 3
(``XN_FLAG_ONELINE``): short field names, `` = `` between name and value, ``, `` between RDNs,
`` + `` inside a multi-valued RDN, and RFC 2253 escaping in its quoting variant
(``ASN1_STRFLGS_ESC_QUOTE``): a value holding ``, + ; < >``, or starting with a blank or ``#``,
or ending with a blank, is put in double quotes; ``"`` and ``\\`` get a backslash; control
characters and every byte above 0x7f of the UTF-8 form print as ``\\XX`` (so UTF-8 text shows
as ``\\C3\\A9``: OpenSSL 3.0's default, whatever one might expect); a value that is not a
string type prints as ``#`` and the hex of its DER. See crypto/asn1/a_strex.c.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from tlswrap.errors import TlswrapError
from tlswrap.wrapcert.dn import SHORT_NAMES

__all__ = [
    "CertParts",
    "DERError",
    "fingerprint",
    "format_name",
    "format_time",
    "load_certificates",
    "parse_certificate",
    "show",
]


class DERError(TlswrapError):
    """The bytes are not the DER a certificate is made of."""


# --- a minimal DER reader -------------------------------------------------------------------


def read_tlv(data: bytes, pos: int = 0) -> tuple[int, bytes, int, int]:
    """Read one TLV at *pos*: (tag byte, content, start of the TLV, end of the TLV)."""
    start = pos
    if pos + 2 > len(data):
        raise DERError("truncated DER")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise DERError("high tag numbers are not supported")
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise DERError("bad DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    end = pos + length
    if end > len(data):
        raise DERError("truncated DER")
    return tag, data[pos:end], start, end


def read_all(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """All TLVs in *data*: (tag, content, whole encoding)."""
    out = []
    pos = 0
    while pos < len(data):
        tag, content, start, end = read_tlv(data, pos)
        out.append((tag, content, data[start:end]))
        pos = end
    return out


def decode_oid(content: bytes) -> str:
    arcs: list[int] = []
    value = 0
    for byte in content:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if not arcs:
        raise DERError("empty OBJECT IDENTIFIER")
    first = min(arcs[0] // 40, 2)
    return ".".join(map(str, [first, arcs[0] - 40 * first, *arcs[1:]]))


class CertParts:
    """The pieces of a certificate that the printers need, as encoded."""

    def __init__(self, der: bytes):
        self.der = der
        tag, cert, _, end = read_tlv(der)
        if tag != 0x30 or end != len(der):
            raise DERError("not a DER certificate")
        tag, tbs, _, _ = read_tlv(cert)
        if tag != 0x30:
            raise DERError("not a DER certificate")
        fields = read_all(tbs)
        if fields and fields[0][0] == 0xA0:
            fields = fields[1:]
        if len(fields) < 6:
            raise DERError("not a DER certificate")
        self.serial = fields[0][1]
        self.issuer = fields[2][1]
        validity = read_all(fields[3][1])
        if len(validity) != 2:
            raise DERError("bad validity")
        self.not_before = validity[0][:2]
        self.not_after = validity[1][:2]
        self.subject = fields[4][1]
        self.spki = fields[5][2]


def parse_certificate(der: bytes) -> CertParts:
    return CertParts(der)


# --- names ----------------------------------------------------------------------------------

ESC_2253, ESC_CTRL, ESC_MSB, ESC_QUOTE = 1, 2, 4, 8
FIRST_ESC_2253, LAST_ESC_2253 = 0x20, 0x40
_BS_ESC = ESC_2253 | FIRST_ESC_2253 | LAST_ESC_2253
ONELINE = ESC_2253 | ESC_CTRL | ESC_MSB | ESC_QUOTE

# OpenSSL's char_type table (crypto/asn1/charmap.h), the escaping bits only.
_CHAR_TYPE = [ESC_CTRL] * 32 + [0] * 95 + [ESC_CTRL]
_CHAR_TYPE[ord(" ")] = FIRST_ESC_2253 | LAST_ESC_2253 | ESC_QUOTE
_CHAR_TYPE[ord("#")] = FIRST_ESC_2253 | ESC_QUOTE
for _c in ",+;<>":
    _CHAR_TYPE[ord(_c)] = ESC_2253 | ESC_QUOTE
for _c in '"\\':
    _CHAR_TYPE[ord(_c)] = ESC_2253

# Bytes per character for each universal string tag; 0 = UTF-8 (a_strex.c's tag2nbyte).
_WIDTH = {12: 0, 18: 1, 19: 1, 20: 1, 22: 1, 23: 1, 24: 1, 26: 1, 28: 4, 30: 2}


def _esc_byte(c: int, flags: int, state: list[bool]) -> str:
    chflags = flags & ESC_MSB if c > 0x7F else _CHAR_TYPE[c] & flags
    if chflags & _BS_ESC:
        if chflags & ESC_QUOTE:
            state[0] = True
            return chr(c)
        return "\\" + chr(c)
    if chflags & (ESC_CTRL | ESC_MSB):
        return f"\\{c:02X}"
    return chr(c)


def format_string(tag: int, content: bytes, whole: bytes, flags: int = ONELINE) -> str:
    """One attribute value the way ``do_print_ex`` prints it with ``flags`` (UTF-8 convert)."""
    width = _WIDTH.get(tag, -1)
    if width == -1:
        return "#" + whole.hex().upper()
    if width == 0:
        chars = list(content)  # already UTF-8: printed byte by byte
        width = 1
        convert = False
    else:
        if len(content) % width:
            raise DERError("bad string length")
        chars = [
            int.from_bytes(content[i : i + width], "big") for i in range(0, len(content), width)
        ]
        convert = True
    state = [False]
    out: list[str] = []
    for index, c in enumerate(chars):
        extra = FIRST_ESC_2253 if index == 0 else 0
        if index == len(chars) - 1:
            extra = LAST_ESC_2253  # OpenSSL lets "last" replace "first" for one-char values
        if convert and c > 0x7F:
            if c > 0x10FFFF:
                raise DERError("character out of range in UniversalString")
            out.extend(
                _esc_byte(b, flags | extra, state) for b in chr(c).encode("utf-8", "surrogatepass")
            )
        else:
            out.append(_esc_byte(c, flags | extra, state))
    text = "".join(out)
    return f'"{text}"' if state[0] else text


def format_name(name_der_content: bytes) -> str:
    """A Name (the content of its SEQUENCE) in OpenSSL 3's ``oneline`` form."""
    rdns = []
    for tag, rdn, _ in read_all(name_der_content):
        if tag != 0x31:
            raise DERError("bad RDN")
        parts = []
        for atag, atv, _ in read_all(rdn):
            items = read_all(atv)
            if atag != 0x30 or len(items) != 2 or items[0][0] != 0x06:
                raise DERError("bad attribute")
            oid = decode_oid(items[0][1])
            vtag, vcontent, vwhole = items[1]
            parts.append(f"{SHORT_NAMES.get(oid, oid)} = {format_string(vtag, vcontent, vwhole)}")
        rdns.append(" + ".join(parts))
    return ", ".join(rdns)


# --- times ----------------------------------------------------------------------------------

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_UTC_RE = re.compile(rb"(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(Z?)\Z")
_GEN_RE = re.compile(rb"(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\.\d+)?(Z?)\Z")


def format_time(tag: int, content: bytes) -> str:
    """A UTCTime or GeneralizedTime as ``ASN1_TIME_print``: ``Nov 25 06:38:47 2026 GMT``."""
    frac = b""
    if tag == 0x17 and (m := _UTC_RE.match(content)):
        yy, mo, dd, hh, mi, ss, z = m.groups()
        year = int(yy) + (1900 if int(yy) >= 50 else 2000)
    elif tag == 0x18 and (m := _GEN_RE.match(content)):
        yyyy, mo, dd, hh, mi, ss, frac_or_none, z = m.groups()
        year = int(yyyy)
        frac = frac_or_none or b""
    else:
        return "Bad time value"
    month = int(mo)
    if not 1 <= month <= 12:
        return "Bad time value"
    return (
        f"{_MONTHS[month - 1]} {int(dd):2d} {int(hh):02d}:{int(mi):02d}:{int(ss):02d}"
        f"{frac.decode()} {year}{' GMT' if z else ''}"
    )


# --- files and the show command -------------------------------------------------------------

_PEM_RE = re.compile(
    rb"-----BEGIN (X509 CERTIFICATE|TRUSTED CERTIFICATE|CERTIFICATE)-----\r?\n"
    rb"(.*?)-----END \1-----",
    re.S,
)


def load_certificates(data: bytes, source: str = "<input>") -> list[bytes]:
    """Every certificate in *data* (PEM, any number; or one DER), as DER."""
    found = []
    for match in _PEM_RE.finditer(data):
        body = b"".join(line for line in match.group(2).splitlines() if line and b":" not in line)
        try:
            der = base64.b64decode(body, validate=False)
        except binascii.Error as exc:
            raise TlswrapError(f"{source}: bad base64 in PEM certificate") from exc
        if match.group(1) == b"TRUSTED CERTIFICATE":
            der = read_all(der)[0][2]  # the certificate, without OpenSSL's trust settings
        found.append(der)
    if not found and data[:1] == b"\x30":
        try:
            _, _, _, end = read_tlv(data)
            CertParts(data[:end])
        except DERError:
            pass
        else:
            found.append(data[:end])
    if not found:
        raise TlswrapError(f"{source}: no certificate found (expected PEM or DER)")
    return found


def fingerprint(der: bytes, digest: str = "sha1") -> str:
    return ":".join(f"{b:02X}" for b in hashlib.new(digest, der).digest())


def show(der: bytes, digest: str = "sha1", label: str | None = None) -> str:
    """The text of ``openssl x509 -subject -dates -fingerprint -noout`` for one certificate.

    OpenSSL labels the fingerprint with the digest's name as the user spelled it: ``SHA1`` by
    default, ``sha256`` after ``-sha256``; *label* overrides the upper-cased *digest*.
    """
    cert = CertParts(der)
    return (
        f"subject={format_name(cert.subject)}\n"
        f"notBefore={format_time(*cert.not_before)}\n"
        f"notAfter={format_time(*cert.not_after)}\n"
        f"{label or digest.upper()} Fingerprint={fingerprint(der, digest)}\n"
    )
