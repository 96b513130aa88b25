"""stunnel's socket option table: parsing (pure) and applying to real sockets."""

from __future__ import annotations

import os
import socket
import struct

import pytest

from tlswrap import sockopts
from tlswrap.sockopts import SocketOption, parse
from tlswrap.sockstream import set_socket_options


@pytest.mark.parametrize(("text", "expected"), [
    ("a:SO_REUSEADDR=no", SocketOption("a", "SO_REUSEADDR", 0)),
    ("l:TCP_NODELAY=yes", SocketOption("l", "TCP_NODELAY", 1)),
    ("r:SO_KEEPALIVE=1", SocketOption("r", "SO_KEEPALIVE", 1)),
    ("l:SO_LINGER=1:60", SocketOption("l", "SO_LINGER", (1, 60))),
    ("l:SO_LINGER=0", SocketOption("l", "SO_LINGER", (0, 0))),
    ("r:SO_RCVTIMEO=5:250000", SocketOption("r", "SO_RCVTIMEO", (5, 250000))),
    ("a:SO_BINDTODEVICE=lo", SocketOption("a", "SO_BINDTODEVICE", "lo")),
    ("r:IP_TOS=16", SocketOption("r", "IP_TOS", 16)),
    ("l:TCP_KEEPCNT=5", SocketOption("l", "TCP_KEEPCNT", 5)),
    ("a:IPV6_V6ONLY=yes", SocketOption("a", "IPV6_V6ONLY", 1)),
    ("r:SO_OOBINLINE=yes", SocketOption("r", "SO_OOBINLINE", 1)),
])
def test_stunnels_value_forms_parse(text, expected):
    assert parse(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("x:TCP_NODELAY=1", "expected a|l|r:OPTION=VALUE, e.g. l:TCP_NODELAY=yes"),
    ("l:TCP_NODELAY", "expected a|l|r:OPTION=VALUE, e.g. l:TCP_NODELAY=yes"),
    ("l:tcp_nodelay=1", "unknown socket option 'tcp_nodelay'"),  # stunnel: strcmp
    ("l:SO_EXCLUSIVEADDRUSE=1", "SO_EXCLUSIVEADDRUSE is not available here: Windows only"),
    ("r:IP_BINDANY=1", "IP_BINDANY is not available here: FreeBSD only (on Linux: IP_FREEBIND)"),
    ("l:TCP_NODELAY=maybe", "TCP_NODELAY is yes or no (or 1 or 0), got 'maybe'"),
    ("l:SO_LINGER=2:60", "SO_LINGER on/off must be 0 to 1, got 2"),
    ("l:SO_LINGER=1:99999", "SO_LINGER seconds must be 0 to 65535, got 99999"),
    ("r:SO_RCVTIMEO=1:1000000", "SO_RCVTIMEO microseconds must be 0 to 999999, got 1000000"),
    ("a:SO_BINDTODEVICE=averyveryverylongname", "SO_BINDTODEVICE needs an interface name"),
    ("a:SO_BINDTODEVICE=", "SO_BINDTODEVICE needs an interface name"),
    ("r:IP_TTL=0", "IP_TTL must be 1 to 255, got 0"),
    ("a:SO_RCVTIMEO=5", "SO_RCVTIMEO on the listening socket"),
    ("l:SO_SNDBUF=1e9", "SO_SNDBUF needs a whole number, got '1e9'"),
])
def test_mistakes_say_what_is_wrong(text, message):
    with pytest.raises(ValueError) as info:
        parse(text)
    assert str(info.value).startswith(message)


def test_every_table_entry_applies_to_a_real_socket():
    """Each option of the table, with a typical value, is accepted by this kernel on the
    socket kind it is for: nothing in the table fails only at the first connection."""
    samples = {sockopts.Kind.FLAG: "1", sockopts.Kind.INT: None, sockopts.Kind.LINGER: "1:5",
               sockopts.Kind.TIMEVAL: "3:5", sockopts.Kind.STRING: "lo"}
    for name, (kind, low, high) in sockopts.TABLE.items():
        value = samples[kind] or str(max(low, min(high, 1000)))
        option = parse(f"r:{name}={value}")
        family = socket.AF_INET6 if name.startswith("IPV6_") else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            if name == "SO_BINDTODEVICE" and os.geteuid() != 0:
                continue  # needs CAP_NET_RAW
            assert set_socket_options(sock, (option,), "r") == [], name


def test_values_reach_the_kernel_as_packed_structures():
    with socket.socket() as sock:
        opts = tuple(parse(t) for t in ("l:SO_LINGER=1:60", "l:SO_RCVTIMEO=5:500000",
                                        "l:SO_KEEPALIVE=yes", "l:TCP_KEEPIDLE=77",
                                        "r:SO_KEEPALIVE=no"))
        assert set_socket_options(sock, opts, "l") == []
        assert struct.unpack("ii", sock.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8)) \
            == (1, 60)
        assert struct.unpack("ll", sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16)) \
            == (5, 500000)  # a multiple of any HZ tick
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1  # r: not applied
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 77


def test_options_for_another_family_are_skipped_and_refusals_reported():
    with socket.socket(socket.AF_INET6) as v6, socket.socket(socket.AF_UNIX) as unix:
        assert set_socket_options(v6, (parse("r:IP_TTL=9"),), "r") == []
        assert set_socket_options(unix, (parse("r:TCP_NODELAY=1"),), "r") == []
    with socket.socket() as sock:
        problems = set_socket_options(sock, (parse("a:SO_BINDTODEVICE=nosuchif0"),), "a")
    assert len(problems) == 1 and problems[0].startswith("a:SO_BINDTODEVICE=nosuchif0: ")
