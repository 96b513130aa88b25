"""Opening the plaintext side: TCP with failover over repeated ``connect``, or a unix socket.

Numeric addresses are turned into socket addresses once, when the service is set up; host names
are resolved at each connection (off the event loop), so a DNS change takes effect without a
reload. Every address of every ``connect`` line is tried in order, each under TIMEOUTconnect.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from dataclasses import dataclass
from typing import Any

import trio

from .addresses import format_sockaddr
from .config import Address
from .sockstream import SocketStream


class BackendError(Exception):
    """No backend address accepted the connection; the message lists what each one said."""


@dataclass(frozen=True)
class Target:
    """One ``connect`` line, with its socket addresses precomputed where they are numeric."""

    address: Address
    resolved: tuple[tuple[int, Any], ...] | None  # (family, sockaddr) pairs, or None: resolve

    @classmethod
    def from_address(cls, address: Address) -> Target:
        if address.path is not None:
            return cls(address, ((socket.AF_UNIX, address.path),))
        try:
            ip = ipaddress.ip_address(address.host or "")
        except ValueError:
            return cls(address, None)
        if isinstance(address.port, str):
            return cls(address, None)
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        return cls(address, ((family, (str(ip), address.port)),))

    async def sockaddrs(self) -> tuple[tuple[int, Any], ...]:
        if self.resolved is not None:
            return self.resolved
        infos = await trio.socket.getaddrinfo(self.address.host, self.address.port,
                                              type=socket.SOCK_STREAM)
        return tuple((family, sockaddr) for family, _, _, _, sockaddr in infos)


async def connect_one(family: int, sockaddr: Any, attempt_seconds: float) -> SocketStream:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = sock.connect_ex(sockaddr)
        if err == errno.EINPROGRESS:
            with trio.fail_after(attempt_seconds):
                await trio.lowlevel.wait_writable(sock)
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, os.strerror(err))
        return SocketStream(sock)
    except BaseException:
        sock.close()
        raise


async def open_backend(targets: tuple[Target, ...],
                       attempt_seconds: float) -> tuple[SocketStream, str]:
    """Connect to the first target address that answers, giving each address
    ``attempt_seconds`` (TIMEOUTconnect); return the stream and the address."""
    failures = []
    for target in targets:
        try:
            addrs = await target.sockaddrs()
        except OSError as exc:
            failures.append(f"{target.address}: cannot resolve: {exc.strerror or exc}")
            continue
        for family, sockaddr in addrs:
            where = format_sockaddr(sockaddr)
            try:
                return await connect_one(family, sockaddr, attempt_seconds), where
            except trio.TooSlowError:
                failures.append(f"{where}: timed out after {attempt_seconds:g}s")
            except OSError as exc:
                failures.append(f"{where}: {exc.strerror or exc}")
    raise BackendError("; ".join(failures) or "no backend address")

