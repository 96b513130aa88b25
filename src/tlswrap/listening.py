"""Listening sockets: bound at start, and across reloads kept, bound or closed by address.

At start every service's ``accept`` is bound while still privileged (``bind_all``). A reload
that rebinds (one serving process; with workers the supervisor does it and replaces the
workers) goes through ``Listening.rebind``: a listener whose address is still some service's
``accept`` is kept -- the very socket, so its queue is never lost and a privileged port stays
ours after the privilege drop -- an address no longer used is closed (clients are refused, the
connections accepted on it finish), and a new address is bound. A new address that cannot be
bound (a port below 1024 once running as the ``setuid`` user, a port in use) is an error logged
with its FILE:LINE, and the rest of the reload applies: the service keeps its old address and
settings if it had one, a new service is not served until the cause is fixed.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

from .config import Address, Config, Service
from .errors import ConfigError
from .sockstream import set_socket_options

Listener = tuple[socket.socket, str]  # a listening socket and the name of its service


def bind_listener(config: Config, svc: Service, reuseport: bool = False,
                  probe: bool = False) -> socket.socket:
    """A non-blocking listening socket on ``svc.accept`` (FILE:LINE error if impossible).

    ``reuseport``: SO_REUSEPORT, so that each worker has its own socket on the same port;
    ``probe``: first make sure nothing listens there already, since SO_REUSEPORT would let
    us listen beside another process (another tlswrap's workers, orphaned ones)."""
    addr = svc.accept
    assert addr is not None
    if addr.path is not None:
        return bind_unix(config, svc, addr.path)
    assert addr.host is not None
    try:
        port = addr.port if isinstance(addr.port, int) else socket.getservbyname(addr.port, "tcp")
    except OSError:
        raise config.error(f"accept = {addr}: unknown service name {addr.port!r}",
                           "accept", svc) from None
    try:
        infos = socket.getaddrinfo(addr.host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise config.error(f"accept = {addr}: {exc.strerror}", "accept", svc) from None
    family, _, _, _, sockaddr = infos[0]
    try:
        if probe:
            _probe_bind(family, sockaddr)
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        raise config.error(f"accept = {addr}: cannot listen: {exc.strerror}",
                           "accept", svc) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport:  # only for our own workers: otherwise "in use" must be an error
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        refused = set_socket_options(sock, svc.socket_options, "a")
        if refused:
            sock.close()
            raise config.error(f"socket = {'; '.join(refused)}", "socket", svc)
        sock.bind(sockaddr)
        sock.listen(socket.SOMAXCONN)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise config.error(f"accept = {addr}: cannot listen: {exc.strerror}",
                           "accept", svc) from None
    return sock


def bind_unix(config: Config, svc: Service, path: str) -> socket.socket:
    """A listening unix socket at ``path``, mode 0666 (the directory's permissions control
    who may connect). A socket file that nobody listens on (left by a killed daemon) is
    replaced; a listening one is "Address already in use"; any other file is refused."""
    def fail(reason: str) -> ConfigError:
        return config.error(f"accept = {path}: cannot listen: {reason}", "accept", svc)

    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise fail(exc.strerror or str(exc)) from None
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode):
            raise fail("it exists and is not a socket")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            if probe.connect_ex(path) == 0:
                raise fail(os.strerror(errno.EADDRINUSE))
        try:
            os.unlink(path)
        except OSError as exc:
            raise fail(exc.strerror or str(exc)) from None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        refused = set_socket_options(sock, svc.socket_options, "a")
        if refused:
            raise OSError(0, f"socket = {'; '.join(refused)}")
        sock.bind(path)
        os.chmod(path, 0o666)
        sock.listen(socket.SOMAXCONN)
        sock.setblocking(False)
    except OSError as exc:
        _remove_socket_file(sock)
        sock.close()
        raise fail(exc.strerror or str(exc)) from None
    return sock


def _remove_socket_file(sock: socket.socket) -> None:
    """Unlink the file of a bound unix socket that is still open, if it is still a socket."""
    if sock.family != socket.AF_UNIX or sock.fileno() == -1:
        return
    try:
        path = sock.getsockname()
        if path and isinstance(path, str) and stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except OSError:
        pass


def remove_socket_files(config: Config) -> None:
    """At exit: the unix socket files of the services (whose sockets may be closed by now)."""
    for svc in config.services:
        path = svc.accept.path if svc.accept is not None else None
        try:
            if path and stat.S_ISSOCK(os.lstat(path).st_mode):
                os.unlink(path)
        except OSError:
            pass


def _probe_bind(family: int, sockaddr: tuple[Any, ...]) -> None:
    """Bind without SO_REUSEPORT and close: EADDRINUSE when a socket listens on the address.
    SO_REUSEADDR, as for the real socket, so that connections left in TIME_WAIT by a previous
    run do not block a restart (it never allows binding over a listener)."""
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(sockaddr)


def bind_all(config: Config, services: Iterable[Service], reuseport: bool = False,
             probe: bool = False) -> list[Listener]:
    bound: list[Listener] = []
    try:
        for svc in services:
            if svc.outbound:
                continue  # it connects out: see daemon.outbound_loop
            if svc.accept is None:
                raise config.error("no 'accept': where should this service listen?", None, svc)
            bound.append((bind_listener(config, svc, reuseport, probe), svc.name))
    except BaseException:
        close_all(bound)
        raise
    return bound


def close_all(listeners: Iterable[Listener]) -> None:
    """Close listeners that were bound here (a unix socket's file goes with it)."""
    for sock, _ in listeners:
        _remove_socket_file(sock)
        sock.close()


def close_listeners(listeners: Iterable[Listener]) -> None:
    """Stop listening (waking any task parked on these sockets); safe to repeat."""
    for lsock, _ in listeners:
        if lsock.fileno() != -1:
            trio.lowlevel.notify_closing(lsock)
            lsock.close()



@dataclass
class Rebinding:
    """What ``Listening.rebind`` found: the listeners to serve from now on, by address; those
    to close; the services that stay at their old address (their new one could not be bound,
    so they keep their old settings too); the errors, located at their ``accept`` lines."""

    listeners: dict[Address, Listener]
    closed: list[Listener] = field(default_factory=list)
    kept_old: set[str] = field(default_factory=set)
    errors: list[ConfigError] = field(default_factory=list)

    @property
    def served(self) -> set[str]:
        """The services that listen after the rebind."""
        return {name for _, name in self.listeners.values()}


class Listening:
    """The listeners of one serving process, by ``accept`` address."""

    def __init__(self, listeners: Iterable[Listener], services: Mapping[str, Service]):
        self.by_address: dict[Address, Listener] = {}
        for sock, name in listeners:
            addr = services[name].accept
            if addr is not None:
                self.by_address[addr] = (sock, name)

    def all(self) -> list[Listener]:
        return list(self.by_address.values())

    def rebind(self, config: Config, old: Mapping[str, Service], reuseport: bool = False,
               probe: bool = False) -> Rebinding:
        """Listeners for every service of ``config``, binding only the new addresses (blocking:
        names may be resolved). ``old``: the services served until now; ``reuseport`` and
        ``probe`` as for ``bind_listener`` (workers). Changes nothing here: ``apply`` makes the
        result current, the caller closes ``closed``."""
        wanted = {svc.accept for svc in config.services}
        result = Rebinding({})
        for svc in config.services:
            addr = svc.accept
            if addr is None:
                result.errors.append(config.error(
                    "no 'accept': a reload cannot add a service without one", None, svc))
                continue
            held = self.by_address.get(addr)
            if held is not None:
                result.listeners[addr] = (held[0], svc.name)
                continue
            try:
                result.listeners[addr] = (bind_listener(config, svc, reuseport, probe),
                                          svc.name)
            except ConfigError as exc:
                result.errors.append(exc)
                before = old.get(svc.name)
                if before is not None and before.accept in self.by_address \
                        and before.accept not in wanted:
                    result.listeners[before.accept] = (self.by_address[before.accept][0],
                                                       svc.name)
                    result.kept_old.add(svc.name)
        result.closed = [pair for addr, pair in self.by_address.items()
                         if addr not in result.listeners]
        return result

    def apply(self, result: Rebinding) -> None:
        self.by_address = dict(result.listeners)

    def discard(self, result: Rebinding) -> None:
        """Close what ``rebind`` bound, when its result is not used after all."""
        held = {id(sock) for sock, _ in self.by_address.values()}
        close_all(pair for pair in result.listeners.values() if id(pair[0]) not in held)


def rebind_workers(config: Config, old: Mapping[str, Service], sets: list[list[Listener]],
                   count: int) -> tuple[list[list[Listener]], Rebinding]:
    """The listener sets of ``count`` workers for ``config`` (blocking), from the sets of the
    workers serving until now: the first set is rebound as one process's would be (its
    result, errors included, is returned too), and every other worker gets its own
    SO_REUSEPORT socket on each of the first set's addresses -- the one it had, or a new one
    -- except unix sockets, which all share the first set's. The caller closes the sockets
    of ``sets`` that are in no new set."""
    first_old = sets[0] if sets else []
    first = Listening(first_old, old).rebind(config, old, reuseport=True, probe=True)
    new_sets = [list(first.listeners.values())]
    by_name = {svc.name: svc for svc in config.services}
    for k in range(1, count):
        own = Listening(sets[k], old) if k < len(sets) else Listening([], old)
        mine: list[Listener] = []
        for addr, (sock, name) in first.listeners.items():
            held = own.by_address.get(addr)
            if addr.is_unix:
                mine.append((sock, name))
            elif held is not None:
                mine.append((held[0], name))
            else:
                svc = old[name] if name in first.kept_old else by_name[name]
                try:
                    mine.append((bind_listener(config, svc, reuseport=True), name))
                except ConfigError as exc:  # bound once just now: rare; that worker goes without
                    first.errors.append(exc)
        new_sets.append(mine)
    return new_sets, first


def unused(old_sets: Iterable[Iterable[Listener]],
           new_sets: Iterable[Iterable[Listener]]) -> list[Listener]:
    """The listeners of ``old_sets`` that are in none of ``new_sets`` (each once)."""
    keep = {id(sock) for pairs in new_sets for sock, _ in pairs}
    seen: set[int] = set()
    gone = []
    for pairs in old_sets:
        for sock, name in pairs:
            if id(sock) not in keep and id(sock) not in seen:
                seen.add(id(sock))
                gone.append((sock, name))
    return gone
