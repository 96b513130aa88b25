"""SIGHUP: the configuration read and compiled again, and swapped in whole.

One serving process (``reload``) loads the file, rebinds its listeners to match it (see
``listening``) and swaps in the snapshot that results; a bad config changes nothing. A worker
only swaps its snapshot (``reload_snapshot``, ``merge_reload``): its supervisor rebinds, and
replaces the workers when the listeners or their number change (``reload_workers``).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

import trio

from .addresses import format_peer
from .config import Config, Service, load_config
from .errors import TlswrapError
from .listening import Listener, Rebinding, close_all, rebind_workers, unused
from .logsetup import NOTICE
from .privileges import reread_problems, target_identity
from .snapshot import ServiceRuntime, Snapshot, kept_across_reload, prepare

if TYPE_CHECKING:
    from .daemon import Server

log = logging.getLogger("tlswrap.daemon")


def merge_reload(old: Snapshot, new: Snapshot) -> tuple[Snapshot, list[str]]:
    """The snapshot a worker serves after a reload that does not rebind (the supervisor
    replaces the workers when the listeners change), and warnings about what does not apply.

    Services that keep their name and ``accept`` take their new settings (certificates, keys,
    TLS options, backends, timeouts, rules); a service that is gone or moved keeps its old
    settings (this process does not rebind); a new service has no listener here.
    """
    warnings = []
    services: dict[str, ServiceRuntime] = {}
    for name, rt in old.services.items():
        fresh = new.services.get(name)
        if fresh is None:
            warnings.append(f"[{name}] no longer in {new.path}: still served until a restart")
            services[name] = rt
        elif fresh.service.accept != rt.service.accept:
            warnings.append(f"[{name}] accept changed: takes effect at the next restart")
            services[name] = rt
        else:
            services[name] = kept_across_reload(rt, fresh)  # unchanged: same ticket keys
    added = [name for name in new.services if name not in old.services]
    if added:
        warnings.append(f"new service(s) {', '.join(added)}: take effect at the next restart")
    return Snapshot(new.config, MappingProxyType(services), new.path), warnings


def rebound_snapshot(old: Snapshot, new: Snapshot, served: set[str],
                     kept_old: set[str]) -> Snapshot:
    """The snapshot to serve after a reload that rebinds: each service that listens takes
    its new settings, except those in ``kept_old`` (their new address could not be bound,
    so they stay where they were, as they were); services without a listener are gone."""
    services = {name: (old.services[name] if name in kept_old
                       else kept_across_reload(old.services[name], rt)
                       if name in old.services else rt)
                for name, rt in new.services.items() if name in served}
    return Snapshot(new.config, MappingProxyType(services), new.path)


def load_snapshot(path: str) -> Snapshot:
    """Read, parse and compile a config file (blocking: certificates are read)."""
    return prepare(load_config(path), path)


def load_fresh(old: Snapshot, quiet: bool = False) -> Snapshot | None:
    """SIGHUP (blocking: certificates are read): the config file compiled again, or None
    when it cannot be (logged why: the running configuration stays). ``quiet``: log at debug
    level only (a supervisor of workers, whose workers reload and log the same)."""
    def say(level: int, msg: str, *args: object, exc: BaseException | None = None) -> None:
        log.log(logging.DEBUG if quiet else level, msg, *args, exc_info=exc)

    path = old.path
    if path is None:
        say(logging.WARNING, "SIGHUP: no config file to reload (command-line service)")
        return None
    try:
        return load_snapshot(path)
    except TlswrapError as exc:
        jail = old.config.globals.chroot
        inside = f" (chrooted to {jail}: a reload reads its files inside the jail)" if jail \
            else ""
        say(logging.ERROR, "reload failed, keeping the running configuration: %s%s", exc,
            inside)
        _log_reread_problems(old.config, logging.DEBUG if quiet else logging.ERROR)
    except Exception as exc:  # noqa: BLE001 - logged with its traceback; the old one serves on
        say(logging.ERROR, "reload failed, keeping the running configuration: %r", exc, exc=exc)
    return None


def reload_snapshot(old: Snapshot, quiet: bool = False) -> Snapshot:
    """SIGHUP without rebinding: the snapshot to serve from now on (``merge_reload``), which
    is ``old`` when the config cannot be loaded."""
    fresh = load_fresh(old, quiet)
    if fresh is None:
        return old
    merged, warnings = merge_reload(old, fresh)
    level = logging.DEBUG if quiet else logging.WARNING
    for warning in warnings:
        log.log(level, "%s", warning)
    log.log(logging.DEBUG if quiet else NOTICE, "configuration reloaded from %s", old.path)
    return merged


async def reload(server: Server) -> None:
    """SIGHUP: a new snapshot, built in a thread, swapped in whole (one assignment, on the
    trio thread); a bad config changes nothing (the error is logged). A process that owns
    its listeners (``server.listening``) also rebinds: new services start accepting, removed
    ones stop (their live connections finish), a moved ``accept`` is listened on anew."""
    listening = server.listening
    if listening is None:
        old = server.snapshot
        server.snapshot = await trio.to_thread.run_sync(reload_snapshot, old)
        server.reloaded("config", server.snapshot is not old)
        return
    old = server.snapshot
    fresh = await trio.to_thread.run_sync(load_fresh, old)
    server.reloaded("config", fresh is not None)
    if fresh is None:
        return
    before = {name: rt.service for name, rt in old.services.items()}
    result = await trio.to_thread.run_sync(listening.rebind, fresh.config, before)
    _log_rebind_errors(result, before)
    if fresh.config.globals.workers > 1:
        log.warning("workers = %d: takes effect at the next restart (started as one process)",
                    fresh.config.globals.workers)
    server.snapshot = rebound_snapshot(old, fresh, result.served, result.kept_old)
    listening.apply(result)
    for lsock, name in result.closed:
        log.log(NOTICE, "[%s] no longer listening on %s", name, _where(lsock))
        server.stop_loop(lsock)
    close_all(result.closed)
    for lsock, name in result.listeners.values():
        if server.loops.get(lsock, (None, None))[1] != name:
            if lsock in server.loops:
                server.stop_loop(lsock)
            else:
                svc = server.snapshot.services[name].service
                log.log(NOTICE, "[%s] listening on %s, relaying to %s", name, _where(lsock),
                        ", ".join(str(a) for a in svc.connect) or svc.exec)
            server.start_loop(lsock, name)
    log.log(NOTICE, "configuration reloaded from %s", old.path)


def _log_rebind_errors(result: Rebinding, before: Mapping[str, Service]) -> None:
    for exc in result.errors:
        name = exc.service
        outcome = (f"[{name}] stays on {before[name].accept} with its previous settings"
                   if name in result.kept_old else f"[{name}] is not served")
        log.error("reload: %s; %s", exc, outcome)


def reload_workers(current: Server, held: list[list[Listener]],
                   systemd_sockets: bool) -> list[list[Listener]] | None:
    """SIGHUP in the supervisor of workers (blocking): reload ``current``; None when the
    workers can reload on their own (same services at the same addresses, same number of
    workers), else the new listener sets to start new workers on (``held`` is updated and
    the listeners no longer used are closed). systemd's sockets are never rebound."""
    old = current.snapshot
    fresh = load_fresh(old, quiet=True)
    if fresh is None:
        return None  # the workers fail the same way and log why
    count = fresh.config.globals.workers
    same = ({(rt.name, rt.service.accept) for rt in old}
            == {(rt.name, rt.service.accept) for rt in fresh})
    if systemd_sockets or same:
        current.snapshot = merge_reload(old, fresh)[0]
        if count == len(held):
            return None
        new_sets = [held[0]] * count  # the same sockets, shared (systemd's), or kept
        if not systemd_sockets:
            new_sets, _ = rebind_workers(fresh.config, {rt.name: rt.service for rt in old},
                                         held, count)
    else:
        before = {rt.name: rt.service for rt in old}
        new_sets, result = rebind_workers(fresh.config, before, held, count)
        _log_rebind_errors(result, before)
        current.snapshot = rebound_snapshot(old, fresh, result.served, result.kept_old)
        kept = {id(sock) for pairs in held for sock, _ in pairs}
        for lsock, name in new_sets[0]:
            if id(lsock) not in kept:
                svc = current.snapshot.services[name].service
                log.log(NOTICE, "[%s] listening on %s, relaying to %s", name, _where(lsock),
                        ", ".join(str(a) for a in svc.connect) or svc.exec)
    gone = unused(held, new_sets)
    for lsock, name in gone:
        if not systemd_sockets:
            log.log(NOTICE, "[%s] no longer listening on %s", name, _where(lsock))
    close_all(gone)
    held[:] = new_sets
    log.log(NOTICE, "configuration reloaded from %s: %s", old.path,
            f"{count} new workers replace the old ones" if count != 1
            else "a new worker replaces the old ones")
    return new_sets


def _where(lsock: socket.socket) -> str:
    try:
        return format_peer(lsock.getsockname())
    except OSError:
        return "a closed socket"


def _log_reread_problems(config: Config, level: int) -> None:
    """After a failed reload: the files the dropped user cannot read, if that is why."""
    try:
        ident = target_identity(config)
    except TlswrapError:
        return
    for svc in config.services:
        for option, problem in reread_problems(svc, ident):
            log.log(level, "%s", config.error(problem, option, svc))
