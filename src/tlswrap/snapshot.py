"""Everything a connection needs, compiled once and never changed: the reload unit.

``prepare(config)`` reads certificates and keys, builds the TLS contexts, resolves numeric
backend addresses and loads the hosts files; any problem is a ConfigError with its FILE:LINE.
The result is an immutable ``Snapshot``. A reload builds a whole new one (off the event loop)
and the daemon swaps it in with one assignment on the trio thread; a connection takes the
snapshot's service once, at accept, and uses only that, so no connection ever mixes two
configurations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from .backend import Target
from .config import Config, Service
from .fileid import FileId, file_ids
from .limits import NO_LIMITS, LimitSettings

if TYPE_CHECKING:
    from OpenSSL import SSL

    from .access import AccessControl


@dataclass(frozen=True, slots=True)
class ServiceRuntime:
    """One service ready to serve: its options, TLS context, backends and access rules."""

    service: Service
    context: SSL.Context
    targets: tuple[Target, ...] = ()
    access: AccessControl | None = None  # None: libwrap = no
    limits: LimitSettings = NO_LIMITS
    files: tuple[FileId, ...] = ()  # the cert/key/CAfile identities before they were read

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


def prepare(config: Config, path: str | None = None) -> Snapshot:
    """Compile every service of ``config``; ConfigError (FILE:LINE) on the first problem."""
    from .tlscontext import server_context

    access = None
    if any(svc.libwrap for svc in config.services):
        from .access import AccessControl

        access = AccessControl.from_files(config.globals.hosts_allow, config.globals.hosts_deny)
    services = {}
    for svc in config.services:
        files = file_ids(svc)  # before reading: a change while reading is seen later
        ctx = server_context(config, svc)
        targets = tuple(Target.from_address(a) for a in svc.connect)
        # a unix socket client has no address to match: libwrap does not apply there (as in
        # stunnel); the socket file's permissions decide who connects
        unix = svc.accept is not None and svc.accept.is_unix
        limits = LimitSettings(svc.max_connections, svc.max_client_connections,
                               svc.max_client_rate, config.globals.max_handshakes)
        services[svc.name] = ServiceRuntime(svc, ctx, targets,
                                            access if svc.libwrap and not unix else None,
                                            limits, files)
    return Snapshot(config, MappingProxyType(services), path)
