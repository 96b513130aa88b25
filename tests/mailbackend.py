"""Plaintext IMAP, POP3 and SMTP servers for the STARTTLS tests, recording every line they get.

Enough of each protocol for real clients (imaplib, poplib, smtplib, curl, openssl s_client,
swaks) to log in, read or send one message and quit; run in a ``conftest.ThreadServer``. They
offer no STARTTLS of their own: tlswrap speaks it for them. ``seen`` holds each received
command line, for asserting what reached the backend.
"""

from __future__ import annotations

import socket

IMAP_CAPS = b"IMAP4rev1 SASL-IR LITERAL+ ID IDLE AUTH=PLAIN"
POP3_CAPA = b"+OK\r\nTOP\r\nUIDL\r\nUSER\r\nSASL PLAIN\r\n.\r\n"
SMTP_EHLO = (b"250-backend.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-AUTH PLAIN LOGIN\r\n"
             b"250-8BITMIME\r\n250 SMTPUTF8\r\n")
MESSAGE = b"Subject: hello\r\n\r\nread through STARTTLS\r\n"


class Backend:
    """One protocol's handler for ThreadServer; ``seen`` is shared by its connections."""

    def __init__(self, protocol: str):
        self.protocol = protocol
        self.seen: list[bytes] = []
        self.messages: list[bytes] = []

    def __call__(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        getattr(self, self.protocol)(conn, reader)

    def lines(self, reader):
        while line := reader.readline(65536):
            line = line.rstrip(b"\r\n")
            self.seen.append(line)
            yield line

    def imap(self, conn, reader) -> None:
        conn.sendall(b"* OK [CAPABILITY " + IMAP_CAPS + b"] backend ready\r\n")
        lines = self.lines(reader)
        for line in lines:
            tag, _, rest = line.partition(b" ")
            command = rest.split(b" ", 1)[0].upper()
            if command == b"CAPABILITY":
                conn.sendall(b"* CAPABILITY " + IMAP_CAPS + b"\r\n" + tag + b" OK done\r\n")
            elif command == b"LOGOUT":
                conn.sendall(b"* BYE bye\r\n" + tag + b" OK done\r\n")
                return
            elif command == b"AUTHENTICATE":
                if len(rest.split()) < 3:  # no initial response (SASL-IR): ask for it
                    conn.sendall(b"+ \r\n")
                    next(lines, None)
                conn.sendall(tag + b" OK AUTHENTICATE done\r\n")
            elif command in (b"LOGIN", b"NOOP", b"SELECT", b"EXAMINE"):
                conn.sendall((b"* 1 EXISTS\r\n" if command in (b"SELECT", b"EXAMINE") else b"")
                             + tag + b" OK " + command + b" done\r\n")
            elif command in (b"LIST", b"LSUB"):
                conn.sendall(b'* LIST (\\HasNoChildren) "/" INBOX\r\n' + tag + b" OK done\r\n")
            else:
                conn.sendall(tag + b" BAD unknown\r\n")

    def pop3(self, conn, reader) -> None:
        conn.sendall(b"+OK backend ready\r\n")
        lines = self.lines(reader)
        for line in lines:
            command = line.split(b" ", 1)[0].upper()
            if command == b"AUTH" and line.upper().startswith(b"AUTH PLAIN"):
                if len(line.split()) < 3:  # no initial response: ask for it
                    conn.sendall(b"+ \r\n")
                    next(lines, None)
                conn.sendall(b"+OK logged in\r\n")
            elif command == b"CAPA":
                conn.sendall(POP3_CAPA)
            elif command in (b"USER", b"PASS", b"NOOP"):
                conn.sendall(b"+OK\r\n")
            elif command == b"STAT":
                conn.sendall(b"+OK 1 %d\r\n" % len(MESSAGE))
            elif command == b"LIST":
                conn.sendall(b"+OK\r\n1 %d\r\n.\r\n" % len(MESSAGE))
            elif command == b"RETR":
                conn.sendall(b"+OK\r\n" + MESSAGE + b".\r\n")
            elif command == b"QUIT":
                conn.sendall(b"+OK bye\r\n")
                return
            else:
                conn.sendall(b"-ERR unknown\r\n")

    def smtp(self, conn, reader) -> None:
        conn.sendall(b"220 backend.test ESMTP\r\n")
        lines = self.lines(reader)
        for line in lines:
            command = line.split(b" ", 1)[0].upper()
            if command == b"EHLO":
                conn.sendall(SMTP_EHLO)
            elif command in (b"HELO", b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                conn.sendall(b"250 2.0.0 Ok\r\n")
            elif command == b"DATA":
                conn.sendall(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                body = []
                for data in lines:
                    if data == b".":
                        break
                    body.append(data)
                self.messages.append(b"\r\n".join(body))
                conn.sendall(b"250 2.0.0 Ok: queued\r\n")
            elif command == b"QUIT":
                conn.sendall(b"221 2.0.0 Bye\r\n")
                return
            else:
                conn.sendall(b"502 5.5.2 Error: command not recognized\r\n")
