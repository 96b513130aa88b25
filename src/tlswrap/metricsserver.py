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

import json
import logging
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from .config import Config
from .fileid import FileId
from .limits import Limiter
from .metrics import CONTENT_TYPE, FAMILIES, Metrics, merge, render
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
    """Each served certificate's not-after, read once per file identity, and each stapled
    OCSP response's nextUpdate."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, tuple[FileId, ...]], float | None] = {}
        self._staples: dict[bytes, float | None] = {}  # OCSP response -> its nextUpdate

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


    def next_update(self, der: bytes) -> float | None:
        """The nextUpdate of the DER OCSP response ``der`` (read once per response)."""
        if der not in self._staples:
            from cryptography.x509 import ocsp

            try:
                when = ocsp.load_der_ocsp_response(der).next_update_utc
            except ValueError:
                when = None
            if len(self._staples) > 256:  # old responses: forget them
                self._staples.clear()
            self._staples[der] = when.timestamp() if when else None
        return self._staples[der]


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
    from .tlshooks import staple_source

    stapled = []
    for rt in snapshot:
        source = staple_source(rt.context)
        der = source() if source is not None else None
        when = dates.next_update(der) if der else None
        if when is not None:
            stapled.append([[rt.name], when])
    values["tlswrap_ocsp_next_update_seconds"] = stapled
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


WORKER_ANSWER_TIMEOUT = 2.0  # seconds a worker has to hand its state over
STATE_MAX = 16 << 20  # bytes of one worker's state, at most


async def answer_channel(channel: socket.socket, state: Callable[[], dict[str, Any]]) -> None:
    """In a worker: each byte the supervisor sends on ``channel`` is answered with this
    process's state, one JSON line; returns when the supervisor closes its end."""
    sock = trio.socket.from_stdlib_socket(channel)
    with sock:
        while True:
            try:
                asked = await sock.recv(64)
            except OSError:
                return
            if not asked:
                return
            data = json.dumps(state(), separators=(",", ":")).encode() + b"\n"
            try:
                view = memoryview(data)
                while view:
                    view = view[await sock.send(view):]
            except OSError:
                return


class WorkerMetrics:
    """In the supervisor: one channel per worker, asked for its state at each scrape; what a
    worker had counted when it was last asked is kept once it has ended (its gauges are not),
    so totals do not go back when a worker is replaced."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.channels: dict[int, socket.socket] = {}
        self.last: dict[int, dict[str, Any]] = {}
        self.retired: dict[str, Any] = {}

    def pair(self) -> tuple[socket.socket, socket.socket]:
        """A new channel: (the supervisor's end, the worker's end)."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        mine.settimeout(WORKER_ANSWER_TIMEOUT)
        return mine, theirs

    def add(self, pid: int, mine: socket.socket) -> None:
        with self.lock:
            self.channels[pid] = mine

    def ended(self, pid: int) -> None:
        with self.lock:
            sock = self.channels.pop(pid, None)
            if sock is not None:
                sock.close()
            last = self.last.pop(pid, None)
            if last is not None:
                self.retired = merge([self.retired, counters_only(last)])

    def forget_in_child(self) -> None:
        """In a new worker: the supervisor's ends of the other channels are not its own."""
        for sock in self.channels.values():
            sock.close()
        self.channels.clear()

    def collect(self) -> dict[str, Any]:
        """Every worker's state added up, with what ended workers had counted (blocking)."""
        with self.lock:
            states = [self.retired]
            for pid, sock in list(self.channels.items()):
                try:
                    sock.sendall(b"?")
                    state = json.loads(_read_line(sock))
                except (OSError, ValueError):
                    log.warning("metrics: worker pid %d did not answer", pid)
                    state = self.last.get(pid)
                    if state is not None:
                        state = counters_only(state)
                if state is not None:
                    self.last[pid] = state
                    states.append(state)
            return merge(states)


def _read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise ValueError("the worker closed its channel")
        data += chunk
        if len(data) > STATE_MAX:
            raise ValueError("a worker's state is too large")
    return data


def counters_only(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` without its gauges (a gauge of a process that has ended means nothing)."""
    return {"values": {f: rows for f, rows in state.get("values", {}).items()
                       if f in FAMILIES and FAMILIES[f].kind == "counter"},
            "histograms": state.get("histograms", {})}


def serve_in_thread(lsock: socket.socket, collect: Callable[[], dict[str, Any]]) -> None:
    """The supervisor's metrics endpoint, in a thread of its own (the supervisor's main
    thread waits for signals): the workers' states, added up, at each scrape."""
    async def exposition() -> str:
        return render(await trio.to_thread.run_sync(collect))

    def run() -> None:
        try:
            trio.run(serve_metrics, lsock, exposition)
        except Exception:
            log.exception("metrics endpoint failed")

    threading.Thread(target=run, name="metrics", daemon=True).start()
