"""``workers = N``: N processes serve the same services, to use N cores.

Each worker gets its own listening socket per service, bound with SO_REUSEPORT, so the kernel
spreads new connections over the workers (no thundering herd on one accept queue). The parent
binds everything (while still privileged), forks the workers, and then only supervises: it
forwards SIGTERM/SIGINT/SIGHUP, restarts a worker that died unexpectedly (at most once a second),
and keeps every listening socket open, so a restarted worker finds its accept queue intact.
Under systemd ``Accept=no`` the workers share systemd's sockets instead, and the parent, the
unit's main pid, is the one that tells systemd READY/RELOADING/STOPPING.
A worker ends (drains, as on SIGTERM) when the supervisor dies, even by SIGKILL
(PR_SET_PDEATHSIG), and a start refuses a port where anything already listens before it binds
its own SO_REUSEPORT sockets (``daemon.bind_all(probe=True)``), so orphaned or foreign
listeners never share a port with a new start.
TLS contexts are built before the fork, so session tickets issued by one worker are accepted
by every other.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

log = logging.getLogger("tlswrap.workers")

T = TypeVar("T")
RESTART_INTERVAL = 1.0
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def supervise(worker_sets: Sequence[Sequence[tuple[socket.socket, T]]],
              serve: Callable[[list[tuple[socket.socket, T]]], None],
              notify: Callable[[str], None] = lambda message: None) -> int:
    """Fork one worker per listener set and supervise them until a stop signal.

    Sets may share sockets (systemd's ``Accept=no`` sockets are inherited by every worker):
    a worker closes only the sockets that are not in its own set. ``notify`` receives the
    systemd notifications (READY=1, RELOADING=1, STOPPING=1), sent from this, the main,
    process."""
    children: dict[int, int] = {}
    stopping = False

    supervisor = os.getpid()

    def start(index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the worker's own handler
            end_with_parent(supervisor)
            code = 0
            try:
                own = {id(sock) for sock, _ in worker_sets[index]}
                for listeners in worker_sets:
                    for sock, _ in listeners:
                        if id(sock) not in own:
                            sock.close()
                serve(list(worker_sets[index]))
            except BaseException:
                log.exception("worker %d failed", index)
                code = 1
            finally:
                logging.shutdown()
                os._exit(code)
        children[pid] = index

    def forward(signum: int, _frame: object) -> None:  # SIGHUP: each worker reloads
        if signum == signal.SIGHUP:
            notify("RELOADING=1")
        for pid in list(children):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass
        if signum == signal.SIGHUP:
            notify("READY=1")  # each worker reloads on its own; a bad config keeps its old one

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        notify("STOPPING=1")
        forward(signum, frame)

    old = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    old[signal.SIGHUP] = signal.signal(signal.SIGHUP, forward)
    try:
        for index in range(len(worker_sets)):
            start(index)
        log.info("%d workers started: %s", len(children), " ".join(map(str, children)))
        notify("READY=1")
        last_restart = 0.0
        while children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            index = children.pop(pid, -1)
            if index < 0 or stopping:
                continue
            log.error("worker %d (pid %d) ended unexpectedly (%s); restarting it", index, pid,
                      _describe(status))
            wait = last_restart + RESTART_INTERVAL - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            last_restart = time.monotonic()
            if not stopping:
                start(index)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    return 0


def end_with_parent(parent: int) -> None:
    """Have the kernel send this process SIGTERM (a drain, as from an administrator) when
    its parent dies, so that a supervisor killed with SIGKILL leaves no workers serving;
    exit at once if ``parent`` is already gone (it died before the request was made)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):
            log.warning("cannot ask to end with the supervisor (prctl)")
    if os.getppid() != parent:
        os._exit(0)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
