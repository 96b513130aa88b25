"""POP3 STLS conversation (pure): exact bytes each way, fed whole and one byte at a time."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from starttls_driver import drive
from tlswrap import starttls

GREETING = b"+OK Dovecot ready. <1896.697170952@dbc.mtview.ca.us>\r\n"
CAPA = (b"+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\nUSER\r\n"
        b"SASL PLAIN LOGIN\r\n.\r\n")
SHOWN = b"+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\nSTLS\r\n.\r\n"


def answer(line: bytes) -> bytes:
    if line == b"CAPA":
        return CAPA
    if line == b"QUIT":
        return b"+OK Logging out\r\n"
    return b"-ERR the backend was asked something it should not have been\r\n"


def pop3(client: bytes, greeting: bytes = GREETING, answer=answer, **kw):
    return drive(starttls.conversation("pop3"), greeting, answer, client, **kw)


both = pytest.mark.parametrize("one_byte", [False, True], ids=["whole", "bytewise"])


@both
def test_capa_before_tls_offers_stls_and_no_login(one_byte):
    t = pop3(b"CAPA\r\n", one_byte=one_byte)
    assert t.to_client == GREETING + SHOWN
    assert t.to_backend == b"CAPA\r\n" and t.end is None


@both
def test_stls_then_relay(one_byte):
    t = pop3(b"capa\r\nstls\r\n", one_byte=one_byte)
    assert t.to_client == GREETING + SHOWN + b"+OK Begin TLS negotiation\r\n"
    assert t.tls == [starttls.StartTLS(0)]
    assert t.end == starttls.Relay(b"", tls=True)
    assert t.to_backend == b"CAPA\r\n"


@both
def test_logins_and_other_commands_refused(one_byte):
    t = pop3(b"USER joe\r\nPASS secret\r\nAPOP joe c4c9334bac560ecc979e58001b3e22fb\r\n"
             b"AUTH PLAIN\r\nSTAT\r\nNOOP\r\n", one_byte=one_byte)
    assert t.to_client == GREETING + b"-ERR Logins are disabled before STLS\r\n" * 4 + (
        b"-ERR Command not allowed before STLS\r\n" * 2)
    assert t.to_backend == b""


@both
@pytest.mark.parametrize("injected", [b"CAPA\r\n", b"USER joe\r\n", b"QUIT\r\n"])
def test_command_injection_after_stls_is_discarded(one_byte, injected):
    t = pop3(b"STLS\r\n" + injected, one_byte=one_byte)
    assert t.to_client == GREETING + b"+OK Begin TLS negotiation\r\n"
    assert t.to_backend == b""
    assert t.tls == [starttls.StartTLS(0 if one_byte else len(injected))]
    assert t.end == starttls.Relay(b"", tls=True)


def test_response_injected_by_the_backend_never_reaches_the_client():
    t = pop3(b"CAPA\r\nSTLS\r\n", answer=lambda line: answer(line) + b"+OK injected\r\n")
    assert b"injected" not in t.to_client and t.tls == []
    assert t.end == starttls.Close("the backend sent data it was not asked for")
    assert t.to_client == GREETING + SHOWN + b"-ERR service unavailable\r\n"


def test_backend_without_capa():
    t = pop3(b"CAPA\r\n", answer=lambda line: b"-ERR unknown command\r\n")
    assert t.to_client == GREETING + b"+OK Capability list follows\r\nSTLS\r\n.\r\n"


def test_quit_is_relayed_and_ends():
    t = pop3(b"QUIT\r\n")
    assert t.to_client == GREETING + b"+OK Logging out\r\n"
    assert t.end == starttls.Close("the client quit before TLS")


def test_refusing_greeting_ends():
    t = pop3(b"STLS\r\n", greeting=b"-ERR go away\r\n")
    assert (t.to_client, t.end) == (b"-ERR go away\r\n",
                                    starttls.Close("the backend refused the session"))


def test_limits():
    t = pop3(b"X" * (starttls.LINE_MAX + 1))
    assert t.to_client.endswith(b"-ERR line too long\r\n")
    t = pop3(b"NOOP\r\n" * 25)
    assert t.to_client.endswith(b"-ERR too many commands before STLS\r\n")
    assert isinstance(t.end, starttls.Close)


def test_optional_changes_nothing():
    t = drive(starttls.conversation("pop3", required=False), GREETING, answer,
              b"USER joe\r\nSTAT\r\n")
    assert t.to_client == GREETING + b"-ERR Logins are disabled before STLS\r\n" + (
        b"-ERR Command not allowed before STLS\r\n")
    assert starttls.conversation("pop3", required=False).tls_first


WORDS = [b"CAPA\r\n", b"STLS\r\n", b"USER a\r\n", b"PASS b\r\n", b"QUIT\r\n", b"\r\n", b"STLS"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(WORDS) | st.binary(max_size=20), max_size=12), st.booleans())
def test_any_client_bytes_reach_the_backend_only_as_allowed_commands(parts, one_byte):
    data = b"".join(parts)
    t = pop3(data, one_byte=one_byte, client_eof=True)
    assert set(t.to_backend.splitlines()) <= {b"CAPA", b"QUIT"}
    assert t.end is not None
    assert b"Logging out" not in t.to_client_after_tls
