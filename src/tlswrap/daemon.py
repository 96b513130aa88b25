"""The standalone daemon: validate everything, bind, drop privileges, serve, drain on SIGTERM.

Start-up order (each step can fail with a FILE:LINE message, and nothing is left listening):
parse the config -> compile a snapshot (certificates and keys read here, while still root)
-> bind every listener -> detach unless in the foreground or under systemd -> write the pid
file (still root, and the pid of the process that serves) -> drop to setgid/setuid -> serve.
A detached start reports back to the starting process, which exits 0 only then.

The live configuration is one immutable ``Snapshot`` held by ``Server``; SIGHUP builds a new
one off the event loop and swaps it in with one assignment.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import stat
from collections.abc import AsyncIterator, Iterable
from types import MappingProxyType
from typing import Any, NoReturn

import trio

from . import __version__, pidfile, systemd
from .addresses import format_peer
from .config import Config, Service, load_config
from .errors import ConfigError, TlswrapError
from .limits import Limiter
from .logsetup import NOTICE, setup_logging
from .pipeline import serve_guarded
from .privileges import drop_privileges, key_file_findings, reread_problems, target_identity
from .snapshot import ServiceRuntime, Snapshot, prepare
from .sockstream import set_socket_options

log = logging.getLogger("tlswrap.daemon")

ACCEPT_BATCH = 64     # accepts in a row before letting other tasks run
ACCEPT_RETRY = 0.1    # pause after an accept error that may pass
# The process is out of something for now: pause, log once, accept again when it is back.
_TRANSIENT_ACCEPT = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
# The socket is not (or no longer) a listener: accepting again can never work.
_DEAD_LISTENER = {errno.EBADF, errno.ENOTSOCK, errno.EINVAL, errno.EOPNOTSUPP}

Listener = tuple[socket.socket, str]  # a listening socket and the name of its service


class Server:
    """One serving process's live state: the current snapshot, replaced whole on reload, and
    the live counts the limits are checked against, which a reload keeps."""

    __slots__ = ("limiter", "snapshot")

    def __init__(self, snapshot: Snapshot):
        self.snapshot = snapshot
        self.limiter = Limiter()


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
        set_socket_options(sock, svc.socket_options, "l")
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
        set_socket_options(sock, svc.socket_options, "l")
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


def daemonize() -> int:
    """Detach from the terminal (double fork) and return, in the daemon, the write end of a
    pipe to the starting process. That process waits on the pipe: it exits 0 once the daemon
    writes ``ok`` (:func:`started`), or prints what the daemon wrote instead (or that it
    ended) and exits 1 -- so no start-up failure after the fork passes as a success."""
    report_r, report_w = os.pipe()
    first = os.fork()
    if first > 0:
        os.close(report_w)
        _await_daemon(report_r, first)
    os.close(report_r)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    return report_w


def _await_daemon(report_r: int, first: int) -> NoReturn:
    chunks = []
    while chunk := os.read(report_r, 4096):
        chunks.append(chunk)
    os.waitpid(first, 0)
    message = b"".join(chunks).decode("utf-8", "replace")
    if message == "ok":
        os._exit(0)
    os.write(2, f"tlswrap: {message or 'the daemon ended while starting'}\n".encode())
    os._exit(1)


def started(report_w: int | None, problem: str | None = None) -> None:
    """Tell the process waiting in :func:`daemonize` how the start went (None: nobody waits)."""
    if report_w is None:
        return
    try:
        os.write(report_w, (problem or "ok").encode("utf-8", "replace"))
    except OSError:
        pass  # the starting process is gone: nobody to tell
    finally:
        os.close(report_w)


def write_pid(config: Config) -> None:
    path = config.globals.pid
    if not path:
        return
    try:
        pidfile.write(path, os.getpid())
    except pidfile.PidFileError as exc:
        raise config.error(f"pid = {path}: cannot write the pid file: {exc}", "pid") from None


async def accept_loop(lsock: socket.socket, name: str, server: Server,
                      nursery: trio.Nursery) -> None:
    """Accept and hand each connection, with the service as it is now, to its own guarded
    task. Back off (logging once) while the process is out of descriptors or memory; stop
    (logging once) if the socket is no longer a listener."""
    accept = lsock.accept
    # a unix client has no address: its log lines (and the access check, skipped on unix
    # listeners as stunnel does) see the listener's path instead
    unix_path = lsock.getsockname() if lsock.family == socket.AF_UNIX else None
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
                              name, error.strerror)
                    starved = True
                await trio.sleep(ACCEPT_RETRY)
            elif error.errno in _DEAD_LISTENER:
                log.error("[%s] accept: %s: the listening socket is gone; this service "
                          "stops accepting", name, error.strerror)
                return
            elif error.errno != errno.ECONNABORTED:
                log.error("[%s] accept: %s", name, error)
                await trio.sleep(ACCEPT_RETRY)
            continue
        if starved:
            log.log(NOTICE, "[%s] accepting again", name)
            starved = False
        if unix_path is not None:
            peer = unix_path
        else:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass  # the client may already be gone
        rt = server.snapshot.services.get(name)
        if rt is None:  # cannot happen: a reload keeps every listened service
            sock.close()
        else:
            nursery.start_soon(serve_guarded, rt, sock, peer, nursery, server.limiter)
        batch += 1
        if batch >= ACCEPT_BATCH:
            batch = 0
            await trio.lowlevel.checkpoint()


def merge_reload(old: Snapshot, new: Snapshot) -> tuple[Snapshot, list[str]]:
    """The snapshot to serve after a reload, and warnings about what waits for a restart.

    Services that keep their name and ``accept`` take their new settings (certificates, keys,
    TLS options, backends, timeouts, rules); a service that is gone or moved keeps its old
    settings (its listener is not rebound); a new service waits for a restart.
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
            services[name] = fresh
    added = [name for name in new.services if name not in old.services]
    if added:
        warnings.append(f"new service(s) {', '.join(added)}: take effect at the next restart")
    return Snapshot(new.config, MappingProxyType(services), new.path), warnings


def load_snapshot(path: str) -> Snapshot:
    """Read, parse and compile a config file (blocking: certificates are read)."""
    return prepare(load_config(path), path)


def reload_snapshot(old: Snapshot, quiet: bool = False) -> Snapshot:
    """SIGHUP (blocking: certificates are read): the snapshot to serve from now on, which is
    ``old`` when the config cannot be loaded (logged why). ``quiet``: log at debug level only
    (a supervisor of workers, whose workers reload and log the same)."""
    def say(level: int, msg: str, *args: object, exc: BaseException | None = None) -> None:
        log.log(logging.DEBUG if quiet else level, msg, *args, exc_info=exc)

    path = old.path
    if path is None:
        say(logging.WARNING, "SIGHUP: no config file to reload (command-line service)")
        return old
    try:
        fresh = load_snapshot(path)
    except TlswrapError as exc:
        say(logging.ERROR, "reload failed, keeping the running configuration: %s", exc)
        _log_reread_problems(old.config, logging.DEBUG if quiet else logging.ERROR)
        return old
    except Exception as exc:  # noqa: BLE001 - logged with its traceback; the old one serves on
        say(logging.ERROR, "reload failed, keeping the running configuration: %r", exc, exc=exc)
        return old
    merged, warnings = merge_reload(old, fresh)
    for warning in warnings:
        say(logging.WARNING, "%s", warning)
    say(NOTICE, "configuration reloaded from %s", path)
    return merged


async def reload(server: Server) -> None:
    """SIGHUP: a new snapshot, built in a thread, swapped in whole (one assignment, on the
    trio thread); a bad config changes nothing (the error is logged)."""
    server.snapshot = await trio.to_thread.run_sync(reload_snapshot, server.snapshot)


async def serve(listeners: list[Listener], snapshot: Snapshot, notify: bool = True,
                task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve until SIGTERM/SIGINT, then stop accepting and drain (bounded). SIGHUP reloads.

    ``notify``: tell systemd (READY, RELOADING, STOPPING); a supervisor of workers does that
    itself, as the main process.
    """
    server = Server(snapshot)
    try:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async with trio.open_nursery() as conns:
                async with trio.open_nursery() as accepting:
                    for lsock, name in listeners:
                        accepting.start_soon(accept_loop, lsock, name, server, conns)
                    task_status.started(server)
                    if notify:
                        systemd.notify("READY=1")
                    await _until_stopped(signals, server, notify)
                    accepting.cancel_scope.cancel()
                close_listeners(listeners)
                drain = server.snapshot.config.globals.timeout_drain  # TIMEOUTdrain
                conns.cancel_scope.deadline = trio.current_time() + drain
    finally:
        close_listeners(listeners)
    log.log(NOTICE, "tlswrap stopped")


async def _until_stopped(signals: AsyncIterator[int], server: Server, notify: bool) -> None:
    """Reload on each SIGHUP; return at the first SIGTERM or SIGINT."""
    async for signum in signals:
        if signum == signal.SIGHUP:
            if notify:
                systemd.notify("RELOADING=1")
            await reload(server)
            if notify:
                systemd.notify("READY=1")
            continue
        log.log(NOTICE, "%s received: no new connections; draining",
                signal.Signals(signum).name)
        if notify:
            systemd.notify("STOPPING=1")
        return


def close_listeners(listeners: Iterable[Listener]) -> None:
    """Stop listening (waking any task parked on these sockets); safe to repeat."""
    for lsock, _ in listeners:
        if lsock.fileno() != -1:
            trio.lowlevel.notify_closing(lsock)
            lsock.close()


def run(config_path: str) -> int:
    """The ``tlswrap CONFIG`` entry: returns the exit status."""
    return run_config(load_config(config_path), config_path)


def adopt(config: Config, snapshot: Snapshot, fds: list[tuple[int, str]]) -> list[Listener]:
    """Give systemd's listening sockets to services: by FileDescriptorName, then in order;
    services left without one bind their own ``accept``."""
    socks = {fd: socket.socket(fileno=fd) for fd, _ in fds}
    for s in socks.values():
        s.setblocking(False)
    by_name = {name: fd for fd, name in fds if name}
    unnamed = [fd for fd, name in fds if not name or name not in snapshot.services]
    pairs: list[Listener] = []
    leftover: list[Service] = []
    for rt in snapshot:
        fd = by_name.pop(rt.name, None)
        if fd is None and unnamed:
            fd = unnamed.pop(0)
        if fd is None:
            leftover.append(rt.service)
        else:
            pairs.append((socks[fd], rt.name))
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
    snapshot = prepare(config, config_path)
    passed = systemd.listen_fds(os.environ, os.getpid())
    under_systemd = bool(passed) or systemd.notify_socket() is not None
    systemd.forget_activation_env()
    conn_fd = None
    if len(passed) == 1 and not systemd.is_listening(passed[0][0]):
        conn_fd = passed[0][0]
    elif not passed and all(rt.service.accept is None for rt in snapshot):
        conn_fd = 0
    if conn_fd is not None:
        if len(snapshot) != 1:
            raise config.error(f"one connection to serve (inetd mode) but {len(snapshot)} "
                               "services: keep one, or give each an 'accept'")
        from .inetd import serve_connection

        return serve_connection(config, next(iter(snapshot)), conn_fd)
    many = g.workers > 1
    if passed:
        # systemd's sockets are shared: every worker accepts on the same ones
        listeners = adopt(config, snapshot, passed)
        worker_sets = [listeners] * g.workers
    else:
        worker_sets = []
        try:
            worker_sets.append(bind_all(config, config.services, reuseport=many, probe=many))
            # unix sockets have no SO_REUSEPORT: every worker accepts on the one socket
            shared = [pair for pair in worker_sets[0] if pair[0].family == socket.AF_UNIX]
            tcp = [svc for svc in config.services
                   if svc.accept is not None and not svc.accept.is_unix]
            for _ in range(1, g.workers):
                worker_sets.append(bind_all(config, tcp, reuseport=True) + shared)
        except BaseException:
            for bound in worker_sets:
                close_all(bound)
            raise
        listeners = [pair for bound in worker_sets for pair in bound]
    report_w = None
    try:
        syslog = g.syslog if g.syslog is not None else not g.foreground
        setup_logging(g.debug, stderr=g.foreground, output=g.output, syslog=syslog,
                      facility=g.facility)
        _warn_key_files(config)
        if not g.foreground and not under_systemd:
            report_w = daemonize()  # under systemd the started process is the main pid
        try:
            write_pid(config)  # as root, and the pid of the process that serves
            drop_privileges(config)
        except BaseException as exc:
            started(report_w, str(exc) if isinstance(exc, TlswrapError) else repr(exc))
            raise
        for lsock, name in worker_sets[0]:
            svc = snapshot.services[name].service
            log.log(NOTICE, "[%s] listening on %s, relaying to %s", name,
                    format_peer(lsock.getsockname()),
                    ", ".join(str(a) for a in svc.connect) or svc.exec)
        log.log(NOTICE, "tlswrap %s started with %d service(s)%s", __version__, len(snapshot),
                f", {g.workers} workers" if many else "")
        started(report_w)
        if many:
            from .workers import supervise

            current = Server(snapshot)  # replaced on SIGHUP; a replacement worker starts on it

            def reload_here() -> None:
                current.snapshot = reload_snapshot(current.snapshot, quiet=True)

            supervise(worker_sets, lambda own: trio.run(serve, own, current.snapshot, False),
                      notify=systemd.notify, reload=reload_here,
                      drain=lambda: current.snapshot.config.globals.timeout_drain)
        else:
            trio.run(serve, listeners, snapshot)
    finally:
        close_all(listeners)
        remove_socket_files(config)
        if g.pid:
            pidfile.remove(g.pid, os.getpid())
    return 0


def _warn_key_files(config: Config) -> None:
    """Key modes, and files a reload (as the ``setuid`` user) could not read again: at their
    lines, before the drop."""
    ident = target_identity(config)
    for svc in config.services:
        for option, problem in key_file_findings(svc, ident):
            log.warning("%s", config.error(problem, option, svc))


def _log_reread_problems(config: Config, level: int) -> None:
    """After a failed reload: the files the dropped user cannot read, if that is why."""
    try:
        ident = target_identity(config)
    except TlswrapError:
        return
    for svc in config.services:
        for option, problem in reread_problems(svc, ident):
            log.log(level, "%s", config.error(problem, option, svc))
