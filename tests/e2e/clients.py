"""The mail clients people use, driven one-shot against a TLS port: each returns what it
fetched (or raises with what it printed), so a test can compare messages byte for byte."""

from __future__ import annotations

import imaplib
import os
import poplib
import signal
import smtplib
import socket
import ssl
import subprocess
from pathlib import Path

HOST = "localhost"  # the name the test certificate carries


def run(argv: list[str], timeout: float = 60, input: bytes | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run a client in a process group of its own; on timeout the whole group is killed
    (mutt under ``script``, fetchmail's MDA) before the error is raised."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE if input is not None
                            else subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"{argv[0]} still running after {timeout}s:\n"
                             + (out + err)[-2000:].decode(errors="replace")) from None
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def context(ca_file: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))


def imap_connect(port: int, ca_file: Path, starttls: bool = False) -> imaplib.IMAP4:
    """An imaplib session over TLS: implicit (IMAP4_SSL), or STARTTLS first."""
    if not starttls:
        return imaplib.IMAP4_SSL(HOST, port, ssl_context=context(ca_file), timeout=20)
    m = imaplib.IMAP4(HOST, port, timeout=20)
    assert m.starttls(ssl_context=context(ca_file))[0] == "OK"
    return m


def imaplib_fetch(port: int, ca_file: Path, user: str, password: str,
                  starttls: bool = False) -> bytes:
    """LOGIN, SELECT INBOX, FETCH 1 BODY.PEEK[], LOGOUT with Python's imaplib."""
    with imap_connect(port, ca_file, starttls) as m:
        assert m.login(user, password)[0] == "OK"
        typ, data = m.select("INBOX")
        assert typ == "OK", data
        typ, data = m.fetch("1", "(BODY.PEEK[])")
        assert typ == "OK", data
        m.logout()
    return data[0][1]


def poplib_fetch(port: int, ca_file: Path, user: str, password: str,
                 starttls: bool = False) -> bytes:
    """USER, PASS, RETR 1, QUIT with Python's poplib (lines joined with CRLF again), over
    implicit TLS or after STLS."""
    if starttls:
        p = poplib.POP3(HOST, port, timeout=20)
        p.stls(context=context(ca_file))
    else:
        p = poplib.POP3_SSL(HOST, port, context=context(ca_file), timeout=20)
    try:
        p.user(user)
        p.pass_(password)
        _resp, lines, _octets = p.retr(1)
    finally:
        p.quit()
    return b"".join(line + b"\r\n" for line in lines)


def curl(url: str, ca_file: Path, *extra: str) -> bytes:
    out = run(["curl", "-sS", "--max-time", "20", "--cacert", str(ca_file), *extra, url])
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    return out.stdout


def fetchmail(proto: str, port: int, ca_file: Path, user: str, password: str,
              home: Path, starttls: bool = False) -> list[bytes]:
    """fetchmail one-shot (no daemon), --sslcertck against the test CA, every message handed
    to an MDA that writes it to a file of its own; ``keep`` leaves them on the server.
    ``starttls``: ``sslproto 'tls1.2+'`` without ``ssl``, fetchmail's mode that requires
    STARTTLS (STLS) and refuses to go on in plaintext.
    ``invisible`` stops fetchmail adding its Received line, so what the MDA gets is the
    message as the server sent it (with LF line ends: fetchmail hands MDAs Unix text)."""
    home.mkdir(exist_ok=True)
    out_dir = home / "delivered"
    out_dir.mkdir(exist_ok=True)
    rc = home / "fetchmailrc"
    tls = "sslproto 'tls1.2+'" if starttls else "ssl"
    rc.write_text(f'set invisible\npoll {HOST} proto {proto} port {port}\n'
                  f'  user "{user}" there with password "{password}" is root here\n'
                  f'  options keep {tls} sslcertck sslcertfile "{ca_file}"\n'
                  f'  mda "/bin/sh -c \'cat > {out_dir}/$$.msg\'"\n')
    rc.chmod(0o600)
    env = {**os.environ, "HOME": str(home), "FETCHMAILHOME": str(home)}
    out = run(["fetchmail", "-f", str(rc), "--nosyslog", "-v"], env=env)
    assert out.returncode == 0, (out.stdout + out.stderr).decode(errors="replace")
    return [p.read_bytes() for p in sorted(out_dir.iterdir())]


def smtplib_send(port: int, ca_file: Path, sender: str, rcpt: str, message: bytes,
                 source: str | None = None, starttls: bool = False,
                 login: tuple[str, str] | None = None) -> None:
    """SMTP over implicit TLS, or STARTTLS, with Python's smtplib, optionally from a given
    source address; with ``login`` (user, password) it sends SMTP AUTH first (smtplib
    chooses the mechanism: PLAIN here)."""
    address = (source, 0) if source else None
    if starttls:
        s = smtplib.SMTP(HOST, port, timeout=20, source_address=address)
        s.ehlo("client.example.test")
        assert s.starttls(context=context(ca_file))[0] == 220
    else:
        s = smtplib.SMTP_SSL(HOST, port, context=context(ca_file), timeout=20,
                             source_address=address)
    try:
        s.ehlo("client.example.test")
        if login:
            assert s.login(*login)[0] == 235
        refused = s.sendmail(sender, [rcpt], message)
        assert not refused
    finally:
        s.quit()


def swaks_send(port: int, ca_file: Path, sender: str, rcpt: str, message_file: Path,
               starttls: bool = False, login: tuple[str, str] | None = None,
               status: int = 0) -> str:
    """swaks with --tls-on-connect, or --tls (STARTTLS, required); with ``login`` (user,
    password) it sends AUTH LOGIN first, once. It must exit with ``status`` (28: AUTH
    failed); returns what it printed."""
    auth = ["--auth", "LOGIN", "--auth-user", login[0], "--auth-password", login[1]] \
        if login else []
    out = run(["swaks", "--server", HOST, "--port", str(port),
               "--tls" if starttls else "--tls-on-connect",
               "--tls-verify", "--tls-ca-path", str(ca_file),
               "--from", sender, "--to", rcpt, "--data", f"@{message_file}",
               "--helo", "client.example.test", "--timeout", "20", *auth])
    printed = (out.stdout + out.stderr).decode(errors="replace")
    assert out.returncode == status, printed
    return printed


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


class BoundIMAP4(imaplib.IMAP4):
    """imaplib's plaintext IMAP4 (for STARTTLS) from a chosen source address."""

    source = "127.0.0.1"

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout, (self.source, 0))


class BoundPOP3(poplib.POP3):
    """poplib's plaintext POP3 (for STLS) from a chosen source address."""

    source = "127.0.0.1"

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout, (self.source, 0))


def imap_starttls_from(source: str) -> type[BoundIMAP4]:
    return type("IMAP4From", (BoundIMAP4,), {"source": source})


def pop3_stls_from(source: str) -> type[BoundPOP3]:
    return type("POP3From", (BoundPOP3,), {"source": source})


def imap_from(source: str) -> type[BoundIMAP4SSL]:
    return type("IMAP4SSLFrom", (BoundIMAP4SSL,), {"source": source})


def pop3_from(source: str) -> type[BoundPOP3SSL]:
    return type("POP3SSLFrom", (BoundPOP3SSL,), {"source": source})


def muttrc(home: Path, ca_file: Path, user: str, password: str, extra: str = "",
           starttls: bool = False) -> Path:
    """A muttrc that trusts the test CA, logs in with USER/PASSWORD, never waits for a key and
    caches nothing; with ``starttls`` it must start TLS on imap://, pop:// and smtp:// URLs."""
    home.mkdir(exist_ok=True)
    rc = home / "muttrc"
    rc.write_text(f'set ssl_ca_certificates_file="{ca_file}"\n'
                  f'set imap_user="{user}"\nset imap_pass="{password}"\n'
                  f'set pop_user="{user}"\nset pop_pass="{password}"\n'
                  'set wait_key=no\nset quit=yes\nset pipe_decode=no\nset header_cache=""\n'
                  'set message_cachedir=""\nset mail_check_stats=no\n'
                  + ('set ssl_starttls=yes\nset ssl_force_tls=yes\n' if starttls
                     else 'set ssl_starttls=no\n') +
                  'set move=no\nset delete=no\nset record=""\n'
                  f'set folder="{home}"\n'  # an existing folder: no "create ~/Mail?" prompt
                  + extra)
    rc.chmod(0o600)
    return rc


def mutt_read(url: str, ca_file: Path, user: str, password: str, home: Path,
              starttls: bool = False) -> bytes:
    """mutt opens the mailbox at URL and pipes the first message, raw, to a file. mutt reads
    mail only with its full-screen interface, so it runs on a pseudo-terminal (``script``)
    with the keys pushed from the command line; it quits by itself."""
    rc = muttrc(home, ca_file, user, password, starttls=starttls)
    out = home / "piped.eml"
    keys = f"<pipe-message>cat > {out}<enter><quit>"
    command = f"stty rows 24 cols 80; exec mutt -n -F {rc} -f '{url}' -e 'push \"{keys}\"'"
    done = run(["script", "-qec", command, "/dev/null"],
               env={**os.environ, "TERM": "xterm", "HOME": str(home)})
    assert done.returncode == 0 and out.exists(), done.stdout[-2000:].decode(errors="replace")
    return out.read_bytes()


def mutt_send(smtp_url: str, ca_file: Path, sender: str, rcpt: str, subject: str,
              body: bytes, home: Path, starttls: bool = False,
              login: tuple[str, str] | None = None) -> None:
    """mutt in batch mode (no terminal, body on stdin) sending through SMTPS, or smtp:// with
    STARTTLS; with ``login`` (user, password) it authenticates (mutt takes the user from
    smtp_url, the password from smtp_pass)."""
    auth = ""
    if login:
        smtp_url = smtp_url.replace("://", f"://{login[0]}@", 1)
        auth = f'set smtp_pass="{login[1]}"\n'
    rc = muttrc(home, ca_file, "", "", f'set smtp_url="{smtp_url}"\nset from="{sender}"\n'
                'set use_from=yes\nset send_charset="utf-8"\n' + auth, starttls=starttls)
    done = run(["mutt", "-n", "-F", str(rc), "-s", subject, "--", rcpt], input=body,
               env={**os.environ, "HOME": str(home)})
    assert done.returncode == 0, (done.stdout + done.stderr).decode(errors="replace")
