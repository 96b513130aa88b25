"""SMTP AUTH towards a smarthost (``client = yes``, ``protocol = smtp``, ``protocolUsername``,
``protocolPassword``): a local plaintext client (Python's smtplib) reaches a remote server
that wants STARTTLS and AUTH before it relays; tlswrap starts TLS, authenticates inside it,
then relays the client's own session. The remote server is the test's, speaking SMTP with
STARTTLS, AUTH PLAIN and AUTH LOGIN over Python's ssl module, and recording what it got."""

from __future__ import annotations

import base64
import smtplib
import socket
import ssl

import pytest

from conftest import free_port, wait_for
from test_e2e_starttls_client import _lines

USER = "relay@example.org"
PASSWORD = "s3cret-pässword"


class Smarthost:
    """What the test server saw: the credentials tried (mechanism, user, password), the
    lines inside TLS after authentication, and whether mail was refused for want of AUTH."""

    def __init__(self) -> None:
        self.tried: list[tuple[str, str, str]] = []
        self.after_auth: list[bytes] = []


def smarthost(certs, seen: Smarthost, mechanisms: bytes = b"PLAIN LOGIN"):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certs.cert_file, certs.key_file)

    def handler(conn: socket.socket) -> None:
        conn.sendall(b"220 smarthost.test ESMTP\r\n")
        plain = _lines(conn)
        if next(plain, None) is None:
            return  # a port probe
        conn.sendall(b"250-smarthost.test\r\n250 STARTTLS\r\n")  # no AUTH in plaintext
        if next(plain, b"").upper() != b"STARTTLS":
            return
        conn.sendall(b"220 go ahead\r\n")
        with ctx.wrap_socket(conn, server_side=True) as tls:
            _inside(tls, seen, mechanisms)
    return handler


def _inside(tls: ssl.SSLSocket, seen: Smarthost, mechanisms: bytes) -> None:
    lines = _lines(tls)
    authenticated = False
    for line in lines:
        verb = line.split(b" ", 1)[0].upper()
        if authenticated:
            seen.after_auth.append(line)
        if verb in (b"EHLO", b"HELO"):
            tls.sendall(b"250-smarthost.test\r\n250-AUTH " + mechanisms + b"\r\n250 8BITMIME\r\n")
        elif verb == b"AUTH" and line.split()[1].upper() not in mechanisms.split():
            tls.sendall(b"504 5.5.4 Unrecognized authentication type\r\n")
        elif verb == b"AUTH":
            words = line.split()
            if words[1].upper() == b"PLAIN":
                _, user, password = base64.b64decode(words[2]).split(b"\0")
            else:
                tls.sendall(b"334 VXNlcm5hbWU6\r\n")
                user = base64.b64decode(next(lines))
                tls.sendall(b"334 UGFzc3dvcmQ6\r\n")
                password = base64.b64decode(next(lines))
            seen.tried.append((words[1].decode().lower(), user.decode(), password.decode()))
            if (user.decode(), password.decode()) == (USER, PASSWORD):
                authenticated = True
                tls.sendall(b"235 2.7.0 Authentication successful\r\n")
            else:
                tls.sendall(b"535 5.7.8 Error: authentication failed\r\n")
        elif verb == b"MAIL" and not authenticated:
            tls.sendall(b"530 5.7.0 Authentication required\r\n")
        elif verb == b"DATA":
            tls.sendall(b"354 go on\r\n")
        elif line == b".":
            tls.sendall(b"250 2.0.0 queued\r\n")
        elif verb == b"QUIT":
            tls.sendall(b"221 bye\r\n")
            return
        elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
            tls.sendall(b"250 ok\r\n")


def _probed(proc, seen: Smarthost) -> None:
    """The fixture's port probe is a client too: tlswrap authenticates for it. Wait for its
    closing line and forget what it did, so that what follows is the test's connection."""
    wait_for(lambda: " closed: " in proc.log(), 10, "the port probe's closing line")
    seen.tried.clear()
    seen.after_auth.clear()


def _config(certs, port: int, remote: int, extra: str) -> str:
    # debug = debug: the most tlswrap ever writes; the password must be in none of it
    return (f"foreground = yes\ndebug = debug\n[relay]\nclient = yes\nprotocol = smtp\n"
            f"accept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{remote}\n"
            f"CAfile = {certs.ca_file}\nprotocolHost = mta.example\n{extra}")


def _secrets() -> list[str]:
    """The password as it could leak: itself, its base64 (AUTH LOGIN), the AUTH PLAIN token."""
    return [PASSWORD, base64.b64encode(PASSWORD.encode()).decode(),
            base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()]


@pytest.mark.parametrize("mechanism", ["plain", "login"])
def test_authenticated_relay_delivers_a_message(certs, thread_server, tlswrap, mechanism):
    seen = Smarthost()
    remote = thread_server(smarthost(certs, seen))
    port = free_port()
    proc = tlswrap(_config(certs, port, remote.port,
                           f"protocolAuthentication = {mechanism}\nprotocolUsername = {USER}\n"
                           f"protocolPassword = {PASSWORD}\n"), [port])
    _probed(proc, seen)
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as smtp:
        refused = smtp.sendmail("a@example.org", ["b@example.net"],
                                b"Subject: hi\r\n\r\nrelayed after AUTH\r\n")
    assert refused == {}
    assert seen.tried == [(mechanism, USER, PASSWORD)]
    assert seen.after_auth[0].lower().startswith(b"ehlo ")  # the client's own, inside TLS
    assert b"relayed after AUTH" in seen.after_auth
    wait_for(lambda: proc.log().count(f"AUTH {mechanism.upper()})") == 2, 10,
             "the closing line (after the probe's)")
    log = proc.log()
    assert [s for s in _secrets() if s in log] == []


def test_a_wrong_password_ends_the_session_and_the_log_says_why(certs, thread_server,
                                                               tlswrap):
    seen = Smarthost()
    remote = thread_server(smarthost(certs, seen))
    port = free_port()
    wrong = "not-" + PASSWORD
    proc = tlswrap(_config(certs, port, remote.port,
                           f"protocolUsername = {USER}\nprotocolPassword = {wrong}\n"), [port])
    _probed(proc, seen)
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as smtp:
        code, message = smtp.ehlo()
        assert (code, message) == (421, b"4.7.0 Authentication with the remote server failed, "
                                        b"closing")
        with pytest.raises(smtplib.SMTPServerDisconnected):
            smtp.noop()
    assert seen.tried == [("plain", USER, wrong)] and seen.after_auth == []
    reason = ("SMTP AUTH with the server: the server answered AUTH PLAIN with '535 5.7.8 "
              "Error: authentication failed'")
    wait_for(lambda: reason in proc.log(), 10, "the reason in the log")
    log = proc.log()
    leaks = [wrong, base64.b64encode(wrong.encode()).decode(),
             base64.b64encode(f"\0{USER}\0{wrong}".encode()).decode()]
    assert [s for s in leaks if s in log] == []


def test_a_server_without_the_mechanism_is_named_in_the_log(certs, thread_server, tlswrap):
    """AUTH LOGIN asked of a server that offers PLAIN only: it refuses, and the log says what
    it offers, so the fix (protocolAuthentication = plain) is at hand."""
    seen = Smarthost()
    remote = thread_server(smarthost(certs, seen, mechanisms=b"PLAIN"))
    port = free_port()
    proc = tlswrap(_config(certs, port, remote.port,
                           f"protocolAuthentication = login\nprotocolUsername = {USER}\n"
                           f"protocolPassword = {PASSWORD}\n"), [port])
    with socket.create_connection(("127.0.0.1", port), timeout=20) as raw:
        got = b""
        while data := raw.recv(1000):
            got += data
    assert got == (b"220 smarthost.test ESMTP\r\n"
                   b"421 4.7.0 Authentication with the remote server failed, closing\r\n")
    wait_for(lambda: "the server answered AUTH LOGIN with '504 5.5.4 Unrecognized "
                     "authentication type' (it offers AUTH PLAIN)" in proc.log(), 10,
             "the reason in the log")
