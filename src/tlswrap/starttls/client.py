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
"""

from __future__ import annotations

from collections.abc import Generator

from .common import LineBuffer, LineTooLong

NEED = "need"
TLS = "tls"
FAILED = "failed"
IMAP_TAG = b"tw1"
IMAP_GREETING = b"* OK ready, TLS to the server\r\n"


class Negotiation:
    """One client-side STARTTLS negotiation with a remote server."""

    def __init__(self, protocol: str, ehlo_name: str = "localhost") -> None:
        self.protocol = protocol
        self.ehlo_name = ehlo_name
        self.state = NEED
        self.reason = ""
        self.to_server = bytearray()
        self.to_client = bytearray()
        self._lines = LineBuffer()
        runs = {"smtp": self._smtp, "imap": self._imap, "pop3": self._pop3}
        self._run = runs[protocol]()
        self._advance()

    def receive(self, data: bytes) -> None:
        """Bytes from the server (``b""``: it closed); then look at ``state`` and the queues."""
        if self.state != NEED:
            if data and self.state == TLS:
                self._fail("the server sent more before the TLS handshake")
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
                self.state = TLS
                if self._lines.pending:
                    self._fail("the server sent more before the TLS handshake")
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


class _Refused(Exception):
    pass


def _shown(line: bytes) -> str:
    """A server's line for a log message: at most 80 characters, as text."""
    text = line[:80].decode("ascii", "backslashreplace")
    return repr(text + ("..." if len(line) > 80 else ""))
