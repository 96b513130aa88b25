"""Client-side STARTTLS (``client = yes`` with ``protocol``): a plaintext mail client reaches a
remote server that wants STARTTLS; tlswrap asks for TLS as the client would, verifies the
server and relays. The remote servers here are the test's, speaking each protocol's start and
then TLS; the local clients are Python's smtplib, imaplib and poplib."""

from __future__ import annotations

import imaplib
import poplib
import smtplib
import socket
import ssl

from conftest import free_port, wait_for


def _lines(conn: socket.socket | ssl.SSLSocket):
    buf = b""
    while True:
        while b"\n" not in buf:
            data = conn.recv(4096)
            if not data:
                return
            buf += data
        line, buf = buf.split(b"\n", 1)
        yield line.rstrip(b"\r")


class Seen:
    """What a test server saw: the lines before and inside TLS."""

    def __init__(self) -> None:
        self.plain: list[bytes] = []
        self.tls: list[bytes] = []


def smtp_server(certs, seen: Seen, refuse: bool = False):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certs.cert_file, certs.key_file)

    def handler(conn: socket.socket) -> None:
        conn.sendall(b"220 mx.test ESMTP\r\n")
        plain = _lines(conn)
        ehlo = next(plain, None)
        if ehlo is None:
            return  # a port probe
        conn.sendall(b"250-mx.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
        seen.plain[:] = [ehlo, next(plain, b"")]  # this connection's EHLO and STARTTLS
        if refuse:
            conn.sendall(b"454 TLS not available now\r\n")
            return
        conn.sendall(b"220 go ahead\r\n")
        with ctx.wrap_socket(conn, server_side=True) as tls:
            _smtp_inside(tls, seen)
    return handler


def _smtp_inside(tls: ssl.SSLSocket, seen: Seen) -> None:
    for line in _lines(tls):
        seen.tls.append(line)
        if line.upper().startswith((b"EHLO", b"HELO")):
            tls.sendall(b"250-mx.test\r\n250 8BITMIME\r\n")
        elif line.upper() == b"DATA":
            tls.sendall(b"354 go on\r\n")
        elif line == b".":
            tls.sendall(b"250 queued\r\n")
        elif line.upper() == b"QUIT":
            tls.sendall(b"221 bye\r\n")
            return
        elif line.upper().startswith((b"MAIL", b"RCPT", b"RSET", b"NOOP")):
            tls.sendall(b"250 ok\r\n")


def imap_server(certs, seen: Seen):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certs.cert_file, certs.key_file)

    def handler(conn: socket.socket) -> None:
        conn.sendall(b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] plain side\r\n")
        line = next(_lines(conn), None)
        if line is None:
            return  # a port probe
        seen.plain[:] = [line]
        conn.sendall(line.split()[0] + b" OK begin TLS\r\n")
        with ctx.wrap_socket(conn, server_side=True) as tls:
            _imap_inside(tls, seen)
    return handler


def _imap_inside(tls: ssl.SSLSocket, seen: Seen) -> None:
    for line in _lines(tls):
        seen.tls.append(line)
        tag, _, command = line.partition(b" ")
        if command.upper().startswith(b"CAPABILITY"):
            tls.sendall(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n")
        elif command.upper().startswith(b"LOGIN"):
            tls.sendall(tag + b" OK logged in inside TLS\r\n")
        elif command.upper().startswith(b"LOGOUT"):
            tls.sendall(b"* BYE\r\n" + tag + b" OK bye\r\n")
            return


def pop3_server(certs, seen: Seen):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certs.cert_file, certs.key_file)

    def handler(conn: socket.socket) -> None:
        conn.sendall(b"+OK POP3 plain side\r\n")
        line = next(_lines(conn), None)
        if line is None:
            return  # a port probe
        seen.plain[:] = [line]
        conn.sendall(b"+OK begin TLS\r\n")
        try:
            tls = ctx.wrap_socket(conn, server_side=True)
        except ssl.SSLError:
            return  # the client refused our certificate
        with tls:
            for line in _lines(tls):
                seen.tls.append(line)
                if line.upper() == b"QUIT":
                    tls.sendall(b"+OK bye\r\n")
                    return
                tls.sendall(b"+OK 0 0\r\n" if line.upper() == b"STAT" else b"+OK\r\n")
    return handler


def _config(certs, port: int, remote: int, protocol: str, extra: str = "") -> str:
    return (f"foreground = yes\ndebug = info\n[out]\nclient = yes\nprotocol = {protocol}\n"
            f"accept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{remote}\n"
            f"CAfile = {certs.ca_file}\n{extra}")


def test_smtp_client_reaches_a_starttls_server_through_tlswrap(certs, thread_server, tlswrap):
    seen = Seen()
    remote = thread_server(smtp_server(certs, seen))
    port = free_port()
    tlswrap(_config(certs, port, remote.port, "smtp", "protocolHost = relay.example\n"),
            [port])
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as smtp:
        smtp.sendmail("a@example.org", ["b@example.org"], b"Subject: hi\r\n\r\nthrough TLS\r\n")
    assert seen.plain == [b"EHLO relay.example", b"STARTTLS"]
    assert seen.tls[0].startswith(b"ehlo ")  # the client's own EHLO, inside TLS
    assert b"through TLS" in seen.tls and b"." in seen.tls


def test_imap_client_reaches_a_starttls_server_through_tlswrap(certs, thread_server, tlswrap):
    seen = Seen()
    remote = thread_server(imap_server(certs, seen))
    port = free_port()
    tlswrap(_config(certs, port, remote.port, "imap"), [port])
    with imaplib.IMAP4("127.0.0.1", port, timeout=20) as imap:
        assert imap.welcome == b"* OK ready, TLS to the server"
        typ, data = imap.login("user", "secret")
        assert (typ, data) == ("OK", [b"logged in inside TLS"])
        imap.logout()
    assert seen.plain == [b"tw1 STARTTLS"]
    assert any(b"LOGIN user" in line for line in seen.tls)  # the password only inside TLS


def test_pop3_client_reaches_a_starttls_server_through_tlswrap(certs, thread_server, tlswrap):
    seen = Seen()
    remote = thread_server(pop3_server(certs, seen))
    port = free_port()
    tlswrap(_config(certs, port, remote.port, "pop3"), [port])
    pop = poplib.POP3("127.0.0.1", port, timeout=20)
    assert pop.getwelcome() == b"+OK POP3 plain side"
    pop.user("user")
    pop.pass_("secret")
    assert pop.stat() == (0, 0)
    pop.quit()
    assert seen.plain == [b"STLS"]
    assert seen.tls[:2] == [b"USER user", b"PASS secret"]


def test_a_server_refusing_starttls_ends_the_connection_and_says_why(certs, thread_server,
                                                                     tlswrap):
    seen = Seen()
    remote = thread_server(smtp_server(certs, seen, refuse=True))
    port = free_port()
    proc = tlswrap(_config(certs, port, remote.port, "smtp"), [port])
    with socket.create_connection(("127.0.0.1", port), timeout=20) as raw:
        got = b""
        while data := raw.recv(1000):
            got += data
    assert got == b"220 mx.test ESMTP\r\n"  # the greeting, then nothing: no plaintext session
    wait_for(lambda: "STARTTLS with the server: the server answered '454 TLS not available "
                     "now'" in proc.log(), 10, "the reason in the log")


def test_a_server_with_an_untrusted_certificate_is_refused(certs, thread_server, tlswrap,
                                                           tmp_path):
    """The server's certificate is checked after STARTTLS as in client mode: a CA that did not
    issue it means no session (stunnel would need verifyChain for this)."""
    import trustme

    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    seen = Seen()
    remote = thread_server(pop3_server(certs, seen))
    port = free_port()
    proc = tlswrap(_config(certs, port, remote.port, "pop3").replace(
        f"CAfile = {certs.ca_file}", f"CAfile = {other_ca}"), [port])
    with socket.create_connection(("127.0.0.1", port), timeout=20) as raw:
        got = b""
        while data := raw.recv(1000):
            got += data
    assert got == b"+OK POP3 plain side\r\n"  # the greeting, then the end: no session
    wait_for(lambda: "backend unavailable" in proc.log(), 10, "the refusal in the log")
    assert seen.tls == []
