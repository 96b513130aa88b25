"""The standalone daemon: validate everything, bind, drop privileges, serve, drain on SIGTERM.

Start-up order (each step can fail with a FILE:LINE message, and nothing is left listening):
parse the config -> build every TLS context (certificates and keys read here, while still root)
-> bind every listener -> drop to setgid/setuid -> detach unless in the foreground -> serve.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import sys
from typing import Iterable

import trio

from . import __version__, systemd
from .backend import Target
from .config import Config, Service, parse_config
from .errors import ConfigError, TlswrapError
from .logsetup import NOTICE, setup_logging
from .service import Runtime, format_peer
from .sockstream import set_socket_options
from .tlscontext import key_file_warning, server_context

log = logging.getLogger("tlswrap.daemon")

DRAIN_SECONDS = 10.0  # how long live connections may finish after SIGTERM before they are cut
ACCEPT_BATCH = 64     # accepts in a row before letting other tasks run
_TRANSIENT_ACCEPT = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


def load_config(path: str) -> Config:
    """Read and parse a config file (the pure parser does the work)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(path, None, f"cannot read config: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(path, None, f"not UTF-8 text: {exc.reason}") from None
    return parse_config(text, path)


def prepare(config: Config) -> list[Runtime]:
    """Compile every service: TLS context, backend targets. ConfigError on any problem."""
    access = None
    if any(svc.libwrap for svc in config.services):
        from .access import AccessControl
        from .tcpwrappers import HostsFiles

        hosts = HostsFiles(config.globals.hosts_allow, config.globals.hosts_deny)
        hosts.load_strict()  # a syntax error in a hosts file stops the start, with FILE:LINE
        access = AccessControl(hosts)
    runtimes = []
    for svc in config.services:
        ctx = server_context(config, svc)
        targets = tuple(Target.from_address(a) for a in svc.connect)
        runtimes.append(Runtime(svc, ctx, targets, access if svc.libwrap else None))
    return runtimes


def bind_listener(config: Config, svc: Service, reuseport: bool = False) -> socket.socket:
    addr = svc.accept
    assert addr is not None and addr.host is not None
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
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport:  # only for our own workers: otherwise "in use" must be an error
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        set_socket_options(sock, svc.socket_options, "l")
        sock.bind(sockaddr)
        sock.listen(socket.SOMAXCONN)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise config.error(f"accept = {addr}: cannot listen: {exc.strerror}",
                           "accept", svc) from None
    return sock


def bind_all(config: Config, runtimes: Iterable[Runtime],
             reuseport: bool = False) -> list[tuple[socket.socket, Runtime]]:
    bound: list[tuple[socket.socket, Runtime]] = []
    try:
        for rt in runtimes:
            if rt.service.accept is None:
                raise config.error("no 'accept': where should this service listen?",
                                   None, rt.service)
            bound.append((bind_listener(config, rt.service, reuseport), rt))
    except BaseException:
        for sock, _ in bound:
            sock.close()
        raise
    return bound


def drop_privileges(config: Config) -> None:
    """setgid/setuid as configured; refuse to go on as root when a user was asked for."""
    g = config.globals
    if g.setgid is None and g.setuid is None:
        return
    import grp
    import pwd

    gid = uid = None
    try:
        if g.setgid is not None:
            gid = int(g.setgid) if g.setgid.isdigit() else grp.getgrnam(g.setgid).gr_gid
        if g.setuid is not None:
            pw = pwd.getpwuid(int(g.setuid)) if g.setuid.isdigit() else pwd.getpwnam(g.setuid)
            uid = pw.pw_uid
            if gid is None:
                gid = pw.pw_gid
    except KeyError as exc:
        raise config.error(f"no such user or group: {exc.args[0]}",
                           "setuid" if g.setuid else "setgid") from None
    try:
        if gid is not None:
            os.setgroups([gid])
            os.setgid(gid)
        if uid is not None:
            os.setuid(uid)
    except PermissionError:
        raise config.error("cannot change user/group (not started as root?)",
                           "setuid" if g.setuid else "setgid") from None
    if uid is not None and uid != 0 and (os.getuid() == 0 or os.geteuid() == 0):
        raise TlswrapError("still running as root after setuid; refusing to serve")


def daemonize(pid_file: str | None) -> None:
    """Detach from the terminal (double fork); the parent exits 0 once the child is set up."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)


def write_pid(path: str | None) -> None:
    if path:
        with open(path, "w") as f:
            f.write(f"{os.getpid()}\n")


async def accept_loop(lsock: socket.socket, rt: Runtime, nursery: trio.Nursery) -> None:
    """Accept and hand each connection to its own task; back off (logging once) while the
    process is out of descriptors or memory."""
    accept = lsock.accept
    handle = rt.handle
    batch = 0
    starved = False
    while True:
        error = None
        try:
            sock, peer = accept()
        except BlockingIOError:
            sock = None
        except OSError as exc:
            sock, error = None, exc
        if sock is None:  # park outside the except clauses
            if error is None:
                batch = 0
                await trio.lowlevel.wait_readable(lsock)
            elif error.errno in _TRANSIENT_ACCEPT:
                if not starved:
                    log.error("[%s] accept: %s; pausing until descriptors are free",
                              rt.name, error.strerror)
                    starved = True
                await trio.sleep(0.1)
            elif error.errno != errno.ECONNABORTED:
                log.error("[%s] accept: %s", rt.name, error)
                await trio.sleep(0.1)
            continue
        if starved:
            log.log(NOTICE, "[%s] accepting again", rt.name)
            starved = False
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # the client may already be gone; the handler will find out
        nursery.start_soon(handle, sock, peer)
        batch += 1
        if batch >= ACCEPT_BATCH:
            batch = 0
            await trio.lowlevel.checkpoint()


def reload_runtimes(path: str, runtimes: list[Runtime]) -> None:
    """SIGHUP: re-read the config and certificates into the running services.

    Certificates, keys, TLS settings, backends and timeouts of services that keep their name
    and ``accept`` change for new connections; live connections keep what they started with.
    Listeners are not rebound (that needs a restart). An invalid new config changes nothing.
    """
    config = load_config(path)
    fresh = {rt.name: rt for rt in prepare(config)}
    for rt in runtimes:
        new = fresh.get(rt.name)
        if new is None:
            log.warning("[%s] no longer in %s: still served until a restart", rt.name, path)
        elif new.service.accept != rt.service.accept:
            log.warning("[%s] accept changed: takes effect at the next restart", rt.name)
        else:
            rt.service, rt.context, rt.targets, rt.access = (
                new.service, new.context, new.targets, new.access)
    added = set(fresh) - {rt.name for rt in runtimes}
    if added:
        log.warning("new service(s) %s: take effect at the next restart", ", ".join(sorted(added)))


async def serve(listeners: list[tuple[socket.socket, Runtime]], config_path: str | None = None,
                task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve until SIGTERM/SIGINT, then stop accepting and drain (bounded). SIGHUP reloads."""
    runtimes = list({id(rt): rt for _, rt in listeners}.values())
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async with trio.open_nursery() as conns:
            async with trio.open_nursery() as accepting:
                for lsock, rt in listeners:
                    rt.nursery = conns
                    accepting.start_soon(accept_loop, lsock, rt, conns)
                task_status.started()
                systemd.notify("READY=1")
                async for signum in signals:
                    if signum == signal.SIGHUP:
                        await _reload(config_path, runtimes)
                        continue
                    log.log(NOTICE, "%s received: no new connections; draining",
                            signal.Signals(signum).name)
                    systemd.notify("STOPPING=1")
                    accepting.cancel_scope.cancel()
                    break
            for lsock, _ in listeners:
                trio.lowlevel.notify_closing(lsock)
                lsock.close()
            conns.cancel_scope.deadline = trio.current_time() + DRAIN_SECONDS
    log.log(NOTICE, "tlswrap stopped")


async def _reload(config_path: str | None, runtimes: list[Runtime]) -> None:
    if config_path is None:
        log.warning("SIGHUP: no config file to reload (command-line service)")
        return
    systemd.notify("RELOADING=1")
    try:
        await trio.to_thread.run_sync(reload_runtimes, config_path, runtimes)
    except TlswrapError as exc:
        log.error("reload failed, keeping the running configuration: %s", exc)
    else:
        log.log(NOTICE, "configuration reloaded from %s", config_path)
    systemd.notify("READY=1")


def run(config_path: str) -> int:
    """The ``tlswrap CONFIG`` entry: returns the exit status."""
    return run_config(load_config(config_path), config_path)


def _adopt(config: Config, runtimes: list[Runtime],
           fds: list[tuple[int, str]]) -> list[tuple[socket.socket, Runtime]]:
    """Give systemd's listening sockets to services: by FileDescriptorName, then in order."""
    socks = {fd: socket.socket(fileno=fd) for fd, _ in fds}
    for s in socks.values():
        s.setblocking(False)
    by_name = {name: fd for fd, name in fds if name}
    unnamed = [fd for fd, name in fds if not name or name not in {r.name for r in runtimes}]
    pairs: list[tuple[socket.socket, Runtime]] = []
    leftover: list[Runtime] = []
    for rt in runtimes:
        fd = by_name.pop(rt.name, None)
        if fd is None and unnamed:
            fd = unnamed.pop(0)
        if fd is None:
            leftover.append(rt)
        else:
            pairs.append((socks[fd], rt))
    for fd in unnamed:
        log.warning("socket-activated descriptor %d matches no service; ignored", fd)
    return pairs + bind_all(config, leftover)


def run_config(config: Config, config_path: str | None = None) -> int:
    """Serve ``config`` in whichever way this process was started:

    - systemd ``Accept=no`` (LISTEN_FDS listening sockets): a daemon on those sockets;
    - systemd ``Accept=yes`` (one connected socket as fd 3) or inetd ``nowait`` (the connection
      on fd 0, when no service has ``accept``): serve that one connection and exit;
    - otherwise a daemon on the configured ``accept`` addresses.
    """
    g = config.globals
    runtimes = prepare(config)
    passed = systemd.listen_fds(os.environ, os.getpid())
    systemd.forget_activation_env()
    conn_fd = None
    if len(passed) == 1 and not systemd.is_listening(passed[0][0]):
        conn_fd = passed[0][0]
    elif not passed and all(rt.service.accept is None for rt in runtimes):
        conn_fd = 0
    if conn_fd is not None:
        if len(runtimes) != 1:
            raise config.error(f"one connection to serve (inetd mode) but {len(runtimes)} "
                               "services: keep one, or give each an 'accept'")
        return serve_connection(config, runtimes[0], conn_fd)
    many = g.workers > 1
    if passed:
        listeners = _adopt(config, runtimes, passed)
        worker_sets = [listeners] * g.workers
    else:
        worker_sets = []
        try:
            for _ in range(g.workers):
                worker_sets.append(bind_all(config, runtimes, reuseport=many))
        except BaseException:
            for bound in worker_sets:
                for lsock, _ in bound:
                    lsock.close()
            raise
        listeners = [pair for bound in worker_sets for pair in bound]
    try:
        syslog = g.syslog if g.syslog is not None else not g.foreground
        setup_logging(g.debug, stderr=g.foreground, output=g.output, syslog=syslog,
                      facility=g.facility)
        _warn_key_modes(runtimes)
        drop_privileges(config)
        if not g.foreground and not passed:
            daemonize(g.pid)
        write_pid(g.pid)
        for lsock, rt in worker_sets[0]:
            log.log(NOTICE, "[%s] listening on %s, relaying to %s", rt.name,
                    format_peer(lsock.getsockname()),
                    ", ".join(str(a) for a in rt.service.connect) or rt.service.exec)
        log.log(NOTICE, "tlswrap %s started with %d service(s)%s", __version__, len(runtimes),
                f", {g.workers} workers" if many else "")
        if many:
            from .workers import supervise

            supervise(worker_sets, lambda own: trio.run(serve, own, config_path))
        else:
            trio.run(serve, listeners, config_path)
    finally:
        for lsock, _ in listeners:
            lsock.close()
        if g.pid:
            try:
                os.unlink(g.pid)
            except OSError:
                pass
    return 0


def _warn_key_modes(runtimes: list[Runtime]) -> None:
    for rt in runtimes:
        key = rt.service.key or rt.service.cert
        warning = key_file_warning(key) if key else None
        if warning:
            log.warning("[%s] %s", rt.name, warning)


def serve_connection(config: Config, rt: Runtime, fd: int) -> int:
    """inetd ``nowait`` / systemd ``Accept=yes``: serve the connection on ``fd``, then exit.

    The connection is moved off descriptors 0 and 1 (which become /dev/null), so that closing it
    really closes it. Logs go to syslog, or ``output``; to stderr only in the foreground and when
    stderr is not the connection itself (inetd hands the socket as 0, 1 and 2).
    """
    g = config.globals
    if not _is_socket(fd):
        raise TlswrapError(
            f"descriptor {fd} is not a connection: with no 'accept' (or -d/--accept) tlswrap "
            "serves the one connection inetd or systemd hands it; to listen itself, give an "
            "accept address")
    conn = socket.socket(fileno=os.dup(fd))
    devnull = os.open(os.devnull, os.O_RDWR)
    for std in {0, 1, fd} | ({2} if _is_socket(2) else set()):
        os.dup2(devnull, std)
    os.close(devnull)
    stderr_ok = g.foreground and not _is_socket(2)
    syslog = g.syslog if g.syslog is not None else not stderr_ok
    setup_logging(g.debug, stderr=stderr_ok, output=g.output, syslog=syslog,
                  facility=g.facility, ident=rt.name)
    drop_privileges(config)
    try:
        peer = conn.getpeername()
    except OSError as exc:
        log.warning("[%s] inetd connection already gone: %s", rt.name, exc.strerror)
        conn.close()
        return 0

    async def one() -> None:
        async with trio.open_nursery() as nursery:
            rt.nursery = nursery
            await rt.handle(conn, peer)

    trio.run(one)
    return 0


def _is_socket(fd: int) -> bool:
    import stat

    try:
        return stat.S_ISSOCK(os.fstat(fd).st_mode)
    except OSError:
        return False


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run(sys.argv[1]))
