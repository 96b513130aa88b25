"""SMTP STARTTLS conversation (pure): exact bytes each way, fed whole and one byte at a time."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from starttls_driver import drive
from tlswrap import starttls
from tlswrap.starttls.smtp import rewrite_ehlo

GREETING = b"220-mx.example.org ESMTP Postfix\r\n220 mx.example.org ready\r\n"
EHLO = (b"250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-AUTH PLAIN LOGIN\r\n"
        b"250-AUTH=PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
SHOWN = (b"250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n"
         b"250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 STARTTLS\r\n")


def answer(line: bytes) -> bytes:
    verb = line.split(b" ", 1)[0].upper()
    return {b"EHLO": EHLO, b"HELO": b"250 mx.example.org\r\n", b"NOOP": b"250 2.0.0 Ok\r\n",
            b"RSET": b"250 2.0.0 Ok\r\n", b"QUIT": b"221 2.0.0 Bye\r\n"}.get(
        verb, b"502 the backend was asked something it should not have been\r\n")


def smtp(client: bytes, after_tls: bytes = b"", required: bool = True, **kw):
    return drive(starttls.conversation("smtp", required), GREETING, answer, client, after_tls,
                 **kw)


both = pytest.mark.parametrize("one_byte", [False, True], ids=["whole", "bytewise"])


@both
def test_ehlo_before_tls_offers_starttls_and_no_auth(one_byte):
    t = smtp(b"EHLO client.example.org\r\n", one_byte=one_byte)
    assert t.to_client == GREETING + SHOWN
    assert t.to_backend == b"EHLO client.example.org\r\n"


@both
def test_starttls_then_the_new_ehlo_reaches_the_backend(one_byte):
    t = smtp(b"EHLO c\r\nSTARTTLS\r\n", b"EHLO c\r\nMAIL FROM:<a@b>\r\n", one_byte=one_byte)
    assert t.to_client == GREETING + SHOWN + b"220 2.0.0 Ready to start TLS\r\n"
    assert t.tls == [starttls.StartTLS(0)]
    if one_byte:
        assert t.end == starttls.Relay(b"EHLO c\r\n", tls=True)
    else:
        assert t.end == starttls.Relay(b"EHLO c\r\nMAIL FROM:<a@b>\r\n", tls=True)
    assert t.to_backend == b"EHLO c\r\n"  # the backend gets the second EHLO from the relay


@both
def test_helo_client(one_byte):
    t = smtp(b"HELO c\r\nSTARTTLS\r\n", b"HELO c\r\n", one_byte=one_byte)
    assert t.to_client == GREETING + b"250 mx.example.org\r\n220 2.0.0 Ready to start TLS\r\n"
    assert t.end == starttls.Relay(b"HELO c\r\n", tls=True)


def test_after_tls_only_ehlo_helo_noop_rset_quit_until_ehlo():
    t = smtp(b"EHLO c\r\nSTARTTLS\r\n", b"MAIL FROM:<a@b>\r\nNOOP\r\nAUTH PLAIN x\r\nEHLO c\r\n")
    assert t.to_client_after_tls == (b"503 5.5.1 Error: send HELO/EHLO first\r\n"
                                     b"250 2.0.0 Ok\r\n"
                                     b"503 5.5.1 Error: send HELO/EHLO first\r\n")
    assert t.to_backend == b"EHLO c\r\nNOOP\r\n"
    assert t.end == starttls.Relay(b"EHLO c\r\n", tls=True)


def test_quit_after_tls_before_ehlo():
    t = smtp(b"EHLO c\r\nSTARTTLS\r\n", b"QUIT\r\n")
    assert t.to_client_after_tls == b"221 2.0.0 Bye\r\n"
    assert t.end == starttls.Close("the client quit before EHLO")


@both
@pytest.mark.parametrize("injected", [b"RSET\r\n", b"NOOP\r\n", b"MAIL FROM:<evil@x>\r\n",
                                      b"EHLO evil\r\n"])
def test_command_injection_after_starttls_is_discarded(one_byte, injected):
    t = smtp(b"EHLO c\r\nSTARTTLS\r\n" + injected, b"EHLO c\r\n", one_byte=one_byte)
    assert t.tls == [starttls.StartTLS(0 if one_byte else len(injected))]
    assert t.to_client_after_tls == b""
    assert t.to_backend == b"EHLO c\r\n"
    assert t.end == starttls.Relay(b"EHLO c\r\n", tls=True)


def test_response_injected_by_the_backend_never_reaches_the_client():
    def injecting(line: bytes) -> bytes:
        return answer(line) + b"250 injected\r\n"

    t = drive(starttls.conversation("smtp"), GREETING, injecting, b"EHLO c\r\nSTARTTLS\r\n")
    assert b"injected" not in t.to_client and t.tls == []
    assert t.end == starttls.Close("the backend sent data it was not asked for")
    assert t.to_client == GREETING + SHOWN + b"421 4.3.0 Service not available\r\n"


@both
def test_required_refuses_mail_and_auth(one_byte):
    t = smtp(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nAUTH PLAIN AGpvZQBz\r\n"
             b"VRFY root\r\nHELP\r\nNOOP\r\nRSET\r\n", one_byte=one_byte)
    assert t.to_client == GREETING + SHOWN + (
        b"530 5.7.0 Must issue a STARTTLS command first\r\n" * 5
        + b"500 5.5.2 Error: command not recognized\r\n250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n")
    assert t.to_backend == b"EHLO c\r\nNOOP\r\nRSET\r\n"


def test_optional_lets_mail_go_on_in_plaintext():
    t = smtp(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n", required=False)
    assert t.end == starttls.Relay(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n", tls=False)
    assert t.to_client == GREETING + SHOWN
    assert not starttls.conversation("smtp", required=False).tls_first


def test_optional_still_refuses_auth_before_tls():
    t = smtp(b"EHLO c\r\nAUTH PLAIN AGpvZQBz\r\n", required=False)
    assert t.to_client.endswith(b"530 5.7.0 Must issue a STARTTLS command first\r\n")
    assert t.to_backend == b"EHLO c\r\n"


def test_starttls_needs_ehlo_first_and_no_arguments():
    t = smtp(b"STARTTLS\r\nEHLO c\r\nSTARTTLS now\r\n")
    assert t.to_client == GREETING + b"503 5.5.1 Error: send HELO/EHLO first\r\n" + SHOWN + (
        b"501 5.5.4 Syntax: STARTTLS\r\n")
    assert t.tls == []


def test_ehlo_refused_by_the_backend_is_passed_on():
    def old(line: bytes) -> bytes:
        return b"502 5.5.2 EHLO not supported\r\n" if line.startswith(b"EHLO") else answer(line)

    t = drive(starttls.conversation("smtp"), GREETING, old, b"EHLO c\r\nSTARTTLS\r\n")
    assert t.to_client == GREETING + b"502 5.5.2 EHLO not supported\r\n" + (
        b"503 5.5.1 Error: send HELO/EHLO first\r\n")


@pytest.mark.parametrize("reply", [b"25 short\r\n", b"250-a\r\n251 b\r\n", b"hello\r\n"])
def test_malformed_backend_reply(reply):
    t = drive(starttls.conversation("smtp"), GREETING, lambda line: reply, b"EHLO c\r\n")
    assert t.end == starttls.Close("the backend sent a malformed SMTP reply")


def test_refusing_greeting_ends():
    t = drive(starttls.conversation("smtp"), b"554 5.7.1 no\r\n", answer, b"EHLO c\r\n")
    assert (t.to_client, t.end) == (b"554 5.7.1 no\r\n",
                                    starttls.Close("the backend refused the session"))


def test_limits():
    t = smtp(b"EHLO " + b"x" * starttls.LINE_MAX)
    assert t.to_client.endswith(b"500 5.5.0 Line too long\r\n")
    t = smtp(b"NOOP\r\n" * 25)
    assert t.to_client.endswith(b"421 4.7.0 Too many commands before STARTTLS\r\n")
    assert t.to_client.count(b"250 2.0.0 Ok") == starttls.COMMANDS_MAX


def test_rewrite_ehlo():
    assert rewrite_ehlo([b"250 mx"]) == [b"250-mx", b"250 STARTTLS"]
    assert rewrite_ehlo([b"250-mx", b"250-STARTTLS", b"250 auth login"]) == [
        b"250-mx", b"250 STARTTLS"]


WORDS = [b"EHLO c\r\n", b"HELO c\r\n", b"STARTTLS\r\n", b"MAIL FROM:<a>\r\n", b"AUTH PLAIN\r\n",
         b"QUIT\r\n", b"RSET\r\n", b"\r\n", b"DATA\r\n"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(WORDS) | st.binary(max_size=20), max_size=12), st.booleans())
def test_any_client_bytes_reach_the_backend_only_as_allowed_commands(parts, one_byte):
    data = b"".join(parts)
    t = smtp(data, one_byte=one_byte, client_eof=True)
    for line in t.to_backend.splitlines():
        assert line.split(b" ", 1)[0].upper() in (b"EHLO", b"HELO", b"NOOP", b"RSET", b"QUIT")
    assert t.end is not None
    assert t.to_client_after_tls == b""  # nothing from before TLS is answered inside it
