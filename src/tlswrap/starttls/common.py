"""What the three STARTTLS conversations share: a bounded line reader, the events a
conversation hands its caller, and the driver that turns a protocol's generator into them.

General theory of operation: a protocol (``imap``, ``pop3``, ``smtp``) writes the plaintext start
of its session as one generator, ``run``, in the order the RFC tells it: read the backend's
greeting, read a client command, answer it or relay it and the backend's reply, and so on. The
generator never does I/O. When it needs more bytes it yields ``NEED_CLIENT`` or
``NEED_BACKEND``; what it wants sent it queues with ``to_client``/``to_backend``; when the client
has asked for TLS it yields a ``StartTLS`` event; it ends by returning ``Relay`` (from now on copy
bytes both ways) or by raising ``Stop`` (close, after an optional last reply to the client).

The caller, in the h11 way, feeds what it reads (``receive_client``, ``receive_backend``;
``b""`` is EOF) and asks ``next_event()`` what to do next, until a ``Relay`` or ``Close``.

Two rules hold for every protocol (CVE-2011-0411, "STARTTLS command injection"):

- the client's bytes that follow its STARTTLS/STLS line, read before TLS, are dropped
  (``StartTLS.discarded`` says how many); nothing read in plaintext is ever taken as a command
  after the handshake;
- the backend speaks only when asked: a byte it sends while no reply is expected (or a reply
  longer than the one expected) ends the conversation, so nothing the backend sent before TLS
  can reach the client after it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator
from dataclasses import dataclass

LINE_MAX = 8192  # bytes of one line, its CRLF included (RFC 7162 section 4 asks for 8192)
COMMANDS_MAX = 20  # client commands before the session is relayed (real clients send 2 to 5)


class LineTooLong(Exception):
    """A peer sent more than the limit without ending its line."""


class LineBuffer:
    """Bytes from one peer, handed out a line at a time, each line at most ``line_max``
    bytes. ``feed(b"")`` notes the peer's EOF."""

    __slots__ = ("_buf", "eof", "line_max")

    def __init__(self, line_max: int = LINE_MAX) -> None:
        self._buf = bytearray()
        self.eof = False
        self.line_max = line_max

    def feed(self, data: bytes) -> None:
        if not data:
            self.eof = True
        else:
            self._buf += data

    @property
    def pending(self) -> int:
        """How many bytes are buffered."""
        return len(self._buf)

    def line(self) -> bytes | None:
        """The next line without its CRLF (a bare LF ends one too), or None: need more.
        LineTooLong if the line is, or can only become, longer than ``line_max``."""
        end = self._buf.find(b"\n", 0, self.line_max)
        if end < 0:
            if len(self._buf) >= self.line_max:
                raise LineTooLong(f"a line longer than {self.line_max} bytes")
            return None
        line = bytes(self._buf[:end])
        del self._buf[:end + 1]
        return line[:-1] if line.endswith(b"\r") else line

    def drop(self, size: int) -> int:
        """Throw away up to ``size`` buffered bytes; how many were thrown away."""
        size = min(size, len(self._buf))
        del self._buf[:size]
        return size

    def clear(self) -> int:
        """Throw away everything buffered; how many bytes that was."""
        return self.drop(len(self._buf))

    def take_all(self) -> bytes:
        """Everything buffered, removed from the buffer."""
        data = bytes(self._buf)
        self._buf.clear()
        return data


# -- events ---------------------------------------------------------------------------------

class Need:
    """The conversation cannot go on without more bytes from ``side``."""

    __slots__ = ("side",)

    def __init__(self, side: str) -> None:
        self.side = side

    def __repr__(self) -> str:
        return f"NEED_{self.side.upper()}"


NEED_CLIENT = Need("client")
NEED_BACKEND = Need("backend")


@dataclass(frozen=True, slots=True)
class ToClient:
    """Send these bytes to the client (in plaintext before TLS, inside TLS after)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class ToBackend:
    """Send these bytes to the backend."""

    data: bytes


@dataclass(frozen=True, slots=True)
class StartTLS:
    """Do the TLS handshake with the client now, then ask ``next_event()`` again.
    ``discarded``: client bytes read after the STARTTLS line and thrown away."""

    discarded: int = 0


@dataclass(frozen=True, slots=True)
class Relay:
    """The conversation is over: copy bytes both ways from now on, ``to_backend`` first (the
    client's bytes already read that belong to the backend). ``tls``: TLS was started."""

    to_backend: bytes = b""
    tls: bool = True


@dataclass(frozen=True, slots=True)
class Close:
    """The conversation is over: close both sides. ``reason`` is for the log line."""

    reason: str


Event = Need | ToClient | ToBackend | StartTLS | Relay | Close
Steps = Generator[Need | StartTLS, None, Relay]  # a conversation's ``run``
Waits = Generator[Need, None, None]  # a part of one that only reads


class Stop(Exception):
    """Raised inside a conversation to end it: ``reply`` (if any) goes to the client first."""

    def __init__(self, reason: str, reply: bytes = b"") -> None:
        super().__init__(reason)
        self.reason = reason
        self.reply = reply


# -- the driver -----------------------------------------------------------------------------

class Conversation:
    """One connection's plaintext start; subclasses write ``run`` and the protocol's replies.

    ``required``: the client must start TLS before anything but the protocol's
    negotiation commands (``starttls = required``); otherwise a client may go on without TLS
    where the protocol lets it (SMTP mail to an MX). Logins are never allowed before TLS.
    """

    protocol = ""
    # the protocol's own words for the endings every conversation has; set by subclasses
    reply_too_long = b""
    reply_too_many = b""
    reply_unavailable = b""

    def __init__(self, required: bool = True, line_max: int = LINE_MAX,
                 commands_max: int = COMMANDS_MAX) -> None:
        self.required = required
        self.commands_max = commands_max
        self.client = LineBuffer(line_max)
        self.backend = LineBuffer(line_max)
        self.commands = 0  # client commands read so far
        self.tls = False  # the handshake is done
        self._out: deque[ToClient | ToBackend] = deque()
        self._held: Need | StartTLS | None = None
        self._final: Relay | Close | None = None
        self._steps = self.run()

    @property
    def tls_first(self) -> bool:
        """True if the session reaches the relay only through TLS (no plaintext session)."""
        return self.required

    # the caller's side
    def receive_client(self, data: bytes) -> None:
        """Bytes read from the client; ``b""`` at its EOF."""
        self.client.feed(data)

    def receive_backend(self, data: bytes) -> None:
        """Bytes read from the backend; ``b""`` at its EOF."""
        self.backend.feed(data)

    def next_event(self) -> Event:
        """What to do next: send bytes, read a side, start TLS, or the end (Relay/Close)."""
        while True:
            if self._out:
                return self._out.popleft()
            if self._held is not None:
                held, self._held = self._held, None
                return held
            if self._final is not None:
                return self._final
            try:
                self._held = next(self._steps)
            except StopIteration as done:
                self._final = done.value
            except Stop as stop:
                if stop.reply:
                    self._out.append(ToClient(stop.reply))
                self._final = Close(stop.reason)

    # the protocol's side
    def run(self) -> Steps:
        raise NotImplementedError

    def to_client(self, data: bytes) -> None:
        self._out.append(ToClient(data))

    def to_backend(self, data: bytes) -> None:
        self._out.append(ToBackend(data))

    def client_line(self) -> Generator[Need, None, bytes]:
        """The client's next command line (counted against ``commands_max``). The backend
        must be silent meanwhile: it has been asked nothing."""
        while True:
            self.check_backend_silent()
            try:
                line = self.client.line()
            except LineTooLong as exc:
                raise Stop(f"client: {exc}", self.reply_too_long) from None
            if line is not None:
                self.count_command()
                return line
            if self.client.eof:
                raise Stop("the client closed the connection" if not self.client.pending
                           else "the client closed the connection inside a line")
            yield NEED_CLIENT

    def count_command(self) -> None:
        self.commands += 1
        if self.commands > self.commands_max:
            raise Stop(f"more than {self.commands_max} commands before the session was "
                       "relayed", self.reply_too_many)

    def skip_client(self, size: int) -> Waits:
        """Read and throw away ``size`` bytes of the client's (a literal of a refused
        command)."""
        while size:
            size -= self.client.drop(size)
            if size and self.client.eof:
                raise Stop("the client closed the connection inside a literal")
            if size:
                yield NEED_CLIENT

    def check_backend_silent(self) -> None:
        if self.backend.pending:
            raise Stop("the backend sent data it was not asked for", self.reply_unavailable)
        if self.backend.eof:
            raise Stop("the backend closed the connection", self.reply_unavailable)

    def backend_line(self) -> Generator[Need, None, bytes]:
        """The backend's next reply line."""
        while True:
            try:
                line = self.backend.line()
            except LineTooLong as exc:
                raise Stop(f"backend: {exc}", self.reply_unavailable) from None
            if line is not None:
                return line
            if self.backend.eof:
                raise Stop("the backend closed the connection", self.reply_unavailable)
            yield NEED_BACKEND

    def start_tls(self, reply: bytes) -> Generator[StartTLS, None, None]:
        """Answer the client's STARTTLS with ``reply`` and have the caller do the handshake.
        The client's buffered bytes are dropped (never read as commands after TLS); the
        backend must have nothing pending."""
        self.check_backend_silent()
        self.to_client(reply)
        yield StartTLS(self.client.clear())
        self.tls = True
        self.check_backend_silent()
