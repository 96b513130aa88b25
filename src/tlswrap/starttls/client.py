"""STARTTLS, client side (``client = yes`` with ``protocol = imap | pop3 | smtp``): tlswrap
asks a remote mail server for TLS on behalf of a local plaintext client, as stunnel does.
No networking code.

General theory of operation: ``Negotiation`` is fed what the remote server sends
(``receive``); it answers with what to send the server (``to_server``) and the local client
(``to_client``), until ``state`` is ``TLS`` (start the handshake now) or ``FAILED`` (``reason``
says why; ``to_client`` may hold a last word for the local client). The local client gets the
server's greeting before TLS (as stunnel hands it on; for IMAP a plain ``* OK``, since the
pre-TLS capabilities would mislead it) and then talks to the server inside TLS, where the
server starts afresh (RFC 3207 section 4.2, RFC 2595 section 3.1).

Bytes the server sends after its "go ahead" and before the handshake would be read inside TLS
if passed on: they end the negotiation (the response injection CVE-2011-1575 is about).

``Authentication`` is the same kind of machine for what stunnel's ``protocolUsername`` and
``protocolPassword`` ask of an SMTP server once TLS is up: ``EHLO``, then ``AUTH PLAIN`` (RFC
4616) or ``AUTH LOGIN``, until ``state`` is ``AUTHENTICATED`` (relay the local client now: its own
EHLO goes to the server inside TLS) or ``FAILED``. Its ``to_server`` holds the credentials: the
caller sends it and shows it nowhere; ``reason`` only ever quotes the server.
"""

from __future__ import annotations

import base64
from collections.abc import Generator

from .common import LineBuffer, LineTooLong

NEED = "need"
TLS = "tls"
AUTHENTICATED = "authenticated"
FAILED = "failed"
IMAP_TAG = b"tw1"
IMAP_GREETING = b"* OK ready, TLS to the server\r\n"


class _Exchange:
    """What both machines share: the server's lines in, the queues out, the states. A
    subclass sets ``_run`` (its generator), ``_done`` (the state it ends in) and ``_extra``
    (the reason when the server says more than its last reply), then calls ``_advance``."""

    _done = TLS
    _extra = "the server sent more before the TLS handshake"

    def __init__(self) -> None:
        self.state = NEED
        self.reason = ""
        self.to_server = bytearray()
        self.to_client = bytearray()
        self._lines = LineBuffer()
        self._run: Generator[None, None, None]

    def receive(self, data: bytes) -> None:
        """Bytes from the server (``b""``: it closed); then look at ``state`` and the queues."""
        if self.state != NEED:
            if data and self.state == self._done:
                self._fail(self._extra)
            return
        self._lines.feed(data)
        self._advance()

    def take(self) -> tuple[bytes, bytes]:
        """(to the server, to the local client), emptied."""
        out = bytes(self.to_server), bytes(self.to_client)
        self.to_server.clear()
        self.to_client.clear()
        return out

    def _advance(self) -> None:
        try:
            next(self._run)
        except StopIteration:
            if self.state == NEED:
                self.state = self._done
                if self._lines.pending:
                    self._fail(self._extra)
        except LineTooLong as exc:
            self._fail(str(exc))
        except _Refused as exc:
            self._fail(str(exc))

    def _fail(self, reason: str) -> None:
        self.state, self.reason = FAILED, reason

    def _line(self) -> Generator[None, None, bytes]:
        while True:
            line = self._lines.line()
            if line is not None:
                return line
            if self._lines.eof:
                raise _Refused("the server closed the connection")
            yield

    def _reply(self, code: bytes) -> Generator[None, None, bytes]:
        """An SMTP reply: its lines (``CODE-``) up to the last (``CODE ``); _Refused if the
        code is another."""
        while True:
            line = yield from self._line()
            if not line.startswith(code):
                raise _Refused(f"the server answered {_shown(line)}")
            if line[3:4] != b"-":
                return line


class Negotiation(_Exchange):
    """One client-side STARTTLS negotiation with a remote server."""

    def __init__(self, protocol: str, ehlo_name: str = "localhost") -> None:
        super().__init__()
        self.protocol = protocol
        self.ehlo_name = ehlo_name
        runs = {"smtp": self._smtp, "imap": self._imap, "pop3": self._pop3}
        self._run = runs[protocol]()
        self._advance()

    def _smtp(self) -> Generator[None, None, None]:
        while True:  # the greeting, every line to the local client
            line = yield from self._line()
            if not line.startswith(b"220"):
                self.to_client += line + b"\r\n"
                raise _Refused(f"the server's greeting is {_shown(line)}")
            self.to_client += line + b"\r\n"
            if line[3:4] != b"-":
                break
        self.to_server += b"EHLO " + self.ehlo_name.encode("idna") + b"\r\n"
        yield from self._reply(b"250")
        self.to_server += b"STARTTLS\r\n"
        yield from self._reply(b"220")

    def _imap(self) -> Generator[None, None, None]:
        line = yield from self._line()
        if not line.startswith(b"* OK"):
            raise _Refused(f"the server's greeting is {_shown(line)}")
        self.to_client += IMAP_GREETING
        self.to_server += IMAP_TAG + b" STARTTLS\r\n"
        while True:
            line = yield from self._line()
            if line.startswith(b"* "):
                continue  # untagged (a CAPABILITY the server volunteers)
            if line.upper().startswith(IMAP_TAG.upper() + b" OK"):
                return
            self.to_client += b"* BYE the server refuses STARTTLS\r\n"
            raise _Refused(f"the server answered {_shown(line)}")

    def _pop3(self) -> Generator[None, None, None]:
        line = yield from self._line()
        if not line.startswith(b"+OK"):
            raise _Refused(f"the server's greeting is {_shown(line)}")
        self.to_client += line + b"\r\n"
        self.to_server += b"STLS\r\n"
        line = yield from self._line()
        if not line.startswith(b"+OK"):
            self.to_client += b"-ERR the server refuses STLS\r\n"
            raise _Refused(f"the server answered {_shown(line)}")


# The local client's last word when authentication fails: a 4xx, so that its MTA keeps the
# mail queued until the credentials are fixed, rather than bouncing it (RFC 5321 section 3.8:
# a server may answer any command with 421 and close).
AUTH_FAILED_REPLY = b"421 4.7.0 Authentication with the remote server failed, closing\r\n"


class Authentication(_Exchange):
    """SMTP AUTH inside TLS, as a client (stunnel's protocolAuthentication, protocolUsername,
    protocolPassword): ``EHLO ehlo_name``, then ``mechanism`` (``plain`` or ``login``)."""

    _done = AUTHENTICATED
    _extra = "the server sent more than its reply to AUTH"

    def __init__(self, username: str, password: str, mechanism: str = "plain",
                 ehlo_name: str = "localhost") -> None:
        super().__init__()
        self.mechanism = mechanism
        self._offered: list[bytes] | None = None  # AUTH mechanisms the EHLO reply names
        self._run = self._auth(username.encode(), password.encode(), ehlo_name)
        self._advance()

    def give_up(self, reason: str) -> None:
        """End it from outside (the caller's deadline): FAILED, with the local client's last
        word queued."""
        if self.state != FAILED:
            self._fail(reason)

    def _fail(self, reason: str) -> None:
        super()._fail(reason)
        self.to_server.clear()
        self.to_client += AUTH_FAILED_REPLY

    def _auth(self, user: bytes, password: bytes,
              ehlo_name: str) -> Generator[None, None, None]:
        self.to_server += b"EHLO " + ehlo_name.encode("idna") + b"\r\n"
        yield from self._ehlo_reply()
        if self.mechanism == "login":
            self.to_server += b"AUTH LOGIN\r\n"
            yield from self._expect(b"334", "AUTH LOGIN")
            self.to_server += base64.b64encode(user) + b"\r\n"
            yield from self._expect(b"334", "the user name (AUTH LOGIN)")
            self.to_server += base64.b64encode(password) + b"\r\n"
            yield from self._expect(b"235", "the password (AUTH LOGIN)")
        else:
            token = base64.b64encode(b"\0" + user + b"\0" + password)
            self.to_server += b"AUTH PLAIN " + token + b"\r\n"
            yield from self._expect(b"235", "AUTH PLAIN")

    def _ehlo_reply(self) -> Generator[None, None, None]:
        """The EHLO reply (250, one line or many); the AUTH mechanisms it offers noted."""
        offered: list[bytes] = []
        while True:
            line = yield from self._line()
            if not line.startswith(b"250"):
                raise _Refused(f"the server answered EHLO with {_shown(line)}")
            words = line[4:].upper().replace(b"=", b" ").split()
            if words[:1] == [b"AUTH"]:
                offered += words[1:]
                self._offered = offered
            if line[3:4] != b"-":
                return

    def _expect(self, code: bytes, what: str) -> Generator[None, None, None]:
        """The reply to ``what``: its lines up to the last, each with ``code``."""
        while True:
            line = yield from self._line()
            if not line.startswith(code):
                raise _Refused(f"the server answered {what} with {_shown(line)}"
                               f"{self._offer_note()}")
            if line[3:4] != b"-":
                return

    def _offer_note(self) -> str:
        """Why the server may have refused: it offers no AUTH, or not this mechanism."""
        if self._offered is None:
            return " (its EHLO reply offers no AUTH)"
        if self.mechanism.upper().encode() not in self._offered:
            offered = b" ".join(self._offered).decode("ascii", "backslashreplace")
            return f" (it offers AUTH {offered})"
        return ""


class _Refused(Exception):
    pass


def _shown(line: bytes) -> str:
    """A server's line for a log message: at most 80 characters, as text."""
    text = line[:80].decode("ascii", "backslashreplace")
    return repr(text + ("..." if len(line) > 80 else ""))
