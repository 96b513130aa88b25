"""Opening the plaintext side: TCP with failover over repeated ``connect``, or a unix socket.

Numeric addresses are turned into socket addresses once, when the service is set up. Host
names are resolved then too (stunnel's ``delay = no``, its default), falling back to a lookup
at each connection when that fails; with ``delay = yes`` they are resolved at each connection
(off the event loop), so a DNS change takes effect without a reload. Every address of every
``connect`` line is tried in order (``failover = prio``), or starting one further on at each
connection (``failover = rr``), each under TIMEOUTconnect.

Before connecting, the socket gets the service's ``socket = r:...`` options, is bound to the
``local`` source address, or (``transparent = source``) to the client's own address with
IP_TRANSPARENT, so the backend sees the client.
"""

from __future__ import annotations

import errno
import ipaddress
import itertools
import os
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

from .addresses import format_sockaddr
from .config import Address
from .sockopts import SocketOption
from .sockstream import SocketStream, set_socket_options


class BackendError(Exception):
    """No backend address accepted the connection; the message lists what each one said."""


@dataclass(frozen=True)
class Target:
    """One ``connect`` line, with its socket addresses precomputed where they are numeric."""

    address: Address
    resolved: tuple[tuple[int, Any], ...] | None  # (family, sockaddr) pairs, or None: resolve

    @classmethod
    def from_address(cls, address: Address, resolve: bool = False) -> Target:
        """``resolve``: look a host name up now (blocking; stunnel's ``delay = no``); when
        that fails the name is looked up at each connection instead, as stunnel does."""
        if address.path is not None:
            return cls(address, ((socket.AF_UNIX, address.path),))
        try:
            ip = ipaddress.ip_address(address.host or "")
        except ValueError:
            return cls(address, _lookup(address) if resolve else None)
        if isinstance(address.port, str):
            return cls(address, _lookup(address) if resolve else None)
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        return cls(address, ((family, (str(ip), address.port)),))

    async def sockaddrs(self) -> tuple[tuple[int, Any], ...]:
        if self.resolved is not None:
            return self.resolved
        infos = await trio.socket.getaddrinfo(self.address.host, self.address.port,
                                              type=socket.SOCK_STREAM)
        return tuple((family, sockaddr) for family, _, _, _, sockaddr in infos)


def _lookup(address: Address) -> tuple[tuple[int, Any], ...] | None:
    try:
        infos = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return None
    return tuple((family, sockaddr) for family, _, _, _, sockaddr in infos) or None


IP_TRANSPARENT = getattr(socket, "IP_TRANSPARENT", 19)  # linux/in.h
IPV6_TRANSPARENT = getattr(socket, "IPV6_TRANSPARENT", 75)  # linux/in6.h


@dataclass(frozen=True)
class Dialer:
    """How a service connects to its backends: its targets and what each socket gets first.

    ``local``: source addresses by family (``local = HOST``); ``transparent``: bind to the
    client's address instead (``transparent = source``); ``rotate``: ``failover = rr``.
    The rotation counter is the only mutable part, shared by the connections of one process.
    """

    targets: tuple[Target, ...] = ()
    options: tuple[SocketOption, ...] = ()
    local: Mapping[int, Any] = field(default_factory=dict)
    transparent: bool = False
    rotate: bool = False
    turn: Iterator[int] = field(default_factory=itertools.count, compare=False)

    def order(self) -> tuple[Target, ...]:
        if not self.rotate or len(self.targets) < 2:
            return self.targets
        start = next(self.turn) % len(self.targets)
        return self.targets[start:] + self.targets[:start]

    def prepare(self, sock: socket.socket, family: int, client: Any) -> None:
        """Options, then the source address, before connect (SO_BINDTODEVICE, IP_FREEBIND
        and TCP_MAXSEG only count there)."""
        if family == socket.AF_UNIX:
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # stunnel's r: default
        refused = set_socket_options(sock, self.options, "r")
        if refused:
            raise OSError(0, f"socket = {'; '.join(refused)}")
        if self.transparent and client is not None:
            level = socket.IPPROTO_IPV6 if family == socket.AF_INET6 else socket.IPPROTO_IP
            opt = IPV6_TRANSPARENT if family == socket.AF_INET6 else IP_TRANSPARENT
            sock.setsockopt(level, opt, 1)
            sock.bind((client[0], 0))
        elif family in self.local:
            sock.bind(self.local[family])


async def connect_one(family: int, sockaddr: Any, attempt_seconds: float,
                      dialer: Dialer | None = None, client: Any = None) -> SocketStream:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if dialer is not None:
            dialer.prepare(sock, family, client)
        elif family != socket.AF_UNIX:
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


async def open_backend(dialer: Dialer, attempt_seconds: float,
                       client: Any = None) -> tuple[SocketStream, str]:
    """Connect to the first target address that answers, giving each address
    ``attempt_seconds`` (TIMEOUTconnect); return the stream and the address. ``client``: the
    client's socket address, for ``transparent = source``."""
    failures = []
    for target in dialer.order():
        try:
            addrs = await target.sockaddrs()
        except OSError as exc:
            failures.append(f"{target.address}: cannot resolve: {exc.strerror or exc}")
            continue
        for family, sockaddr in addrs:
            where = format_sockaddr(sockaddr)
            try:
                return await connect_one(family, sockaddr, attempt_seconds, dialer,
                                         client), where
            except trio.TooSlowError:
                failures.append(f"{where}: timed out after {attempt_seconds:g}s")
            except OSError as exc:
                failures.append(f"{where}: {exc.strerror or exc}")
    raise BackendError("; ".join(failures) or "no backend address")
