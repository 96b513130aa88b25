"""The mail clients people use, driven one-shot against a TLS port: each returns what it
fetched (or raises with what it printed), so a test can compare messages byte for byte."""

from __future__ import annotations

import imaplib
import os
import poplib
import smtplib
import socket
import ssl
import subprocess
from pathlib import Path

HOST = "localhost"  # the name the test certificate carries


def context(ca_file: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))


def imaplib_fetch(port: int, ca_file: Path, user: str, password: str) -> bytes:
    """LOGIN, SELECT INBOX, FETCH 1 BODY.PEEK[], LOGOUT with Python's imaplib."""
    with imaplib.IMAP4_SSL(HOST, port, ssl_context=context(ca_file), timeout=20) as m:
        assert m.login(user, password)[0] == "OK"
        typ, data = m.select("INBOX")
        assert typ == "OK", data
        typ, data = m.fetch("1", "(BODY.PEEK[])")
        assert typ == "OK", data
        m.logout()
    return data[0][1]


def poplib_fetch(port: int, ca_file: Path, user: str, password: str) -> bytes:
    """USER, PASS, RETR 1, QUIT with Python's poplib (lines joined with CRLF again)."""
    p = poplib.POP3_SSL(HOST, port, context=context(ca_file), timeout=20)
    try:
        p.user(user)
        p.pass_(password)
        _resp, lines, _octets = p.retr(1)
    finally:
        p.quit()
    return b"".join(line + b"\r\n" for line in lines)


def curl(url: str, ca_file: Path, *extra: str) -> bytes:
    out = subprocess.run(["curl", "-sS", "--max-time", "20", "--cacert", str(ca_file),
                          *extra, url],
                         capture_output=True, timeout=40, check=False)
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    return out.stdout


def fetchmail(proto: str, port: int, ca_file: Path, user: str, password: str,
              home: Path) -> list[bytes]:
    """fetchmail one-shot (no daemon), --sslcertck against the test CA, every message handed
    to an MDA that writes it to a file of its own; ``keep`` leaves them on the server.
    ``invisible`` stops fetchmail adding its Received line, so what the MDA gets is the
    message as the server sent it (with LF line ends: fetchmail hands MDAs Unix text)."""
    home.mkdir(exist_ok=True)
    out_dir = home / "delivered"
    out_dir.mkdir(exist_ok=True)
    rc = home / "fetchmailrc"
    rc.write_text(f'set invisible\npoll {HOST} proto {proto} port {port}\n'
                  f'  user "{user}" there with password "{password}" is root here\n'
                  f'  options keep ssl sslcertck sslcertfile "{ca_file}"\n'
                  f'  mda "/bin/sh -c \'cat > {out_dir}/$$.msg\'"\n')
    rc.chmod(0o600)
    env = {**os.environ, "HOME": str(home), "FETCHMAILHOME": str(home)}
    out = subprocess.run(["fetchmail", "-f", str(rc), "--nosyslog", "-v"], env=env,
                         capture_output=True, timeout=60, check=False, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, (out.stdout + out.stderr).decode(errors="replace")
    return [p.read_bytes() for p in sorted(out_dir.iterdir())]


def smtplib_send(port: int, ca_file: Path, sender: str, rcpt: str, message: bytes,
                 source: str | None = None) -> None:
    """SMTP over implicit TLS with Python's smtplib, optionally from a given source address."""
    s = smtplib.SMTP_SSL(HOST, port, context=context(ca_file), timeout=20,
                         source_address=(source, 0) if source else None)
    try:
        s.ehlo("client.example.test")
        refused = s.sendmail(sender, [rcpt], message)
        assert not refused
    finally:
        s.quit()


def swaks_send(port: int, ca_file: Path, sender: str, rcpt: str, message_file: Path) -> str:
    out = subprocess.run(["swaks", "--server", HOST, "--port", str(port), "--tls-on-connect",
                          "--tls-verify", "--tls-ca-path", str(ca_file),
                          "--from", sender, "--to", rcpt, "--data", f"@{message_file}",
                          "--helo", "client.example.test", "--timeout", "20"],
                         capture_output=True, timeout=60, check=False, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


class BoundIMAP4SSL(imaplib.IMAP4_SSL):
    """imaplib's IMAP4_SSL from a chosen source address (``source`` before connecting)."""

    source = "127.0.0.1"

    def _create_socket(self, timeout):
        sock = socket.create_connection((self.host, self.port), timeout, (self.source, 0))
        return self.ssl_context.wrap_socket(sock, server_hostname=self.host)


class BoundPOP3SSL(poplib.POP3_SSL):
    """poplib's POP3_SSL from a chosen source address."""

    source = "127.0.0.1"

    def _create_socket(self, timeout):
        sock = socket.create_connection((self.host, self.port), timeout, (self.source, 0))
        return self.context.wrap_socket(sock, server_hostname=self.host)


def imap_from(source: str) -> type[BoundIMAP4SSL]:
    return type("IMAP4SSLFrom", (BoundIMAP4SSL,), {"source": source})


def pop3_from(source: str) -> type[BoundPOP3SSL]:
    return type("POP3SSLFrom", (BoundPOP3SSL,), {"source": source})
