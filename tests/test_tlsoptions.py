"""tlsoptions: the TLS option parsers, stunnel's verify levels and the ALPN choice."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tlswrap.tlsoptions import (
    VERIFY_LEVELS,
    VerifyLevel,
    alpn_select,
    parse_alpn,
    parse_email,
    parse_ip,
    parse_security_level,
    parse_verify_level,
    resolve_verify,
    split_sni,
)


def wire(*names: bytes) -> bytes:
    return b"".join(bytes([len(n)]) + n for n in names)


def test_alpn_select_takes_the_servers_first_choice_the_client_offers():
    offered = wire(b"h2", b"pop3", b"imap")
    at = alpn_select([b"imap", b"pop3"], offered)
    assert at == 8 and offered[at + 1:at + 1 + offered[at]] == b"imap"


def test_alpn_select_none_when_nothing_matches_or_the_list_is_malformed():
    assert alpn_select([b"imap"], wire(b"http/1.1", b"h2")) is None
    assert alpn_select([b"imap"], b"\x05imap") is None  # length past the end
    assert alpn_select([b"imap"], b"\x00\x04imap") is None  # an empty name
    assert alpn_select([b"imap"], b"") is None


@given(st.lists(st.binary(min_size=1, max_size=20), max_size=6),
       st.lists(st.binary(min_size=1, max_size=20), min_size=1, max_size=3))
def test_alpn_select_agrees_with_a_plain_search(offered, wanted):
    at = alpn_select(wanted, wire(*offered))
    expected = next((w for w in wanted if w in offered), None)
    if expected is None:
        assert at is None
    else:
        data = wire(*offered)
        assert at is not None and data[at + 1:at + 1 + data[at]] == expected


@given(st.binary(max_size=40))
def test_alpn_select_never_fails_on_any_bytes(data):
    at = alpn_select([b"imap"], data)
    assert at is None or data[at + 1:at + 5] == b"imap"


def test_parse_alpn():
    assert parse_alpn("imap, pop3 managesieve") == ("imap", "pop3", "managesieve")
    for bad, why in [("", "empty value"), ("imap,imap", "named twice"),
                     ("x" * 256, "not a protocol name")]:
        with pytest.raises(ValueError, match=why):
            parse_alpn(bad)


def test_stunnels_verify_levels():
    # stunnel's table: request, require, chain, peer
    assert [tuple(vars(VERIFY_LEVELS[n]).values()) for n in range(5)] == [
        (True, False, False, False), (True, False, True, False), (True, True, True, False),
        (True, True, True, True), (True, True, False, True)]
    for bad in ("5", "-1", "x", "²"):
        with pytest.raises(ValueError, match="expected a level from 0 to 4"):
            parse_verify_level(bad)


def test_explicit_options_win_over_the_level():
    nothing = VerifyLevel(False, False, False, False)
    assert resolve_verify(None, None, None, None) == nothing
    # verifyChain alone requires a certificate unless requireCert = no says otherwise
    assert resolve_verify(None, True, None, None) == VerifyLevel(True, True, True, False)
    assert resolve_verify(None, True, None, False) == VerifyLevel(True, False, True, False)
    assert resolve_verify(2, False, True, None) == VerifyLevel(True, True, False, True)
    assert resolve_verify(1, None, None, True) == VerifyLevel(True, True, True, False)


def test_other_parsers():
    assert parse_ip("2001:DB8::1") == "2001:db8::1"
    assert parse_email("client@example.org") == "client@example.org"
    assert parse_security_level("2") == 2
    for parse, bad in [(parse_ip, "example.org"), (parse_email, "nobody"),
                       (parse_email, "a b@c"), (parse_security_level, "6")]:
        with pytest.raises(ValueError):
            parse(bad)


def test_split_sni():
    assert split_sni("imaps:*.Example.ORG.") == ("imaps", "*.example.org")
    assert split_sni("mail.example.org") is None
    assert split_sni(":x") is None


def test_sections_with_sni_become_secondaries_of_their_primary():
    from tlswrap.config import parse_config

    config = parse_config("[imaps]\naccept = 993\nconnect = 143\ncert = a.pem\ncert = b.pem\n"
                          "key = b.key\nalpn = imap\n[v]\nsni = imaps:*.example.net\n"
                          "connect = 1143\ncert = v.pem\n[out]\nclient = yes\naccept = 1465\n"
                          "connect = smtp.example.org:465\nsni = smtp.example.org\n")
    imaps, out = config.services
    assert [s.name for s in config.services] == ["imaps", "out"]
    assert imaps.more_certs == (("b.pem", "b.key", 5),)
    assert [s.name for s in imaps.sni_sections] == ["v"]
    assert imaps.sni_sections[0].connect[0].port == 1143
    assert out.sni == ("smtp.example.org",)
    # client = yes verifies the server by default; verifyChain = no has to be said
    assert out.verification.chain and not imaps.verification.request


def test_check_warns_about_a_client_that_does_not_verify_and_a_mail_port_without_alpn():
    from tlswrap.config import config_warnings, parse_config

    config = parse_config("[out]\nclient = yes\naccept = 1143\nconnect = imap.example.org:993\n"
                          "verifyChain = no\n[imaps]\naccept = 993\nconnect = 143\n"
                          "cert = a.pem\n[pop3s]\naccept = 995\nconnect = 110\ncert = a.pem\n"
                          "alpn = pop3\n", "svc.conf")
    assert [str(w) for w in config_warnings(config)] == [
        "svc.conf:5: [out] client = yes without verifyChain: any server certificate is "
        "accepted, so anyone on the path can read the traffic",
        "svc.conf:7: [imaps] accept = 0.0.0.0:993: add alpn = imap, so that a client offering "
        "another protocol (a browser sent here by the ALPACA attack) is refused; clients "
        "without ALPN are still served"]
