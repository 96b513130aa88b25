"""IMAP STARTTLS conversation (pure): exact bytes each way, fed whole and one byte at a time."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from starttls_driver import drive
from tlswrap import starttls
from tlswrap.starttls.imap import rewrite_capabilities, rewrite_line

CAPS = b"IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN auth=login"
SHOWN = b"IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS LOGINDISABLED"
GREETING = b"* OK [CAPABILITY " + CAPS + b"] Dovecot ready.\r\n"


def answer(line: bytes) -> bytes:
    tag, _, command = line.partition(b" ")
    if command == b"CAPABILITY":
        return b"* CAPABILITY " + CAPS + b"\r\n" + tag + b" OK Pre-login capabilities listed.\r\n"
    if command == b"NOOP":
        return tag + b" OK NOOP completed.\r\n"
    if command == b"LOGOUT":
        return b"* BYE Logging out\r\n" + tag + b" OK Logout completed.\r\n"
    return tag + b" BAD the backend was asked something it should not have been\r\n"


def imap(client: bytes, greeting: bytes = GREETING, **kw):
    return drive(starttls.conversation("imap"), greeting, answer, client, **kw)


both = pytest.mark.parametrize("one_byte", [False, True], ids=["whole", "bytewise"])


@both
def test_greeting_and_capability_before_tls(one_byte):
    t = imap(b"a CAPABILITY\r\n", one_byte=one_byte)
    assert t.to_client == (b"* OK [CAPABILITY " + SHOWN + b"] Dovecot ready.\r\n"
                           b"* CAPABILITY " + SHOWN + b"\r\n"
                           b"a OK Pre-login capabilities listed.\r\n")
    assert t.to_backend == b"a CAPABILITY\r\n"
    assert t.end is None  # waiting for the next command


@both
def test_starttls_then_relay(one_byte):
    t = imap(b"a CAPABILITY\r\nb STARTTLS\r\n", one_byte=one_byte)
    assert t.to_client.endswith(b"a OK Pre-login capabilities listed.\r\n"
                                b"b OK Begin TLS negotiation now\r\n")
    assert t.tls == [starttls.StartTLS(0)]
    assert t.end == starttls.Relay(b"", tls=True)
    assert t.to_backend == b"a CAPABILITY\r\n"  # STARTTLS is answered here, never relayed


@both
def test_logins_refused_and_never_relayed(one_byte):
    t = imap(b"a LOGIN user secret\r\nb AUTHENTICATE PLAIN\r\nc SELECT INBOX\r\nd ID NIL\r\n"
             b"e NOOP\r\n", one_byte=one_byte)
    assert t.to_client == (
        GREETING.replace(CAPS, SHOWN)
        + b"a NO [PRIVACYREQUIRED] Logins are disabled before STARTTLS\r\n"
        b"b NO [PRIVACYREQUIRED] Logins are disabled before STARTTLS\r\n"
        b"c BAD command not allowed before STARTTLS\r\n"
        b"d BAD command not allowed before STARTTLS\r\n"
        b"e OK NOOP completed.\r\n")
    assert t.to_backend == b"e NOOP\r\n"


@both
@pytest.mark.parametrize("injected", [b"b NOOP\r\n", b"b LOGIN u p\r\n", b"b CAPABILITY\r\n"])
def test_command_injection_after_starttls_is_discarded(one_byte, injected):
    t = imap(b"a STARTTLS\r\n" + injected, one_byte=one_byte)
    assert t.end == starttls.Relay(b"", tls=True)
    assert t.to_client == GREETING.replace(CAPS, SHOWN) + b"a OK Begin TLS negotiation now\r\n"
    assert t.to_backend == b""
    # whole: the bytes were read with the STARTTLS line and are dropped; bytewise: they were
    # never read before the handshake (on a real socket the TLS engine gets them)
    assert t.tls == [starttls.StartTLS(0 if one_byte else len(injected))]


def test_response_injected_by_the_backend_never_reaches_the_client():
    def injecting(line: bytes) -> bytes:
        return answer(line) + b"* OK [ALERT] injected\r\n"

    t = drive(starttls.conversation("imap"), GREETING, injecting,
              b"a CAPABILITY\r\nb STARTTLS\r\n")
    assert b"injected" not in t.to_client
    assert t.tls == []
    assert t.end == starttls.Close("the backend sent data it was not asked for")
    assert t.to_client.endswith(b"a OK Pre-login capabilities listed.\r\n"
                                b"* BYE service unavailable\r\n")


def test_greeting_followed_by_more_is_refused():
    t = imap(b"a STARTTLS\r\n", greeting=GREETING + b"* OK injected\r\n")
    assert t.end == starttls.Close("the backend sent data it was not asked for")
    assert t.tls == [] and b"injected" not in t.to_client


@both
def test_nonsynchronizing_literal_of_a_refused_command_is_skipped(one_byte):
    # the literal holds what looks like a STARTTLS command: it must not be taken as one
    t = imap(b"a LOGIN {12+}\r\nb STARTTLS\r\n {6+}\r\nsecret\r\nc NOOP\r\n", one_byte=one_byte)
    assert t.tls == []
    assert t.to_client.endswith(b"a NO [PRIVACYREQUIRED] Logins are disabled before STARTTLS\r\n"
                                b"c OK NOOP completed.\r\n")
    assert t.to_backend == b"c NOOP\r\n"


def test_synchronizing_literal_is_refused_at_once():
    t = imap(b"a LOGIN {4}\r\n")
    assert t.to_client.endswith(b"a NO [PRIVACYREQUIRED] Logins are disabled before STARTTLS\r\n")
    assert t.end is None


def test_huge_literal_closes():
    t = imap(b"a LOGIN {999999+}\r\n")
    assert t.end == starttls.Close("client: a literal of 999999 bytes before TLS")


@both
def test_logout_is_relayed_and_ends(one_byte):
    t = imap(b"a LOGOUT\r\n", one_byte=one_byte)
    assert t.to_client.endswith(b"* BYE Logging out\r\na OK Logout completed.\r\n")
    assert t.end == starttls.Close("the client logged out before TLS")


@pytest.mark.parametrize("tag", [b"*", b"a*", b"+", b"(a)", b'"a"', b"a{", b"a%", b"\xe9"])
def test_a_bad_tag_is_never_relayed(tag):
    # a "*" tag would make the backend's untagged lines look like the end of its reply
    t = imap(tag + b" CAPABILITY\r\n")
    assert t.to_client.endswith(b"* BAD missing tag or command\r\n")
    assert t.to_backend == b""


def test_arguments_to_argumentless_commands_are_bad():
    t = imap(b"a CAPABILITY x\r\nb STARTTLS now\r\n\r\n")
    assert t.to_client.endswith(b"a BAD no arguments allowed\r\nb BAD no arguments allowed\r\n"
                                b"* BAD missing tag or command\r\n")
    assert t.to_backend == b"" and t.tls == []


def test_line_too_long():
    t = imap(b"a " + b"x" * starttls.LINE_MAX)
    assert t.end == starttls.Close(f"client: a line longer than {starttls.LINE_MAX} bytes")
    assert t.to_client.endswith(b"* BYE line too long\r\n")


def test_too_many_commands():
    t = imap(b"a NOOP\r\n" * 30)
    assert t.to_client.count(b"a OK NOOP") == starttls.COMMANDS_MAX
    assert t.to_client.endswith(b"* BYE too many commands before STARTTLS\r\n")
    assert isinstance(t.end, starttls.Close)


def test_client_eof():
    t = imap(b"a NOOP\r\n", client_eof=True)
    assert t.end == starttls.Close("the client closed the connection")


@pytest.mark.parametrize(("greeting", "reply", "reason"), [
    (b"* PREAUTH logged in\r\n", b"* BYE the server cannot start TLS\r\n",
     "the backend's greeting is not * OK"),
    (b"* BYE too busy\r\n", b"* BYE too busy\r\n", "the backend refused the session"),
])
def test_greetings_that_cannot_lead_to_tls(greeting, reply, reason):
    t = imap(b"a STARTTLS\r\n", greeting=greeting)
    assert (t.to_client, t.end, t.tls) == (reply, starttls.Close(reason), [])


def test_rewrite_capabilities():
    assert rewrite_capabilities(b"IMAP4rev2 STARTTLS AUTH=PLAIN LOGINDISABLED X") == (
        b"IMAP4rev2 X STARTTLS LOGINDISABLED")
    assert rewrite_line(b"* capability IMAP4rev1 AUTH=X") == (
        b"* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED")
    assert rewrite_line(b"a OK [CAPABILITY IMAP4rev1 AUTH=X] done") == (
        b"a OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] done")
    assert rewrite_line(b"* OK [ALERT] nothing") == b"* OK [ALERT] nothing"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.booleans())
def test_any_client_bytes_reach_the_backend_only_as_allowed_commands(data, one_byte):
    t = imap(data, one_byte=one_byte, client_eof=True)
    for line in t.to_backend.splitlines():
        assert line.split(b" ", 1)[1] in (b"CAPABILITY", b"NOOP", b"LOGOUT")
    assert t.end is not None
    if t.tls:
        assert b"STARTTLS" in data.upper()
