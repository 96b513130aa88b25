"""``workers = N``: N processes serve the same services, to use N cores.

Each worker gets its own listening socket per service, bound with SO_REUSEPORT, so the kernel
spreads new connections over the workers (no thundering herd on one accept queue). The parent
binds everything (while still privileged), forks the workers, and then only supervises: it
forwards SIGTERM/SIGINT/SIGHUP, restarts a worker that died unexpectedly (at most once a second), and
keeps every listening socket open, so a restarted worker finds its accept queue intact.
TLS contexts are built before the fork, so session tickets issued by one worker are accepted
by every other.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from typing import Callable, Sequence, TypeVar

log = logging.getLogger("tlswrap.workers")

T = TypeVar("T")
RESTART_INTERVAL = 1.0


def supervise(worker_sets: Sequence[Sequence[tuple[socket.socket, T]]],
              serve: Callable[[list[tuple[socket.socket, T]]], None]) -> int:
    """Fork one worker per listener set and supervise them until a stop signal."""
    children: dict[int, int] = {}
    stopping = False

    def start(index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the worker's own handler
            code = 0
            try:
                for i, listeners in enumerate(worker_sets):
                    if i != index:
                        for sock, _ in listeners:
                            sock.close()
                serve(list(worker_sets[index]))
            except BaseException:  # noqa: BLE001 - a worker must never return into the parent
                log.exception("worker %d failed", index)
                code = 1
            finally:
                logging.shutdown()
                os._exit(code)
        children[pid] = index

    def forward(signum: int, _frame: object) -> None:  # SIGHUP: each worker reloads
        for pid in list(children):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        forward(signum, frame)

    old = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    old[signal.SIGHUP] = signal.signal(signal.SIGHUP, forward)
    try:
        for index in range(len(worker_sets)):
            start(index)
        log.info("%d workers started: %s", len(children), " ".join(map(str, children)))
        last_restart = 0.0
        while children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            index = children.pop(pid, None)
            if index is None or stopping:
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


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
