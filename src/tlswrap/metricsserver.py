"""``metrics = HOST:PORT``: the metrics over HTTP, for Prometheus and ``tlswrap status``.

A deliberately small HTTP/1.0 responder: one request per connection, ``GET /metrics`` (or
``/``) answered with the text format, anything else 404/405; the request must arrive within
``REQUEST_TIMEOUT`` seconds and ``REQUEST_MAX`` bytes. It shows counts and the served
certificates' expiry, never a peer's data; bind it to loopback (a port alone means
127.0.0.1) or a management network. The listener is bound with the services', before the
privilege drop, and its problems are ``FILE:LINE`` errors like theirs.

``process_state`` is one serving process's state (its ``Metrics`` plus the gauges read at the
moment: live connections and handshakes from the limiter, each certificate's not-after);
with workers the supervisor asks each worker for it (``workers``' metrics channel) and
serves the sum.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from .config import Config
from .fileid import FileId
from .limits import Limiter
from .metrics import CONTENT_TYPE, Metrics
from .snapshot import Snapshot

log = logging.getLogger("tlswrap.metrics")

REQUEST_TIMEOUT = 5.0
REQUEST_MAX = 8192


def bind_metrics(config: Config) -> socket.socket | None:
    """The metrics listener (None: no ``metrics`` option); ConfigError at its line."""
    addr = config.globals.metrics
    if addr is None:
        return None
    assert addr.host is not None
    try:
        infos = socket.getaddrinfo(addr.host, addr.port, type=socket.SOCK_STREAM)
        family, _, _, _, sockaddr = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        raise config.error(f"metrics = {addr}: {exc.strerror or exc}", "metrics") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(16)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise config.error(f"metrics = {addr}: cannot listen: {exc.strerror}",
                           "metrics") from None
    return sock


class CertificateDates:
    """Each served certificate's not-after, read once per file identity."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, tuple[FileId, ...]], float | None] = {}

    def not_after(self, path: str, files: tuple[FileId, ...]) -> float | None:
        key = (path, files)
        if key not in self._known:
            from cryptography import x509

            from .tlscontext import read_pem_file

            try:
                cert = x509.load_pem_x509_certificate(read_pem_file(path))
                self._known[key] = cert.not_valid_after_utc.timestamp()
            except (OSError, ValueError):
                self._known[key] = None
            if len(self._known) > 256:  # old identities: forget them
                self._known = {key: self._known[key]}
        return self._known[key]


def process_state(metrics: Metrics, limiter: Limiter, snapshot: Snapshot,
                  dates: CertificateDates) -> dict[str, Any]:
    """This process's state with the gauges of the moment (blocking: may read a cert)."""
    state = metrics.state()
    values = state["values"]
    values["tlswrap_connections_live"] = [[[rt.name], limiter.live.get(rt.name, 0)]
                                          for rt in snapshot]
    values["tlswrap_handshakes_in_progress"] = [[[], limiter.handshakes]]
    expiry = []
    for rt in snapshot:
        when = dates.not_after(rt.service.cert, rt.files) if rt.service.cert else None
        if when is not None:
            expiry.append([[rt.name], when])
    values["tlswrap_certificate_not_after_seconds"] = expiry
    return state


async def serve_metrics(lsock: socket.socket, exposition: Callable[[], Awaitable[str]]) -> None:
    """Answer scrapes on ``lsock`` until cancelled; ``exposition()`` makes the body."""
    async with trio.open_nursery() as nursery:
        while True:
            try:
                conn, _ = lsock.accept()
            except BlockingIOError:
                await trio.lowlevel.wait_readable(lsock)
                continue
            except OSError as exc:
                log.error("metrics: accept: %s", exc.strerror or exc)
                await trio.sleep(0.1)
                continue
            nursery.start_soon(_answer, conn, exposition)


async def _answer(conn: socket.socket, exposition: Callable[[], Awaitable[str]]) -> None:
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(conn))
    try:
        with trio.move_on_after(REQUEST_TIMEOUT):
            request = b""
            while b"\r\n\r\n" not in request and b"\n\n" not in request:
                chunk = await stream.receive_some(REQUEST_MAX)
                if not chunk:
                    break
                request += chunk
                if len(request) > REQUEST_MAX:
                    await _reply(stream, 431, "request too large\n")
                    return
            method, _, rest = request.partition(b" ")
            path = rest.split(b" ", 1)[0].split(b"?", 1)[0]
            if method not in (b"GET", b"HEAD"):
                await _reply(stream, 405, "only GET\n")
            elif path not in (b"/metrics", b"/"):
                await _reply(stream, 404, "try /metrics\n")
            else:
                body = await exposition()
                await _reply(stream, 200, "" if method == b"HEAD" else body, CONTENT_TYPE)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass  # the scraper left
    finally:
        await stream.aclose()


_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed",
            431: "Request Header Fields Too Large"}


async def _reply(stream: trio.SocketStream, status: int, body: str,
                 content_type: str = "text/plain; charset=utf-8") -> None:
    data = body.encode()
    head = (f"HTTP/1.0 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n").encode()
    await stream.send_all(head + data)
