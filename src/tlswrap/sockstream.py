"""A lean trio Stream over a non-blocking stdlib socket.

General theory of operation: every operation is first tried at once on the non-blocking socket;
only when the kernel says "would block" does the task park in ``trio.lowlevel.wait_readable`` /
``wait_writable``. A call that never had to wait still passes through a checkpoint (trio's
contract: every public async method is a checkpoint), using the cheap pair
``checkpoint_if_cancelled`` before / ``cancel_shielded_checkpoint`` after, so that data once read
is never lost to a cancellation.

``SocketStream`` is the plaintext side (TCP, unix socket, a child's socketpair). The TLS stream
(``tlsstream.TLSStream``) reuses the same waiting, conflict detection and contract methods.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Awaitable, Callable

import trio

from .errors import broken_reason
from .sockopts import Kind, SocketOption

DEFAULT_RECEIVE_SIZE = 65536
FIRST_READ = 16384  # the relay's first read on a plaintext socket; it grows while reads fill
_READING, _WRITING = 1, 2
_LINGER_ZERO = struct.pack("ii", 1, 0)
_wait_readable = trio.lowlevel.wait_readable
_wait_writable = trio.lowlevel.wait_writable

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
    """A HalfCloseableStream over a connected non-blocking stdlib socket it owns.

    Two layers: ``recv_now``/``send_now`` try one operation and never park (returning None
    when it would block, after noting what to wait for in ``wait_recv``/``wait_send``); the
    Stream contract's methods are built on them. The relay, which owns each direction alone,
    uses the first layer directly and skips the per-call checkpoints and conflict detection.
    Subclasses (TLS) replace the first layer and the relay's methods (``recv_batch``,
    ``wait_recv``, ``push``).
    """

    # Slots: thousands of idle connections each hold two of these.
    __slots__ = ("_batch", "_closed", "_fd", "_lot", "_recv", "_recv_busy", "_recv_wait",
                 "_send", "_send_busy", "_send_wait", "_waiting", "drained", "eof_sent", "socket")

    truncated = False  # a plaintext EOF is always a clean one (TLS overrides this)

    def __init__(self, sock: socket.socket):
        sock.setblocking(False)
        self.socket = sock
        self._fd = sock.fileno()
        self._closed = False
        self.eof_sent = False
        self._recv = sock.recv
        self._send = sock.send
        # what the last would-block read/write waits for: an unbound method (no per-stream
        # bound-method objects), called as self._recv_wait(self)
        self._recv_wait = self._send_wait = SocketStream.wait_readable
        self._send_busy = _Busy("another task is already sending on this stream")
        self._recv_busy = _Busy("another task is already receiving on this stream")
        self._waiting = 0  # _READING | _WRITING: a task of this stream waits on the fd
        self._lot: trio.lowlevel.ParkingLot | None = None  # the others, when there are some
        self._batch = FIRST_READ
        self.drained = True  # the last batch read left nothing behind

    async def wait_readable(self) -> None:
        """Park until the socket is readable (or until another task's wait on it ends)."""
        await self._wait_fd(_READING, _wait_readable)

    async def wait_writable(self) -> None:
        """Park until the socket is writable (or until another task's wait on it ends)."""
        await self._wait_fd(_WRITING, _wait_writable)

    def waits_writable(self) -> bool:
        """A task of this stream is parked until the socket is writable."""
        return bool(self._waiting & _WRITING)

    async def _wait_fd(self, flag: int, wait: Callable[[int], Awaitable[None]]) -> None:
        # trio lets one task at a time wait for each direction of a descriptor. TLS can need
        # a read while writing (and a write while reading), so both pumps of a connection may
        # want the same direction: the second parks on the stream's lot and is woken when the
        # first one's wait ends. A wake-up may be early; every caller tries again and re-waits.
        if self._waiting & flag:
            if self._lot is None:
                self._lot = trio.lowlevel.ParkingLot()
            await self._lot.park()
            return
        self._waiting |= flag
        try:
            await wait(self._fd)
        finally:
            self._waiting &= ~flag
            if self._lot:
                self._lot.unpark_all()

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("this stream was closed")

    # Never park inside an except clause: an exception being handled keeps its traceback
    # alive, and with TLS that held OpenSSL's buffers for as long as the task was parked
    # (13 KB per idle connection, measured). Note the waiter, return, and park outside.

    def recv_now(self, size: int) -> bytes | None:
        """What can be read now: data, ``b""`` at EOF, or None (then ``await wait_recv()``)."""
        try:
            return self._recv(size)
        except BlockingIOError:
            self._recv_wait = SocketStream.wait_readable
            return None
        except OSError as exc:
            raise broken(exc) from exc

    def send_now(self, data: bytes | bytearray | memoryview) -> int | None:
        """Send what the socket takes now: the count, or None (then ``await wait_send()``)."""
        try:
            return self._send(data)
        except BlockingIOError:
            self._send_wait = SocketStream.wait_writable
            return None
        except OSError as exc:
            raise broken(exc) from exc

    def recv_batch(self, limit: int) -> bytes | None:
        """For the relay: as much as can be read now, up to ``limit``; see ``RelaySide``.

        Plaintext reads start at FIRST_READ and double while they come back full, so an idle
        connection never holds a large buffer and a bulk one reads big blocks.
        """
        size = self._batch
        data = self.recv_now(size)
        if data:
            if len(data) < size:
                self.drained = True
            else:
                self.drained = False
                if size < limit:
                    self._batch = min(size * 2, limit)
        return data

    async def wait_recv(self) -> None:
        """Park until the ``recv_now`` that returned None can make progress."""
        await self._recv_wait(self)

    async def wait_send(self) -> None:
        """Park until the ``send_now`` that returned None can make progress."""
        await self._send_wait(self)

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
            data = self.recv_now(size)
            if data is not None:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return data
            while data is None:
                await self.wait_recv()
                data = self.recv_now(size)
            return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        with self._send_busy:
            self._check_open()
            if self.eof_sent:
                raise trio.ClosedResourceError("cannot send after send_eof")
            await trio.lowlevel.checkpoint_if_cancelled()
            if not await self.push(data):
                await trio.lowlevel.cancel_shielded_checkpoint()

    async def push(self, data: bytes | bytearray | memoryview) -> bool:
        """Send all of ``data``, parking while the socket is full; True if it had to park.
        (No checkpoint of its own: ``send_all`` and the relay decide when to yield.)"""
        total = len(data)
        if not total:
            return False
        n = self.send_now(data)
        if n == total:
            return False
        view = memoryview(data)
        sent = 0
        parked = False
        while True:
            if n is None:
                await self.wait_send()
                parked = True
            else:
                sent += n
                if sent >= total:
                    return parked
            n = self.send_now(view[sent:])

    async def wait_send_all_might_not_block(self) -> None:
        with self._send_busy:
            self._check_open()
            await self.wait_writable()

    async def send_eof(self) -> None:
        with self._send_busy:
            self._check_open()
            await trio.lowlevel.checkpoint()
            self.eof_sent = True
            try:
                self.socket.shutdown(socket.SHUT_WR)
            except OSError as exc:
                if exc.errno != errno.ENOTCONN:
                    raise broken(exc) from exc

    def close(self) -> None:
        """Close at once (synchronous; safe to call more than once)."""
        if not self._closed:
            self._closed = True
            trio.lowlevel.notify_closing(self._fd)
            self.socket.close()

    def detach(self) -> socket.socket:
        """Give up the socket without closing it (a TLS stream takes it over)."""
        self._closed = True
        return self.socket

    def abort(self) -> None:
        """Close with a reset (SO_LINGER 0) instead of a FIN: the peer learns at once that
        this connection is gone, not merely finished."""
        if not self._closed:
            try:
                self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
            except OSError:
                pass  # already reset by the peer: a plain close does it
            self.close()

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()


_LINUX_ONLY = {"IP_FREEBIND": 15}  # linux/in.h; the socket module has it from Python 3.12


def _level(name: str) -> int:
    prefix = name.split("_", 1)[0]
    return {"SO": socket.SOL_SOCKET, "TCP": socket.IPPROTO_TCP, "IP": socket.IPPROTO_IP,
            "IPV6": socket.IPPROTO_IPV6}[prefix]


def _packed(option: SocketOption) -> int | bytes:
    value = option.value
    if isinstance(value, tuple):
        # struct linger {l_onoff, l_linger} / struct timeval {tv_sec, tv_usec}
        return struct.pack("ii" if option.kind is Kind.LINGER else "ll", *value)
    if isinstance(value, str):
        return value.encode() + b"\0"
    return value


def set_socket_options(sock: socket.socket, options: tuple[SocketOption, ...],
                       role: str) -> list[str]:
    """stunnel's ``socket = a|l|r:OPTION=VALUE`` for the socket playing ``role``; returns what
    the kernel refused (each ``OPTION: reason``), for the caller to fail or log.

    IP_* options on an IPv6 socket and IPV6_* on an IPv4 one do not apply and are skipped, as
    are options on a unix socket other than SO_*."""
    refused = []
    family = sock.family
    for option in options:
        if option.role != role:
            continue
        level = _level(option.name)
        if ((family == socket.AF_UNIX and level != socket.SOL_SOCKET)
                or (family == socket.AF_INET6 and level == socket.IPPROTO_IP)
                or (family == socket.AF_INET and level == socket.IPPROTO_IPV6)):
            continue
        try:
            number = getattr(socket, option.name, None) or _LINUX_ONLY[option.name]
            sock.setsockopt(level, number, _packed(option))
        except OSError as exc:
            refused.append(f"{option}: {exc.strerror or exc}")
    return refused


def broken(exc: OSError) -> trio.BrokenResourceError:
    return trio.BrokenResourceError(broken_reason(exc))
