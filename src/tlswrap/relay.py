"""The relay: two pumps between the client stream and the backend stream, and the close sequence.

General theory of operation:
- Each direction is one pump: read (one TLS record, or a plaintext read that grows from 16 KiB
  while reads come back full), write it all, repeat. A slow reader therefore
  slows its writer; nothing buffers more than one read per direction.
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

# A TLS read returns at most one record (16 KiB); a plaintext read starts at that size and
# doubles while reads come back full, so idle connections never hold large transient buffers.
TLS_READ = 16384
PLAIN_READ_MAX = 262144


class Relay:
    """Moves bytes both ways; afterwards ``to_backend``, ``to_client`` and ``reason`` tell how."""

    def __init__(self, client: trio.abc.HalfCloseableStream,
                 backend: trio.abc.HalfCloseableStream, idle: float, close_timeout: float):
        self.client = client
        self.backend = backend
        self.idle = idle
        self.close_timeout = close_timeout
        self.to_backend = 0
        self.to_client = 0
        self.reason = ""
        self._client_done = trio.Event()
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

    def _touch(self) -> None:
        now = trio.current_time()
        if now - self._refreshed > 1.0:
            self._refreshed = now
            self._scope.deadline = now + self.idle  # type: ignore[union-attr]

    async def _client_to_backend(self, nursery: trio.Nursery) -> None:
        client, backend = self.client, self.backend
        try:
            while True:
                try:
                    data = await client.receive_some(TLS_READ)
                except trio.BrokenResourceError as exc:
                    if not getattr(client, "truncated", False):
                        raise _Side("client", exc) from exc
                    data = b""  # TCP close without close_notify: the end of the data all the same
                if not data:
                    break
                try:
                    await backend.send_all(data)
                except trio.BrokenResourceError as exc:
                    raise _Side("backend", exc) from exc
                self.to_backend += len(data)
                self._touch()
            self._client_done.set()
            try:
                await backend.send_eof()
            except trio.BrokenResourceError as exc:
                raise _Side("backend", exc) from exc
        except _Side as side:
            self._note(str(side))
            nursery.cancel_scope.cancel()

    async def _backend_to_client(self, nursery: trio.Nursery) -> None:
        client, backend = self.client, self.backend
        size = TLS_READ
        try:
            while True:
                try:
                    data = await backend.receive_some(size)
                except trio.BrokenResourceError as exc:
                    raise _Side("backend", exc) from exc
                if not data:
                    break
                if len(data) == size and size < PLAIN_READ_MAX:
                    size *= 2
                try:
                    await client.send_all(data)
                except trio.BrokenResourceError as exc:
                    raise _Side("client", exc) from exc
                self.to_client += len(data)
                self._touch()
            try:
                await client.send_eof()
            except trio.BrokenResourceError as exc:
                raise _Side("client", exc) from exc
        except _Side as side:
            self._note(str(side))
            nursery.cancel_scope.cancel()
            return
        if self._client_done.is_set():
            self._note("closed")
            return
        # The backend is done; the client has TIMEOUTclose to send its own close_notify.
        self._note("backend closed")
        with trio.move_on_after(self.close_timeout):
            await self._client_done.wait()
            return
        nursery.cancel_scope.cancel()


class _Side(Exception):
    """A broken stream, labelled with the side it broke on (for the log line)."""

    def __init__(self, side: str, exc: BaseException):
        super().__init__(f"{side}: {exc}")
