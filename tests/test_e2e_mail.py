"""Real mail clients through tlswrap to the plaintext demo IMAP/POP3 server."""

from __future__ import annotations

import imaplib
import poplib
import shutil
import subprocess

import pytest

from conftest import free_port, service_config


def _two_services(certs, imap_port, pop3_port, imaps, pop3s):
    return (service_config(certs, imaps, f"127.0.0.1:{imap_port}", name="imaps")
            + f"[pop3s]\naccept = 127.0.0.1:{pop3s}\nconnect = 127.0.0.1:{pop3_port}\n"
              f"cert = {certs.cert_file}\nkey = {certs.key_file}\n")


@pytest.fixture
def proxied(certs, demo_mailserver, tlswrap):
    imap_port, pop3_port = demo_mailserver
    imaps, pop3s = free_port(), free_port()
    proc = tlswrap(_two_services(certs, imap_port, pop3_port, imaps, pop3s), [imaps, pop3s])
    return proc, imaps, pop3s


@pytest.mark.skipif(not shutil.which("curl"), reason="curl not installed")
def test_curl_imaps_lists_mailboxes(certs, proxied):
    _proc, imaps, _ = proxied
    out = subprocess.run(
        ["curl", "-sS", "--max-time", "10", "--cacert", str(certs.ca_file),
         "-u", "demo:secret", f"imaps://localhost:{imaps}/"],
        capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert "INBOX" in out.stdout and "Sent" in out.stdout


@pytest.mark.skipif(not shutil.which("curl"), reason="curl not installed")
def test_curl_insecure_fetches_message(proxied):
    _, imaps, _ = proxied
    out = subprocess.run(
        ["curl", "-sS", "-k", "--max-time", "10", "-u", "demo:secret",
         f"imaps://127.0.0.1:{imaps}/INBOX;UID=1"],
        capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert "Subject: Welcome to tlswrap" in out.stdout


def test_imaplib_imap4_ssl(certs, proxied):
    proc, imaps, _ = proxied
    with imaplib.IMAP4_SSL("localhost", imaps, ssl_context=certs.client_context(),
                           timeout=10) as m:
        assert m.login("demo", "secret")[0] == "OK"
        typ, boxes = m.list()
        assert typ == "OK" and any(b"INBOX" in b for b in boxes)
        typ, data = m.select("INBOX")
        assert typ == "OK" and data == [b"1"]
        typ, msg = m.fetch("1", "(RFC822)")
        assert typ == "OK" and b"This message was read through TLS." in msg[0][1]
        m.logout()
    assert "[imaps] 127.0.0.1:" in proc.log()


def test_poplib_pop3_ssl(certs, proxied):
    _, _, pop3s = proxied
    p = poplib.POP3_SSL("localhost", pop3s, context=certs.client_context(), timeout=10)
    try:
        p.user("demo")
        p.pass_("secret")
        count, _size = p.stat()
        assert count == 1
        _resp, lines, _octets = p.retr(1)
        assert b"Subject: Welcome to tlswrap" in lines
    finally:
        p.quit()


@pytest.mark.skipif(not shutil.which("openssl"), reason="openssl not installed")
def test_openssl_s_client_sees_greeting(certs, proxied):
    _, imaps, _ = proxied
    out = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{imaps}", "-CAfile", str(certs.ca_file),
         "-verify_hostname", "localhost", "-verify_return_error", "-quiet"],
        input=b"a1 LOGOUT\r\n", capture_output=True, timeout=20)
    assert b"* OK [CAPABILITY IMAP4rev1" in out.stdout, out.stderr
    assert b"a1 OK LOGOUT completed" in out.stdout


def test_log_lines_name_service_peer_and_tls(certs, proxied):
    proc, imaps, _ = proxied
    with imaplib.IMAP4_SSL("localhost", imaps, ssl_context=certs.client_context(),
                           timeout=10) as m:
        port = m.sock.getsockname()[1]
        m.logout()
    from conftest import wait_for

    wait_for(lambda: f"127.0.0.1:{port} closed" in proc.log(), 5, "the closing log line")
    log = proc.log()
    assert f"[imaps] 127.0.0.1:{port} accepted connection" in log
    closing = next(line for line in log.splitlines() if f"127.0.0.1:{port} closed" in line)
    assert "[imaps]" in closing and "TLSv1.3" in closing
    assert "bytes to backend" in closing and "bytes to client" in closing
    assert "secret" not in log and "LOGOUT" not in log  # never payload


def test_output_file_gets_the_log_lines(certs, demo_mailserver, tlswrap, tmp_path):
    imap_port, _ = demo_mailserver
    port = free_port()
    out = tmp_path / "tlswrap.log"
    tlswrap(service_config(certs, port, f"127.0.0.1:{imap_port}",
                           global_extra=f"output = {out}"), [port])
    with imaplib.IMAP4_SSL("localhost", port, ssl_context=certs.client_context(),
                           timeout=10) as m:
        m.logout()
    from conftest import wait_for

    wait_for(lambda: out.exists() and " closed: " in out.read_text(), 10, "the output file")
    assert "[imaps] 127.0.0.1:" in out.read_text()


def _tiny_smtpd(received: list[bytes]):
    """A plaintext SMTP server that takes one message (enough for smtplib)."""
    def handler(conn):
        f = conn.makefile("rwb", buffering=0)
        f.write(b"220 mail.example.org ESMTP tiny\r\n")
        while line := f.readline():
            cmd = line[:4].upper()
            if cmd in (b"EHLO", b"HELO"):
                f.write(b"250-mail.example.org\r\n250 8BITMIME\r\n")
            elif cmd == b"DATA":
                f.write(b"354 go ahead\r\n")
                body = b""
                while (chunk := f.readline()) not in (b".\r\n", b""):
                    body += chunk
                received.append(body)
                f.write(b"250 queued\r\n")
            elif cmd == b"QUIT":
                f.write(b"221 bye\r\n")
                return
            else:
                f.write(b"250 ok\r\n")
    return handler


def test_smtplib_smtp_ssl_submits_a_message(certs, thread_server, tlswrap):
    import smtplib

    received: list[bytes] = []
    srv = thread_server(_tiny_smtpd(received))
    port = free_port()
    tlswrap(service_config(certs, port, f"127.0.0.1:{srv.port}", name="submissions"), [port])
    with smtplib.SMTP_SSL("localhost", port, context=certs.client_context(), timeout=10) as s:
        s.sendmail("a@example.org", ["b@example.org"], "Subject: hi\r\n\r\nthrough tlswrap\r\n")
    assert b"through tlswrap" in received[0]
