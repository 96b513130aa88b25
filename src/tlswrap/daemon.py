"""The standalone daemon: validate everything, bind, drop privileges, serve, drain on SIGTERM.

Start-up order (each step can fail with a FILE:LINE message, and nothing is left listening):
parse the config -> compile a snapshot (certificates and keys read here, while still root)
-> bind every listener -> detach unless in the foreground or under systemd -> write the pid
file (still root, and the pid of the process that serves) -> drop to setgid/setuid -> serve.
A detached start reports back to the starting process, which exits 0 only then.

The live configuration is one immutable ``Snapshot`` held by ``Server``; SIGHUP builds a new
one off the event loop and swaps it in with one assignment. One serving process also rebinds
its listeners on SIGHUP (``listening``); with ``workers`` the supervisor does that and
replaces the workers (``workers.supervise``).
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import trio

from . import __version__, certwatch, pidfile, systemd
from .addresses import format_peer
from .backend import BackendError, open_backend
from .config import Config, Service, load_config
from .errors import TlswrapError
from .limits import Limiter
from .listening import (
    Listener,
    Listening,
    bind_all,
    close_all,
    close_listeners,
    remove_socket_files,
    unused,
)
from .logsetup import NOTICE, log_files_seen_inside_jail, reopen_log_files, setup_logging
from .metrics import Metrics, render
from .metricsserver import (
    CertificateDates,
    WorkerMetrics,
    answer_channel,
    bind_metrics,
    process_state,
    serve_in_thread,
    serve_metrics,
)
from .pipeline import serve_guarded
from .privileges import drop_privileges, in_jail, key_file_findings, target_identity
from .reloading import (  # noqa: F401 - merge_reload, load_snapshot: daemon's API too
    load_snapshot,
    merge_reload,
    reload,
    reload_workers,
)
from .snapshot import Snapshot, prepare

log = logging.getLogger("tlswrap.daemon")

_HELD_SIGNALS = {signal.SIGHUP, signal.SIGUSR1}  # blocked from start-up until serve handles them

ACCEPT_BATCH = 64     # accepts in a row before letting other tasks run
ACCEPT_RETRY = 0.1    # pause after an accept error that may pass
# The process is out of something for now: pause, log once, accept again when it is back.
_TRANSIENT_ACCEPT = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
# The socket is not (or no longer) a listener: accepting again can never work.
_DEAD_LISTENER = {errno.EBADF, errno.ENOTSOCK, errno.EINVAL, errno.EOPNOTSUPP}



class Server:
    """One serving process's live state: the current snapshot, replaced whole on reload; the
    live counts the limits are checked against, which a reload keeps; the listeners (when
    this process rebinds them on reload) and their accept loops."""

    __slots__ = ("accepting", "conns", "dates", "limiter", "listening", "loops", "metrics",
                 "snapshot")

    def __init__(self, snapshot: Snapshot):
        self.snapshot = snapshot
        self.limiter = Limiter()
        self.metrics = Metrics()
        self.dates = CertificateDates()
        self.listening: Listening | None = None  # None: listeners fixed for this process
        self.loops: dict[socket.socket, tuple[trio.CancelScope, str]] = {}
        self.accepting: trio.Nursery | None = None  # where accept loops run
        self.conns: trio.Nursery | None = None  # where connections run

    def swap(self, snapshot: Snapshot) -> None:
        """Serve ``snapshot`` to new connections from now on (``certwatch``)."""
        self.snapshot = snapshot

    def reloaded(self, what: str, ok: bool) -> None:
        """Count a reload (``what``: config or certificate) and its result."""
        self.metrics.count("tlswrap_reloads_total", (what, "ok" if ok else "failed"))

    def state(self) -> dict[str, Any]:
        """This process's metrics, gauges of the moment included."""
        return process_state(self.metrics, self.limiter, self.snapshot, self.dates)

    async def exposition(self) -> str:
        return render(self.state())

    def start_loop(self, lsock: socket.socket, name: str) -> None:
        """Accept on ``lsock`` for service ``name`` (in ``accepting``, until stopped)."""
        assert self.accepting is not None and self.conns is not None
        scope = trio.CancelScope()
        self.loops[lsock] = (scope, name)
        conns = self.conns

        async def loop() -> None:
            with scope:
                await accept_loop(lsock, name, self, conns)

        self.accepting.start_soon(loop)

    def stop_loop(self, lsock: socket.socket) -> None:
        held = self.loops.pop(lsock, None)
        if held is not None:
            held[0].cancel()


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
        pidfile.write(in_jail(config, path), os.getpid())  # stunnel: pid is in the jail
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
            nursery.start_soon(serve_guarded, rt, sock, peer, nursery, server.limiter,
                               server.metrics)
        batch += 1
        if batch >= ACCEPT_BATCH:
            batch = 0
            await trio.lowlevel.checkpoint()


def reopen_logs() -> None:
    """SIGUSR1: the ``output`` file opened again (logrotate renamed it); said in the new one."""
    problems = reopen_log_files()
    for problem in problems:
        log.error("SIGUSR1: %s; still writing to the previous file", problem)
    if not problems:
        log.log(NOTICE, "SIGUSR1: log file reopened")


async def serve(listeners: list[Listener], snapshot: Snapshot, notify: bool = True,
                task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED, *,
                rebind: bool = False, metrics_sock: socket.socket | None = None,
                channel: socket.socket | None = None) -> None:
    """Serve until SIGTERM/SIGINT, then stop accepting and drain (bounded). SIGHUP reloads.

    ``notify``: tell systemd (READY, RELOADING, STOPPING); a supervisor of workers does that
    itself, as the main process. ``rebind``: this process owns its listeners, and a reload
    binds, keeps and closes them to match the config (see ``listening``); listeners bound by
    a reload are closed here at the end. ``metrics_sock``: serve this process's metrics
    there (``metrics = HOST:PORT``); ``channel``: a worker's channel to its supervisor, which
    asks for this process's metrics on it.
    """
    server = Server(snapshot)
    if rebind:
        server.listening = Listening(listeners, {rt.name: rt.service for rt in snapshot})
    try:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP,
                                       signal.SIGUSR1) as signals:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _HELD_SIGNALS)  # see run_config
            async with trio.open_nursery() as conns:
                server.conns = conns
                async with trio.open_nursery() as accepting:
                    server.accepting = accepting
                    for lsock, name in listeners:
                        server.start_loop(lsock, name)
                    for rt in server.snapshot:
                        if rt.service.outbound:
                            accepting.start_soon(outbound_loop, rt.name, server, conns)
                    accepting.start_soon(certwatch.watch, lambda: server.snapshot, server.swap,
                                         server.reloaded)
                    if metrics_sock is not None:
                        accepting.start_soon(serve_metrics, metrics_sock, server.exposition)
                    if channel is not None:
                        accepting.start_soon(answer_channel, channel, server.state)
                    task_status.started(server)
                    if notify:
                        systemd.notify("READY=1")
                    await _until_stopped(signals, server, notify)
                    accepting.cancel_scope.cancel()
                close_listeners(listeners)
                close_listeners(server.listening.all() if server.listening else [])
                drain = server.snapshot.config.globals.timeout_drain  # TIMEOUTdrain
                conns.cancel_scope.deadline = trio.current_time() + drain
    finally:
        close_listeners(listeners)
        if server.listening is not None:
            original = {id(sock) for sock, _ in listeners}
            close_all(pair for pair in server.listening.all() if id(pair[0]) not in original)
    log.log(NOTICE, "tlswrap stopped")


async def outbound_loop(name: str, server: Server, nursery: trio.Nursery) -> None:
    """stunnel's connect+exec service: connect to its ``connect`` targets, serve that
    connection (TLS on it, the ``exec`` program behind it) to its end, and with ``retry`` do it
    again after the delay; without, once. A reload that removes the service ends the loop."""
    while True:
        rt = server.snapshot.services.get(name)
        if rt is None or not rt.service.outbound:
            return
        svc = rt.service
        try:
            stream, where = await open_backend(rt.dialer, svc.timeout_connect)
        except BackendError as exc:
            log.warning("[%s] cannot connect: %s", name, exc)
        else:
            log.log(NOTICE, "[%s] connected to %s", name, where)
            sock = stream.socket
            await serve_guarded(rt, sock, sock.getpeername(), nursery, server.limiter,
                                server.metrics)
        if svc.retry is None:
            log.log(NOTICE, "[%s] done (no retry)", name)
            return
        await trio.sleep(svc.retry)


async def _until_stopped(signals: AsyncIterator[int], server: Server, notify: bool) -> None:
    """Reload on each SIGHUP, reopen the log file on SIGUSR1; return at the first SIGTERM or
    SIGINT."""
    async for signum in signals:
        if signum == signal.SIGUSR1:
            reopen_logs()
            continue
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
    elif not passed and all(rt.service.accept is None and not rt.service.outbound
                            for rt in snapshot):
        conn_fd = 0
    if conn_fd is not None:
        if len(snapshot) != 1:
            raise config.error(f"one connection to serve (inetd mode) but {len(snapshot)} "
                               "services: keep one, or give each an 'accept'")
        from .inetd import serve_connection

        return serve_connection(config, next(iter(snapshot)), conn_fd)
    many = g.workers > 1
    # SIGHUP and SIGUSR1 wait until their handlers are in place (``serve``): until then they
    # would end the process, and the starting side may signal as soon as a port answers
    signal.pthread_sigmask(signal.SIG_BLOCK, _HELD_SIGNALS)
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
    try:
        metrics_sock = bind_metrics(config)
    except BaseException:
        close_all(listeners)
        raise
    report_w = None
    try:
        syslog = g.syslog if g.syslog is not None else not g.foreground
        # stunnel opens the output file inside the chroot jail: the same file, opened before
        setup_logging(g.debug, stderr=g.foreground,
                      output=in_jail(config, g.output) if g.output else None, syslog=syslog,
                      facility=g.facility, ident=g.service or "tlswrap",
                      syslog_address=g.syslog_address, json_lines=g.log_format == "json",
                      overwrite=g.log_mode == "overwrite")
        _warn_key_files(config)
        if not g.foreground and not under_systemd:
            report_w = daemonize()  # under systemd the started process is the main pid
        try:
            write_pid(config)  # as root, and the pid of the process that serves
            drop_privileges(config)
            if g.chroot and g.output:
                log_files_seen_inside_jail(g.output)
        except BaseException as exc:
            started(report_w, str(exc) if isinstance(exc, TlswrapError) else repr(exc))
            raise
        for lsock, name in worker_sets[0]:
            svc = snapshot.services[name].service
            log.log(NOTICE, "[%s] listening on %s, relaying to %s", name,
                    format_peer(lsock.getsockname()),
                    ", ".join(str(a) for a in svc.connect) or svc.exec)
        for rt in snapshot:
            certwatch.log_served(rt)
        log.log(NOTICE, "tlswrap %s started with %d service(s)%s", __version__, len(snapshot),
                f", {g.workers} workers" if many else "")
        started(report_w)
        if many:
            from .workers import supervise

            current = Server(snapshot)  # replaced on SIGHUP; a replacement worker starts on it
            held = [list(pairs) for pairs in worker_sets]  # what the workers listen on now
            gathered = WorkerMetrics() if metrics_sock is not None else None

            def worker(own: list[Listener], channel: socket.socket | None) -> None:
                if metrics_sock is not None:
                    metrics_sock.close()  # the supervisor answers scrapes
                trio.run(functools.partial(serve, channel=channel), own, current.snapshot,
                         False)

            def helper() -> None:
                if metrics_sock is not None and gathered is not None:
                    serve_in_thread(metrics_sock, gathered.collect)

            try:
                supervise(worker_sets, worker, notify=systemd.notify, reopen=reopen_logs,
                          reload=lambda: reload_workers(current, held, bool(passed)),
                          drain=lambda: current.snapshot.config.globals.timeout_drain,
                          metrics=gathered, helper=helper)
            finally:
                close_all(unused(held, [listeners]))
        else:  # one process: it rebinds on reload, unless systemd owns the sockets
            trio.run(functools.partial(serve, rebind=not passed, metrics_sock=metrics_sock),
                     listeners, snapshot)
    finally:
        close_all(listeners)
        if metrics_sock is not None:
            metrics_sock.close()
        remove_socket_files(config)
        if g.pid:
            pidfile.remove(g.pid, os.getpid())
    return 0


def _warn_key_files(config: Config) -> None:
    """Key modes, and files a reload (as the ``setuid`` user) could not read again: at their
    lines, before the drop."""
    ident = target_identity(config)
    for svc in config.services:
        for option, problem in key_file_findings(svc, ident, config.filename):
            log.warning("%s", config.error(problem, option, svc))
