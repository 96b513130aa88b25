"""Cyrus IMAP behind tlswrap (implicit TLS from the daemon and inetd, STARTTLS from the
daemon): login, append, fetch with imaplib and curl, the message byte for byte; a wrong
password is refused by Cyrus."""

from __future__ import annotations

import imaplib

import pytest

from . import clients
from .conftest import MODES, need
from .servers import PASSWORD

pytestmark = pytest.mark.e2e

MESSAGE = (b"From: Bob <bob@example.test>\r\n"
           b"To: Alice <alice@example.test>\r\n"
           b"Subject: through tlswrap to cyrus\r\n"
           b"Message-ID: <e2e-cyrus-1@example.test>\r\n"
           b"\r\n"
           b".dot first\r\n"
           + "caf\u00e9\r\n".encode())


@pytest.fixture(params=MODES)
def served(request, cyrus, front, certs):
    """tlswrap (examples/cyrus.conf, or cyrus-starttls.conf) in front of Cyrus, and one
    message APPENDed through it."""
    example = "cyrus-starttls.conf" if request.param == "starttls" else "cyrus.conf"
    tls = front(request.param, example, {143: cyrus.port})
    with clients.imap_connect(tls.port("imap"), certs.ca_file, tls.starttls) as m:
        assert m.login("alice", PASSWORD)[0] == "OK"
        typ, data = m.append("INBOX", None, None, MESSAGE)
        assert typ == "OK", data
        m.logout()
    return tls


def test_imaplib_reads_back_what_it_appended(served, certs):
    got = clients.imaplib_fetch(served.port("imap"), certs.ca_file, "alice", PASSWORD,
                                starttls=served.starttls)
    assert got == MESSAGE


def test_curl_imaps_reads_the_message(served, certs):
    """imaps://, or imap:// with --ssl-reqd."""
    need("curl")
    scheme, opts = ("imap", ["--ssl-reqd"]) if served.starttls else ("imaps", [])
    url = f"{scheme}://{clients.HOST}:{served.port('imap')}/INBOX;UID=1"
    assert clients.curl(url, certs.ca_file, "-u", f"alice:{PASSWORD}", *opts) == MESSAGE


def test_a_wrong_password_is_refused(cyrus, front, certs):
    """(Cyrus answers a failed login after a pause of some seconds: one mode is enough.)"""
    port = front("daemon", "cyrus.conf", {143: cyrus.port}).ports["imaps"]
    with imaplib.IMAP4_SSL(clients.HOST, port, ssl_context=certs.client_context(),
                           timeout=20) as m:
        with pytest.raises(imaplib.IMAP4.error):
            m.login("alice", "not-" + PASSWORD)
        m.logout()
