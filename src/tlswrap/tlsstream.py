"""A trio Stream over an OpenSSL connection on a non-blocking socket, with one write queue.

General theory of operation: OpenSSL works between two memory BIOs (the cffi binding has no
socket BIO to pair with one); the stream moves the bytes between them and the socket. Reads:
``recv_into`` a shared buffer, fed to the read BIO, then SSL_read until OpenSSL wants more (one
recv for up to two records). Writes: every SSL_* call
leaves its output in the write BIO and is followed by a flush (``flush_now``): what the socket
takes goes out now, the rest waits in ``_out``, in order. The flush never parks, so two tasks
can never interleave output, and OpenSSL never sees WANT_WRITE: a TLS 1.3 KeyUpdate that
SSL_read answers while a large write waits for the socket goes into the same queue, after it.
(On the socket itself, OpenSSL requires a WANT_WRITE retry with the same arguments and no write
in between; SSL_read's reply in between broke the connection with "bad length".)

Who waits for the socket to drain: the sender (``push`` returns once its output is on the
socket); a reader whose own output (a KeyUpdate reply) could not go out waits for readable or
writable, whichever comes first, unless the sender already waits: a reader never parks behind
output only, so two peers that both send and read at once cannot deadlock. Memory BIOs keep
their largest buffer, so where the connection waits (a read that finds nothing, a write that
parks or ends a burst) an empty BIO that has carried data is replaced by a fresh one
(``SSL_MODE_RELEASE_BUFFERS`` does the same for OpenSSL's record buffers): an idle connection
holds no buffer, a client that stops reading one record. The hot path calls OpenSSL through
the cffi binding (``opensslffi``), skipping pyOpenSSL's per-call error checks and exception
objects.

The stream honours trio's Stream contract, with one explicit policy for ragged EOF:

- ``receive_some`` returns ``b""`` if, and only if, the peer sent close_notify. A peer that
  closes TCP without it sets ``truncated``; ``receive_some`` then raises BrokenResourceError,
  unless the stream was made with ``ragged_eof_ok=True`` (trio's ``https_compatible``), when
  it returns ``b""`` like a clean EOF. The relay reads through ``recv_now``/``recv_batch``,
  which return ``b""`` for both and leave ``truncated`` to tell them apart: mail clients drop
  the connection without close_notify all the time, and the log line says so.
- How the two are told apart: the contexts set SSL_OP_IGNORE_UNEXPECTED_EOF, so that a bare
  FIN does not put OpenSSL into its fatal state (the reply to a half-closing client could not
  be written otherwise); with it OpenSSL reports both kinds of EOF alike. So after the
  handshake an info callback is attached to the connection; it fires only for alerts and
  post-handshake messages, and notes a close_notify alert actually read.
- ``send_eof`` sends close_notify and keeps the read side open: the half-close mail needs.
- ``aclose`` is idempotent, sends close_notify at most once and never waits for it, and always
  closes the socket.
"""

from __future__ import annotations

import fcntl
import socket
import struct
import termios
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from OpenSSL import SSL

from .opensslffi import ffi, lib, pointer_key, raise_ssl_error, ssl_pointer, take_memory_bios
from .sockstream import SocketStream, broken
from .tlscontext import ssl_reason

_SSL_read, _SSL_write, _ffi_buffer = lib.SSL_read, lib.SSL_write, ffi.buffer
_BIO_read, _BIO_write = lib.BIO_read, lib.BIO_write
_SSL_get_error = lib.SSL_get_error
_WANT_READ = lib.SSL_ERROR_WANT_READ
_ZERO_RETURN, _SYSCALL = lib.SSL_ERROR_ZERO_RETURN, lib.SSL_ERROR_SYSCALL
# OpenSSL's error queue is per thread and shared by every connection: SSL_get_error() is only
# reliable when it was empty before the call (SSL_get_error(3)). A stale entry left by another
# connection would turn a plain WANT_READ on this one into a fatal error. So every call starts
# with a clean queue.
_ERR_clear_error = lib.ERR_clear_error
RECORD = 16384  # one TLS record's plaintext at most
WIRE = RECORD + 512  # one record's ciphertext at most, with room to spare
PULL = 2 * WIRE  # one socket read into the read BIO: two records (what waits there is bounded)
# records one send_now encrypts before one flush, when the socket has room for them all: one
# send() instead of four (bench bulk download: CPU per GB about a third lower); a socket
# short of room gets one record, so a client that stops reading leaves one record in ``_out``
PUSH_RECORDS = 4
OUT = PUSH_RECORDS * WIRE
RENEW_ABOVE = 2048  # a BIO that carried more since it was made is replaced once empty
# Shared by every connection: each is filled and emptied again before control returns to trio.
_READ_BUF = ffi.new("char[]", RECORD)  # SSL_read's plaintext, copied out at once
_PULL_BUF = ffi.new("char[]", PULL)  # the socket's ciphertext on its way into the read BIO
_PULL_VIEW = ffi.buffer(_PULL_BUF)
_OUT_BUF = ffi.new("char[]", OUT)  # the write BIO's ciphertext on its way to the socket
_OUT_VIEW = memoryview(ffi.buffer(_OUT_BUF))

_INT = struct.Struct("i")
_INT_ZERO = _INT.pack(0)

_CLOSE_NOTIFY = 0x0100  # SSL_CB_READ_ALERT value: level warning (1) << 8 | close_notify (0)
_close_notify_read: set[int] = set()  # SSL* keys whose peer sent close_notify (until close)


def _on_info(ssl: Any, where: int, value: int) -> None:
    if where & lib.SSL_CB_READ_ALERT and value & 0xFF == 0:
        _close_notify_read.add(pointer_key(ssl))


_INFO_CALLBACK = ffi.callback(ffi.typeof(lib.SSL_set_info_callback).args[1], _on_info)


def _new_bio() -> Any:
    bio = lib.BIO_new(lib.BIO_s_mem())
    if bio == ffi.NULL:
        raise MemoryError("OpenSSL could not make a memory BIO")
    return bio


class TLSStream(SocketStream):
    """Server or client side of TLS over a connected non-blocking socket."""

    __slots__ = ("_deferred", "_eof_read", "_key", "_out", "_out_error", "_pulled", "_rbio",
                 "_recv_into", "_ssl", "_wbio", "_written", "conn", "handshake_done",
                 "ragged_eof_ok", "truncated")

    def __init__(self, sock: socket.socket, context: SSL.Context, server_side: bool = True,
                 ragged_eof_ok: bool = False):
        super().__init__(sock)
        self.conn = conn = SSL.Connection(context, None)  # memory BIOs
        if server_side:
            conn.set_accept_state()
        else:
            conn.set_connect_state()
        self._ssl = ssl_pointer(conn)
        self._rbio, self._wbio = take_memory_bios(conn)
        self._recv_into = sock.recv_into
        self._out = b""  # ciphertext taken from the write BIO that the socket did not take yet
        self._out_error: trio.BrokenResourceError | None = None  # a reader's failed flush
        self._pulled = 0  # bytes the read BIO carried since it was made
        self._written = 0  # the same for the write BIO
        self._eof_read = False  # the socket said EOF (the read BIO says so to OpenSSL)
        self._key = 0  # pointer_key(self._ssl) once the info callback is attached
        self._deferred: trio.BrokenResourceError | None = None  # a read error behind data
        self.handshake_done = False
        self.ragged_eof_ok = ragged_eof_ok
        self.truncated = False  # the peer closed TCP without close_notify

    # -- the socket side of the two BIOs

    def _pull(self) -> bool | None:
        """Socket -> read BIO: True when bytes came, False at EOF, None when none are ready."""
        try:
            n = self._recv_into(_PULL_VIEW, PULL)
        except BlockingIOError:
            return None
        except OSError as exc:
            self.truncated = True
            raise broken(exc) from exc
        if n:
            _BIO_write(self._rbio, _PULL_BUF, n)
            self._pulled += n
            return True
        self._eof_read = True
        lib.BIO_set_mem_eof_return(self._rbio, 0)  # empty now reads as EOF, not "retry"
        return False

    def flush_now(self) -> bool:
        """Write BIO -> socket, never parking: True when nothing is left to send. The part
        the socket does not take waits in ``_out`` (``wait_writable``, then flush again)."""
        out = self._out
        send = self._send
        try:
            if out:
                n = send(out)
                if n < len(out):
                    self._out = out[n:]
                    return False
                self._out = b""
            while True:
                n = _BIO_read(self._wbio, _OUT_BUF, OUT)
                if n <= 0:
                    return True
                self._written += n
                sent = send(_OUT_VIEW[:n])
                if sent < n:
                    self._out = _OUT_VIEW[sent:n].tobytes()
                    return False
                if n < OUT:  # the BIO gave less than asked: it is empty
                    return True
        except BlockingIOError:
            if not self._out:  # the socket took none of the block just read
                self._out = _OUT_VIEW[:n].tobytes()
            return False
        except OSError as exc:
            raise broken(exc) from exc

    def _flush_for_reader(self) -> None:
        """A flush from the read side: a send error is kept for the next write to raise (the
        read goes on: the peer's data before its reset is still data)."""
        try:
            self.flush_now()
        except trio.BrokenResourceError as exc:
            self._out = b""
            self._out_error = exc

    def _records_with_room(self) -> int:
        """How many records (1 to PUSH_RECORDS) the socket's send buffer has room for now:
        its size (half of SO_SNDBUF is payload, socket(7)) less what waits in it (SIOCOUTQ)."""
        fd = self._fd
        try:
            size = self.socket.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) // 2
            queued: int = _INT.unpack(fcntl.ioctl(fd, termios.TIOCOUTQ, _INT_ZERO))[0]
        except OSError:
            return 1
        return max(1, min(PUSH_RECORDS, (size - queued) // WIRE))

    def _rbio_pending(self) -> int:
        """Bytes the read BIO still holds (records pulled together with the last one)."""
        pending: int = lib.BIO_get_mem_data(self._rbio, ffi.NULL)
        return pending

    def _wbio_pending(self) -> int:
        """Bytes the write BIO holds (behind ``_out``)."""
        pending: int = lib.BIO_get_mem_data(self._wbio, ffi.NULL)
        return pending

    def _renew_bios(self, above: int = RENEW_ABOVE) -> None:
        """Replace each empty BIO that has carried more than ``above`` bytes by a fresh one
        (a memory BIO keeps its largest buffer)."""
        if self._pulled > above and not self._eof_read and not self._rbio_pending():
            self._pulled = 0
            self._rbio = _new_bio()
            lib.SSL_set_bio(self._ssl, self._rbio, self._wbio)  # frees the old read BIO
        if self._written > above and not self._wbio_pending():
            self._written = 0
            self._wbio = _new_bio()
            lib.SSL_set_bio(self._ssl, self._rbio, self._wbio)  # frees the old write BIO

    # -- the relay's and the Stream methods' primitives

    def _read(self, size: int) -> bytes | None:
        ssl = self._ssl
        while True:
            _ERR_clear_error()
            n = _SSL_read(ssl, _READ_BUF, size)
            if n > 0:
                data: bytes = _ffi_buffer(_READ_BUF, n)[:]
                return data
            err = _SSL_get_error(ssl, n)
            if err == _WANT_READ:
                pulled = self._pull()
                if pulled is not None:
                    continue  # bytes or EOF for OpenSSL to see
                return None  # the read BIO and the socket are empty: ``wait_recv``
            return self._failed(n, err)

    def recv_now(self, size: int) -> bytes | None:
        data = self._read(min(size, RECORD))
        self._flush_for_reader()  # what SSL_read answered (a KeyUpdate), if anything
        return data

    def send_now(self, data: bytes | bytearray | memoryview) -> int | None:
        """Encrypt up to PUSH_RECORDS records of ``data`` (as many as the socket has room
        for, at least one) once the earlier output is on the socket: the count taken, or None
        (then ``await wait_send()``)."""
        if self._out_error is not None:
            raise self._out_error
        # (the write BIO is empty unless ``_out`` waits: every SSL_* call is followed by a flush)
        if self._out and not self.flush_now():
            self._send_wait = SocketStream.wait_writable
            return None
        if not data:
            return 0
        ssl = self._ssl
        wbio = self._wbio
        taken = filled = 0
        with ffi.from_buffer(data) as buf:
            size = len(buf) if len(buf) <= RECORD else min(
                len(buf), self._records_with_room() * RECORD)  # (one record: no room asked)
            while taken < size:  # each record's ciphertext straight out of the write BIO
                _ERR_clear_error()
                n: int = _SSL_write(ssl, buf + taken, min(size - taken, RECORD))
                if n <= 0:  # an error: memory BIOs never make a write wait
                    self._failed(n, _SSL_get_error(ssl, n))
                    raise trio.BrokenResourceError("TLS write failed")
                taken += n
                got: int = _BIO_read(wbio, _OUT_BUF + filled, OUT - filled)
                if got > 0:
                    filled += got
        if filled:
            self._written += filled
            self._send_out(filled)
        if not self._out:
            self.flush_now()  # (what did not fit in OUT, if anything)
        return taken

    def _send_out(self, filled: int) -> None:
        """The first ``filled`` bytes of the shared output buffer -> the socket; what it does
        not take waits in ``_out``."""
        try:
            sent = self._send(_OUT_VIEW[:filled])
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise broken(exc) from exc
        if sent < filled:
            self._out = _OUT_VIEW[sent:filled].tobytes()

    async def push(self, data: bytes | bytearray | memoryview) -> bool:
        """Send all of ``data``, parking while the socket is full; True if it had to park.
        Returns once every byte is on the socket (nothing is left behind for nobody to send).
        """
        total = len(data)
        if not total:
            return False
        view = memoryview(data)
        sent = 0
        parked = False
        while True:
            n = self.send_now(view[sent:] if sent else data)
            if n is None:
                self._renew_bios()  # a client that stops reading: keep only ``_out``
                await self.wait_writable()
                parked = True
                continue
            sent += n
            if sent >= total:
                break
        while not self.flush_now():
            self._renew_bios()
            await self.wait_writable()
            parked = True
        if total < RECORD and self._written > RENEW_ABOVE:
            # less than a record: the source had no more, the end of a burst (renewing after
            # every block of a bulk transfer cost measurably more CPU per GB)
            self._renew_bios()
        return parked

    async def wait_recv(self) -> None:
        """Park until the socket is readable; or, when output a read left behind waits and
        no sender is waiting to flush it, until it is readable or writable (then flush)."""
        if not self._out or self.waits_writable():
            self._renew_bios()
            await self.wait_readable()
            return
        failed: list[trio.ClosedResourceError] = []  # raised out here, not in a group
        async with trio.open_nursery() as nursery:
            async def first(wait: Callable[[], Awaitable[None]]) -> None:
                try:
                    await wait()
                except trio.ClosedResourceError as exc:  # closed under us
                    failed.append(exc)
                nursery.cancel_scope.cancel()

            nursery.start_soon(first, self.wait_writable)
            nursery.start_soon(first, self.wait_readable)
        self._flush_for_reader()
        if failed:
            raise failed[0]

    def recv_batch(self, limit: int) -> bytes | None:
        """For the relay: the records already readable, gathered up to ``limit`` bytes.

        An error after some records is kept for the next call, so the data before it is
        passed on first."""
        if self._deferred is not None:
            raise self._deferred
        data = self._read(RECORD)
        if not data or len(data) < RECORD:
            self.drained = data is not None and not self._rbio_pending()
            self._flush_for_reader()
            return data
        parts = [data]
        total = len(data)
        drained = False
        while total < limit:
            try:
                more = self._read(RECORD)
            except trio.BrokenResourceError as exc:
                self._deferred = exc
                break
            if not more:
                drained = more is None
                break
            parts.append(more)
            total += len(more)
            if len(more) < RECORD:
                drained = not self._rbio_pending()
                break
        self.drained = drained
        self._flush_for_reader()
        return b"".join(parts) if len(parts) > 1 else data

    def _failed(self, n: int, err: int) -> bytes | None:
        """A read or write that did not go through: EOF, or raise."""
        if err == _ZERO_RETURN:
            # close_notify, or (SSL_OP_IGNORE_UNEXPECTED_EOF) a bare FIN: the callback knows.
            # (the key stays until close: OpenSSL repeats the EOF on every later read)
            if self._key not in _close_notify_read:
                self.truncated = True
            return b""
        if err == _SYSCALL:  # EOF in the middle of a record, without IGNORE_UNEXPECTED_EOF
            self.truncated = True
            _ERR_clear_error()
            raise trio.BrokenResourceError("peer closed the connection without close_notify")
        try:  # a protocol error: pyOpenSSL reads the error queue into an exception
            raise_ssl_error(self.conn, n)
        except (SSL.Error, OSError) as exc:
            raise self._broken(exc) from exc
        raise trio.BrokenResourceError(f"TLS error {err}")

    def _broken(self, exc: Exception) -> trio.BrokenResourceError:
        if isinstance(exc, SSL.SysCallError):
            self.truncated = True
            return trio.BrokenResourceError(_syscall_text(exc))
        if isinstance(exc, SSL.Error):
            reason = ssl_reason(exc)
            return trio.BrokenResourceError(
                f"TLS error: {reason}" if reason != "[]" else "TLS protocol error")
        if isinstance(exc, OSError):
            return broken(exc)
        return trio.BrokenResourceError(str(exc))

    def _shutdown(self) -> None:
        """SSL_shutdown once: close_notify into the write BIO (with memory BIOs a first
        shutdown never waits); errors as BrokenResourceError."""
        _ERR_clear_error()
        try:
            self.conn.shutdown()
        except SSL.ZeroReturnError:
            pass
        except (SSL.Error, OSError) as exc:
            raise self._broken(exc) from exc

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """As the Stream contract says: ``b""`` only after close_notify, or after a bare TCP
        close when ``ragged_eof_ok``; otherwise a bare close raises BrokenResourceError."""
        data = await super().receive_some(max_bytes)
        if not data and self.truncated and not self.ragged_eof_ok:
            raise trio.BrokenResourceError("peer closed the connection without close_notify")
        return data

    async def do_handshake(self) -> None:
        """Complete the handshake (put a deadline around it)."""
        ssl = self._ssl
        try:
            while True:  # direct SSL_do_handshake: no exception object per round trip
                _ERR_clear_error()
                n = lib.SSL_do_handshake(ssl)
                flushed = self.flush_now()
                if n == 1:
                    break
                err = _SSL_get_error(ssl, n)
                if not flushed:
                    await self.wait_writable()
                elif err == _WANT_READ:
                    if self._pull() is None:
                        await self.wait_readable()
                elif err in (_ZERO_RETURN, _SYSCALL):  # EOF before the handshake finished
                    # (with memory BIOs SYSCALL is the socket's EOF, and errno means nothing)
                    raise trio.BrokenResourceError(
                        "TLS handshake failed: peer closed the connection without close_notify")
                else:
                    try:
                        raise_ssl_error(self.conn, n)
                    except (SSL.Error, OSError) as exc:
                        raise trio.BrokenResourceError(
                            f"TLS handshake failed: {self._broken(exc)}{self._why()}") from exc
                    raise trio.BrokenResourceError(f"TLS handshake failed: error {err}")
            while not self.flush_now():  # the last flight (and session tickets)
                await self.wait_writable()
        except trio.BrokenResourceError as exc:
            if str(exc).startswith("TLS handshake failed"):
                raise
            raise trio.BrokenResourceError(f"TLS handshake failed: {exc}") from exc
        self.handshake_done = True
        self._key = pointer_key(ssl)
        _close_notify_read.discard(self._key)  # a key left by a freed connection at this address
        lib.SSL_set_info_callback(ssl, _INFO_CALLBACK)
        self._renew_bios(0)
        await trio.lowlevel.checkpoint()

    def _why(self) -> str:
        """What the handshake failure was about: the peer certificate's verify error, or the
        server name a strict SNI service did not know (OpenSSL says only "callback failed")."""
        from .tlshooks import verify_error

        why = verify_error(self.conn)
        if why:
            return f" ({why})"
        name = self.conn.get_servername()
        if name:
            return f" (server name {name.decode('ascii', 'backslashreplace')!r})"
        return ""

    async def send_eof(self) -> None:
        """Send close_notify; the peer may go on sending until its own close_notify."""
        with self._send_busy:
            self._check_open()
            await trio.lowlevel.checkpoint()
            if self.eof_sent:
                return
            self.eof_sent = True
            self._shutdown()
            while not self.flush_now():
                await self.wait_writable()

    def abort(self) -> None:
        """Reset the connection: no close_notify, a TCP RST (the peer must not read a clean
        end into an error)."""
        self.eof_sent = True
        super().abort()

    def close(self) -> None:
        if self._closed:
            return
        if self.handshake_done and not self.eof_sent and not self.truncated:
            self.eof_sent = True
            _ERR_clear_error()
            try:  # one non-blocking try: aclose never waits for the peer
                self._shutdown()
                self.flush_now()
            except trio.BrokenResourceError:
                pass
            _ERR_clear_error()  # leave nothing behind for the next connection
        if self._key:
            _close_notify_read.discard(self._key)
        super().close()

    def describe(self) -> str:
        """Protocol, cipher and key-exchange group, for the log line."""
        if not self.handshake_done:
            return "no TLS"
        conn = self.conn
        alpn = conn.get_alpn_proto_negotiated()
        said = f" alpn {alpn.decode('ascii', 'backslashreplace')}" if alpn else ""
        name = conn.get_servername()
        said += f" sni {name.decode('ascii', 'backslashreplace')}" if name else ""
        return (f"{conn.get_protocol_version_name()} {conn.get_cipher_name()} "
                f"{conn.get_group_name() or '-'}{said}")


def _syscall_text(exc: SSL.SysCallError) -> str:
    if exc.args and exc.args[0] == -1:
        return "peer closed the connection without close_notify"
    return f"peer reset or vanished: {exc.args[1] if len(exc.args) > 1 else exc}"
