"""Client certificates through tlswrap to Dovecot (examples/dovecot-clientcert.conf and
examples/server-side/dovecot-clientcert.conf): tlswrap requires and verifies the certificate
(verify = 2, CAfile), the PROXY v2 header carries its Common Name (PP2_SUBTYPE_SSL_CN), and
Dovecot 2.3 takes that as the user name (auth_ssl_username_from_cert) for SASL EXTERNAL: the
client logs in as the CN without a password. Without a certificate, or with one from another
CA, tlswrap refuses the handshake and Dovecot never hears of the client."""

from __future__ import annotations

import imaplib
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from conftest import EXAMPLES, wait_for

from . import clients
from .conftest import need
from .servers import Dovecot, dovecot_logins

pytestmark = pytest.mark.e2e

MESSAGE = (b"From: Bob <bob@example.test>\r\nTo: Alice <alice@example.test>\r\n"
           b"Subject: read with a client certificate\r\n"
           b"Message-ID: <e2e-cert-1@example.test>\r\n\r\nBody.\r\n")

CLIENT = "127.0.0.2"  # Dovecot can only log this address if it came from the PROXY header


@pytest.fixture
def dovecot(scratch) -> Iterator[Dovecot]:
    """Dovecot with the client-certificate snippet; alice has a password too (for PLAIN)."""
    need("dovecot")
    server = Dovecot(scratch, extra=(EXAMPLES / "server-side" / "dovecot-clientcert.conf")
                     .read_text())
    server.deliver(MESSAGE)
    yield server
    server.stop()


@pytest.fixture
def served(dovecot, front, certs):
    return front("daemon", "dovecot-clientcert.conf", {10143: dovecot.ports["imap_proxy"]},
                 [("/etc/tlswrap/users-ca.pem", str(certs.ca_file))])


def cert_files(ca: trustme.CA, cn: str, where: Path) -> tuple[Path, Path]:
    """A client certificate for CN (and the address CN@example.test) issued by CA."""
    issued = ca.issue_cert(f"{cn}@example.test", common_name=cn)
    cert, key = where / f"{cn}.pem", where / f"{cn}.key"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    return cert, key


def context_with(certs, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = certs.client_context()
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def external(authzid: bytes = b""):
    """imaplib's authenticator for SASL EXTERNAL: the (empty) authorization identity."""
    return lambda _challenge: authzid


def test_imaplib_external_logs_in_as_the_certificate_cn(served, certs, dovecot, tmp_path):
    cert, key = cert_files(certs.ca, "alice", tmp_path)
    imap = clients.imap_from(CLIENT)
    with imap(clients.HOST, served.ports["imaps"], ssl_context=context_with(certs, cert, key),
              timeout=20) as m:
        assert "AUTH=EXTERNAL" in m.capabilities
        assert m.authenticate("EXTERNAL", external())[0] == "OK"
        m.select("INBOX")
        assert m.fetch("1", "(BODY.PEEK[])")[1][0][1] == MESSAGE
        m.logout()
    [login] = dovecot.logins()
    assert login["user"] == "alice" and "method=EXTERNAL" in login.group(0), login.group(0)
    assert login["rip"] == CLIENT, login.group(0)


def test_an_identity_other_than_the_cn_is_refused(served, certs, dovecot, tmp_path):
    """auth_ssl_username_from_cert: the CN is the user; an authorization identity naming
    someone else is refused, not honoured."""
    cert, key = cert_files(certs.ca, "alice", tmp_path)
    with imaplib.IMAP4_SSL(clients.HOST, served.ports["imaps"],
                           ssl_context=context_with(certs, cert, key), timeout=20) as m:
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            m.authenticate("EXTERNAL", external(b"bob"))
        m.logout()
    assert not dovecot_logins(dovecot.log())


def test_curl_external_logs_in_as_the_certificate_cn(served, certs, dovecot, tmp_path):
    need("curl")
    cert, key = cert_files(certs.ca, "alice", tmp_path)
    url = f"imaps://{clients.HOST}:{served.ports['imaps']}/INBOX;UID=1"
    got = clients.curl(url, certs.ca_file, "--cert", str(cert), "--key", str(key),
                       "--login-options", "AUTH=EXTERNAL", "-u", "alice:")
    assert got == MESSAGE
    [login] = dovecot.logins()
    assert login["user"] == "alice" and "method=EXTERNAL" in login.group(0), login.group(0)


REFUSALS = {"no certificate": "TLS handshake failed: TLS error: peer did not return a "
                               "certificate",
            "another CA": "TLS handshake failed: TLS error: certificate verify failed "
                          "(unable to get local issuer certificate)"}


@pytest.mark.parametrize("who", sorted(REFUSALS))
def test_tlswrap_refuses_the_handshake(served, certs, dovecot, tmp_path, who):
    """The client cannot even read the greeting (TLS 1.3 reports the refusal on the first
    read after the handshake, so imaplib fails there); tlswrap's closing line says why, and
    no backend connection was made."""
    if who == "no certificate":
        ctx = context_with(certs)
    else:
        ctx = context_with(certs, *cert_files(trustme.CA(), "alice", tmp_path))
    imap = clients.imap_from(CLIENT)
    with pytest.raises((ssl.SSLError, ConnectionError, imaplib.IMAP4.abort)):
        with imap(clients.HOST, served.ports["imaps"], ssl_context=ctx, timeout=20) as m:
            m.authenticate("EXTERNAL", external())
    def closed() -> list[str]:
        return [x for x in served.log().splitlines() if f"] {CLIENT}:" in x and " closed: " in x]
    wait_for(closed, 10, "tlswrap's closing line")
    [line] = closed()
    assert "closed: no TLS, 0 bytes to backend" in line and REFUSALS[who] in line, line
    assert f"rip={CLIENT}" not in dovecot.log(), dovecot.log()


def test_without_a_cn_in_the_header_external_is_refused(dovecot, front, certs, tmp_path):
    """The same Dovecot behind examples/dovecot-proxy.conf (PROXY v2, no client certificate
    asked for, so no PP2_SUBTYPE_SSL_CN): EXTERNAL has no user name and fails, even with a
    certificate the client holds. The CN in the header is what logs the client in."""
    served = front("daemon", "dovecot-proxy.conf", {10143: dovecot.ports["imap_proxy"],
                                                    10110: dovecot.ports["pop3_proxy"]})
    cert, key = cert_files(certs.ca, "alice", tmp_path)
    with imaplib.IMAP4_SSL(clients.HOST, served.ports["imaps"],
                           ssl_context=context_with(certs, cert, key), timeout=20) as m:
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            m.authenticate("EXTERNAL", external())
        m.logout()
    assert not dovecot_logins(dovecot.log())


def test_with_verify_0_a_forged_certificate_names_nobody(dovecot, front, certs, tmp_path):
    """verify = 0 accepts any certificate, so one a client made itself for CN=alice gets
    through the handshake; tlswrap then puts no CN in the header, and EXTERNAL fails.
    (Dovecot does not read the header's verify field: a CN there is a login.)"""
    served = front("daemon", "dovecot-clientcert.conf", {10143: dovecot.ports["imap_proxy"]},
                   [("/etc/tlswrap/users-ca.pem", str(certs.ca_file)),
                    ("verify = 2", "verify = 0")])
    cert, key = cert_files(trustme.CA(), "alice", tmp_path)
    with imaplib.IMAP4_SSL(clients.HOST, served.ports["imaps"],
                           ssl_context=context_with(certs, cert, key), timeout=20) as m:
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            m.authenticate("EXTERNAL", external())
        m.logout()
    assert not dovecot_logins(dovecot.log())
