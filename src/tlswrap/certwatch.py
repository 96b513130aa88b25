"""Certificates reload themselves: the files a service's TLS context was built from are watched.

General theory of operation: when a snapshot is compiled (``snapshot.prepare``) the identity of
each file a service's TLS contexts are made from (``fileid.watched``: every ``cert`` and
``key``, its ``sni`` sections' too, ``CAfile``, ``CRLfile``, the ``CApath`` and ``CRLpath``
directories) -- device, inode, size, modification and change times, as ``stat`` gives them,
symlinks followed -- is taken *before* the file is read and kept in the service's runtime.
``watch`` compares those identities with the files every ``CHECK_INTERVAL`` seconds (a few
``stat`` calls, off the event loop; no busy polling). A service whose files differ gets new TLS
contexts (a client's, or a server's with its SNI routes), built as at start-up; when that works
the service's runtime is replaced in a new snapshot, swapped in at once (new connections get
the new certificate; live ones keep theirs), and the log names the certificate now served
(subject, serial, not-after). When it fails -- a file half written, a key that does not match
the certificate, a file gone -- the old context stays, the log says why once for those
identities, and the next change is tried again: a renewal that writes the certificate and then
the key (``certbot``, ``wrapcert`` in place) is picked up once both are there, and an atomic
rename is picked up at once. A reload (SIGHUP) compiles everything and takes new identities, so
the two never fight; a replacement worker that starts from an older snapshot sees the
difference and catches up within one interval.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import MappingProxyType

import trio

from .config import Config
from .errors import ConfigError
from .fileid import FileId, file_ids
from .logsetup import NOTICE
from .snapshot import ServiceRuntime, Snapshot, rebuild_tls

log = logging.getLogger("tlswrap.certwatch")

CHECK_INTERVAL = 3.0  # seconds between two looks at the files: a renewal is served within it


def reload_service(config: Config, rt: ServiceRuntime) -> ServiceRuntime:
    """``rt`` with a TLS context built again from its files (blocking); ConfigError (at the
    option's line) if they cannot be used."""
    return rebuild_tls(config, rt)


def certificate_summary(path: str) -> str:
    """``subject CN=mail.example.org, serial 0x1f..., not after 2027-03-01 12:00:00 UTC`` for
    the first certificate in ``path``; what went wrong, if it cannot be read."""
    from cryptography import x509

    from .tlscontext import read_pem_file

    try:
        cert = x509.load_pem_x509_certificate(read_pem_file(path))
    except (OSError, ValueError) as exc:
        return f"unreadable now ({exc})"
    return (f"subject {cert.subject.rfc4514_string()}, serial {cert.serial_number:#x}, "
            f"not after {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC")


def log_served(rt: ServiceRuntime, how: str = "serving") -> None:
    """One line naming the certificate ``rt`` serves."""
    if rt.service.cert:
        log.log(NOTICE, "[%s] %s certificate %s: %s", rt.name, how, rt.service.cert,
                certificate_summary(rt.service.cert))


def changed(snapshot: Snapshot) -> list[tuple[ServiceRuntime, tuple[FileId, ...]]]:
    """The services whose files differ from those their context was built from, with the
    identities now (blocking: stat)."""
    found = []
    for rt in snapshot:
        now = file_ids(rt.service)
        if now != rt.files:
            found.append((rt, now))
    return found


async def watch(current: Callable[[], Snapshot], swap: Callable[[Snapshot], None],
                counted: Callable[[str, bool], None] = lambda what, ok: None,
                interval: float = CHECK_INTERVAL) -> None:
    """Forever: every ``interval`` seconds, rebuild the services whose files changed and
    ``swap`` in the snapshot that has them (see the module docstring); ``counted`` is told
    of each attempt (``"certificate"``, whether it worked)."""
    failed: dict[str, tuple[FileId, ...]] = {}  # service -> identities already refused
    while True:
        await trio.sleep(interval)
        snap = current()
        for rt, ids in await trio.to_thread.run_sync(changed, snap):
            if failed.get(rt.name) == ids:
                continue
            try:
                fresh = await trio.to_thread.run_sync(reload_service, snap.config, rt)
            except ConfigError as exc:
                failed[rt.name] = ids
                counted("certificate", False)
                log.error("[%s] certificate files changed but cannot be used; still serving "
                          "the previous ones: %s", rt.name, exc)
                continue
            failed.pop(rt.name, None)
            counted("certificate", True)
            if current() is not snap:
                break  # a reload swapped in a whole new snapshot meanwhile: look again later
            services = dict(snap.services)
            services[rt.name] = fresh
            snap = Snapshot(snap.config, MappingProxyType(services), snap.path)
            swap(snap)
            await trio.to_thread.run_sync(log_served, fresh, "now serving")
