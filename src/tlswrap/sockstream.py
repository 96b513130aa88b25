"""A lean trio Stream over a non-blocking stdlib socket.

General theory of operation: every operation is first tried at once on the non-blocking socket;
only when the kernel says "would block" does the task park in ``trio.lowlevel.wait_readable`` /
``wait_writable``. A call that never had to wait still passes through a checkpoint (trio's
contract: every public async method is a checkpoint), using the cheap pair
``checkpoint_if_cancelled`` before / ``cancel_shielded_checkpoint`` after, so that data once read
is never lost to a cancellation.

``SocketStream`` is the plaintext side (TCP, unix socket, a child's socketpair). The TLS stream
(``tlsstream.TLSStream``) reuses the same waiting and conflict detection.
"""

from __future__ import annotations

import errno
import socket

import trio

DEFAULT_RECEIVE_SIZE = 65536

# Errors that mean the peer went away: routine, not a bug.
_BROKEN_ERRNOS = {errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED, errno.ETIMEDOUT,
                  errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENOTCONN}


class _Busy:
    """Raises BusyResourceError when two tasks use one direction of a stream at once."""

    __slots__ = ("_held", "_msg")

    def __init__(self, msg: str):
        self._held = False
        self._msg = msg

    def __enter__(self) -> None:
        if self._held:
            raise trio.BusyResourceError(self._msg)
        self._held = True

    def __exit__(self, *exc: object) -> None:
        self._held = False


class SocketStream(trio.abc.HalfCloseableStream):
    """A HalfCloseableStream over a connected non-blocking stdlib socket it owns."""

    def __init__(self, sock: socket.socket):
        sock.setblocking(False)
        self.socket = sock
        self._fd = sock.fileno()
        self._closed = False
        self.eof_sent = False
        self._recv = sock.recv
        self._send = sock.send
        self._recv_wait = self._send_wait = self._wait_readable
        self._send_busy = _Busy("another task is already sending on this stream")
        self._recv_busy = _Busy("another task is already receiving on this stream")

    async def _wait_readable(self) -> None:
        await _wait(trio.lowlevel.wait_readable, self._fd)

    async def _wait_writable(self) -> None:
        await _wait(trio.lowlevel.wait_writable, self._fd)

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("this stream was closed")

    def _try(self, op, arg):  # type: ignore[no-untyped-def]
        """One non-blocking call: ``(result, None)``, or ``(None, waiter)`` if it would block.

        The caller parks on the waiter *after* the except clause has ended: an exception being
        handled keeps its traceback alive, and with TLS that holds OpenSSL's read buffer for as
        long as the connection is idle (13 KB per connection, measured).
        """
        try:
            return op(arg), None
        except BlockingIOError:
            return None, (self._wait_readable if op == self._recv else self._wait_writable)
        except OSError as exc:
            raise _broken(exc) from exc

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        with self._recv_busy:
            self._check_open()
            await trio.lowlevel.checkpoint_if_cancelled()
            if max_bytes is None:
                size = DEFAULT_RECEIVE_SIZE
            elif max_bytes < 1:
                raise ValueError("max_bytes must be >= 1")
            else:
                size = max_bytes
            data, wait = self._try(self._recv, size)
            if wait is None:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return data
            while wait is not None:
                await wait()
                data, wait = self._try(self._recv, size)
            return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        with self._send_busy:
            self._check_open()
            if self.eof_sent:
                raise trio.ClosedResourceError("cannot send after send_eof")
            await trio.lowlevel.checkpoint_if_cancelled()
            waited = False
            with memoryview(data) as view:
                total = len(view)
                sent = 0
                while sent < total:
                    n, wait = self._try(self._send, view[sent:])
                    if wait is None:
                        sent += n
                    else:
                        await wait()
                        waited = True
            if not waited:
                await trio.lowlevel.cancel_shielded_checkpoint()

    # --- relay primitives -------------------------------------------------------------------
    # The relay owns each direction alone, so it may skip the Stream contract's conflict
    # detection and per-call checkpoints (it parks whenever a socket is drained, and yields on
    # its own otherwise). A round trip then costs one park per side and no failed read.

    def recv_now(self, size: int) -> bytes | None:
        """What can be read now: data, ``b""`` at EOF, or None (then ``await wait_recv()``)."""
        data, self._recv_wait = self._try(self._recv, size)
        return data

    async def wait_recv(self) -> None:
        """Park until the read that just returned None can make progress."""
        await self._recv_wait()

    def send_now(self, data: memoryview) -> int | None:
        """Send what the socket takes now: the count, or None (then ``await wait_send()``)."""
        n, self._send_wait = self._try(self._send, data)
        return n

    async def wait_send(self) -> None:
        await self._send_wait()

    async def wait_readable(self) -> None:
        await self._wait_readable()

    async def wait_send_all_might_not_block(self) -> None:
        with self._send_busy:
            self._check_open()
            await self._wait_writable()

    async def send_eof(self) -> None:
        with self._send_busy:
            self._check_open()
            await trio.lowlevel.checkpoint()
            self.eof_sent = True
            try:
                self.socket.shutdown(socket.SHUT_WR)
            except OSError as exc:
                if exc.errno != errno.ENOTCONN:
                    raise _broken(exc) from exc

    def close(self) -> None:
        """Close at once (synchronous; safe to call more than once)."""
        if not self._closed:
            self._closed = True
            trio.lowlevel.notify_closing(self._fd)
            self.socket.close()

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()


async def _wait(waiter, fd: int) -> None:  # type: ignore[no-untyped-def]
    try:
        await waiter(fd)
    except trio.BusyResourceError:
        # The other direction of a TLS stream is parked on the same fd (TLS may need to write
        # while reading). Rare: poll instead of failing.
        await trio.sleep(0.005)
    except trio.ClosedResourceError as exc:
        raise trio.ClosedResourceError("the stream was closed while waiting") from exc


def _broken(exc: OSError) -> trio.BrokenResourceError:
    kind = "peer reset or vanished" if exc.errno in _BROKEN_ERRNOS else "socket error"
    return trio.BrokenResourceError(f"{kind}: {exc.strerror or exc}")
