"""Dovecot behind tlswrap: IMAP and POP3 with real clients, in every mode tlswrap fronts a
server (implicit TLS from the daemon and from inetd, STARTTLS on 143/110-style ports), and the
PROXY v2 header that tells Dovecot who the client is and that it spoke TLS."""

from __future__ import annotations

import imaplib

import pytest

from conftest import wait_for

from . import clients
from .conftest import MODES, need
from .servers import PASSWORD, dovecot_logins

pytestmark = pytest.mark.e2e

MESSAGE = (
    b"Return-Path: <bob@example.test>\r\n"
    b"From: Bob <bob@example.test>\r\n"
    b"To: Alice <alice@example.test>\r\n"
    b"Subject: through tlswrap to dovecot\r\n"
    b"Date: Tue, 01 Dec 2026 06:00:00 +0000\r\n"
    b"Message-ID: <e2e-dovecot-1@example.test>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Line one.\r\n"
    b".A line that starts with a dot (POP3 and SMTP stuff it; it must come back as sent).\r\n"
    b"  Trailing spaces stay.  \r\n"
    + "Non-ASCII: caf\u00e9 \u2713\r\n".encode()
    + b"x" * 900 + b"\r\n"
)


def backends(dovecot) -> dict[int, int]:
    """examples/dovecot.conf's (and dovecot-starttls.conf's) backend ports -> this Dovecot's."""
    return {143: dovecot.ports["imap"], 110: dovecot.ports["pop3"]}


EXAMPLE = {"daemon": "dovecot.conf", "inetd": "dovecot.conf", "starttls": "dovecot-starttls.conf"}


@pytest.fixture(params=MODES)
def mode(request) -> str:
    return request.param


@pytest.fixture
def served(dovecot, front, mode):
    """Dovecot with one message for alice, and tlswrap in front of it in ``mode``."""
    dovecot.deliver(MESSAGE)
    return front(mode, EXAMPLE[mode], backends(dovecot))


def test_imaplib_reads_the_message_byte_for_byte(served, certs, dovecot):
    got = clients.imaplib_fetch(served.port("imap"), certs.ca_file, "alice", PASSWORD,
                                starttls=served.starttls)
    assert got == MESSAGE
    [login] = dovecot.logins()
    assert login["user"] == "alice" and login["rip"] == "127.0.0.1"


def curl_tls(served) -> tuple[str, list[str]]:
    """curl's URL scheme suffix and options: imaps:// for implicit TLS, imap:// with
    --ssl-reqd (STARTTLS, and fail if the server does not offer it) otherwise."""
    return ("", ["--ssl-reqd"]) if served.starttls else ("s", [])


def test_curl_imaps_reads_the_message_byte_for_byte(served, certs):
    need("curl")
    s, opts = curl_tls(served)
    url = f"imap{s}://{clients.HOST}:{served.port('imap')}/INBOX;UID=1"
    assert clients.curl(url, certs.ca_file, "-u", f"alice:{PASSWORD}", *opts) == MESSAGE


def test_poplib_reads_the_message_byte_for_byte(served, certs):
    got = clients.poplib_fetch(served.port("pop3"), certs.ca_file, "alice", PASSWORD,
                               starttls=served.starttls)
    assert got == MESSAGE


def test_curl_pop3s_reads_the_message_byte_for_byte(served, certs):
    need("curl")
    s, opts = curl_tls(served)
    url = f"pop3{s}://{clients.HOST}:{served.port('pop3')}/1"
    assert clients.curl(url, certs.ca_file, "-u", f"alice:{PASSWORD}", *opts) == MESSAGE


@pytest.mark.parametrize("proto", ["IMAP", "POP3"])
def test_fetchmail_delivers_the_message_to_its_mda(served, certs, tmp_path, proto):
    need("fetchmail")
    port = served.port("imap" if proto == "IMAP" else "pop3")
    got = clients.fetchmail(proto, port, certs.ca_file, "alice", PASSWORD, tmp_path / "fm",
                            starttls=served.starttls)
    assert got == [MESSAGE.replace(b"\r\n", b"\n")]


@pytest.mark.parametrize("scheme", ["imap", "pop"])
def test_mutt_reads_the_message(served, certs, tmp_path, scheme):
    """imaps:// and pops://, or imap:// and pop:// with ssl_starttls and ssl_force_tls."""
    need("mutt", "script")
    port = served.port("imap" if scheme == "imap" else "pop3")
    s = "" if served.starttls else "s"
    url = f"{scheme}{s}://{clients.HOST}:{port}/" + ("INBOX" if scheme == "imap" else "")
    got = clients.mutt_read(url, certs.ca_file, "alice", PASSWORD, tmp_path / "mutt",
                            starttls=served.starttls)
    assert got == MESSAGE.replace(b"\r\n", b"\n")


# PROXY v2 to Dovecot's haproxy listeners (examples/dovecot-proxy.conf). The client binds to
# 127.0.0.2 and tlswrap connects from 127.0.0.1, so Dovecot's log can only name 127.0.0.2 if it
# came from the header; and the header's addresses differ (127.0.0.2 -> 127.0.0.1), so Dovecot's
# rule that a host talking to itself is secure does not apply: only the SSL TLV makes the
# connection "secured".
CLIENT = "127.0.0.2"

# The headers that must leave cleartext LOGIN refused: v1 (no TLVs at all), and v2 with every
# TLV of the default but the SSL one (the CN travels inside it), so that against the v2 runs
# that LOGIN the SSL TLV is the only difference.
WITHOUT_SSL_TLV = {"v1": ("v1", None), "v2": ("v2", "authority, alpn, unique_id")}


def header_subs(version: str, tlvs: str | None) -> list[tuple[str, str]]:
    """The edits that make an example's ``proxyProtocol = v2`` send VERSION with TLVS."""
    line = f"proxyProtocol = {version}" + (f"\nproxyTLVs = {tlvs}" if tlvs else "")
    return [] if line == "proxyProtocol = v2" else [("proxyProtocol = v2", line)]


@pytest.fixture
def proxied(dovecot, front):
    """``proxied(version, tlvs)``: tlswrap from examples/dovecot-proxy.conf (PROXY v2) in
    front of Dovecot's haproxy listeners, or the same with another proxyProtocol and
    proxyTLVs."""
    dovecot.deliver(MESSAGE)
    ports = {10143: dovecot.ports["imap_proxy"], 10110: dovecot.ports["pop3_proxy"]}

    def start(version: str, tlvs: str | None = None):
        return front("daemon", "dovecot-proxy.conf", ports, header_subs(version, tlvs))
    return start


def test_proxy_v2_dovecot_logs_the_client_and_counts_tls_as_secured(proxied, certs, dovecot):
    served = proxied("v2")
    imap = clients.imap_from(CLIENT)
    with imap(clients.HOST, served.ports["imaps"], ssl_context=certs.client_context(),
              timeout=20) as m:
        assert "LOGINDISABLED" not in m.capabilities
        assert m.login("alice", PASSWORD)[0] == "OK"
        m.select("INBOX")
        assert m.fetch("1", "(BODY.PEEK[])")[1][0][1] == MESSAGE
        m.logout()
    [login] = dovecot.logins()
    assert login["rip"] == CLIENT, login.group(0)
    assert login["lip"] == "127.0.0.1" and "secured" in login["flags"].split(", "), \
        login.group(0)


@pytest.mark.parametrize("header", WITHOUT_SSL_TLV)
def test_proxy_header_without_the_ssl_tlv_leaves_cleartext_login_refused(proxied, certs,
                                                                        dovecot, header):
    served = proxied(*WITHOUT_SSL_TLV[header])
    imap = clients.imap_from(CLIENT)
    with imap(clients.HOST, served.ports["imaps"], ssl_context=certs.client_context(),
              timeout=20) as m:
        assert "LOGINDISABLED" in m.capabilities
        with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED"):
            m.login("alice", PASSWORD)
        m.logout()
    wait_for(lambda: f"rip={CLIENT}, lip=127.0.0.1" in dovecot.log(), 10,
             "dovecot's line for the refused client")
    assert not dovecot_logins(dovecot.log())


def test_proxy_v2_pop3_logs_the_client(proxied, certs, dovecot):
    served = proxied("v2")
    p = clients.pop3_from(CLIENT)(clients.HOST, served.ports["pop3s"],
                                  context=certs.client_context(), timeout=20)
    try:
        p.user("alice")
        p.pass_(PASSWORD)
        assert p.stat()[0] == 1
    finally:
        p.quit()
    [login] = dovecot.logins()
    assert login["rip"] == CLIENT and "secured" in login["flags"].split(", "), login.group(0)


# STARTTLS with PROXY v2 (examples/dovecot-starttls-proxy.conf) to the same haproxy listeners.
# The header goes to Dovecot when the client connects, before any TLS: tlswrap speaks the
# plaintext part of the session itself, and the header's PP2_TYPE_SSL TLV holds PP2_CLIENT_SSL
# alone (no version, cipher or certificate: there is no handshake yet), a promise tlswrap keeps
# by refusing LOGIN, AUTHENTICATE, USER and PASS until TLS is up. Dovecot 2.3 takes
# PP2_CLIENT_SSL as "the client uses TLS" (master-service-haproxy.c sets proxy.ssl; the login
# process then marks the client secured and proxied_ssl): it counts the whole connection as
# secured from its first byte, offers LOGIN without LOGINDISABLED once the client has done
# STARTTLS with tlswrap, and logs "secured". With a v1 header, or a v2 one without the SSL TLV
# (proxyTLVs without ssl), the same session is an insecure one from 127.0.0.2 to 127.0.0.1 to
# Dovecot, which then refuses the cleartext LOGIN even though the client did STARTTLS: the TLV
# is what counts.


@pytest.fixture
def starttls_proxied(dovecot, front):
    """``starttls_proxied(version, tlvs)``: tlswrap from
    examples/dovecot-starttls-proxy.conf."""
    dovecot.deliver(MESSAGE)
    ports = {10143: dovecot.ports["imap_proxy"], 10110: dovecot.ports["pop3_proxy"]}

    def start(version: str, tlvs: str | None = None):
        return front("starttls", "dovecot-starttls-proxy.conf", ports,
                     header_subs(version, tlvs))
    return start


def test_starttls_proxy_v2_dovecot_logs_the_client_and_counts_the_promise_as_secured(
        starttls_proxied, certs, dovecot):
    served = starttls_proxied("v2")
    with clients.imap_starttls_from(CLIENT)(clients.HOST, served.port("imap"),
                                            timeout=20) as m:
        assert "LOGINDISABLED" in m.capabilities  # tlswrap's answer before TLS
        m.starttls(ssl_context=certs.client_context())
        assert "LOGINDISABLED" not in m.capabilities, m.capabilities  # Dovecot's, after TLS
        assert m.login("alice", PASSWORD)[0] == "OK"
        m.select("INBOX")
        assert m.fetch("1", "(BODY.PEEK[])")[1][0][1] == MESSAGE
        m.logout()
    [login] = dovecot.logins()
    assert login["rip"] == CLIENT and login["lip"] == "127.0.0.1", login.group(0)
    assert "secured" in login["flags"].split(", "), login.group(0)


def test_starttls_proxy_v2_pop3_logs_the_client(starttls_proxied, certs, dovecot):
    served = starttls_proxied("v2")
    p = clients.pop3_stls_from(CLIENT)(clients.HOST, served.port("pop3"), timeout=20)
    try:
        p.stls(context=certs.client_context())
        p.user("alice")
        p.pass_(PASSWORD)
        assert p.retr(1)[1][0] == MESSAGE.split(b"\r\n")[0]
    finally:
        p.quit()
    [login] = dovecot.logins()
    assert login["rip"] == CLIENT and "secured" in login["flags"].split(", "), login.group(0)


@pytest.mark.parametrize("header", WITHOUT_SSL_TLV)
def test_starttls_proxy_header_without_the_tlv_leaves_login_refused_after_starttls(
        starttls_proxied, certs, dovecot, header):
    served = starttls_proxied(*WITHOUT_SSL_TLV[header])
    with clients.imap_starttls_from(CLIENT)(clients.HOST, served.port("imap"),
                                            timeout=20) as m:
        m.starttls(ssl_context=certs.client_context())
        assert "LOGINDISABLED" in m.capabilities  # now Dovecot's own answer
        with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED"):
            m.login("alice", PASSWORD)
        m.logout()
    wait_for(lambda: f"rip={CLIENT}, lip=127.0.0.1" in dovecot.log(), 10,
             "dovecot's line for the refused client")
    assert not dovecot_logins(dovecot.log())
