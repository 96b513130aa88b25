"""Postfix behind tlswrap: a message submitted by real clients over implicit TLS (465-style)
or STARTTLS (587-style, protocol = smtp), after SMTP AUTH that Postfix asks Dovecot about, is
delivered to a maildir and read back through Dovecot over IMAPS, unchanged; without AUTH, or
with a wrong password, Postfix takes nothing; with PROXY v2 Postfix's log names the client,
not tlswrap."""

from __future__ import annotations

import re
import smtplib

import pytest

from conftest import wait_for

from . import clients
from .conftest import MODES, need
from .servers import PASSWORD, Dovecot, dovecot_sasl

pytestmark = pytest.mark.e2e

SENDER, RCPT = "bob@example.test", "alice@example.test"
LOGIN = ("alice", PASSWORD)  # Dovecot's passdb user, for SMTP AUTH

# What Postfix may put above a delivered message: the envelope and trace headers.
ADDED = re.compile(rb"(?:(?:Return-Path|X-Original-To|Delivered-To|Received):[^\r\n]*\r\n"
                   rb"(?:[ \t][^\r\n]*\r\n)*)*")


def message(n: str) -> bytes:
    return (f"From: Bob <{SENDER}>\r\n"
            f"To: Alice <{RCPT}>\r\n"
            f"Subject: submitted through tlswrap {n}\r\n"
            "Date: Tue, 01 Dec 2026 06:00:00 +0000\r\n"
            f"Message-ID: <e2e-postfix-{n}@example.test>\r\n"
            "\r\n"
            "First line.\r\n"
            ".A line that starts with a dot.\r\n"
            "..Two dots.\r\n"
            "Last line.\r\n").encode()


@pytest.fixture(params=MODES)
def mode(request) -> str:
    return request.param


@pytest.fixture
def dovecot(scratch):
    """Dovecot for IMAPS and for Postfix's SMTP AUTH (examples/server-side/dovecot-sasl.conf)."""
    need("dovecot", "postfix")
    server = Dovecot(scratch, extra=dovecot_sasl(scratch))
    yield server
    server.stop()


@pytest.fixture
def mailhost(dovecot, postfix, front, mode):
    """Postfix's submission port and Dovecot's IMAP behind tlswrap, in ``mode``: returns
    (the submission front, imaps_port)."""
    if mode == "daemon":
        smtp = front(mode, "postfix-smtps.conf", {587: postfix.ports["submission"]})
    elif mode == "starttls":
        smtp = front(mode, "postfix-submission.conf", {587: postfix.ports["submission"]})
    else:  # inetd/inetd.conf's submissions line relays to port 25
        smtp = front(mode, "postfix-smtps.conf", {25: postfix.ports["submission"]})
    imaps = front("daemon", "dovecot.conf", {143: dovecot.ports["imap"],
                                             110: dovecot.ports["pop3"]})
    return smtp, imaps.ports["imaps"]


def read_back(postfix, imaps: int, ca_file) -> bytes:
    """The one delivered message, once Postfix says it is in the maildir, read over IMAPS;
    Postfix must have taken it from a client logged in as alice."""
    wait_for(lambda: "status=sent (delivered to maildir)" in postfix.log(), 20,
             "postfix to deliver")
    log = postfix.log()
    [client] = re.findall(r"submission/smtpd\[\d+\]: \w+: (client=.*)", log)
    assert re.fullmatch(r"client=\S+, sasl_method=(PLAIN|LOGIN), sasl_username=alice",
                        client), log
    return clients.imaplib_fetch(imaps, ca_file, "alice", PASSWORD)


def assert_delivered_unchanged(got: bytes, sent: bytes) -> None:
    added = ADDED.match(got)
    assert added is not None
    assert got[added.end():] == sent, got


def test_smtplib_over_smtps_then_imaps_byte_for_byte(mailhost, postfix, certs):
    smtp, imaps = mailhost
    sent = message("smtplib")
    clients.smtplib_send(smtp.port("submission"), certs.ca_file, SENDER, RCPT, sent,
                         starttls=smtp.starttls, login=LOGIN)
    assert_delivered_unchanged(read_back(postfix, imaps, certs.ca_file), sent)


def test_swaks_tls_on_connect_then_imaps_byte_for_byte(mailhost, postfix, certs, tmp_path):
    need("swaks")
    smtp, imaps = mailhost
    sent = message("swaks")
    draft = tmp_path / "message.eml"
    draft.write_bytes(sent + b".\r\n")  # swaks: a final "." line marks the end as is
    clients.swaks_send(smtp.port("submission"), certs.ca_file, SENDER, RCPT, draft,
                       starttls=smtp.starttls, login=LOGIN)
    assert_delivered_unchanged(read_back(postfix, imaps, certs.ca_file), sent)


def test_curl_smtps_then_imaps_byte_for_byte(mailhost, postfix, certs, tmp_path):
    """smtps://, or smtp:// with --ssl-reqd (STARTTLS)."""
    need("curl")
    smtp, imaps = mailhost
    sent = message("curl")
    draft = tmp_path / "message.eml"
    draft.write_bytes(sent)
    scheme, opts = ("smtp", ["--ssl-reqd"]) if smtp.starttls else ("smtps", [])
    clients.curl(f"{scheme}://{clients.HOST}:{smtp.port('submission')}", certs.ca_file,
                 "--mail-from", SENDER, "--mail-rcpt", RCPT, "-T", str(draft),
                 "--user", ":".join(LOGIN), *opts)
    assert_delivered_unchanged(read_back(postfix, imaps, certs.ca_file), sent)


def test_mutt_batch_send_over_smtps_then_imaps(mailhost, postfix, certs, tmp_path):
    """mutt writes its own headers; the body and the From, To and Subject it was given must
    arrive unchanged."""
    need("mutt")
    smtp, imaps = mailhost
    body = b"Sent by mutt in batch mode.\n.A dot line.\nLast line.\n"
    scheme = "smtp" if smtp.starttls else "smtps"
    clients.mutt_send(f"{scheme}://{clients.HOST}:{smtp.port('submission')}/", certs.ca_file,
                      SENDER, RCPT, "mutt through tlswrap", body, tmp_path / "mutt",
                      starttls=smtp.starttls, login=LOGIN)
    got = read_back(postfix, imaps, certs.ca_file)
    head, _, got_body = got.partition(b"\r\n\r\n")
    assert got_body == body.replace(b"\n", b"\r\n")
    headers = head.split(b"\r\n")
    assert [h for h in headers if h.startswith(b"From: ") and SENDER.encode() in h], headers
    assert f"To: {RCPT}".encode() in headers, headers
    assert b"Subject: mutt through tlswrap" in headers, headers


@pytest.mark.parametrize("mode", ["daemon", "starttls"])
def test_without_auth_postfix_refuses_the_recipient(mailhost, postfix, certs):
    """smtpd_relay_restrictions = permit_sasl_authenticated, reject: without a login nothing
    is taken, not even for a local mailbox, though Postfix sees the session come from
    127.0.0.1 (tlswrap), which is in mynetworks."""
    smtp, _imaps = mailhost
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        clients.smtplib_send(smtp.port("submission"), certs.ca_file, SENDER, RCPT,
                             message("no auth"), starttls=smtp.starttls)
    [(code, text)] = refused.value.recipients.values()
    assert (code, text) == (554, f"5.7.1 <{RCPT}>: Recipient address rejected: Access denied"
                            .encode())
    wait_for(lambda: "NOQUEUE: reject: RCPT from localhost[127.0.0.1]: 554" in postfix.log(),
             10, "postfix's line for the refused recipient")


@pytest.mark.parametrize("mode", ["daemon"])
def test_a_wrong_password_is_refused_by_dovecot_through_postfix(mailhost, dovecot, certs,
                                                                tmp_path):
    """One AUTH LOGIN (swaks): Dovecot holds a failure's answer back (auth_failure_delay)
    and longer for a further try from the same address, which smtplib's login would make
    with its next mechanism (seconds more)."""
    need("swaks")
    smtp, _imaps = mailhost
    draft = tmp_path / "message.eml"
    draft.write_bytes(message("wrong password") + b".\r\n")
    out = clients.swaks_send(smtp.port("submission"), certs.ca_file, SENDER, RCPT, draft,
                             starttls=smtp.starttls, login=("alice", "not-" + PASSWORD),
                             status=28)
    assert "535 5.7.8 Error: authentication failed" in out, out
    wait_for(lambda: "passwd-file(alice,127.0.0.1): Password mismatch" in dovecot.log(), 10,
             "dovecot's password mismatch line")


@pytest.mark.parametrize("service", ["submissions", "submission"])
def test_proxy_v2_postfix_logs_the_client(postfix, front, certs, service):
    """Implicit TLS, and STARTTLS (the header sent before TLS), from 127.0.0.2."""
    served = front("daemon", "postfix-proxy.conf", {10587: postfix.ports["submission_proxy"]})
    clients.smtplib_send(served.ports[service], certs.ca_file, SENDER, RCPT,
                         message("proxy"), source="127.0.0.2",
                         starttls=service == "submission")
    wait_for(lambda: "status=sent" in postfix.log(), 20, "postfix to deliver")
    log = postfix.log()
    connects = re.findall(r"submission-proxy/smtpd\[\d+\]: connect from (\S+)", log)
    assert any(c.endswith("[127.0.0.2]") for c in connects), log
    [client] = re.findall(r"submission-proxy/smtpd\[\d+\]: \w+: client=(\S+)", log)
    assert client.endswith("[127.0.0.2]"), log
