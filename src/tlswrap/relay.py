"""The relay: two pumps between the client stream and the backend stream, and the close sequence.

General theory of operation:
- Each direction is one pump: take what the source has (``recv_batch``: several TLS records,
  or one plaintext read that grows from 16 KiB to 64 KiB while reads come back full), write it
  all, repeat. A slow reader therefore slows its writer; nothing buffers more than one batch
  per direction: a client that stops reading holds at most 64 KiB of plaintext plus one TLS
  record in tlswrap (bench/stalled.py measures it; 256 KiB batches measured about 14% less CPU
  per GB downloaded, at 2.6x the memory of a stalled connection). A batch that drained the
  source makes the next read park first instead of failing once; without any park the pump
  yields every few rounds.
- EOF is passed on as a half-close: the client's close_notify (or a TCP close) becomes a FIN to
  the backend, which may still answer; the backend's FIN becomes close_notify to the client after
  the data.
- Once the backend has finished, the client gets TIMEOUTclose to finish too (send its own
  close_notify); then the connection is closed regardless.
- TIMEOUTidle: no byte in either direction for that long ends the connection. The deadline is
  refreshed at most once a second, so the hot path pays one clock read per batch.
- A failed read or write (a reset, mostly) means that side is gone: the whole relay ends, and
  ``broken`` names the side, so that the caller can reset the other one too. Only EOF is a
  half-close; a reset is not.
- TIMEOUTbusy (stunnel's "time to wait for expected data"): a destination that takes no byte
  for that long while a batch waits for it counts as broken too (``push_watched``). Without
  it, a peer that stops reading would hold the connection until TIMEOUTidle, and the other
  side's reset would go unnoticed (the pump that would see it is parked writing): an exec'd
  program that never reads its stdin would outlive its client by hours.
The relay sees both sides only through ``RelaySide``; it never asks which kind of stream it has.
"""

from __future__ import annotations

from typing import Protocol

import trio

current_time = trio.current_time

TLS_GATHER = 65536  # client -> backend: TLS records gathered into one plaintext send
PLAIN_READ_MAX = 65536  # backend -> client: the largest plaintext read (4 TLS records)
YIELD_EVERY = 8  # batches moved without parking before the pump lets other tasks run


class RelaySide(Protocol):
    """What the relay needs of each side (``SocketStream`` and ``TLSStream`` both provide it).

    The relay is the only user of a side's two directions while it runs, so these skip the
    Stream methods' conflict detection and per-call checkpoints; the relay yields itself.
    """

    @property
    def drained(self) -> bool:
        """True after a ``recv_batch`` that left nothing else ready to read."""

    def recv_batch(self, limit: int) -> bytes | None:
        """What can be read now, at most ``limit`` bytes, never parking: data, ``b""`` at
        EOF, or None when nothing is ready (then ``await wait_recv()`` and try again).
        Raises BrokenResourceError when the source failed."""

    async def wait_recv(self) -> None:
        """Park until a ``recv_batch`` can make progress, after one that returned None or
        drained the source."""

    async def push(self, data: bytes) -> bool:
        """Write all of ``data``, parking while the peer is slow; True if it had to park.
        Raises BrokenResourceError when the peer is gone. Never a checkpoint by itself."""

    def send_now(self, data: bytes | memoryview) -> int | None:
        """Send what can be sent now without parking: the count, or None when nothing could
        be (then ``await wait_send()``). Raises BrokenResourceError when the peer is gone."""

    async def wait_send(self) -> None:
        """Park until the ``send_now`` that returned None can make progress."""

    async def send_eof(self) -> None:
        """Half-close: FIN (plaintext) or close_notify (TLS); reading goes on."""


class SideError(Exception):
    """A broken stream, labelled with the side it broke on (for the log line)."""

    def __init__(self, side: str, exc: BaseException):
        super().__init__(f"{side}: {exc}")
        self.side = side


class Stalled(Exception):
    """A destination that took nothing for TIMEOUTbusy while data waited for it."""

    def __init__(self, seconds: float):
        super().__init__(f"stalled: read nothing for {seconds:g}s (TIMEOUTbusy) while data "
                         "waited")


async def push_watched(dst: RelaySide, data: bytes, busy: float) -> bool:
    """``dst.push(data)`` under TIMEOUTbusy: Stalled when ``dst`` takes no byte for ``busy``
    seconds while some of ``data`` waits; each byte taken moves that deadline on, so a slow
    reader is never taken for a stalled one. The same sends and waits as ``push`` (the
    unsent tail again after a wait, as OpenSSL asks of a retried write); no cancel scope
    unless the first send leaves something behind."""
    total = len(data)
    n = dst.send_now(data)
    if n == total:
        return False
    view = memoryview(data)
    sent = 0
    with trio.CancelScope(deadline=current_time() + busy) as scope:
        while True:
            if n is None:
                await dst.wait_send()
            else:
                sent += n
                if sent >= total:
                    return True
                scope.deadline = current_time() + busy
            n = dst.send_now(view[sent:])
    raise Stalled(busy)


class Pump:
    """One direction: source, destination, the read limit and the bytes moved so far."""

    __slots__ = ("dst", "dst_name", "limit", "moved", "src", "src_name")

    def __init__(self, src: RelaySide, dst: RelaySide, src_name: str, dst_name: str,
                 limit: int):
        self.src, self.dst = src, dst
        self.src_name, self.dst_name = src_name, dst_name
        self.limit = limit
        self.moved = 0


class Relay:
    """Moves bytes both ways; afterwards ``to_backend``, ``to_client`` and ``reason`` tell how."""

    __slots__ = ("_client_done", "_down", "_refreshed", "_scope", "_up", "broken", "busy",
                 "close_timeout", "idle", "reason")

    def __init__(self, client: RelaySide, backend: RelaySide, idle: float,
                 close_timeout: float, busy: float | None = None):
        self._up = Pump(client, backend, "client", "backend", TLS_GATHER)
        self._down = Pump(backend, client, "backend", "client", PLAIN_READ_MAX)
        self.idle = idle
        self.close_timeout = close_timeout
        self.busy = busy  # TIMEOUTbusy; None: a destination may stall as long as TIMEOUTidle
        self.reason = ""
        self.broken: str | None = None  # "client" or "backend": the side that failed
        self._client_done = False
        self._scope = trio.CancelScope()
        self._refreshed = 0.0

    @property
    def to_backend(self) -> int:
        return self._up.moved

    @property
    def to_client(self) -> int:
        return self._down.moved

    def _note(self, reason: str) -> None:
        if not self.reason:
            self.reason = reason

    async def run(self) -> None:
        """Relay until both directions are done, one fails, or a timeout ends it."""
        scope = self._scope
        self._refreshed = current_time()
        scope.deadline = self._refreshed + self.idle
        with scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._client_to_backend, nursery)
                await self._backend_to_client(nursery)  # in this task: one task less per conn
        if scope.cancelled_caught and not self.reason:
            self.reason = "idle timeout" if current_time() >= scope.deadline else "closed"

    async def _flow(self, pump: Pump) -> None:
        """Move batches from the pump's source to its destination until the source ends."""
        src, dst, limit = pump.src, pump.dst, pump.limit
        busy = self.busy
        drained = False
        rounds = 0
        while True:
            try:
                if drained:
                    await src.wait_recv()
                data = src.recv_batch(limit)
                while data is None:
                    await src.wait_recv()
                    data = src.recv_batch(limit)
            except trio.BrokenResourceError as exc:
                raise SideError(pump.src_name, exc) from exc
            if not data:
                return
            drained = src.drained
            try:
                if busy is None:
                    parked = await dst.push(data) or drained
                else:
                    parked = await push_watched(dst, data, busy) or drained
            except Stalled as exc:
                raise SideError(pump.dst_name, exc) from None
            except trio.BrokenResourceError as exc:
                raise SideError(pump.dst_name, exc) from exc
            pump.moved += len(data)
            now = current_time()
            if now - self._refreshed > 1.0:  # push the idle deadline on, at most once a second
                self._refreshed = now
                self._scope.deadline = now + self.idle
            if not parked:
                rounds += 1
                if rounds >= YIELD_EVERY:
                    rounds = 0
                    await trio.lowlevel.checkpoint()

    async def _direction(self, pump: Pump, nursery: trio.Nursery) -> bool:
        """One direction to its end, then the half-close; False (and all cancelled) on error."""
        try:
            await self._flow(pump)
            try:
                await pump.dst.send_eof()
            except trio.BrokenResourceError as exc:
                raise SideError(pump.dst_name, exc) from exc
        except SideError as side:
            self._note(str(side))
            if self.broken is None:
                self.broken = side.side
            nursery.cancel_scope.cancel()
            return False
        return True

    async def _client_to_backend(self, nursery: trio.Nursery) -> None:
        if await self._direction(self._up, nursery):
            self._client_done = True

    async def _backend_to_client(self, nursery: trio.Nursery) -> None:
        if not await self._direction(self._down, nursery):
            return
        if self._client_done:
            self._note("closed")
            return
        # The backend is done; the client has TIMEOUTclose to send its own close_notify.
        self._note("backend closed")
        scope = nursery.cancel_scope
        scope.deadline = min(scope.deadline, current_time() + self.close_timeout)
