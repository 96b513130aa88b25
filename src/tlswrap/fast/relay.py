"""The inetd fast path's relay: ``relay.Relay``'s contract in one poll() loop.

General theory of operation: one process serves one connection, so the two pumps of
``relay.Relay`` become two directions of one loop over non-blocking descriptors. Each turn
moves what can be moved without waiting -- a batch of TLS records (up to 64 KiB) from the
client to the backend, a plaintext read (16 KiB, growing to 64 KiB while reads come back
full) from the backend to the client -- and only then polls for what the blocked steps wait
on. Nothing is read from a source while its last batch is still being written: a slow reader
slows its writer, as in the daemon. The rest is the daemon's contract, point for point:

- EOF is a half-close: the client's close_notify (or bare FIN) becomes shutdown(SHUT_WR) to
  the backend, the backend's FIN becomes close_notify to the client after the data.
- Once the backend has finished, the client gets TIMEOUTclose to finish too; the reason is
  "backend closed", or "closed" when the client finished first.
- TIMEOUTidle: no byte either way for that long ends it ("idle timeout"); the deadline moves
  on at most once a second, and moving it replaces a TIMEOUTclose deadline, as in the daemon.
- A failed read or write ends it; ``broken`` names the side and ``reason`` says
  ``client: ...`` or ``backend: ...`` (a TLS error read after data is kept until that data is
  passed on).
- OpenSSL's rule for a write that had to wait: it is retried with the same bytes, and nothing
  is read from the client before (``opensslraw.Connection.recv`` waits with it). A client that
  sends without reading while the backend floods it therefore waits with its upload until it
  reads; mail clients read the replies to what they send.
"""

from __future__ import annotations

import errno
import select
import time
from _socket import SHUT_WR
from _socket import socket as raw_socket

from ..errors import broken_reason
from ..opensslraw import READ, RECORD, Connection, TLSFailure
from .waits import POLLIN, POLLOUT, poll_until, wait_fd

TYPE_CHECKING = False  # typing costs ~5 ms to import; annotations are strings here
if TYPE_CHECKING:
    from typing import Any

TLS_GATHER = 65536  # relay.TLS_GATHER
PLAIN_READ_MAX = 65536  # relay.PLAIN_READ_MAX
FIRST_READ = 16384  # sockstream.FIRST_READ


class Failed(Exception):
    def __init__(self, side: str, reason: str) -> None:
        super().__init__(f"{side}: {reason}")
        self.side = side


class Relay:
    """Moves bytes both ways; afterwards ``to_backend``, ``to_client``, ``reason`` and
    ``broken`` tell how (as ``relay.Relay``)."""

    def __init__(self, client: Connection, client_fd: int, backend: raw_socket, idle: float,
                 close_timeout: float, program: Any = None, log: Any = None) -> None:
        self.client = client
        self.client_fd = client_fd
        self.backend = backend
        self.idle = idle
        self.close_timeout = close_timeout
        self.program = program  # a fast.backend.Program: its stderr is logged meanwhile
        self.log = log
        self.to_backend = 0
        self.to_client = 0
        self.reason = ""
        self.broken: str | None = None
        self._deferred: TLSFailure | None = None
        self._batch = FIRST_READ

    def _note(self, reason: str) -> None:
        if not self.reason:
            self.reason = reason

    def _gather(self) -> bytes | None:
        """The client's records readable now, up to TLS_GATHER bytes; ``b""`` at EOF."""
        if self._deferred is not None:
            raise self._deferred
        parts: list[bytes] = []
        total = 0
        while total < TLS_GATHER:
            try:
                data = self.client.recv()
            except TLSFailure as exc:
                if not parts:
                    raise
                self._deferred = exc
                break
            if not data:
                if parts:
                    break
                return data
            parts.append(data)
            total += len(data)
            if len(data) < RECORD:
                break
        return b"".join(parts) if len(parts) > 1 else parts[0]

    def _backend_read(self) -> bytes | None:
        size = self._batch
        try:
            data = self.backend.recv(size)
        except BlockingIOError:
            return None
        except OSError as exc:
            raise Failed("backend", broken_reason(exc)) from exc
        if len(data) == size and size < PLAIN_READ_MAX:
            self._batch = min(size * 2, PLAIN_READ_MAX)
        return data

    def _wait_writable(self, deadline: float) -> bool:
        return wait_fd(self.client_fd, POLLOUT, deadline)

    def run(self) -> None:
        """Relay until both directions are done, one fails, or a timeout ends it."""
        try:
            self._run()
        except Failed as exc:
            self._note(str(exc))
            if self.broken is None:
                self.broken = exc.side

    def _run(self) -> None:
        client, backend = self.client, self.backend
        up = down = b""  # read, not yet written all: to the backend, to the client
        up_len = down_len = 0  # the batch each came as (counted once written)
        client_eof = backend_eof = False  # the source ended
        up_done = down_done = False  # ... and its half-close was passed on
        c_read = c_write = b_read = b_write = True  # worth trying now
        read_wants = write_wants = READ
        refreshed = time.monotonic()
        deadline = refreshed + self.idle
        while not (up_done and down_done):
            moved = False
            # client -> backend
            if not up and not client_eof and c_read:
                try:
                    data = self._gather()
                except TLSFailure as exc:
                    raise Failed("client", str(exc)) from exc
                if data is None:
                    c_read, read_wants = False, client.wants
                elif not data:
                    client_eof = True
                else:
                    up, up_len = data, len(data)
            if up and b_write:
                try:
                    n = backend.send(up)
                except BlockingIOError:
                    b_write = False
                except OSError as exc:
                    raise Failed("backend", broken_reason(exc)) from exc
                else:
                    up = up[n:]
                    if not up:
                        self.to_backend += up_len
                        moved = True
            if client_eof and not up and not up_done:
                try:
                    backend.shutdown(SHUT_WR)
                except OSError as exc:
                    if exc.errno != errno.ENOTCONN:
                        raise Failed("backend", broken_reason(exc)) from exc
                up_done = True
                if down_done:
                    self._note("closed")
            # backend -> client
            if not down and not backend_eof and b_read:
                data = self._backend_read()
                if data is None:
                    b_read = False
                elif not data:
                    backend_eof = True
                else:
                    down, down_len = data, len(data)
            if down and c_write:
                try:
                    sent = client.send(down)
                except TLSFailure as exc:
                    raise Failed("client", str(exc)) from exc
                if sent is None:
                    c_write, write_wants = False, client.wants
                else:
                    down = down[sent:]
                    if not down:
                        self.to_client += down_len
                        moved = True
            if backend_eof and not down and not down_done:
                if not client.send_close_notify():  # rare: the socket is full
                    if not self._wait_writable(deadline):
                        self._note("idle timeout")
                        return
                    client.send_close_notify()
                down_done = True
                if up_done:
                    self._note("closed")
                else:  # the client has TIMEOUTclose to send its own close_notify
                    self._note("backend closed")
                    deadline = min(deadline, time.monotonic() + self.close_timeout)
            if moved:
                now = time.monotonic()
                if now - refreshed > 1.0:  # the idle deadline, at most once a second
                    refreshed = now
                    deadline = now + self.idle
            # wait for what the blocked steps need
            c_events = b_events = 0
            if not up and not client_eof and not c_read:
                c_events |= POLLIN if read_wants == READ else POLLOUT
            if down and not c_write:
                c_events |= POLLIN if write_wants == READ else POLLOUT
            if not down and not backend_eof and not b_read:
                b_events |= POLLIN
            if up and not b_write:
                b_events |= POLLOUT
            if up_done and down_done:
                break
            if (c_read and not up and not client_eof) or (c_write and down) or \
                    (b_read and not down and not backend_eof) or (b_write and up) or \
                    (client_eof and not up and not up_done) or \
                    (backend_eof and not down and not down_done):
                continue  # more to do without waiting
            poller = select.poll()
            if c_events:
                poller.register(self.client_fd, c_events)
            if b_events:
                poller.register(backend.fileno(), b_events)
            err_fd = self.program.stderr if self.program is not None else None
            if err_fd is not None:
                poller.register(err_fd, POLLIN)
            events = poll_until(poller, deadline)
            if time.monotonic() >= deadline:
                self._note("idle timeout")  # unless TIMEOUTclose ran out: "backend closed"
                return
            for fd, _ in events:
                if fd == self.client_fd:
                    c_read = c_write = True
                elif fd == err_fd:
                    self.program.stderr_lines(self.log)
                else:
                    b_read = b_write = True
