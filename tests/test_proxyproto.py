"""The PROXY protocol codec: the spec's own examples, byte-at-a-time feeding, exact errors,
property round trips and a fuzz of the decoder; one exchange with a real haproxy when present.
Hypothesis runs are bounded (derandomized under CI)."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import socket
import subprocess
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlswrap import proxyproto as pp
from tlswrap.proxyproto import (
    LOCAL,
    PP2_SIGNATURE,
    PROXY,
    ProxyHeader,
    ProxyProtocolError,
    SSLInfo,
    decode,
    encode_v1,
    encode_v2,
)

CI = bool(os.environ.get("CI"))
TCP4_LINE = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
FULL6 = "ffff:" * 7 + "ffff"
TCP6_LINE = f"PROXY TCP6 {FULL6} {FULL6} 65535 65535\r\n".encode()
UNKNOWN_WORST = f"PROXY UNKNOWN {FULL6} {FULL6} 65535 65535\r\n".encode()

# v2 by hand, from the layout of section 2.2: signature, ver/cmd, family, length, block
V2_TCP4 = (PP2_SIGNATURE + b"\x21\x11\x00\x0c" + bytes([192, 168, 0, 1, 192, 168, 0, 11])
           + (56324).to_bytes(2, "big") + (443).to_bytes(2, "big"))
V2_LOCAL = PP2_SIGNATURE + b"\x20\x00\x00\x00"
V2_TCP6 = (PP2_SIGNATURE + b"\x21\x21\x00\x24" + ipaddress.IPv6Address("2001:db8::1").packed
           + ipaddress.IPv6Address("2001:db8::2").packed + b"\x30\x39\x00\x19")
V2_UDP4_ALPN = (PP2_SIGNATURE + b"\x21\x12\x00\x13" + bytes([10, 0, 0, 1, 10, 0, 0, 2])
                + b"\x00\x35\x00\x35" + b"\x01\x00\x04imap")

VECTORS = [
    (TCP4_LINE, ProxyHeader(PROXY, ("192.168.0.1", 56324), ("192.168.0.11", 443), version=1)),
    (TCP6_LINE, ProxyHeader(PROXY, (FULL6, 65535), (FULL6, 65535), version=1)),
    (b"PROXY UNKNOWN\r\n", ProxyHeader(PROXY, version=1)),
    (UNKNOWN_WORST, ProxyHeader(PROXY, version=1)),
    (V2_TCP4, ProxyHeader(PROXY, ("192.168.0.1", 56324), ("192.168.0.11", 443))),
    (V2_LOCAL, ProxyHeader(LOCAL)),
    (V2_TCP6, ProxyHeader(PROXY, ("2001:db8::1", 12345), ("2001:db8::2", 25))),
    (V2_UDP4_ALPN, ProxyHeader(PROXY, ("10.0.0.1", 53), ("10.0.0.2", 53),
                               ((pp.PP2_TYPE_ALPN, b"imap"),), transport=pp.DGRAM)),
]


@pytest.mark.parametrize(("wire", "expected"), VECTORS)
def test_spec_vectors_decode_with_what_follows_left_alone(wire, expected):
    assert decode(wire + b"A1 LOGIN") == (expected, len(wire))


@pytest.mark.parametrize(("wire", "expected"), VECTORS)
def test_every_proper_prefix_needs_more(wire, expected):
    """Fed one byte at a time: None for every proper prefix, then the header."""
    for end in range(len(wire)):
        assert decode(wire[:end]) is None, end
    assert decode(bytearray(wire)) == (expected, len(wire))


def test_spec_vectors_encode():
    assert encode_v1(("192.168.0.1", 56324), ("192.168.0.11", 443)) == TCP4_LINE
    assert encode_v1(None, None) == b"PROXY UNKNOWN\r\n"
    assert encode_v1(("2001:db8::1", 1), ("::1", 2)) == b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n"
    assert encode_v2(VECTORS[4][1]) == V2_TCP4
    assert encode_v2(ProxyHeader(LOCAL)) == V2_LOCAL
    assert encode_v2(VECTORS[6][1]) == V2_TCP6
    assert encode_v2(VECTORS[7][1]) == V2_UDP4_ALPN


def test_v1_line_limits():
    assert len(UNKNOWN_WORST) == pp.MAX_V1_LINE
    assert len(TCP6_LINE) == 104
    too_long = UNKNOWN_WORST[:-2] + b"0\r\n"
    with pytest.raises(ProxyProtocolError, match="no CRLF in its first 107 bytes"):
        decode(too_long)
    # refused at byte 107, without waiting for the CRLF
    with pytest.raises(ProxyProtocolError, match="no CRLF"):
        decode(too_long[:107])


def test_local_ignores_the_family_and_reads_tlvs_after_a_known_block():
    with_addresses = (PP2_SIGNATURE + b"\x20\x11\x00\x13" + bytes(12) + b"\x04\x00\x04pad!")
    assert decode(with_addresses) == (ProxyHeader(LOCAL, tlvs=((pp.PP2_TYPE_NOOP, b"pad!"),)),
                                      35)
    unknown_family = PP2_SIGNATURE + b"\x20\x99\x00\x03abc"
    assert decode(unknown_family) == (ProxyHeader(LOCAL), 19)


def test_proxy_over_unix_or_unspec_falls_back_to_the_real_endpoints():
    unix = PP2_SIGNATURE + b"\x21\x31\x00\xd8" + bytes(216)
    assert decode(unix) == (ProxyHeader(PROXY), 232)
    unspec = PP2_SIGNATURE + b"\x21\x00\x00\x07" + b"\x02\x00\x04mail"
    assert decode(unspec) == (ProxyHeader(PROXY, tlvs=((pp.PP2_TYPE_AUTHORITY, b"mail"),)), 23)


def test_ssl_tlv_by_hand():
    ssl = SSLInfo(client=pp.PP2_CLIENT_SSL | pp.PP2_CLIENT_CERT_CONN, verify=0,
                  version="TLSv1.3", cipher="TLS_AES_256_GCM_SHA384", cn="alice")
    value = (b"\x03\x00\x00\x00\x00" + b"\x21\x00\x07TLSv1.3" + b"\x22\x00\x05alice"
             + b"\x23\x00\x16TLS_AES_256_GCM_SHA384")
    assert ssl.to_tlv() == (pp.PP2_TYPE_SSL, value)
    assert SSLInfo.from_tlv(value) == ssl
    header = ProxyHeader(PROXY, ("192.0.2.1", 1), ("192.0.2.2", 993), (ssl.to_tlv(),))
    decoded, _ = decode(encode_v2(header)) or pytest.fail("incomplete")
    assert decoded.ssl() == ssl
    assert decoded.tlv(pp.PP2_TYPE_ALPN) is None


def test_crc32c():
    assert pp.crc32c(b"123456789") == 0xE3069283  # RFC 3720 B.4's check value
    assert pp.crc32c(b"") == 0
    wire = encode_v2(VECTORS[4][1], checksum=True)
    header, used = decode(wire) or pytest.fail("incomplete")
    assert used == len(wire) == 16 + 12 + 7
    assert header.tlvs[0][0] == pp.PP2_TYPE_CRC32C
    assert encode_v2(header) == wire  # the checksum is recomputed, to the same value
    damaged = wire[:20] + b"\x00" + wire[21:]
    with pytest.raises(ProxyProtocolError, match=r"CRC32C 0x[0-9a-f]{8} does not match"):
        decode(damaged)


def test_postfix_sized_header_with_the_tlvs_dovecot_uses():
    ssl = SSLInfo(client=pp.PP2_CLIENT_SSL | pp.PP2_CLIENT_CERT_CONN | pp.PP2_CLIENT_CERT_SESS,
                  verify=0, version="TLSv1.3", cipher="TLS_CHACHA20_POLY1305_SHA256",
                  sig_alg="ecdsa-with-SHA384", key_alg="EC384", cn="x" * 64)
    header = ProxyHeader(PROXY, ("255.255.255.255", 65535), ("255.255.255.255", 65535), (
        ssl.to_tlv(), (pp.PP2_TYPE_ALPN, b"imap"), (pp.PP2_TYPE_AUTHORITY, b"m" * 253)))
    wire = encode_v2(header)
    assert len(wire) <= pp.POSTFIX_MAX_HEADER
    assert pp.fits_postfix(wire)
    assert not pp.fits_postfix(wire + bytes(pp.POSTFIX_MAX_HEADER - len(wire) + 1))
    assert pp.fits_postfix(UNKNOWN_WORST)


# -- errors, exact ------------------------------------------------------------------------------
ERRORS = [
    (b"G", "not a PROXY protocol header: b'G'"),
    (b"PROXX", "not a PROXY protocol header: b'PROXX'"),
    (b"\r\n\r\n\x00\r\nQUIX", "not a PROXY protocol header: b'\\r\\n\\r\\n\\x00\\r\\nQUIX'"),
    (b"PROXY TCP5", "PROXY v1: unknown protocol 'TCP5'"),
    (b"PROXY TCP44", "PROXY v1: unknown protocol 'TCP44'"),
    (b"PROXY TCP4 1.2.3.4\n", "PROXY v1 line has a bare CR or LF before its CRLF"),
    (b"PROXY TCP4 1.2.3.4\r5", "PROXY v1 line has a bare CR or LF before its CRLF"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
     "PROXY v1: TCP4 takes 4 fields separated by single spaces: "
     "'PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3'"),
    (b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
     "PROXY v1: TCP4 takes 4 fields separated by single spaces: "
     "'PROXY TCP4  1.2.3.4 5.6.7.8 1 2'"),
    (b"PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n", "PROXY v1: bad TCP4 source address '1.2.3.04'"),
    (b"PROXY TCP4 1.2.3.4 ::1 1 2\r\n", "PROXY v1: bad TCP4 destination address '::1'"),
    (b"PROXY TCP6 ::ffff:1.2.3.4 ::1 1 2\r\n",
     "PROXY v1: bad TCP6 source address '::ffff:1.2.3.4'"),
    (b"PROXY TCP6 ::1 fe80::1%eth0 1 2\r\n",
     "PROXY v1: bad TCP6 destination address 'fe80::1%eth0'"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "PROXY v1: bad source port '65536'"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 025\r\n", "PROXY v1: bad destination port '025'"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 +25\r\n", "PROXY v1: bad destination port '+25'"),
    (b"PROXY TCP4 1.2.3.\xb4 5.6.7.8 1 2\r\n",
     "PROXY v1 line is not US-ASCII: b'PROXY TCP4 1.2.3.\\xb4 5.6.7.8 1 2'"),
    (PP2_SIGNATURE + b"\x31", "PROXY v2: version 3, only 2 is defined"),
    (PP2_SIGNATURE + b"\x22", "PROXY v2: unknown command 0x2"),
    (PP2_SIGNATURE + b"\x21\x13", "PROXY v2: unknown address family and protocol 0x13"),
    (PP2_SIGNATURE + b"\x21\x41", "PROXY v2: unknown address family and protocol 0x41"),
    (PP2_SIGNATURE + b"\x21\x11\x0f\xf1", "PROXY v2: header of 4097 bytes is over the "
                                          "4096-byte limit"),
    (PP2_SIGNATURE + b"\x21\x11\x00\x08" + bytes(8),
     "PROXY v2: TCP4 addresses take 12 bytes, the header has 8"),
    (PP2_SIGNATURE + b"\x21\x21\x00\x0c" + bytes(12),
     "PROXY v2: TCP6 addresses take 36 bytes, the header has 12"),
    (PP2_SIGNATURE + b"\x21\x11\x00\x0e" + bytes(14),
     "PROXY v2: 2 stray bytes where a TLV should start"),
    (PP2_SIGNATURE + b"\x21\x11\x00\x10" + bytes(12) + b"\x01\x01\x00x",
     "PROXY v2: TLV 0x01 of 256 bytes overruns the header (1 left)"),
    (PP2_SIGNATURE + b"\x20\x00\x00\x03" + b"\x01\x00\x01",
     "PROXY v2: TLV 0x01 of 1 bytes overruns the header (0 left)"),
    (PP2_SIGNATURE + b"\x21\x00\x00\x07" + b"\x20\x00\x04" + bytes(4),
     "PROXY v2: SSL TLV of 4 bytes, shorter than its 5 fixed bytes"),
    (PP2_SIGNATURE + b"\x21\x00\x00\x0b" + b"\x20\x00\x08" + bytes(5) + b"\x21\x00\x09",
     "PROXY v2: SSL sub-TLV 0x21 of 9 bytes overruns the header (0 left)"),
    (PP2_SIGNATURE + b"\x21\x00\x00\x0d" + b"\x20\x00\x0a" + bytes(5) + b"\x21\x00\x02\xc3\xa9",
     "PROXY v2: SSL sub-TLV 0x21 is not ascii: b'\\xc3\\xa9'"),
    (PP2_SIGNATURE + b"\x21\x00\x00\x06" + b"\x03\x00\x03" + bytes(3),
     "PROXY v2: CRC32C TLV of 3 bytes, not 4"),
    (PP2_SIGNATURE + b"\x21\x00\x00\x0e" + (b"\x03\x00\x04" + bytes(4)) * 2,
     "PROXY v2: CRC32C TLV twice"),
]


@pytest.mark.parametrize(("wire", "message"), ERRORS)
def test_malformed_headers_are_refused_with_a_reason(wire, message):
    with pytest.raises(ProxyProtocolError) as caught:
        decode(wire)
    assert str(caught.value) == message


@pytest.mark.parametrize(("wire", "message"), ERRORS)
def test_malformed_headers_are_refused_at_the_first_certain_byte(wire, message):
    """No prefix of a refused input that is shorter than its certain point gets a header."""
    for end in range(len(wire)):
        with contextlib.suppress(ProxyProtocolError):
            assert decode(wire[:end]) is None


def test_oversized_is_refused_at_the_length_field_and_the_limit_is_a_parameter():
    head = PP2_SIGNATURE + b"\x21\x11\x01\x00"  # 16 + 256 bytes
    assert decode(head, max_size=16 + 256) is None
    with pytest.raises(ProxyProtocolError, match="272 bytes is over the 271-byte limit"):
        decode(head, max_size=271)


def test_encoders_refuse_what_cannot_be_sent():
    with pytest.raises(ValueError, match="both be given, or neither"):
        encode_v1(("1.2.3.4", 1), None)
    with pytest.raises(ValueError, match="not of one address family"):
        encode_v1(("1.2.3.4", 1), ("::1", 2))
    with pytest.raises(ValueError, match="port 70000 out of range"):
        encode_v2(ProxyHeader(PROXY, ("1.2.3.4", 70000), ("1.2.3.4", 1)))
    with pytest.raises(ValueError, match="is not an IP address"):
        encode_v1(("mail.example", 1), ("1.2.3.4", 2))
    with pytest.raises(ValueError, match="LOCAL header carries no addresses"):
        encode_v2(ProxyHeader(LOCAL, ("1.2.3.4", 1), ("1.2.3.4", 2)))
    with pytest.raises(ValueError, match="too long"):
        encode_v2(ProxyHeader(tlvs=((pp.PP2_TYPE_NOOP, bytes(65533)),)))
    assert len(encode_v2(ProxyHeader(tlvs=((pp.PP2_TYPE_NOOP, bytes(65532)),)))) == 65551


def test_v6_mapped_addresses_go_out_without_a_dotted_quad():
    line = encode_v1(("::ffff:1.2.3.4", 1), ("::1", 2))
    assert b"." not in line
    header, _ = decode(line) or pytest.fail("incomplete")
    assert header.source == (str(ipaddress.IPv6Address("::ffff:1.2.3.4")), 1)


# -- properties ---------------------------------------------------------------------------------
ports = st.integers(0, 65535)
ipv4 = st.builds(lambda n: str(ipaddress.IPv4Address(n)), st.integers(0, 2**32 - 1))
ipv6 = st.builds(lambda n: str(ipaddress.IPv6Address(n)), st.integers(0, 2**128 - 1))
ascii_names = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
ssl_infos = st.builds(
    SSLInfo, client=st.integers(0, 255), verify=st.integers(0, 2**32 - 1),
    version=st.none() | ascii_names, cipher=st.none() | ascii_names,
    sig_alg=st.none() | ascii_names, key_alg=st.none() | ascii_names,
    cn=st.none() | st.text(max_size=40), group=st.none() | ascii_names,
    sig_scheme=st.none() | ascii_names, client_cert=st.none() | st.binary(max_size=64),
    extra=st.lists(st.tuples(st.integers(0x29, 0xFF), st.binary(max_size=16)),
                   max_size=3).map(tuple))
plain_tlvs = st.tuples(st.integers(0, 255).filter(lambda t: t not in (pp.PP2_TYPE_CRC32C,
                                                                        pp.PP2_TYPE_SSL)),
                       st.binary(max_size=64))
tlv_sets = st.lists(plain_tlvs | ssl_infos.map(SSLInfo.to_tlv), max_size=5).map(tuple)


@st.composite
def endpoints(draw):
    family = draw(st.sampled_from([ipv4, ipv6]))
    return (draw(family), draw(ports)), (draw(family), draw(ports))


@st.composite
def headers(draw):
    tlvs = draw(tlv_sets)
    kind = draw(st.sampled_from(["inet", "unspec", "local"]))
    if kind == "local":
        return ProxyHeader(LOCAL, tlvs=tlvs)
    if kind == "unspec":
        return ProxyHeader(PROXY, tlvs=tlvs)
    source, destination = draw(endpoints())
    return ProxyHeader(PROXY, source, destination, tlvs, draw(st.sampled_from([pp.STREAM,
                                                                                pp.DGRAM])))


@settings(max_examples=300, deadline=None, derandomize=CI)
@given(st.none() | endpoints(), st.binary(max_size=20))
def test_v1_round_trip(addresses, rest):
    source, destination = addresses or (None, None)
    wire = encode_v1(source, destination)
    assert len(wire) <= pp.MAX_V1_LINE
    assert decode(wire + rest) == (ProxyHeader(PROXY, source, destination, version=1),
                                   len(wire))


@settings(max_examples=300, deadline=None, derandomize=CI)
@given(headers(), st.booleans(), st.binary(max_size=20))
def test_v2_round_trip(header, checksum, rest):
    wire = encode_v2(header, checksum=checksum)
    result = decode(wire + rest, max_size=len(wire))
    assert result is not None
    decoded, used = result
    assert used == len(wire)
    expected = header.tlvs + (((pp.PP2_TYPE_CRC32C, wire[-4:]),) if checksum else ())
    assert decoded == ProxyHeader(header.command, header.source, header.destination, expected,
                                  header.transport)
    assert encode_v2(decoded) == wire
    for tlv_type, value in decoded.tlvs:
        if tlv_type == pp.PP2_TYPE_SSL:
            assert SSLInfo.from_tlv(value).to_tlv() == (tlv_type, value)


@settings(max_examples=60, deadline=None, derandomize=CI)
@given(headers())
def test_v2_byte_at_a_time(header):
    wire = encode_v2(header)
    assert all(decode(wire[:end], max_size=len(wire)) is None for end in range(len(wire)))


@settings(max_examples=500, deadline=None, derandomize=CI)
@given(st.one_of(st.binary(max_size=300),
                 st.binary(max_size=120).map(lambda b: b"PROXY " + b),
                 st.binary(max_size=300).map(lambda b: PP2_SIGNATURE + b)))
def test_decode_fuzz_only_refuses_or_answers(data):
    try:
        result = decode(data)
    except ProxyProtocolError:
        return
    if result is not None:
        _, used = result
        assert 0 < used <= len(data)
        assert decode(data[:used]) == result


@settings(max_examples=500, deadline=None, derandomize=CI)
@given(headers(), st.lists(st.tuples(st.integers(0, 2**16), st.integers(0, 255)), min_size=1,
                           max_size=4))
def test_decode_fuzz_mutated_headers(header, flips):
    wire = bytearray(encode_v2(header))
    for where, byte in flips:
        wire[where % len(wire)] = byte
    try:
        decode(wire)
    except ProxyProtocolError:
        pass


# -- haproxy as the other end -------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
def test_haproxy_reads_our_v2_and_v1_and_writes_what_we_read(tmp_path):
    """Our header goes into haproxy's accept-proxy, haproxy's send-proxy comes out to us."""
    backend = socket.create_server(("127.0.0.1", 0))
    backend.settimeout(10)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        front = probe.getsockname()[1]
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        "global\n  log stderr local0\ndefaults\n  mode tcp\n  timeout connect 5s\n"
        "  timeout client 5s\n  timeout server 5s\n"
        f"frontend f\n  bind 127.0.0.1:{front} accept-proxy\n  default_backend b\n"
        f"backend b\n  server s 127.0.0.1:{backend.getsockname()[1]} send-proxy-v2 "
        "proxy-v2-options authority,crc32c\n")
    proc = subprocess.Popen(["haproxy", "-f", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        sent = [
            encode_v2(ProxyHeader(PROXY, ("203.0.113.7", 4321), ("198.51.100.1", 993),
                                  ((pp.PP2_TYPE_AUTHORITY, b"imap.example"),)), checksum=True),
            encode_v1(("2001:db8::7", 4322), ("2001:db8::1", 993)),
        ]
        for header in sent:
            client = _connect_when_up(front)
            with client:
                client.sendall(header + b"A1 NOOP\r\n")
                conn, _ = backend.accept()
                with conn:
                    conn.settimeout(10)
                    data = b""
                    while (result := decode(data)) is None or len(data) < result[1] + 9:
                        chunk = conn.recv(4096)
                        assert chunk, data
                        data += chunk
            got, used = result
            assert data[used:] == b"A1 NOOP\r\n"
            mine, _ = decode(header) or pytest.fail("incomplete")
            assert (got.source, got.destination) == (mine.source, mine.destination)
            assert got.tlv(pp.PP2_TYPE_CRC32C) is not None
            if mine.version == 2:
                assert got.tlv(pp.PP2_TYPE_AUTHORITY) == b"imap.example"
    finally:
        proc.terminate()
        proc.wait(10)
        backend.close()


def _connect_when_up(port):
    deadline = time.monotonic() + 10
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=10)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
