"""Address formatting: the one place, and what each kind of address looks like."""

from __future__ import annotations

import pytest

from tlswrap.addresses import format_peer, format_sockaddr, peer_host, peer_port


@pytest.mark.parametrize(("sockaddr", "host", "port", "text"), [
    (("192.0.2.7", 993), "192.0.2.7", 993, "192.0.2.7:993"),
    (("::ffff:192.0.2.7", 993, 0, 0), "192.0.2.7", 993, "192.0.2.7:993"),  # dual-stack IPv4
    (("2001:db8::1", 993, 0, 0), "2001:db8::1", 993, "[2001:db8::1]:993"),
    (("::ffff:0:1", 993, 0, 0), "::ffff:0:1", 993, "[::ffff:0:1]:993"),  # not a mapped IPv4
    ("/run/dovecot/imap", None, None, "/run/dovecot/imap"),
    ("", None, None, "unknown"),  # an unnamed unix socket (socketpair)
    (None, None, None, "unknown"),
])
def test_addresses(sockaddr, host, port, text):
    assert peer_host(sockaddr) == host
    assert peer_port(sockaddr) == port
    assert format_peer(sockaddr) == text


def test_backend_addresses_as_dialled():
    assert format_sockaddr("/run/imapd.sock") == "/run/imapd.sock"
    assert format_sockaddr(("127.0.0.1", 143)) == "127.0.0.1:143"
    assert format_sockaddr(("::1", 143, 0, 0)) == "[::1]:143"
