"""STARTTLS in front of plaintext IMAP, POP3 and SMTP backends, with real clients: imaplib,
poplib, smtplib, openssl s_client, curl and swaks; exact capabilities before and after TLS;
command injection after STARTTLS; a client that never starts TLS."""

from __future__ import annotations

import imaplib
import poplib
import shutil
import smtplib
import socket
import subprocess
from dataclasses import dataclass

import pytest

from conftest import Tlswrap, free_port, port_open, service_config, wait_for
from mailbackend import MESSAGE, Backend

needs_openssl = pytest.mark.skipif(not shutil.which("openssl"), reason="openssl not installed")
needs_curl = pytest.mark.skipif(not shutil.which("curl"), reason="curl not installed")
needs_swaks = pytest.mark.skipif(not shutil.which("swaks"), reason="swaks not installed")


@dataclass
class Mail:
    """A tlswrap STARTTLS service in front of a recording backend."""

    port: int
    backend: Backend
    proc: Tlswrap


@pytest.fixture
def mail(certs, thread_server, tlswrap):
    def start(protocol: str, extra: str = "") -> Mail:
        backend = Backend(protocol)
        srv = thread_server(backend)
        port = free_port()
        proc = tlswrap(service_config(certs, port, f"127.0.0.1:{srv.port}", name=protocol,
                                      extra=f"protocol = {protocol}\n{extra}"), [port])
        return Mail(port, backend, proc)
    return start


def closed_with(proc, text: str) -> str:
    """The closing log line that says ``text`` (the fixture's port probe has one too)."""
    def lines() -> list[str]:
        return [line for line in proc.log().splitlines() if " closed: " in line and text in line]
    wait_for(lambda: bool(lines()), 10, f"a closing line with {text!r}")
    return lines()[0]


def s_client(certs, port: int, proto: str, commands: bytes) -> str:
    out = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-starttls", proto,
         "-CAfile", str(certs.ca_file), "-verify_return_error", "-verify_hostname", "localhost",
         "-crlf", "-ign_eof"],
        input=commands, capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    text = out.stdout.decode(errors="replace")
    assert "Verify return code: 0 (ok)" in text
    return text


# -- IMAP -------------------------------------------------------------------------------------

def test_imaplib_starttls(certs, mail):
    m = mail("imap")
    with imaplib.IMAP4("localhost", m.port, timeout=10) as c:
        assert c.welcome == (b"* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL+ ID IDLE STARTTLS "
                             b"LOGINDISABLED] backend ready")
        assert c.capabilities == ("IMAP4REV1", "SASL-IR", "LITERAL+", "ID", "IDLE", "STARTTLS",
                                  "LOGINDISABLED")
        c.starttls(ssl_context=certs.client_context())
        assert c.capabilities == ("IMAP4REV1", "SASL-IR", "LITERAL+", "ID", "IDLE", "AUTH=PLAIN")
        assert c.login("demo", "secret")[0] == "OK"
        c.logout()
    commands = [line.split(b" ", 2)[1] for line in m.backend.seen]
    assert commands == [b"CAPABILITY", b"CAPABILITY", b"LOGIN", b"LOGOUT"]
    assert "TLSv1.3" in closed_with(m.proc, "(imap STARTTLS)")


def test_imap_login_before_tls_is_refused(mail):
    m = mail("imap")
    with imaplib.IMAP4("localhost", m.port, timeout=10) as c:
        with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED"):
            c.login("demo", "secret")
        c.logout()
    assert not any(b"LOGIN" in line for line in m.backend.seen)


@needs_openssl
def test_openssl_s_client_starttls_imap(certs, mail):
    m = mail("imap")
    text = s_client(certs, m.port, "imap", b"a CAPABILITY\na LOGOUT\n")
    assert "* CAPABILITY IMAP4rev1 SASL-IR LITERAL+ ID IDLE AUTH=PLAIN\r\na OK done" in text


@needs_curl
def test_curl_ssl_reqd_imap(certs, mail):
    m = mail("imap")
    out = subprocess.run(
        ["curl", "-sS", "--max-time", "20", "--ssl-reqd", "--cacert", str(certs.ca_file),
         "-u", "demo:secret", f"imap://localhost:{m.port}/"],
        capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert '* LIST (\\HasNoChildren) "/" INBOX' in out.stdout
    closed_with(m.proc, "(imap STARTTLS)")


@pytest.mark.parametrize(("injected", "command"), [(b"b NOOP\r\n", b"NOOP"),
                                                    (b"b CAPABILITY\r\n", b"CAPABILITY")])
def test_imap_command_injection(certs, mail, injected, command):
    m = mail("imap")
    with socket.create_connection(("127.0.0.1", m.port), timeout=10) as raw:
        f = raw.makefile("rb")
        assert f.readline().startswith(b"* OK [CAPABILITY")
        raw.sendall(b"a STARTTLS\r\n" + injected)  # one packet
        assert f.readline() == b"a OK Begin TLS negotiation now\r\n"
        with certs.client_context().wrap_socket(raw, server_hostname="localhost") as tls:
            tf = tls.makefile("rb")
            tls.sendall(b"c NOOP\r\n")
            assert tf.readline() == b"c OK NOOP done\r\n"  # nothing answers b
            tls.sendall(b"d LOGOUT\r\n")
            assert tf.readline() == b"* BYE bye\r\n"
    assert m.backend.seen == [b"c NOOP", b"d LOGOUT"]
    assert "bytes sent after STARTTLS before TLS discarded" in m.proc.log()


def test_a_client_that_never_starts_tls_is_closed_after_timeout_busy(mail):
    m = mail("imap", "TIMEOUTbusy = 1")
    with socket.create_connection(("127.0.0.1", m.port), timeout=10) as raw:
        f = raw.makefile("rb")
        assert f.readline().startswith(b"* OK")
        raw.sendall(b"a NOOP\r\n")
        assert f.readline() == b"a OK NOOP done\r\n"
        assert f.read() == b""  # closed by tlswrap (bounded by the 10 s socket timeout)
    closed_with(m.proc, "no STARTTLS within 1s")


def test_a_client_that_stalls_in_the_handshake_is_closed(mail):
    m = mail("imap", "TIMEOUTbusy = 1")
    with socket.create_connection(("127.0.0.1", m.port), timeout=10) as raw:
        f = raw.makefile("rb")
        f.readline()
        raw.sendall(b"a STARTTLS\r\n")
        assert f.readline() == b"a OK Begin TLS negotiation now\r\n"
        assert f.read() == b""
    closed_with(m.proc, "TLS handshake timed out after 1s")


# -- POP3 -------------------------------------------------------------------------------------

def test_poplib_stls(certs, mail):
    m = mail("pop3")
    p = poplib.POP3("localhost", m.port, timeout=10)
    try:
        assert p.getwelcome() == b"+OK backend ready"
        assert p.capa() == {"TOP": [], "UIDL": [], "STLS": []}
        with pytest.raises(poplib.error_proto, match="Logins are disabled before STLS"):
            p.user("demo")
        p.stls(context=certs.client_context())
        assert p.capa() == {"TOP": [], "UIDL": [], "USER": [], "SASL": ["PLAIN"]}
        p.user("demo")
        p.pass_("secret")
        assert p.stat() == (1, len(MESSAGE))
    finally:
        p.quit()
    # poplib's stls() asks CAPA itself first
    assert m.backend.seen == [b"CAPA", b"CAPA", b"CAPA", b"USER demo", b"PASS secret", b"STAT",
                              b"QUIT"]
    closed_with(m.proc, "(pop3 STARTTLS)")


@needs_openssl
def test_openssl_s_client_starttls_pop3(certs, mail):
    m = mail("pop3")
    text = s_client(certs, m.port, "pop3", b"CAPA\nQUIT\n")
    assert "+OK\r\nTOP\r\nUIDL\r\nUSER\r\nSASL PLAIN\r\n.\r\n+OK bye" in text


@needs_curl
def test_curl_ssl_reqd_pop3(certs, mail):
    m = mail("pop3")
    out = subprocess.run(
        ["curl", "-sS", "--max-time", "20", "--ssl-reqd", "--cacert", str(certs.ca_file),
         "-u", "demo:secret", f"pop3://localhost:{m.port}/1"],
        capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout == MESSAGE
    assert b"RETR 1" in m.backend.seen


def test_pop3_command_injection(certs, mail):
    m = mail("pop3")
    with socket.create_connection(("127.0.0.1", m.port), timeout=10) as raw:
        f = raw.makefile("rb")
        assert f.readline() == b"+OK backend ready\r\n"
        raw.sendall(b"STLS\r\nCAPA\r\n")
        assert f.readline() == b"+OK Begin TLS negotiation\r\n"
        with certs.client_context().wrap_socket(raw, server_hostname="localhost") as tls:
            tf = tls.makefile("rb")
            tls.sendall(b"NOOP\r\n")
            assert tf.readline() == b"+OK\r\n"  # not the injected CAPA's list
    wait_for(lambda: b"NOOP" in m.backend.seen, 10, "the backend to read NOOP")
    assert m.backend.seen == [b"NOOP"]


# -- SMTP -------------------------------------------------------------------------------------

BEFORE_TLS = {"pipelining": "", "size": "10240000", "8bitmime": "", "smtputf8": "",
              "starttls": ""}
AFTER_TLS = {"pipelining": "", "size": "10240000", "auth": " PLAIN LOGIN", "8bitmime": "",
             "smtputf8": ""}


def test_smtplib_starttls(certs, mail):
    m = mail("smtp")
    with smtplib.SMTP("localhost", m.port, timeout=10) as c:
        c.ehlo("client.test")
        assert c.esmtp_features == BEFORE_TLS
        with pytest.raises(smtplib.SMTPSenderRefused) as info:
            c.sendmail("a@client.test", ["b@backend.test"], MESSAGE)
        assert info.value.smtp_code == 530
        c.starttls(context=certs.client_context())
        c.ehlo("client.test")
        assert c.esmtp_features == AFTER_TLS
        c.sendmail("a@client.test", ["b@backend.test"], MESSAGE)
    assert m.backend.messages == [MESSAGE.rstrip(b"\r\n")]
    # the EHLO before TLS (smtplib's RSET after the refusal), the one inside it; the mail
    # refused before TLS never arrived
    assert m.backend.seen[:4] == [b"ehlo client.test", b"rset", b"ehlo client.test",
                                  b"mail FROM:<a@client.test> size=%d" % len(MESSAGE)]
    closed_with(m.proc, "(smtp STARTTLS)")


def test_smtp_helo_client(certs, mail):
    m = mail("smtp")
    with socket.create_connection(("127.0.0.1", m.port), timeout=10) as raw:
        f = raw.makefile("rb")
        assert f.readline() == b"220 backend.test ESMTP\r\n"
        raw.sendall(b"HELO client.test\r\n")
        assert f.readline() == b"250 2.0.0 Ok\r\n"
        raw.sendall(b"STARTTLS\r\n")
        assert f.readline() == b"220 2.0.0 Ready to start TLS\r\n"
        with certs.client_context().wrap_socket(raw, server_hostname="localhost") as tls:
            tf = tls.makefile("rb")
            tls.sendall(b"MAIL FROM:<a@client.test>\r\n")
            assert tf.readline() == b"503 5.5.1 Error: send HELO/EHLO first\r\n"
            tls.sendall(b"HELO client.test\r\nMAIL FROM:<a@client.test>\r\nQUIT\r\n")
            assert [tf.readline() for _ in range(3)] == [
                b"250 2.0.0 Ok\r\n", b"250 2.0.0 Ok\r\n", b"221 2.0.0 Bye\r\n"]
    assert m.backend.seen == [b"HELO client.test", b"HELO client.test",
                              b"MAIL FROM:<a@client.test>", b"QUIT"]


@needs_openssl
def test_openssl_s_client_starttls_smtp(certs, mail):
    m = mail("smtp")
    text = s_client(certs, m.port, "smtp", b"EHLO client.test\nQUIT\n")
    assert ("250-backend.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-AUTH PLAIN LOGIN\r\n"
            "250-8BITMIME\r\n250 SMTPUTF8\r\n221 2.0.0 Bye") in text


@needs_swaks
def test_swaks_tls(certs, mail):
    m = mail("smtp")
    out = subprocess.run(
        ["swaks", "--server", "127.0.0.1", "--port", str(m.port), "--tls", "--tls-verify",
         "--tls-ca-path", str(certs.ca_file), "--tls-sni", "localhost",
         "--from", "a@client.test", "--to", "b@backend.test", "--helo", "client.test",
         "--body", "sent by swaks", "--timeout", "20"],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "<-  220 2.0.0 Ready to start TLS" in out.stdout
    assert " ~> EHLO client.test" in out.stdout  # the EHLO inside TLS
    assert len(m.backend.messages) == 1 and b"sent by swaks" in m.backend.messages[0]


@pytest.mark.parametrize("injected", [b"RSET\r\n", b"NOOP\r\n", b"MAIL FROM:<evil@x>\r\n"])
def test_smtp_command_injection(certs, mail, injected):
    m = mail("smtp")
    with socket.create_connection(("127.0.0.1", m.port), timeout=10) as raw:
        f = raw.makefile("rb")
        f.readline()
        raw.sendall(b"EHLO client.test\r\n")
        while f.readline()[3:4] == b"-":
            pass
        raw.sendall(b"STARTTLS\r\n" + injected)  # one packet
        assert f.readline() == b"220 2.0.0 Ready to start TLS\r\n"
        with certs.client_context().wrap_socket(raw, server_hostname="localhost") as tls:
            tf = tls.makefile("rb")
            tls.sendall(b"EHLO client.test\r\n")
            assert tf.readline() == b"250-backend.test\r\n"  # no reply to the injected command
            while tf.readline()[3:4] == b"-":
                pass
            tls.sendall(b"QUIT\r\n")
            assert tf.readline() == b"221 2.0.0 Bye\r\n"
    assert m.backend.seen == [b"EHLO client.test", b"EHLO client.test", b"QUIT"]


def test_smtp_optional_lets_a_plaintext_sender_deliver(mail):
    m = mail("smtp", "starttls = optional")
    with smtplib.SMTP("localhost", m.port, timeout=10) as c:
        c.ehlo("mx.client.test")
        assert c.esmtp_features == BEFORE_TLS
        c.sendmail("a@client.test", ["b@backend.test"], MESSAGE)
    assert m.backend.messages == [MESSAGE.rstrip(b"\r\n")]
    closed_with(m.proc, "no TLS (the client went on without STARTTLS)")


# -- with a PROXY header to the backend ----------------------------------------------------------

def proxied(backend: Backend, headers: list):
    """The PROXY header first (read a byte at a time: it must stand alone), then ``backend``."""
    from tlswrap import proxyproto

    def serve(conn: socket.socket) -> None:
        data = b""
        while (got := proxyproto.decode(data)) is None:
            chunk = conn.recv(1)
            if not chunk:
                return
            data += chunk
        headers.append((got[0], len(data)))
        backend(conn)
    return serve


@pytest.mark.parametrize(("option", "starttls"), [("proxyProtocol = v2", "required"),
                                                  ("proxyProtocol = v2", "optional"),
                                                  ("proxyProtocol = v1", "required")])
def test_starttls_with_a_proxy_header(certs, thread_server, tlswrap, option, starttls):
    """``protocol = smtp`` and a PROXY header together (stunnel cannot: one protocol each).
    The header goes first, before the backend's greeting, so before TLS: v2 says the client
    uses TLS (PP2_CLIENT_SSL, no version or cipher yet) when nothing but TLS can lead to the
    relay, and claims nothing when the client may go on in plaintext."""
    from tlswrap import proxyproto

    headers: list = []
    backend = Backend("smtp")
    srv = thread_server(proxied(backend, headers))
    port = free_port()
    tlswrap(service_config(certs, port, f"127.0.0.1:{srv.port}", name="smtp",
                           extra=f"protocol = smtp\nstarttls = {starttls}\n{option}"),
            [port])
    with smtplib.SMTP("localhost", port, timeout=10) as c:
        c.starttls(context=certs.client_context())
        c.sendmail("a@client.test", ["b@backend.test"], MESSAGE)
        client_port = c.sock.getsockname()[1]
    assert backend.messages == [MESSAGE.rstrip(b"\r\n")]
    [(header, size)] = [(h, n) for h, n in headers if h.source == ("127.0.0.1", client_port)]
    assert header.destination == ("127.0.0.1", port)
    assert size <= proxyproto.POSTFIX_MAX_HEADER
    if option.endswith("v2"):
        info = header.ssl()
        if starttls == "required":
            assert info == proxyproto.SSLInfo(client=proxyproto.PP2_CLIENT_SSL)
        else:
            assert info is None
    else:
        assert header.version == 1



# -- inetd mode ---------------------------------------------------------------------------------

def test_inetd_mode_starttls(certs, thread_server, tmp_path):
    """One connection per process, as inetd hands it: the same STARTTLS step."""
    import os

    from test_e2e_inetd import INETD, TLSWRAP, Inetd

    if not os.path.exists(INETD) or os.geteuid() != 0:
        pytest.skip("needs openbsd-inetd, run as root")
    backend = Backend("pop3")
    srv = thread_server(backend)
    conf = tmp_path / "pop3.conf"
    conf.write_text(f"[pop3]\nconnect = 127.0.0.1:{srv.port}\ncert = {certs.cert_file}\n"
                    f"key = {certs.key_file}\nprotocol = pop3\n")
    port = free_port()
    d = Inetd(tmp_path, [f"127.0.0.1:{port} stream tcp nowait root {TLSWRAP} tlswrap {conf}"])
    try:
        wait_for(lambda: d.proc.poll() is not None or port_open(port), 10, "inetd")
        for _ in range(2):  # a new process each time
            p = poplib.POP3("localhost", port, timeout=20)
            try:
                assert p.capa() == {"TOP": [], "UIDL": [], "STLS": []}
                p.stls(context=certs.client_context())
                assert p.capa() == {"TOP": [], "UIDL": [], "USER": [], "SASL": ["PLAIN"]}
            finally:
                p.quit()
    finally:
        d.stop()
    assert backend.seen.count(b"QUIT") == 2


# -- hosts.allow / hosts.deny ---------------------------------------------------------------------

def read_all(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        data = b""
        while chunk := raw.recv(1000):
            data += chunk
    return data


@pytest.mark.parametrize(("rule", "expected"), [
    ("smtp: ALL\n", b""),
    ("smtp: ALL: banners {banners}\n", b"554 5.7.1 no mail from 127.0.0.1\r\n"),
    ('smtp: ALL: twist /bin/echo "421 4.7.0 %d is closed to %a"\n',
     b"421 4.7.0 smtp is closed to 127.0.0.1\n"),
])
def test_refused_clients_never_reach_the_backend(certs, thread_server, tlswrap, tmp_path, rule,
                                                 expected):
    """The access check runs first; a banner or a twist program talks plaintext, as tcpd's
    do, since no TLS has started on a STARTTLS port."""
    banners = tmp_path / "banners"
    banners.mkdir()
    (banners / "smtp").write_text("554 5.7.1 no mail from %a\n")
    allow, deny = tmp_path / "hosts.allow", tmp_path / "hosts.deny"
    allow.write_text("")
    deny.write_text(rule.format(banners=banners))
    backend = Backend("smtp")
    srv = thread_server(backend)
    port = free_port()
    tlswrap(service_config(certs, port, f"127.0.0.1:{srv.port}", name="smtp",
                           extra="protocol = smtp",
                           global_extra=f"hostsAllow = {allow}\nhostsDeny = {deny}"), [port])
    assert read_all(port) == expected
    assert srv.accepted == 0


def test_starttls_to_an_exec_program(certs, tlswrap):
    """``exec`` with a protocol: the program speaks plaintext IMAP on stdin/stdout."""
    from pathlib import Path

    imapd = Path(__file__).parent / "data" / "stdio_imapd.py"
    port = free_port()
    tlswrap(f"foreground = yes\ndebug = info\n[imapd]\naccept = 127.0.0.1:{port}\n"
            f"exec = {imapd}\ncert = {certs.cert_file}\nkey = {certs.key_file}\n"
            "protocol = imap\n", [port])
    with imaplib.IMAP4("localhost", port, timeout=10) as c:
        assert c.welcome.startswith(b"* OK stdio imapd ready")
        c.starttls(ssl_context=certs.client_context())
        assert c.capabilities == ("IMAP4REV1",)
        typ, _ = c.xatom("ENV")
        env = dict(line.decode().split("=", 1) for line in c.untagged_responses.pop("ENV", []))
        c.logout()
    assert typ == "OK" and env["TCPREMOTEIP"] == "127.0.0.1"


# -- the examples/ demo mail server ----------------------------------------------------------------

@needs_curl
@pytest.mark.parametrize(("protocol", "path", "expected"), [
    ("imap", "/INBOX;UID=1", b"Subject: Welcome to tlswrap"),
    ("pop3", "/1", b"Subject: Welcome to tlswrap"),
])
def test_curl_through_starttls_to_the_demo_mail_server(certs, demo_mailserver, tlswrap, protocol,
                                                       path, expected):
    backend = demo_mailserver[0 if protocol == "imap" else 1]
    port = free_port()
    tlswrap(service_config(certs, port, f"127.0.0.1:{backend}", name=protocol,
                           extra=f"protocol = {protocol}"), [port])
    out = subprocess.run(
        ["curl", "-sS", "--max-time", "20", "--ssl-reqd", "--cacert", str(certs.ca_file),
         "-u", "demo:secret", f"{protocol}://localhost:{port}{path}"],
        capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert expected in out.stdout
