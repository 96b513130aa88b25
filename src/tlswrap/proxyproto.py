"""The PROXY protocol, versions 1 and 2: a pure codec with no networking code at all.

A proxy that relays a connection sends one header before any other byte, saying who the real
client was. The format is haproxy's "The PROXY protocol, Versions 1 & 2" (doc/proxy-protocol.txt
in haproxy's source; section numbers below refer to it):

- version 1 (section 2.1) is one US-ASCII line of at most 107 bytes,
  ``PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\\r\\n``, or ``PROXY UNKNOWN\\r\\n``;
- version 2 (section 2.2) is binary: the 12-byte ``PP2_SIGNATURE``, a version/command byte, an
  address family/transport byte, a 16-bit length, the addresses, then type-length-value
  vectors (TLVs) such as ``PP2_TYPE_SSL``, which carries the client's TLS version, cipher and
  certificate name in sub-TLVs of its own (section 2.2.6).

``encode_v1`` and ``encode_v2`` build headers; ``decode`` reads either version from the start
of a byte buffer and is incremental in the h11 way: it returns None, meaning "I need more
data", until a whole header is there, and raises ``ProxyProtocolError`` as soon as the bytes
cannot become a valid header. The caller owns the socket, the timeout and the decision of
which peers may send a header at all (section 5: never guess whether one is present).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable
from dataclasses import dataclass

# -- version 1 (section 2.1) ------------------------------------------------------------------
V1_PREFIX = b"PROXY "
MAX_V1_LINE = 107  # "PROXY UNKNOWN ffff:...:ffff ffff:...:ffff 65535 65535\r\n", CRLF included

# -- version 2 (section 2.2) ------------------------------------------------------------------
PP2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
PP2_HEADER_SIZE = 16  # signature, version/command, family/transport, length
PP2_VERSION = 0x2  # the high nibble of the 13th byte

# commands: the low nibble of the 13th byte
LOCAL = 0x0  # the proxy's own connection (a health check): use the real endpoints
PROXY = 0x1  # relayed on behalf of the client the addresses name

# address families: the high nibble of the 14th byte
AF_UNSPEC = 0x0
AF_INET = 0x1
AF_INET6 = 0x2
AF_UNIX = 0x3
# transport protocols: its low nibble
STREAM = 0x1
DGRAM = 0x2
# the 14th byte as a whole: the combinations the spec defines
UNSPEC = 0x00
TCP4 = 0x11
UDP4 = 0x12
TCP6 = 0x21
UDP6 = 0x22
UNIX_STREAM = 0x31
UNIX_DGRAM = 0x32
_ADDRESS_SIZE = {UNSPEC: 0, TCP4: 12, UDP4: 12, TCP6: 36, UDP6: 36, UNIX_STREAM: 216,
                 UNIX_DGRAM: 216}
_FAMILY_NAME = {UNSPEC: "UNSPEC", TCP4: "TCP4", UDP4: "UDP4", TCP6: "TCP6", UDP6: "UDP6",
                UNIX_STREAM: "UNIX_STREAM", UNIX_DGRAM: "UNIX_DGRAM"}

# TLV types (section 2.2)
PP2_TYPE_ALPN = 0x01
PP2_TYPE_AUTHORITY = 0x02
PP2_TYPE_CRC32C = 0x03
PP2_TYPE_NOOP = 0x04
PP2_TYPE_UNIQUE_ID = 0x05
PP2_TYPE_SSL = 0x20
PP2_SUBTYPE_SSL_VERSION = 0x21
PP2_SUBTYPE_SSL_CN = 0x22
PP2_SUBTYPE_SSL_CIPHER = 0x23
PP2_SUBTYPE_SSL_SIG_ALG = 0x24
PP2_SUBTYPE_SSL_KEY_ALG = 0x25
PP2_SUBTYPE_SSL_GROUP = 0x26
PP2_SUBTYPE_SSL_SIG_SCHEME = 0x27
PP2_SUBTYPE_SSL_CLIENT_CERT = 0x28
PP2_TYPE_NETNS = 0x30

# the <client> bit field of PP2_TYPE_SSL (section 2.2.6)
PP2_CLIENT_SSL = 0x01  # the client connected over TLS
PP2_CLIENT_CERT_CONN = 0x02  # ... and sent a certificate on this connection
PP2_CLIENT_CERT_SESS = 0x04  # ... or at least once in the TLS session it resumed

# postfix's smtpd/postscreen refuse a longer header: the 536-byte minimum TCP segment the spec
# designs both formats to fit in (section 2)
POSTFIX_MAX_HEADER = 536

# The longest values tlswrap can put in a v2 header: OpenSSL's longest version and cipher names
# (TLSv1.3; ECDHE-ECDSA-ARIA256-GCM-SHA384), the longest server name OpenSSL takes
# (TLSEXT_MAXLEN_host_name) and RFC 5280's bound on a Common Name (ub-common-name: 64
# characters, up to 4 bytes each in UTF-8).
LONGEST_VERSION = 7
LONGEST_CIPHER = 30
LONGEST_AUTHORITY = 255
LONGEST_CN = 64 * 4
LONGEST_SIG_ALG = 32  # OpenSSL's names: sha512WithRSAEncryption is 23
LONGEST_KEY_ALG = 16  # haproxy's form: RSA16384, EC521, ED25519
LONGEST_UNIQUE_ID = 32  # tlswrap's logId values: at most 21 characters

_V2_FIXED = struct.Struct("!12sBBH")
_V2_INET = struct.Struct("!4s4sHH")
_V2_INET6 = struct.Struct("!16s16sHH")
_TLV_HEAD = struct.Struct("!BH")
_SSL_HEAD = struct.Struct("!BI")
_CRC = struct.Struct("!I")
_MAX_LENGTH = 0xFFFF

Address = tuple[str, int]
"""An IP address in its canonical text form (``ipaddress``'s ``str()``) and a port."""
TLV = tuple[int, bytes]
"""A type-length-value vector as (type, value); the length is the value's."""


class ProxyProtocolError(ValueError):
    """Bytes from a peer that are not a valid PROXY protocol header.

    Not a user mistake, so not a ``TlswrapError``: the caller drops the connection (section
    2.1: "any sequence which does not exactly match the protocol must be discarded and cause
    the receiver to abort the connection") and logs this message.
    """


@dataclass(frozen=True, slots=True)
class SSLInfo:
    """The value of a ``PP2_TYPE_SSL`` TLV (section 2.2.6): the client's side of TLS.

    ``client`` is the ``PP2_CLIENT_*`` bit field; ``verify`` is zero only when the client sent
    a certificate and it verified (hence the default 1: claiming nothing). The text fields are
    the sub-TLVs, left out when None: US-ASCII names, except ``cn``, the client certificate's
    Common Name, in UTF-8. ``client_cert`` is its DER. Sub-TLVs of other types are kept in
    ``extra`` so a header read and written again loses nothing.
    """

    client: int = PP2_CLIENT_SSL
    verify: int = 1
    version: str | None = None
    cipher: str | None = None
    sig_alg: str | None = None
    key_alg: str | None = None
    cn: str | None = None
    group: str | None = None
    sig_scheme: str | None = None
    client_cert: bytes | None = None
    extra: tuple[TLV, ...] = ()

    def to_tlv(self) -> TLV:
        """This value as a ``(PP2_TYPE_SSL, bytes)`` TLV, sub-TLVs in haproxy's order."""
        if not 0 <= self.client <= 0xFF or not 0 <= self.verify <= 0xFFFFFFFF:
            raise ValueError(f"SSL client flags {self.client} or verify {self.verify} out of range")
        subs: list[TLV] = [
            (subtype, value.encode("utf-8" if subtype == PP2_SUBTYPE_SSL_CN else "ascii"))
            for subtype, value in ((PP2_SUBTYPE_SSL_VERSION, self.version),
                                   (PP2_SUBTYPE_SSL_CN, self.cn),
                                   (PP2_SUBTYPE_SSL_CIPHER, self.cipher),
                                   (PP2_SUBTYPE_SSL_SIG_ALG, self.sig_alg),
                                   (PP2_SUBTYPE_SSL_KEY_ALG, self.key_alg),
                                   (PP2_SUBTYPE_SSL_GROUP, self.group),
                                   (PP2_SUBTYPE_SSL_SIG_SCHEME, self.sig_scheme))
            if value is not None
        ]
        if self.client_cert is not None:
            subs.append((PP2_SUBTYPE_SSL_CLIENT_CERT, self.client_cert))
        subs.extend(self.extra)
        return PP2_TYPE_SSL, _SSL_HEAD.pack(self.client, self.verify) + _pack_tlvs(subs)

    @classmethod
    def from_tlv(cls, value: bytes) -> SSLInfo:
        """Parse the value of a ``PP2_TYPE_SSL`` TLV (without its type and length).

        Raises ``ProxyProtocolError`` when it is shorter than its 5 fixed bytes, a sub-TLV
        overruns it, a known sub-TLV appears twice, or a name is not in its encoding.
        """
        if len(value) < _SSL_HEAD.size:
            raise ProxyProtocolError(
                f"PROXY v2: SSL TLV of {len(value)} bytes, shorter than its 5 fixed bytes")
        client, verify = _SSL_HEAD.unpack_from(value)
        names: dict[int, str] = {}
        client_cert: bytes | None = None
        extra: list[TLV] = []
        for subtype, sub in _parse_tlvs(value, _SSL_HEAD.size, len(value), "SSL sub-TLV"):
            if subtype in _SSL_TEXT:
                if subtype in names:
                    raise ProxyProtocolError(f"PROXY v2: SSL sub-TLV {subtype:#04x} twice")
                encoding = "utf-8" if subtype == PP2_SUBTYPE_SSL_CN else "ascii"
                try:
                    names[subtype] = sub.decode(encoding)
                except UnicodeDecodeError:
                    raise ProxyProtocolError(
                        f"PROXY v2: SSL sub-TLV {subtype:#04x} is not {encoding}: {sub!r}"
                    ) from None
            elif subtype == PP2_SUBTYPE_SSL_CLIENT_CERT:
                if client_cert is not None:
                    raise ProxyProtocolError(f"PROXY v2: SSL sub-TLV {subtype:#04x} twice")
                client_cert = sub
            else:
                extra.append((subtype, sub))
        return cls(client=client, verify=verify,
                   version=names.get(PP2_SUBTYPE_SSL_VERSION),
                   cipher=names.get(PP2_SUBTYPE_SSL_CIPHER),
                   sig_alg=names.get(PP2_SUBTYPE_SSL_SIG_ALG),
                   key_alg=names.get(PP2_SUBTYPE_SSL_KEY_ALG),
                   cn=names.get(PP2_SUBTYPE_SSL_CN),
                   group=names.get(PP2_SUBTYPE_SSL_GROUP),
                   sig_scheme=names.get(PP2_SUBTYPE_SSL_SIG_SCHEME),
                   client_cert=client_cert, extra=tuple(extra))


_SSL_TEXT = frozenset({PP2_SUBTYPE_SSL_VERSION, PP2_SUBTYPE_SSL_CN, PP2_SUBTYPE_SSL_CIPHER,
                       PP2_SUBTYPE_SSL_SIG_ALG, PP2_SUBTYPE_SSL_KEY_ALG, PP2_SUBTYPE_SSL_GROUP,
                       PP2_SUBTYPE_SSL_SIG_SCHEME})


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """One PROXY header, as ``decode`` reads it and ``encode_v2`` writes it.

    ``command`` is ``PROXY`` or ``LOCAL``. ``source`` is the real client and ``destination``
    the address it connected to; both are None together, meaning "use the connection's own
    endpoints": always for ``LOCAL`` (a health check), and for ``PROXY`` over
    ``PROXY UNKNOWN``, the ``UNSPEC`` family, or a unix-socket family, which this codec reads
    as ``UNSPEC`` (section 2.2 allows that fallback). ``transport`` is ``STREAM`` (TCP) or
    ``DGRAM`` (UDP). ``tlvs`` are the v2 TLVs in wire order, unparsed (a ``PP2_TYPE_SSL``
    value has been checked by ``decode`` and reads back with ``ssl()``). ``version`` says which
    format the header came in (1 or 2); the encoders ignore it.
    """

    command: int = PROXY
    source: Address | None = None
    destination: Address | None = None
    tlvs: tuple[TLV, ...] = ()
    transport: int = STREAM
    version: int = 2

    @property
    def family(self) -> int:
        """The v2 family/transport byte these addresses take: TCP4, UDP6, UNSPEC..."""
        if self.source is None:
            return UNSPEC
        inet = AF_INET6 if ":" in self.source[0] else AF_INET
        return inet << 4 | self.transport

    def tlv(self, tlv_type: int) -> bytes | None:
        """The value of the first TLV of ``tlv_type``, or None if there is none."""
        return next((value for kind, value in self.tlvs if kind == tlv_type), None)

    def ssl(self) -> SSLInfo | None:
        """The first ``PP2_TYPE_SSL`` TLV, parsed, or None if there is none."""
        value = self.tlv(PP2_TYPE_SSL)
        return None if value is None else SSLInfo.from_tlv(value)


def fits_postfix(header: bytes) -> bool:
    """True if postfix accepts a header this long (``POSTFIX_MAX_HEADER``, 536 bytes)."""
    return len(header) <= POSTFIX_MAX_HEADER


# -- CRC32C (RFC 4960 appendix B: Castagnoli, reflected, init and final xor 0xFFFFFFFF) ----------
def _crc32c_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes | bytearray | memoryview) -> int:
    """The CRC32C of ``data`` (``crc32c(b"123456789") == 0xE3069283``)."""
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# -- encoding -----------------------------------------------------------------------------------
def _ip(address: Address, what: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    host, port = address
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"{what} port {port} out of range")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{what} address {host!r} is not an IP address") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        raise ValueError(f"{what} address {host!r} has a scope, which PROXY cannot carry")
    return ip


def _endpoints(source: Address | None, destination: Address | None) -> tuple[
        ipaddress.IPv4Address | ipaddress.IPv6Address,
        ipaddress.IPv4Address | ipaddress.IPv6Address] | None:
    if source is None and destination is None:
        return None
    if source is None or destination is None:
        raise ValueError("source and destination must both be given, or neither")
    src, dst = _ip(source, "source"), _ip(destination, "destination")
    if src.version != dst.version:
        raise ValueError(f"source {src} and destination {dst} are not of one address family")
    return src, dst


def encode_v1(source: Address | None, destination: Address | None) -> bytes:
    """The version 1 line for a TCP connection from ``source`` to ``destination``.

    Addresses are written in their canonical form, so ``TCP4`` or ``TCP6`` follows from
    them; with neither address the line is ``PROXY UNKNOWN\\r\\n``. Raises ``ValueError`` if
    only one is given, they differ in family, a port is outside 0..65535, or an address is not
    an IP address.
    """
    ips = _endpoints(source, destination)
    if ips is None or source is None or destination is None:
        return b"PROXY UNKNOWN\r\n"
    src, dst = ips
    proto = "TCP4" if src.version == 4 else "TCP6"
    return (f"PROXY {proto} {_v1_text(src)} {_v1_text(dst)} {source[1]} {destination[1]}\r\n"
            .encode("ascii"))


def _v1_text(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    text = str(ip)
    return ip.exploded if "." in text and ip.version == 6 else text  # no dotted quad in TCP6


def _pack_tlvs(tlvs: Iterable[TLV]) -> bytes:
    out = bytearray()
    for kind, value in tlvs:
        if not 0 <= kind <= 0xFF or len(value) > _MAX_LENGTH:
            raise ValueError(f"TLV type {kind} or its {len(value)}-byte value out of range")
        out += _TLV_HEAD.pack(kind, len(value))
        out += value
    return bytes(out)


def encode_v2(header: ProxyHeader, *, checksum: bool = False) -> bytes:
    """The version 2 header for ``header``, addresses then TLVs in the order given.

    The family byte follows from the addresses and ``header.transport`` (``UNSPEC`` without
    addresses). A ``PP2_TYPE_CRC32C`` TLV in ``header.tlvs`` gets the header's checksum filled
    in (its value must be 4 bytes); ``checksum=True`` appends one if there is none. Raises
    ``ValueError`` for an unknown command or transport, a ``LOCAL`` header with addresses, one
    address without the other, mixed families, a port out of range, or a header whose length
    does not fit the 16-bit length field.
    """
    if header.command not in (LOCAL, PROXY):
        raise ValueError(f"unknown PROXY command {header.command}")
    if header.transport not in (STREAM, DGRAM):
        raise ValueError(f"unknown transport {header.transport}")
    ips = _endpoints(header.source, header.destination)
    if ips is not None and header.command == LOCAL:
        raise ValueError("a LOCAL header carries no addresses")
    block = b""
    family = UNSPEC
    if ips is not None and header.source is not None and header.destination is not None:
        src, dst = ips
        layout, inet = (_V2_INET, AF_INET) if src.version == 4 else (_V2_INET6, AF_INET6)
        family = inet << 4 | header.transport
        block = layout.pack(src.packed, dst.packed, header.source[1], header.destination[1])
    tlvs = list(header.tlvs)
    crc_at = [i for i, (kind, _) in enumerate(tlvs) if kind == PP2_TYPE_CRC32C]
    if checksum and not crc_at:
        crc_at = [len(tlvs)]
        tlvs.append((PP2_TYPE_CRC32C, bytes(4)))
    if len(crc_at) > 1:
        raise ValueError("more than one CRC32C TLV")
    if crc_at:
        if len(tlvs[crc_at[0]][1]) != _CRC.size:
            raise ValueError("a CRC32C TLV's value is 4 bytes")
        tlvs[crc_at[0]] = (PP2_TYPE_CRC32C, bytes(4))
    body = block + _pack_tlvs(tlvs)
    if len(body) > _MAX_LENGTH:
        raise ValueError(f"PROXY v2 header of {PP2_HEADER_SIZE + len(body)} bytes is too long")
    out = bytearray(_V2_FIXED.pack(PP2_SIGNATURE, PP2_VERSION << 4 | header.command, family,
                                   len(body)))
    out += body
    if crc_at:
        offset = PP2_HEADER_SIZE + len(block) + sum(
            _TLV_HEAD.size + len(value) for _, value in tlvs[:crc_at[0]]) + _TLV_HEAD.size
        _CRC.pack_into(out, offset, crc32c(out))
    return bytes(out)


# -- decoding -----------------------------------------------------------------------------------
def decode(data: bytes | bytearray, *, max_size: int = 4096) -> tuple[ProxyHeader, int] | None:
    """Read one PROXY header, of either version, from the start of ``data``.

    Returns ``(header, used)``, ``used`` being the header's length in bytes (whatever follows
    is the relayed stream's); or None, meaning "I need more data": ``data`` is a proper prefix
    of a header that may still turn out valid (``b""`` included). Call it again with the
    bytes so far plus the new ones. Raises ``ProxyProtocolError`` as soon as the bytes cannot
    begin a valid header: neither ``PROXY `` nor the v2 signature (known from the first byte
    that differs), a v1 line without its CRLF in 107 bytes or with a bare CR or LF, a bad
    protocol, address or port (canonical decimals, no leading zeros); a v2 version other than
    2, a command other than LOCAL/PROXY, a family the spec does not define, a header longer
    than ``max_size`` (refused when the length field arrives, without waiting for the
    bytes), an address block shorter than its family needs, a TLV overrunning the header, a
    malformed SSL TLV, or a CRC32C TLV that does not match.

    A ``LOCAL`` header's family is ignored, as the spec says: its TLVs are read after the
    address block when the family is one the spec defines and the block is long enough for
    it; otherwise the whole block is skipped and the header has no TLVs.
    """
    if data[:1] == V1_PREFIX[:1]:
        if len(data) < len(V1_PREFIX):
            if V1_PREFIX.startswith(bytes(data)):
                return None
        elif data[:len(V1_PREFIX)] == V1_PREFIX:
            return _decode_v1(data)
    elif data[:1] == PP2_SIGNATURE[:1]:
        if len(data) < len(PP2_SIGNATURE):
            if PP2_SIGNATURE.startswith(bytes(data)):
                return None
        elif data[:len(PP2_SIGNATURE)] == PP2_SIGNATURE:
            return _decode_v2(data, max_size)
    elif not data:
        return None
    raise ProxyProtocolError(f"not a PROXY protocol header: {bytes(data[:16])!r}")


_V1_PROTOCOLS = (b"TCP4", b"TCP6", b"UNKNOWN")


def _decode_v1(data: bytes | bytearray) -> tuple[ProxyHeader, int] | None:
    window = bytes(data[:MAX_V1_LINE])
    end = window.find(b"\r\n")
    body = window[:end] if end >= 0 else window.removesuffix(b"\r")  # a last CR may be a CRLF
    if b"\r" in body or b"\n" in body:
        raise ProxyProtocolError("PROXY v1 line has a bare CR or LF before its CRLF")
    rest = body[len(V1_PREFIX):]
    token, space, _ = rest.partition(b" ")
    if not (token in _V1_PROTOCOLS if space or end >= 0  # the protocol is complete
            else any(known.startswith(token) for known in _V1_PROTOCOLS)):
        raise ProxyProtocolError(
            f"PROXY v1: unknown protocol {token.decode('ascii', 'backslashreplace')!r}")
    if end < 0:
        if len(window) >= MAX_V1_LINE:
            raise ProxyProtocolError(f"PROXY v1 line has no CRLF in its first {MAX_V1_LINE} bytes")
        return None
    line = window[:end]
    if not line.isascii():
        raise ProxyProtocolError(f"PROXY v1 line is not US-ASCII: {line!r}")
    text = line.decode("ascii")
    used = end + 2
    fields = text.split(" ")
    if fields[1] == "UNKNOWN":  # "the receiver must ignore anything presented before the CRLF"
        return ProxyHeader(PROXY, version=1), used
    if len(fields) != 6:
        raise ProxyProtocolError(
            f"PROXY v1: {fields[1]} takes 4 fields separated by single spaces: {text!r}")
    six = fields[1] == "TCP6"
    source = (_v1_address(fields[2], six, "source"), _v1_port(fields[4], "source"))
    destination = (_v1_address(fields[3], six, "destination"),
                   _v1_port(fields[5], "destination"))
    return ProxyHeader(PROXY, source, destination, version=1), used


def _v1_address(text: str, six: bool, what: str) -> str:
    try:
        if six:
            if "." in text or "%" in text:  # no embedded IPv4 or scope: hex groups only
                raise ValueError(text)
            return str(ipaddress.IPv6Address(text))
        return str(ipaddress.IPv4Address(text))  # refuses leading zeros
    except ValueError:
        raise ProxyProtocolError(
            f"PROXY v1: bad {'TCP6' if six else 'TCP4'} {what} address {text!r}") from None


def _v1_port(text: str, what: str) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= 5
            and (text == "0" or not text.startswith("0")) and int(text) <= 0xFFFF):
        raise ProxyProtocolError(f"PROXY v1: bad {what} port {text!r}")
    return int(text)


def _decode_v2(data: bytes | bytearray, max_size: int) -> tuple[ProxyHeader, int] | None:
    if len(data) > len(PP2_SIGNATURE):
        ver_cmd = data[12]
        if ver_cmd >> 4 != PP2_VERSION:
            raise ProxyProtocolError(f"PROXY v2: version {ver_cmd >> 4}, only 2 is defined")
        if ver_cmd & 0xF not in (LOCAL, PROXY):
            raise ProxyProtocolError(f"PROXY v2: unknown command {ver_cmd & 0xF:#x}")
    if len(data) > 13 and data[12] & 0xF == PROXY and data[13] not in _ADDRESS_SIZE:
        raise ProxyProtocolError(f"PROXY v2: unknown address family and protocol {data[13]:#04x}")
    if len(data) < PP2_HEADER_SIZE:
        return None
    _, ver_cmd, family, length = _V2_FIXED.unpack_from(data)
    total = PP2_HEADER_SIZE + length
    if total > max_size:
        raise ProxyProtocolError(
            f"PROXY v2: header of {total} bytes is over the {max_size}-byte limit")
    if len(data) < total:
        return None
    command = ver_cmd & 0xF
    header = bytes(data[:total])
    size = _ADDRESS_SIZE.get(family)
    if size is None or size > length:
        if command == LOCAL:  # the family is ignored: skip the whole block
            return ProxyHeader(LOCAL), total
        raise ProxyProtocolError(
            f"PROXY v2: {_FAMILY_NAME[family]} addresses take {size} bytes, "
            f"the header has {length}")
    source: Address | None = None
    destination: Address | None = None
    if command == PROXY and family >> 4 in (AF_INET, AF_INET6):
        layout = _V2_INET if family >> 4 == AF_INET else _V2_INET6
        src, dst, sport, dport = layout.unpack_from(header, PP2_HEADER_SIZE)
        source = (str(ipaddress.ip_address(src)), sport)
        destination = (str(ipaddress.ip_address(dst)), dport)
    tlvs = tuple(_parse_tlvs(header, PP2_HEADER_SIZE + size, total, "TLV"))
    crcs = [value for kind, value in tlvs if kind == PP2_TYPE_CRC32C]
    if crcs:
        _check_crc(header, PP2_HEADER_SIZE + size, crcs)
    for kind, value in tlvs:
        if kind == PP2_TYPE_SSL:
            SSLInfo.from_tlv(value)
    transport = family & 0xF if source is not None else STREAM
    return ProxyHeader(command, source, destination, tlvs, transport), total


def _parse_tlvs(data: bytes, offset: int, end: int, what: str) -> list[TLV]:
    tlvs = []
    while offset < end:
        if end - offset < _TLV_HEAD.size:
            raise ProxyProtocolError(
                f"PROXY v2: {end - offset} stray bytes where a {what} should start")
        kind, length = _TLV_HEAD.unpack_from(data, offset)
        start = offset + _TLV_HEAD.size
        if start + length > end:
            raise ProxyProtocolError(
                f"PROXY v2: {what} {kind:#04x} of {length} bytes overruns the header "
                f"({end - start} left)")
        tlvs.append((kind, data[start:start + length]))
        offset = start + length
    return tlvs


def _check_crc(header: bytes, offset: int, crcs: list[bytes]) -> None:
    if len(crcs) > 1:
        raise ProxyProtocolError("PROXY v2: CRC32C TLV twice")
    if len(crcs[0]) != _CRC.size:
        raise ProxyProtocolError(f"PROXY v2: CRC32C TLV of {len(crcs[0])} bytes, not 4")
    zeroed = bytearray(header)
    while offset < len(header):  # find the CRC TLV's value again and zero it
        kind, length = _TLV_HEAD.unpack_from(header, offset)
        offset += _TLV_HEAD.size
        if kind == PP2_TYPE_CRC32C:
            zeroed[offset:offset + length] = bytes(length)
            break
        offset += length
    (said,) = _CRC.unpack(crcs[0])
    computed = crc32c(zeroed)
    if said != computed:
        raise ProxyProtocolError(
            f"PROXY v2: CRC32C {said:#010x} does not match the header's {computed:#010x}")


def largest_v2(ssl: bool, cn: bool, authority: bool, alpn: int,
               unique_id: bool = False) -> int:
    """The size of the largest v2 header tlswrap can send with these TLVs: IPv6 addresses,
    and each TLV at its longest (``alpn``: the longest protocol name, 0 for none)."""
    tlvs: list[TLV] = []
    if ssl:
        tlvs.append(SSLInfo(version="v" * LONGEST_VERSION, cipher="c" * LONGEST_CIPHER,
                            sig_alg="s" * LONGEST_SIG_ALG, key_alg="k" * LONGEST_KEY_ALG,
                            cn="n" * LONGEST_CN if cn else None).to_tlv())
    if authority:
        tlvs.append((PP2_TYPE_AUTHORITY, b"a" * LONGEST_AUTHORITY))
    if alpn:
        tlvs.append((PP2_TYPE_ALPN, b"p" * alpn))
    if unique_id:
        tlvs.append((PP2_TYPE_UNIQUE_ID, b"u" * LONGEST_UNIQUE_ID))
    address = ("::1", 65535)
    return len(encode_v2(ProxyHeader(PROXY, address, address, tuple(tlvs))))
