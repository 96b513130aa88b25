"""Client-side STARTTLS (``client = yes`` with ``protocol``): the pure negotiation, fed whole
and one byte at a time."""

from __future__ import annotations

import pytest

from tlswrap.starttls.client import FAILED, NEED, TLS, Negotiation


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
