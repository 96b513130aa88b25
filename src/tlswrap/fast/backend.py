"""The inetd fast path's plaintext side: a backend connection, or a program run by ``exec``.

The same steps, bounds and messages as ``backend.open_backend`` and ``execbackend.spawn``, done
with blocking calls and poll() (one connection per process: nothing else waits). Sockets come
from ``_socket``: the ``socket`` module's import (its enums and ``selectors``) costs ~8 ms.
"""

from __future__ import annotations

import errno
import os
import select
import time
from _signal import (  # type: ignore[import-not-found]  # signal's enums cost ~1 ms
    SIGKILL,
    SIGPIPE,
    SIGTERM,
    SIGXFSZ,
)
from _socket import (
    AF_INET,
    AF_INET6,
    AF_UNIX,
    IPPROTO_TCP,
    SO_ERROR,
    SOCK_STREAM,
    SOL_SOCKET,
    TCP_NODELAY,
    getaddrinfo,
    inet_pton,
    socketpair,
)
from _socket import socket as raw_socket

from ..addresses import format_sockaddr
from .spec import address_text
from .waits import POLLOUT, wait_fd

TYPE_CHECKING = False  # typing costs ~5 ms to import; annotations are strings here
if TYPE_CHECKING:
    from typing import Any

TERM_GRACE = 1.0  # execbackend.TERM_GRACE


class BackendFailure(Exception):
    """No backend address accepted the connection; the message lists what each one said."""


def _sockaddrs(address: tuple[str | None, int, str | None]) -> list[tuple[int, Any]]:
    """``backend.Target``: a unix path, a numeric address as it is, a name resolved now."""
    host, port, path = address
    if path is not None:
        return [(AF_UNIX, path)]
    assert host is not None
    for family in (AF_INET, AF_INET6):
        try:
            inet_pton(family, host)
        except OSError:
            continue
        return [(family, (host, port))]
    return [(family, sockaddr)
            for family, _, _, _, sockaddr in getaddrinfo(host, port, 0, SOCK_STREAM)]


def connect_one(family: int, sockaddr: Any, seconds: float) -> raw_socket:
    """A connected non-blocking socket, within ``seconds``; OSError or TimeoutError."""
    sock = raw_socket(family, SOCK_STREAM)
    try:
        sock.setblocking(False)
        if family != AF_UNIX:
            sock.setsockopt(IPPROTO_TCP, TCP_NODELAY, 1)
        err = sock.connect_ex(sockaddr)
        if err == errno.EINPROGRESS:
            if not wait_fd(sock.fileno(), POLLOUT, time.monotonic() + seconds):
                raise TimeoutError
            err = sock.getsockopt(SOL_SOCKET, SO_ERROR)
        if err:
            raise OSError(err, os.strerror(err))
        return sock
    except BaseException:
        sock.close()
        raise


def open_backend(connect: tuple[tuple[str | None, int, str | None], ...],
                 seconds: float) -> raw_socket:
    """Every address of every ``connect`` line in order, each under TIMEOUTconnect."""
    failures = []
    for address in connect:
        try:
            addrs = _sockaddrs(address)
        except OSError as exc:
            failures.append(f"{address_text(address)}: cannot resolve: {exc.strerror or exc}")
            continue
        for family, sockaddr in addrs:
            where = format_sockaddr(sockaddr)
            try:
                return connect_one(family, sockaddr, seconds)
            except TimeoutError:
                failures.append(f"{where}: timed out after {seconds:g}s")
            except OSError as exc:
                failures.append(f"{where}: {exc.strerror or exc}")
    raise BackendFailure("; ".join(failures) or "no backend address")


class Program:
    """A program run for this connection on one end of a socketpair (its stdin and stdout),
    its stderr a pipe whose lines go to the log (``execbackend.spawn``)."""

    def __init__(self, program: str, argv: list[str], env: dict[str, str], label: str) -> None:
        parent, child = socketpair(AF_UNIX, SOCK_STREAM)
        err_r, err_w = os.pipe()
        try:
            # setsigdef: what subprocess's restore_signals does (Python ignores SIGPIPE)
            self.pid = os.posix_spawn(program, argv, env, file_actions=[
                (os.POSIX_SPAWN_DUP2, child.fileno(), 0),
                (os.POSIX_SPAWN_DUP2, child.fileno(), 1),
                (os.POSIX_SPAWN_DUP2, err_w, 2)], setsigdef=(SIGPIPE, SIGXFSZ))
        except BaseException:
            parent.close()
            os.close(err_r)
            raise
        finally:
            child.close()
            os.close(err_w)
        parent.setblocking(False)
        os.set_blocking(err_r, False)
        self.sock = parent
        self.stderr: int | None = err_r
        self.label = label
        self.status: int | None = None
        self._pending = b""

    def stderr_lines(self, log: Any, final: bool = False) -> None:
        """Log what the program wrote on stderr, a line at a time (``execbackend``'s way)."""
        if self.stderr is None:
            return
        while True:
            try:
                data = os.read(self.stderr, 4096)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if not data:
                os.close(self.stderr)
                self.stderr = None
                final = True
                break
            self._pending += data
            *lines, self._pending = self._pending.split(b"\n")
            for line in lines:
                log(30, f"{self.label} pid {self.pid}: "
                        f"{line.decode(errors='replace').rstrip()}")
            if len(self._pending) > 4096:
                log(30, f"{self.label} pid {self.pid}: "
                        f"{self._pending.decode(errors='replace')}")
                self._pending = b""
        if final and self._pending.strip():
            log(30, f"{self.label} pid {self.pid}: "
                    f"{self._pending.decode(errors='replace').rstrip()}")
            self._pending = b""

    def _reaped(self, timeout: float, log: Any) -> bool:
        """Reaped within ``timeout`` seconds? Its stderr is read meanwhile (a full pipe
        would stop it)."""
        deadline = time.monotonic() + timeout
        while True:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            fds = [self.stderr] if self.stderr is not None else []
            if select.select(fds, [], [], min(left, 0.01))[0]:
                self.stderr_lines(log)

    def finish(self, grace: float, log: Any) -> None:
        """Close our end; ``grace`` seconds (TIMEOUTclose) to exit, then SIGTERM, and SIGKILL
        a second later; reap it and log how it ended, after the rest of its stderr."""
        self.sock.close()
        if not self._reaped(grace, log):
            log(30, f"{self.label} pid {self.pid} still running {grace:g}s after its client "
                    "left; terminating")
            os.kill(self.pid, SIGTERM)
            if not self._reaped(TERM_GRACE, log):
                os.kill(self.pid, SIGKILL)
                self._reaped(3600.0, log)
        while self.stderr is not None:  # until every writer of it has gone, as execbackend
            select.select([self.stderr], [], [])
            self.stderr_lines(log)
        self.stderr_lines(log, final=True)
        status = self.status
        assert status is not None
        how = f"killed by signal {-status}" if status < 0 else f"exited with status {status}"
        log(20 if status == 0 else 30, f"{self.label} pid {self.pid} {how}")
