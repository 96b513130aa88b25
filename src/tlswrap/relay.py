"""The relay: two pumps between the client stream and the backend stream, and the close sequence.

General theory of operation:
- Each direction is one pump: read what is there (TLS records gathered up to 64 KiB; a
  plaintext read that grows from 16 KiB to 256 KiB while reads come back full), write it all,
  repeat. A slow reader therefore slows its writer; nothing buffers more than one read per
  direction. A short read means the socket is drained, so the next read parks first instead of
  failing once; without any park the pump yields every few rounds.
- EOF is passed on as a half-close: the client's close_notify (or a TCP close) becomes a FIN to
  the backend, which may still answer; the backend's FIN becomes close_notify to the client after
  the data.
- Once the backend has finished, the client gets TIMEOUTclose to finish too (send its own
  close_notify); then the connection is closed regardless.
- TIMEOUTidle: no byte in either direction for that long ends the connection. The deadline is
  refreshed at most once a second, so the hot path pays one clock read per record.
- A failed write means the other side is gone: the whole relay ends.
"""

from __future__ import annotations

import trio

from .sockstream import SocketStream

current_time = trio.current_time

# A TLS read returns at most one record (16 KiB); a plaintext read starts at that size and
# doubles while reads come back full, so idle connections never hold large transient buffers.
TLS_READ = 16384
TLS_GATHER = 65536  # records gathered into one plaintext send
PLAIN_READ_MAX = 262144


class Relay:
    """Moves bytes both ways; afterwards ``to_backend``, ``to_client`` and ``reason`` tell how."""

    __slots__ = ("client", "backend", "idle", "close_timeout", "to_backend", "to_client",
                 "reason", "_client_done", "_scope", "_refreshed")

    def __init__(self, client: SocketStream, backend: SocketStream, idle: float,
                 close_timeout: float):
        self.client = client
        self.backend = backend
        self.idle = idle
        self.close_timeout = close_timeout
        self.to_backend = 0
        self.to_client = 0
        self.reason = ""
        self._client_done = False
        self._scope: trio.CancelScope | None = None
        self._refreshed = 0.0

    def _note(self, reason: str) -> None:
        if not self.reason:
            self.reason = reason

    async def run(self) -> None:
        with trio.CancelScope() as scope:
            self._scope = scope
            self._refreshed = trio.current_time()
            scope.deadline = self._refreshed + self.idle
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._client_to_backend, nursery)
                await self._backend_to_client(nursery)  # in this task: one task less per conn
        if scope.cancelled_caught and not self.reason:
            self.reason = "idle timeout" if trio.current_time() >= scope.deadline else "closed"

    async def _flow(self, src: SocketStream, dst: SocketStream, src_side: str,
                    dst_side: str, size: int, grow: int) -> None:
        """Move bytes from ``src`` to ``dst`` until ``src`` ends; count them; label failures.

        A read shorter than asked for means the socket is drained: the next read parks first
        instead of failing once. Full reads are gathered (several TLS records, or a growing
        plaintext read up to ``grow``) into one send. Without any park, it yields every few
        rounds so one busy connection cannot starve the others.
        """
        to_backend = src is self.client
        drained = False
        rounds = 0
        failed: trio.BrokenResourceError | None = None  # a read error after gathered data
        while True:
            try:
                if failed is not None:
                    raise failed
                if drained:
                    await src.wait_readable()
                data = src.recv_now(size)
                while data is None:
                    await src.wait_recv()
                    data = src.recv_now(size)
                if not data:
                    return
                drained = len(data) < size
                if not drained and size < grow:
                    if src is self.backend:
                        size *= 2  # plaintext: read more at once next time
                    else:  # TLS: one record per read; gather what is already there
                        parts = [data]
                        total = len(data)
                        while total < grow:
                            try:
                                more = src.recv_now(size)
                            except trio.BrokenResourceError as exc:
                                failed = exc  # send what was gathered first
                                break
                            if not more:
                                drained = more is None
                                break
                            parts.append(more)
                            total += len(more)
                            if len(more) < size:
                                drained = True
                                break
                        data = b"".join(parts) if len(parts) > 1 else data
            except trio.BrokenResourceError as exc:
                if to_backend and getattr(src, "truncated", False):
                    return  # the client's socket failed under TLS: the end of its data all the same
                raise _Side(src_side, exc) from exc
            total = len(data)
            try:
                parked = await dst.push(data) or drained
            except trio.BrokenResourceError as exc:
                raise _Side(dst_side, exc) from exc
            if to_backend:
                self.to_backend += total
            else:
                self.to_client += total
            now = current_time()
            if now - self._refreshed > 1.0:  # push the idle deadline on, at most once a second
                self._refreshed = now
                self._scope.deadline = now + self.idle  # type: ignore[union-attr]
            if not parked:
                rounds += 1
                if rounds >= 8:
                    rounds = 0
                    await trio.lowlevel.checkpoint()

    async def _direction(self, src: SocketStream, dst: SocketStream, src_side: str,
                         dst_side: str, grow: int, nursery: trio.Nursery) -> bool:
        """One direction to its end, then the half-close; False (and all cancelled) on error."""
        try:
            await self._flow(src, dst, src_side, dst_side, TLS_READ, grow)
            try:
                await dst.send_eof()
            except trio.BrokenResourceError as exc:
                raise _Side(dst_side, exc) from exc
        except _Side as side:
            self._note(str(side))
            nursery.cancel_scope.cancel()
            return False
        return True

    async def _client_to_backend(self, nursery: trio.Nursery) -> None:
        if await self._direction(self.client, self.backend, "client", "backend", TLS_GATHER,
                                 nursery):
            self._client_done = True

    async def _backend_to_client(self, nursery: trio.Nursery) -> None:
        if not await self._direction(self.backend, self.client, "backend", "client",
                                     PLAIN_READ_MAX, nursery):
            return
        if self._client_done:
            self._note("closed")
            return
        # The backend is done; the client has TIMEOUTclose to send its own close_notify.
        self._note("backend closed")
        scope = nursery.cancel_scope
        scope.deadline = min(scope.deadline, current_time() + self.close_timeout)


class _Side(Exception):
    """A broken stream, labelled with the side it broke on (for the log line)."""

    def __init__(self, side: str, exc: BaseException):
        super().__init__(f"{side}: {exc}")
