"""SMTP STARTTLS (RFC 3207), server side, sans I/O.

The backend's greeting goes to the client. EHLO and HELO are relayed; the EHLO reply's
extensions are passed on with STARTTLS added and AUTH removed (no password before TLS). NOOP,
RSET and QUIT are relayed; STARTTLS, after EHLO or HELO, is answered here. AUTH is refused with
530 (RFC 3207 section 4). The mail commands (MAIL, RCPT, DATA, BDAT, VRFY, EXPN, ETRN) are
refused with 530 when ``starttls = required`` (the setting for submission, port 587); with
``optional`` (an MX on port 25, where RFC 3207 section 4 forbids requiring TLS) the first of
them starts a plaintext session, relayed as is from then on. Unknown commands get 500.

After TLS, RFC 3207 section 4.2 resets the session: the client must send EHLO (or HELO) again.
That EHLO is relayed to the backend, which resets its own state for it (RFC 5321 section
4.1.4) and answers with its real extensions; until then, commands other than EHLO, HELO, NOOP,
RSET and QUIT get "503 send EHLO first" (what postfix answers). The backend has seen the
pre-TLS EHLO and nothing the client could have carried over: no mail transaction is possible
before TLS in required mode, and none is open at a STARTTLS in optional mode.
"""

from __future__ import annotations

import re
from collections.abc import Generator

from .common import Conversation, Need, Relay, Steps, Stop, Waits

MAIL_COMMANDS = {b"MAIL", b"RCPT", b"DATA", b"BDAT", b"VRFY", b"EXPN", b"ETRN"}
RELAYED = {b"NOOP", b"RSET", b"QUIT"}
HIDDEN = {b"AUTH", b"STARTTLS"}  # extensions not offered before TLS (and AUTH=..., old style)
_REPLY = re.compile(rb"[2-5][0-9][0-9]([ -].*)?", re.DOTALL)

REPLY_READY = b"220 2.0.0 Ready to start TLS\r\n"
REPLY_TLS_FIRST = b"530 5.7.0 Must issue a STARTTLS command first\r\n"
REPLY_EHLO_FIRST = b"503 5.5.1 Error: send HELO/EHLO first\r\n"
REPLY_UNKNOWN = b"500 5.5.2 Error: command not recognized\r\n"
REPLY_NO_ARGS = b"501 5.5.4 Syntax: STARTTLS\r\n"


def rewrite_ehlo(lines: list[bytes]) -> list[bytes]:
    """A 250 EHLO reply's lines (without CRLF) as offered before TLS."""
    code = lines[0][:3]
    texts = [lines[0][4:]] + [line[4:] for line in lines[1:] if not hidden(line[4:])]
    texts.append(b"STARTTLS")
    return [code + b"-" + text for text in texts[:-1]] + [code + b" " + texts[-1]]


def hidden(extension: bytes) -> bool:
    keyword = extension.split(b" ", 1)[0].upper()
    return keyword in HIDDEN or keyword.startswith(b"AUTH=")


class Smtp(Conversation):
    protocol = "smtp"
    reply_too_long = b"500 5.5.0 Line too long\r\n"
    reply_too_many = b"421 4.7.0 Too many commands before STARTTLS\r\n"
    reply_unavailable = b"421 4.3.0 Service not available\r\n"

    def run(self) -> Steps:
        greeting = yield from self.reply()
        self.send_reply(greeting)
        if not greeting[0].startswith(b"220"):
            raise Stop("the backend refused the session")
        greeted = False
        while True:
            line = yield from self.client_line()
            verb, _, args = line.partition(b" ")
            verb = verb.upper()
            if verb in (b"EHLO", b"HELO"):
                self.to_backend(line + b"\r\n")
                reply = yield from self.reply()
                ok = reply[0].startswith(b"250")
                self.send_reply(rewrite_ehlo(reply) if ok and verb == b"EHLO" else reply)
                greeted = greeted or ok
            elif verb == b"STARTTLS":
                if args.strip():
                    self.to_client(REPLY_NO_ARGS)
                elif not greeted:
                    self.to_client(REPLY_EHLO_FIRST)
                else:
                    yield from self.start_tls(REPLY_READY)
                    return (yield from self.after_tls())
            elif verb in RELAYED:
                yield from self.relay(line, verb)
            elif verb in MAIL_COMMANDS and not self.required:
                return Relay(line + b"\r\n" + self.client.take_all(), tls=False)
            elif verb in MAIL_COMMANDS or verb == b"AUTH":
                self.to_client(REPLY_TLS_FIRST)
            else:
                self.to_client(REPLY_UNKNOWN)

    def after_tls(self) -> Steps:
        """Inside TLS, until the client's new EHLO (or HELO), which goes to the backend."""
        while True:
            line = yield from self.client_line()
            verb = line.partition(b" ")[0].upper()
            if verb in (b"EHLO", b"HELO"):
                return Relay(line + b"\r\n" + self.client.take_all())
            if verb in RELAYED:
                yield from self.relay(line, verb)
            else:
                self.to_client(REPLY_EHLO_FIRST)

    def relay(self, line: bytes, verb: bytes) -> Waits:
        self.to_backend(line + b"\r\n")
        self.send_reply((yield from self.reply()))
        if verb == b"QUIT":
            raise Stop("the client quit before TLS" if not self.tls
                       else "the client quit before EHLO")

    def reply(self) -> Generator[Need, None, list[bytes]]:
        """One (multi-line) reply from the backend, as its lines without CRLF."""
        lines: list[bytes] = []
        while True:
            line = yield from self.backend_line()
            if not _REPLY.fullmatch(line) or (lines and line[:3] != lines[0][:3]):
                raise Stop("the backend sent a malformed SMTP reply", self.reply_unavailable)
            lines.append(line)
            if line[3:4] != b"-":
                return lines

    def send_reply(self, lines: list[bytes]) -> None:
        self.to_client(b"".join(line + b"\r\n" for line in lines))
