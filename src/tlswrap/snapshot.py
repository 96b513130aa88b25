"""Everything a connection needs, compiled once and never changed: the reload unit.

``prepare(config)`` reads certificates and keys, builds the TLS contexts, resolves numeric
backend addresses and loads the hosts files; any problem is a ConfigError with its FILE:LINE.
The result is an immutable ``Snapshot``. A reload builds a whole new one (off the event loop)
and the daemon swaps it in with one assignment on the trio thread; a connection takes the
snapshot's service once, at accept, and uses only that, so no connection ever mixes two
configurations.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

from .backend import Dialer, Target
from .config import Config, Service

if TYPE_CHECKING:
    from OpenSSL import SSL

    from .access import AccessControl


@dataclass(frozen=True, slots=True)
class ServiceRuntime:
    """One service ready to serve: its options, TLS context, backends and access rules."""

    service: Service
    context: SSL.Context
    dialer: Dialer = field(default_factory=Dialer)
    access: AccessControl | None = None  # None: libwrap = no
    # the environment programs it runs start from: the daemon's with setEnv applied
    child_env: Mapping[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.service.name


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A whole configuration, compiled: services by name, in file order."""

    config: Config
    services: Mapping[str, ServiceRuntime]
    path: str | None = None  # the file it was read from (None: the command line)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.services.values())

    def __len__(self) -> int:
        return len(self.services)


def child_environment(base: Mapping[str, str],
                      set_env: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """``base`` with stunnel's ``setEnv`` lines applied in order: NAME=VALUE sets, a NAME
    without a value (or with an empty one) removes, as stunnel's setenv/unsetenv."""
    env = dict(base)
    for name, value in set_env:
        if value:
            env[name] = value
        else:
            env.pop(name, None)
    return env


def prepare(config: Config, path: str | None = None) -> Snapshot:
    """Compile every service of ``config``; ConfigError (FILE:LINE) on the first problem."""
    from .tlscontext import server_context

    child_env = MappingProxyType(child_environment(os.environ, config.globals.set_env))
    access = None
    if any(svc.libwrap for svc in config.services):
        from .access import AccessControl

        access = AccessControl.from_files(config.globals.hosts_allow, config.globals.hosts_deny,
                                          child_env)
    services = {}
    for svc in config.services:
        ctx = server_context(config, svc)
        dialer = make_dialer(config, svc)
        # a unix socket client has no address to match: libwrap does not apply there (as in
        # stunnel); the socket file's permissions decide who connects
        unix = svc.accept is not None and svc.accept.is_unix
        services[svc.name] = ServiceRuntime(svc, ctx, dialer,
                                            access if svc.libwrap and not unix else None,
                                            child_env)
    return Snapshot(config, MappingProxyType(services), path)


def make_dialer(config: Config, svc: Service) -> Dialer:
    """The service's backend targets, resolved now unless ``delay = yes``, with its remote
    socket options, ``local`` source address, ``transparent`` and ``failover`` choice."""
    import socket

    targets = tuple(Target.from_address(a, resolve=not svc.delay) for a in svc.connect)
    local: dict[int, object] = {}
    if svc.local is not None:
        try:
            infos = socket.getaddrinfo(svc.local, 0, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
        except (OSError, UnicodeError) as exc:
            raise config.error(f"local = {svc.local}: cannot resolve: "
                               f"{getattr(exc, 'strerror', None) or exc}", "local", svc) from None
        for family, _, _, _, sockaddr in infos:
            local.setdefault(family, sockaddr)
    transparent = svc.transparent == "source"
    if transparent and config.globals.setuid is not None:
        raise config.error("transparent = source: binding to the client's address needs "
                           "CAP_NET_ADMIN, which setuid drops (stunnel says the same: run as "
                           "root without setuid)", "transparent", svc)
    return Dialer(targets, tuple(o for o in svc.socket_options if o.role == "r"), local,
                  transparent, rotate=svc.failover == "rr" and not svc.delay)
