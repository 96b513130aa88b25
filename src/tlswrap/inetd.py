"""One connection handed over by inetd ``nowait``, xinetd, or systemd ``Accept=yes``.

The same pipeline as the daemon, run once: the connection is moved off descriptors 0 and 1
(which become /dev/null), so that closing it really closes it. Logs go to syslog, or
``output``; to stderr only in the foreground and when stderr is not the connection itself
(inetd hands the socket as 0, 1 and 2).
"""

from __future__ import annotations

import logging
import os
import socket
import stat

import trio

from .config import Config
from .errors import TlswrapError
from .logsetup import setup_logging
from .privileges import drop_privileges, in_jail
from .snapshot import ServiceRuntime

log = logging.getLogger("tlswrap.inetd")


def serve_connection(config: Config, rt: ServiceRuntime, fd: int) -> int:
    """Serve the connection on ``fd`` to its end, then return the exit status."""
    from .pipeline import serve_guarded

    g = config.globals
    if not is_socket(fd):
        raise TlswrapError(
            f"descriptor {fd} is not a connection: with no 'accept' (or -d/--accept) tlswrap "
            "serves the one connection inetd or systemd hands it; to listen itself, give an "
            "accept address")
    conn = socket.socket(fileno=os.dup(fd))
    if conn.family != socket.AF_UNIX:  # as the daemon's accept loop (small replies go at once)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    devnull = os.open(os.devnull, os.O_RDWR)
    for std in {0, 1, fd} | ({2} if is_socket(2) else set()):
        os.dup2(devnull, std)
    os.close(devnull)
    stderr_ok = g.foreground and not is_socket(2)
    syslog = g.syslog if g.syslog is not None else not stderr_ok
    setup_logging(g.debug, stderr=stderr_ok,  # the output file is inside a chroot jail
                  output=in_jail(config, g.output) if g.output else None, syslog=syslog,
                  facility=g.facility, ident=rt.name, syslog_address=g.syslog_address,
                  json_lines=g.log_format == "json", overwrite=g.log_mode == "overwrite")
    drop_privileges(config)
    try:
        peer = conn.getpeername()
    except OSError as exc:
        log.warning("[%s] inetd connection already gone: %s", rt.name, exc.strerror)
        conn.close()
        return 0

    async def one() -> None:
        async with trio.open_nursery() as helpers:
            await serve_guarded(rt, conn, peer, helpers)

    trio.run(one)
    return 0


def is_socket(fd: int) -> bool:
    try:
        return stat.S_ISSOCK(os.fstat(fd).st_mode)
    except OSError:
        return False
