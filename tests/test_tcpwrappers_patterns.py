"""hosts_access(5) patterns: names and addresses, lists and EXCEPT, net/mask, wildcards."""

from __future__ import annotations

import pytest

from test_tcpwrappers_decide import addr, allow_text, granted_by, named
from tlswrap.tcpwrappers import PARANOID, Request
from tlswrap.tcpwrappers.patterns import (
    bracketed,
    daemon_or_port,
    dot_quad_addr,
    inet_addr,
    ipv4_mask,
    ipv6_net,
    list_match,
    masked_match,
)

# --- MUST 1: unknown names, paranoid ---------------------------------------------------------

@pytest.mark.parametrize("pattern", ["localhost", "LOCAL", "KNOWN", ".localhost", "local*"])
def test_address_client_never_matches_name_patterns(pattern):
    assert not granted_by(f"ALL: {pattern}", addr("127.0.0.1"))


def test_unknown_matches_failed_lookup_and_unknown_server():
    assert granted_by("ALL: UNKNOWN", addr("10.0.0.1"))
    assert granted_by("imapd@UNKNOWN: ALL", addr("10.0.0.1"))
    assert granted_by("imapd: ALL", addr("10.0.0.1"))


def test_names_match_reverse_name():
    req = named("127.0.0.1", "localhost")
    for pat in ("localhost", "LOCAL", "KNOWN", "LOCALHOST", "local*", "127.0.0.1"):
        assert granted_by(f"ALL: {pat}", req), pat
    assert not granted_by("ALL: UNKNOWN", req)


def test_paranoid_name():
    req = named("10.0.0.1", PARANOID)
    assert granted_by("ALL: PARANOID", req)
    assert not granted_by("ALL: KNOWN", req)
    assert not granted_by("ALL: LOCAL", req)
    assert not granted_by("ALL: UNKNOWN", req)


# --- MUST 3: lists and EXCEPT ----------------------------------------------------------------

def test_except():
    r = addr("10.0.0.1")
    assert not granted_by("ALL: ALL EXCEPT 10.0.0.2, 10.0.0.1", r)
    assert granted_by("ALL: ALL except 10.0.0.2", r)
    assert granted_by("ALL: ALL EXCEPT 10. EXCEPT 10.0.0.1", r)  # a EXCEPT (b EXCEPT c)
    assert not granted_by("ALL EXCEPT imapd: ALL", r)
    assert granted_by("pop3d,imapd\tsmtpd: 10.0.0.9 , 10.0.0.1", r)
    assert granted_by("IMAPD: all", r)


def test_list_match_nests_exceptions_to_the_right():
    def yes(tok: str) -> bool:
        return tok != "no"

    assert list_match(["a", "EXCEPT", "no"], yes)
    assert not list_match(["a", "EXCEPT", "b"], yes)
    assert list_match(["a", "EXCEPT", "b", "except", "c"], yes)
    assert not list_match(["EXCEPT", "a"], yes)
    assert not list_match([], yes)


# --- MUST 4: net/mask ------------------------------------------------------------------------

@pytest.mark.parametrize("pattern,client,expected", [
    ("10.0.0.0/24", "10.0.0.1", True),
    ("10.0.0.7/24", "10.0.0.7", False),
    ("10.0.0.7/255.255.255.0", "10.0.0.7", False),
    ("10.0.0.7/255.255.255.255", "10.0.0.7", False),
    ("10.0.0.7/32", "10.0.0.7", True),
    ("10.0.0.0/255.0.255.0", "10.9.0.9", True),
    ("10.0.0.0/0", "10.0.0.1", False),
    ("0.0.0.0/0.0.0.0", "192.0.2.1", True),
    ("[2001:db8::1]/32", "2001:db8::5", True),
    ("[::]/0", "2001:db8::5", True),
    ("[::]/0", "10.0.0.1", False),
    ("[2001:db8::]/129", "2001:db8::", False),
    ("[2001:db8::1]", "2001:DB8:0::1", True),
    ("2001:db8::1", "2001:db8::1", False),
    ("10.0.0.0/8", "::ffff:10.1.2.3", True),
    ("10.1.2.3", "::ffff:10.1.2.3", True),
    ("10.", "::ffff:10.1.2.3", True),
])
def test_masks(pattern, client, expected):
    assert granted_by(f"ALL: {pattern}", addr(client)) is expected


@pytest.mark.parametrize("text,expected", [
    ("10.0.0.1", 0x0A000001), ("012.0.0.1", 0x0A000001), ("0x0a.0.0.1", 0x0A000001),
    ("10.1", 0x0A000001), ("167772161", 0x0A000001), ("10.0.0.1 junk", 0x0A000001),
    ("255.255.255.255", None), ("10.0.0.256", None), ("10.0.0.1x", None), ("", None),
    ("0x", None), ("08.0.0.1", None), ("10.0.0.1.", None),
])
def test_inet_addr_reads_like_glibc(text, expected):  # values checked against glibc
    assert inet_addr(text) == expected


def test_dot_quad_addr_wants_four_parts():
    assert dot_quad_addr("10.0.0.1") == 0x0A000001
    assert dot_quad_addr("10.1") is None
    assert dot_quad_addr("10..0.0.1") is None  # four runs, but inet_addr() refuses ".."


def test_mask_and_prefix_readers():
    assert ipv4_mask("24") == ipv4_mask("255.255.255.0") == 0xFFFFFF00
    assert ipv4_mask("0") is None and ipv4_mask("33") is None
    assert ipv4_mask("255.255.255.255") is None  # inet_addr() cannot tell it from an error
    assert ipv6_net("[2001:db8::]", "32") is not None
    assert ipv6_net("2001:db8::", "32") is None
    assert ipv6_net("[::]", "129") is None
    assert bracketed("[::1]") == "::1" and bracketed("::1") is None and bracketed("[") is None
    assert masked_match("[::]", "0", "::1") and not masked_match("[::]", "0", "10.0.0.1")


def test_daemon_or_port():
    assert daemon_or_port("993", "imapd", 993)
    assert not daemon_or_port("993", "imapd", None)
    assert daemon_or_port("imap*", "imapd", None)
    assert daemon_or_port("99999", "99999", None)  # beyond a port number: a name


# --- MUST 5: prefixes, suffixes, wildcards ---------------------------------------------------

def test_prefix_and_wildcards():
    req = named("192.0.2.1", "mail.example.com")
    assert granted_by("ALL: mail.", req)
    assert granted_by("ALL: 192.0.", req)
    assert granted_by("ALL: .example.com", req)
    assert not granted_by("ALL: .mail.example.com", req)
    assert granted_by("ALL: m*l.*.com", req)
    assert granted_by("ALL: 192.0.2.?", req)
    assert not granted_by("ALL: *.example.com.", named("192.0.2.1", "mail.example.com"))
    assert not granted_by("ALL: 192.*/24", req)
    assert granted_by("imap*: ALL", req)
    assert granted_by("imapd*: ALL", req)  # '*' matches the empty string
    assert granted_by("ALL@*: ALL", Request("imapd", "192.0.2.1", server_addr="127.0.0.1"))
    assert granted_by("ALL: b?b@ALL", Request("imapd", "192.0.2.1", user="bob"))


def test_users_and_servers():
    req = Request("imapd", "10.0.0.1", user=None, server_addr="127.0.0.1",
                  server_name="localhost", server_port=993)
    assert granted_by("ALL: UNKNOWN@ALL", req)
    assert not granted_by("ALL: KNOWN@ALL", req)
    assert granted_by("imapd@localhost: ALL", req)
    assert granted_by("imapd@127.0.0.1: ALL", req)
    assert granted_by("993: ALL", req)
    assert not granted_by("995: ALL", req)
    assert not granted_by("ALL: @somegroup", req)
    assert granted_by("ALL: @somegroup", req) is False
    d = allow_text("ALL: @ng\n", req, "ALL: ALL\n", netgroup=lambda g, h: g == "ng")
    assert d.granted


def test_pattern_files_via_callback():
    def read(path):
        if path == "/etc/ok":
            return ["192.0.2.0/24", "10.0.0.1"]
        if path == "/etc/secret":
            raise PermissionError(13, "Permission denied")
        raise FileNotFoundError(path)

    d = allow_text("ALL: /etc/ok\n", addr("10.0.0.1"), "ALL: ALL\n", read_patterns=read)
    assert d.granted
    d = allow_text("ALL: /etc/secret /missing\n", addr("10.0.0.1"), "ALL: ALL\n",
                   read_patterns=read)
    assert not d.granted
    assert "warning: hosts.allow, line 1: open /etc/secret: Permission denied" in d.log
