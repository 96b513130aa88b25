"""Client-side STARTTLS (``client = yes`` with ``protocol``) and SMTP AUTH inside TLS
(``protocolUsername``, ``protocolPassword``): the pure machines, fed whole and one byte at a
time."""

from __future__ import annotations

import base64

import pytest

from tlswrap.starttls.client import (
    AUTH_FAILED_REPLY,
    AUTHENTICATED,
    FAILED,
    NEED,
    TLS,
    Authentication,
    Negotiation,
)


def _run(protocol: str, server: list[bytes], one_byte: bool) -> Negotiation:
    """Feed the server's lines in turn, each after the negotiation has asked for it."""
    neg = Negotiation(protocol, "client.example")
    for chunk in server:
        pieces = [chunk[i:i + 1] for i in range(len(chunk))] if one_byte else [chunk]
        for piece in pieces:
            neg.receive(piece)
    return neg


SMTP = [b"220-mx.example ESMTP\r\n220 ready\r\n",
        b"250-mx.example\r\n250-PIPELINING\r\n250 STARTTLS\r\n", b"220 go ahead\r\n"]
IMAP = [b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready\r\n",
        b"* CAPABILITY IMAP4rev1 STARTTLS\r\ntw1 OK begin TLS\r\n"]
POP3 = [b"+OK POP3 ready\r\n", b"+OK begin TLS\r\n"]


@pytest.mark.parametrize("one_byte", [False, True])
@pytest.mark.parametrize(("protocol", "server", "to_server", "to_client"), [
    ("smtp", SMTP, b"EHLO client.example\r\nSTARTTLS\r\n",
     b"220-mx.example ESMTP\r\n220 ready\r\n"),
    ("imap", IMAP, b"tw1 STARTTLS\r\n", b"* OK ready, TLS to the server\r\n"),
    ("pop3", POP3, b"STLS\r\n", b"+OK POP3 ready\r\n"),
])
def test_each_protocol_reaches_tls(protocol, server, to_server, to_client, one_byte):
    neg = _run(protocol, server, one_byte)
    assert neg.state == TLS, neg.reason
    assert neg.take() == (to_server, to_client)


def test_nothing_is_sent_before_the_greeting():
    neg = Negotiation("smtp")
    assert neg.state == NEED and neg.take() == (b"", b"")
    neg.receive(b"220 ready\r\n")
    assert neg.take() == (b"EHLO localhost\r\n", b"220 ready\r\n")


@pytest.mark.parametrize(("protocol", "server", "reason", "last_word"), [
    ("smtp", [b"554 go away\r\n"], "the server's greeting is '554 go away'", b"554 go away\r\n"),
    ("smtp", [b"220 ok\r\n", b"250 x\r\n", b"454 TLS not available\r\n"],
     "the server answered '454 TLS not available'", b"220 ok\r\n"),
    ("imap", [b"* OK hi\r\n", b"tw1 BAD no\r\n"], "the server answered 'tw1 BAD no'",
     b"* OK ready, TLS to the server\r\n* BYE the server refuses STARTTLS\r\n"),
    ("imap", [b"* PREAUTH hi\r\n"], "the server's greeting is '* PREAUTH hi'", b""),
    ("pop3", [b"+OK hi\r\n", b"-ERR no\r\n"], "the server answered '-ERR no'",
     b"+OK hi\r\n-ERR the server refuses STLS\r\n"),
    ("pop3", [b"+OK hi\r\n", b""], "the server closed the connection", b"+OK hi\r\n"),
])
def test_refusals_say_why(protocol, server, reason, last_word):
    neg = _run(protocol, server, False)
    assert (neg.state, neg.reason) == (FAILED, reason)
    assert neg.take()[1] == last_word


@pytest.mark.parametrize(("protocol", "server"), [("smtp", SMTP), ("imap", IMAP),
                                                  ("pop3", POP3)])
def test_bytes_after_the_go_ahead_end_it(protocol, server):
    """A server (or someone in the path) adding bytes after its "go ahead": they would be read
    inside TLS, so the negotiation fails (CVE-2011-1575's response injection)."""
    neg = _run(protocol, [*server[:-1], server[-1] + b"250 injected\r\n"], False)
    assert (neg.state, neg.reason) == (FAILED, "the server sent more before the TLS handshake")
    neg = _run(protocol, server, False)
    assert neg.state == TLS
    neg.receive(b"late")
    assert neg.state == FAILED


def test_an_endless_line_is_refused():
    neg = Negotiation("pop3")
    neg.receive(b"+" * 10000)
    assert neg.state == FAILED and "longer than" in neg.reason


# ---------------------------------------------------------------- SMTP AUTH inside TLS

PLAIN_TOKEN = base64.b64encode(b"\0user@example.org\0s3cr\xc3\xa9t").decode()
EHLO_REPLY = b"250-mx.example\r\n250-PIPELINING\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n"


def _auth(mechanism: str, server: list[bytes], one_byte: bool) -> tuple[Authentication, bytes]:
    """Feed the server's replies in turn; (the machine, all it asked to send the server)."""
    auth = Authentication("user@example.org", "s3crét", mechanism, "relay.example")
    sent = auth.take()[0]
    for chunk in server:
        pieces = [chunk[i:i + 1] for i in range(len(chunk))] if one_byte and chunk else [chunk]
        for piece in pieces:
            auth.receive(piece)
            sent += auth.take()[0] if auth.state != FAILED else b""
    return auth, sent


@pytest.mark.parametrize("one_byte", [False, True])
def test_auth_plain(one_byte):
    auth, sent = _auth("plain", [EHLO_REPLY, b"235 2.7.0 Authentication successful\r\n"],
                       one_byte)
    assert auth.state == AUTHENTICATED, auth.reason
    assert sent == f"EHLO relay.example\r\nAUTH PLAIN {PLAIN_TOKEN}\r\n".encode()
    assert auth.take() == (b"", b"")  # nothing for the local client: its own EHLO comes next


@pytest.mark.parametrize("one_byte", [False, True])
def test_auth_login(one_byte):
    auth, sent = _auth("login", [EHLO_REPLY, b"334 VXNlcm5hbWU6\r\n", b"334 UGFzc3dvcmQ6\r\n",
                                 b"235 2.7.0 ok\r\n"], one_byte)
    assert auth.state == AUTHENTICATED, auth.reason
    user, password = (base64.b64encode(v).decode() for v in (b"user@example.org",
                                                              "s3crét".encode()))
    assert sent == f"EHLO relay.example\r\nAUTH LOGIN\r\n{user}\r\n{password}\r\n".encode()


def test_each_step_waits_for_its_reply():
    """Nothing is sent ahead of the server's answer (no pipelining of the credentials)."""
    auth = Authentication("u", "p", "login")
    assert auth.take() == (b"EHLO localhost\r\n", b"")
    auth.receive(b"250-mx\r\n")
    assert auth.take() == (b"", b"")  # the EHLO reply goes on
    auth.receive(b"250 AUTH LOGIN\r\n")
    assert auth.take() == (b"AUTH LOGIN\r\n", b"")
    auth.receive(b"334 VXNlcm5hbWU6\r")
    assert auth.take() == (b"", b"")
    auth.receive(b"\n")
    assert auth.take() == (b"dQ==\r\n", b"")


@pytest.mark.parametrize(("mechanism", "server", "reason"), [
    ("plain", [b"554 5.7.1 no\r\n"], "the server answered EHLO with '554 5.7.1 no'"),
    ("plain", [b"250-mx\r\n421 going down\r\n"], "the server answered EHLO with '421 going down'"),
    ("plain", [EHLO_REPLY, b"535 5.7.8 Error: authentication failed\r\n"],
     "the server answered AUTH PLAIN with '535 5.7.8 Error: authentication failed'"),
    ("plain", [EHLO_REPLY, b"535-5.7.8 bad\r\n535 5.7.8 credentials\r\n"],
     "the server answered AUTH PLAIN with '535-5.7.8 bad'"),
    ("plain", [b"250 mx\r\n", b"503 5.5.1 Error: authentication not enabled\r\n"],
     "the server answered AUTH PLAIN with '503 5.5.1 Error: authentication not enabled' "
     "(its EHLO reply offers no AUTH)"),
    ("plain", [b"250-mx\r\n250 AUTH=LOGIN CRAM-MD5\r\n", b"504 5.5.4 unrecognized\r\n"],
     "the server answered AUTH PLAIN with '504 5.5.4 unrecognized' (it offers AUTH LOGIN "
     "CRAM-MD5)"),
    ("login", [EHLO_REPLY, b"504 no\r\n"], "the server answered AUTH LOGIN with '504 no'"),
    ("login", [EHLO_REPLY, b"334 VXNlcm5hbWU6\r\n", b"535 who\r\n"],
     "the server answered the user name (AUTH LOGIN) with '535 who'"),
    ("login", [EHLO_REPLY, b"334 VXNlcm5hbWU6\r\n", b"334 UGFzc3dvcmQ6\r\n", b"535 5.7.8 no\r\n"],
     "the server answered the password (AUTH LOGIN) with '535 5.7.8 no'"),
    ("login", [EHLO_REPLY, b"334 VXNlcm5hbWU6\r\n", b""], "the server closed the connection"),
    ("plain", [b""], "the server closed the connection"),
])
@pytest.mark.parametrize("one_byte", [False, True])
def test_auth_failures_say_why_and_give_the_client_a_421(mechanism, server, reason, one_byte):
    auth, _ = _auth(mechanism, server, one_byte)
    assert (auth.state, auth.reason) == (FAILED, reason)
    assert auth.take() == (b"", AUTH_FAILED_REPLY)
    assert AUTH_FAILED_REPLY.startswith(b"421 ")


def test_the_credentials_never_reach_the_reason():
    """The reason quotes the server's reply, never the password or its base64."""
    for mechanism in ("plain", "login"):
        auth, _ = _auth(mechanism, [EHLO_REPLY, b"535 5.7.8 failed\r\n"], False)
        assert auth.state == FAILED
        assert "s3cr" not in auth.reason and PLAIN_TOKEN not in auth.reason
        assert base64.b64encode("s3crét".encode()).decode() not in auth.reason


def test_a_reply_with_more_after_it_ends_it():
    """Bytes after the 235 would reach the local client as if they answered its EHLO."""
    auth, _ = _auth("plain", [EHLO_REPLY, b"235 ok\r\n250 injected\r\n"], False)
    assert (auth.state, auth.reason) == (FAILED, "the server sent more than its reply to AUTH")
    auth, _ = _auth("plain", [EHLO_REPLY, b"235 ok\r\n"], False)
    assert auth.state == AUTHENTICATED
    auth.receive(b"250 late\r\n")
    assert auth.state == FAILED


def test_give_up_queues_the_last_word_once():
    auth = Authentication("u", "p")
    auth.give_up("no answer within 10s")
    auth.give_up("again")
    assert (auth.state, auth.reason) == (FAILED, "no answer within 10s")
    assert auth.take() == (b"", AUTH_FAILED_REPLY)


def test_an_endless_auth_reply_is_refused():
    auth = Authentication("u", "p")
    auth.receive(b"2" * 10000)
    assert auth.state == FAILED and "longer than" in auth.reason
