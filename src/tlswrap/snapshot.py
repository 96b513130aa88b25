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
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING

from .backend import Dialer, Target
from .config import Address, Config, Service
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
    dialer: Dialer = field(default_factory=Dialer)
    access: AccessControl | None = None  # None: libwrap = no
    # the environment programs it runs start from: the daemon's with setEnv applied
    child_env: Mapping[str, str] = field(default_factory=dict)
    # SNI: (names, context, the secondary section's runtime or None: this one), in the order
    # certnames.choose looks; empty with one certificate and no secondary sections
    sni_routes: tuple[tuple[tuple[str, ...], SSL.Context, ServiceRuntime | None], ...] = ()
    redirect: tuple[Target, ...] = ()  # where clients failing verification go
    # client = yes: the last TLS session with each backend, to resume (this runtime's own)
    sessions: dict[str, SSL.Session] = field(default_factory=dict, compare=False)
    # a digest of the files the contexts were made from (see ``kept_across_reload``)
    inputs: bytes = b""
    limits: LimitSettings = NO_LIMITS
    files: tuple[FileId, ...] = ()  # the cert/key/CAfile identities before they were read

    @property
    def name(self) -> str:
        return self.service.name

    def for_server_name(self, name: str | None) -> ServiceRuntime:
        """The runtime serving the client's server name: a secondary (``sni =
        SERVICE:PATTERN``) section's, or this one; the same choice the SNI callback made."""
        from .certnames import choose

        if not name or not self.sni_routes:
            return self
        found = choose([(names, rt) for names, _, rt in self.sni_routes], name)
        return found or self


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
    child_env = MappingProxyType(child_environment(os.environ, config.globals.set_env))
    access = None
    if any(svc.libwrap for svc in config.services):
        from .access import AccessControl

        access = AccessControl.from_files(config.globals.hosts_allow, config.globals.hosts_deny,
                                          child_env)
    services = {}
    for svc in config.services:
        files = file_ids(svc)  # before reading: a change while reading is seen later
        # a unix socket client has no address to match: libwrap does not apply there (as in
        # stunnel); the socket file's permissions decide who connects
        unix = svc.accept is not None and svc.accept.is_unix
        rule = access if svc.libwrap and not unix else None
        limits = LimitSettings(svc.max_connections, svc.max_client_connections,
                               svc.max_client_rate, config.globals.max_handshakes)
        rt = _runtime(config, svc, rule)
        rt = replace(rt, child_env=child_env, limits=limits, files=files)
        services[svc.name] = replace(rt, inputs=_inputs_now(svc))
    return Snapshot(config, MappingProxyType(services), path)


def rebuild_tls(config: Config, rt: ServiceRuntime) -> ServiceRuntime:
    """``rt`` with its TLS contexts (and SNI routes, for a server) made again from its files,
    as at start-up; everything else kept. ConfigError (FILE:LINE) if they cannot be used."""
    files = file_ids(rt.service)  # before reading: a change while reading is seen later
    fresh = _runtime(config, rt.service, rt.access)
    return replace(rt, context=fresh.context, sni_routes=fresh.sni_routes, files=files,
                   inputs=_inputs_now(rt.service), sessions={})  # (the old context's)


def _runtime(config: Config, svc: Service, access: AccessControl | None) -> ServiceRuntime:
    from .tlscontext import client_context

    if svc.client:
        return ServiceRuntime(svc, client_context(config, svc), make_dialer(config, svc),
                              access)
    return _server_runtime(config, svc, access)


def _inputs_now(svc: Service) -> bytes:
    """``_inputs``, or b"" (never equal: not kept across a reload) if the files changed
    since the contexts read them."""
    try:
        return _inputs(svc)
    except (OSError, ValueError):
        return b""


def kept_across_reload(old: ServiceRuntime, fresh: ServiceRuntime) -> ServiceRuntime:
    """After a reload: ``fresh``, or ``old`` with ``fresh``'s access rules when the service
    and every file its TLS contexts were made from are unchanged. Keeping the contexts keeps
    their session-ticket keys and cache, so clients resume across the reload (in every
    worker: the contexts made before the fork stay shared)."""
    if old.inputs and old.inputs == fresh.inputs and old.service == fresh.service:
        return replace(old, access=fresh.access, dialer=fresh.dialer,
                       child_env=fresh.child_env, limits=fresh.limits, files=fresh.files)
    return fresh


def _inputs(svc: Service) -> bytes:
    """SHA-256 over the contents of the certificate, key, CA and CRL files of ``svc`` (and
    its sni sections) and the entries of its CApath/CRLpath (and CAstore) directories."""
    import hashlib

    from .regularfile import read_regular
    from .tlssettings import PEM_MAX_BYTES

    digest = hashlib.sha256()
    for section in (svc, *svc.sni_sections):
        files = [section.cert, section.key, section.ca_file, section.crl_file,
                 *(path for pair in section.more_certs for path in pair[:2])]
        for path in files:
            if path:
                digest.update(path.encode() + b"\0" + read_regular(path, PEM_MAX_BYTES))
        store = section.ca_store  # CAstore: a file or a directory
        if store and not os.path.isdir(store):
            digest.update(store.encode() + b"\0" + read_regular(store, PEM_MAX_BYTES))
            store = None
        for directory in (section.ca_path, section.crl_path, store):
            if directory:
                for entry in sorted(os.scandir(directory), key=lambda e: e.name):
                    st = entry.stat()
                    digest.update(f"{entry.name}\0{st.st_mtime_ns}\0{st.st_size}".encode())
    return digest.digest()


def _targets(addresses: tuple[Address, ...]) -> tuple[Target, ...]:
    return tuple(Target.from_address(a) for a in addresses)


def _server_runtime(config: Config, svc: Service, access: AccessControl | None) -> ServiceRuntime:
    """A server's runtime: its contexts (one per certificate name set), its secondary
    sections' (``sni``), and the SNI callback choosing among them."""
    from .tlscontext import server_contexts
    from .tlshooks import set_server_names
    from .tlsoptions import split_sni

    own = server_contexts(config, svc)
    routes: list[tuple[tuple[str, ...], SSL.Context, ServiceRuntime | None]] = [
        (names, ctx, None) for names, ctx in own]
    for sec in svc.sni_sections:
        sec_rt = _server_runtime(config, sec, access)
        patterns = tuple(p[1] for value in sec.sni if (p := split_sni(value)))
        routes.append((patterns, sec_rt.context, sec_rt))
    default = own[0][1]
    if len(routes) > 1 or svc.sni_strict:
        set_server_names(default, [(names, ctx) for names, ctx, _ in routes], svc.sni_strict)
    return ServiceRuntime(svc, default, make_dialer(config, svc), access,
                          sni_routes=tuple(routes) if len(routes) > 1 else (),
                          redirect=_targets(svc.redirect))


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
