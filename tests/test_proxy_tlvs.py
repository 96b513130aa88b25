"""``proxyTLVs``: which TLVs a PROXY v2 header carries, and ``tlswrap check``'s warning when
a header to an SMTP port could pass postfix's 536 bytes."""

from __future__ import annotations

import socket

import pytest

from conftest import free_port, service_config, wait_for
from test_e2e_proxy import proxy_backend
from tlswrap import proxyproto
from tlswrap.config import config_warnings, parse_config, proxy_v2_size
from tlswrap.errors import ConfigError


@pytest.mark.parametrize(("value", "parsed"), [
    ("ssl, cn, authority, alpn, unique_id", ("ssl", "cn", "authority", "alpn", "unique_id")),
    ("alpn ssl", ("ssl", "alpn")), ("none", ()), ("SSL", ("ssl",)),
])
def test_the_option_names_tlvs(value, parsed):
    svc = parse_config(f"[a]\naccept = 1\nconnect = 2\ncert = c\nproxyProtocol = v2\n"
                       f"proxyTLVs = {value}\n").services[0]
    assert svc.proxy_tlvs == parsed


@pytest.mark.parametrize(("value", "message"), [
    ("cn", "cn travels inside the ssl TLV: name ssl too"),
    ("session_id", "expected some of ssl, cn, authority, alpn, unique_id, or none"),
])
def test_wrong_names_are_errors(value, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(f"[a]\naccept = 1\nconnect = 2\ncert = c\nproxyTLVs = {value}\n")


def test_the_largest_header_is_computed_from_the_encoder():
    assert proxyproto.largest_v2(False, False, False, 0) == 16 + 36
    base = 361 + 3 + proxyproto.LONGEST_SIG_ALG + 3 + proxyproto.LONGEST_KEY_ALG
    assert proxyproto.largest_v2(True, False, True, 0) == base  # 361: test_e2e_proxy_size
    assert proxyproto.largest_v2(True, True, True, 4) == base + 3 + 256 + 3 + 4
    assert proxyproto.largest_v2(True, True, True, 4, True) == base + 3 + 256 + 3 + 4 + 3 + 32


@pytest.mark.parametrize(("connect", "extra", "warned"), [
    ("127.0.0.1:25", "verify = 2\nCAfile = ca.pem\n", True),  # a CN can make it 620 bytes
    ("127.0.0.1:143", "verify = 2\nCAfile = ca.pem\n", False),  # dovecot has no such limit
    ("127.0.0.1:25", "verify = 2\nCAfile = ca.pem\nproxyTLVs = ssl\n", False),
    ("127.0.0.1:25", "", False),  # 361 bytes at most
])
def test_check_warns_only_where_postfix_could_refuse(connect, extra, warned):
    config = parse_config(f"[s]\naccept = 465\nconnect = {connect}\ncert = c\n"
                          f"proxyProtocol = v2\n{extra}", "p.conf")
    found = [str(w) for w in config_warnings(config) if "postfix refuses" in str(w)]
    assert bool(found) == warned
    if warned:
        assert found[0].startswith("p.conf:5: [s] proxyProtocol = v2 to an SMTP port: a "
                                   f"header can reach {proxy_v2_size(config.services[0])} bytes")


def test_the_connection_id_travels_as_the_unique_id(certs, thread_server, tlswrap):
    """With ``logId``, the id in the log lines is the header's PP2_TYPE_UNIQUE_ID, so the mail
    server's log and tlswrap's name one connection alike."""
    seen: list[proxyproto.ProxyHeader] = []
    srv = thread_server(proxy_backend(seen))
    port = free_port()
    proc = tlswrap(service_config(certs, port, f"127.0.0.1:{srv.port}",
                                  extra="proxyProtocol = v2\nlogId = unique"), [port])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            certs.client_context().wrap_socket(raw, server_hostname="localhost") as tls:
        assert tls.recv(100) == b"* OK proxied\r\n"
    wait_for(lambda: len(seen) == 1, 5, "the header")
    unique = seen[0].tlv(proxyproto.PP2_TYPE_UNIQUE_ID)
    assert unique and f"#{unique.decode()} 127.0.0.1:" in proc.log()
    info = seen[0].ssl()
    assert info is not None and info.sig_alg == "ecdsa-with-SHA256" and info.key_alg == "EC256"


def test_a_header_carries_only_the_named_tlvs(certs, thread_server, tlswrap):
    seen: list[proxyproto.ProxyHeader] = []
    srv = thread_server(proxy_backend(seen))
    port = free_port()
    tlswrap(service_config(certs, port, f"127.0.0.1:{srv.port}",
                           extra="proxyProtocol = v2\nproxyTLVs = ssl"), [port])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            certs.client_context().wrap_socket(raw, server_hostname="localhost") as tls:
        assert tls.recv(100) == b"* OK proxied\r\n"
    wait_for(lambda: len(seen) == 1, 5, "the header")
    assert seen[0].ssl() is not None
    assert seen[0].tlv(proxyproto.PP2_TYPE_AUTHORITY) is None  # the SNI name was left out
