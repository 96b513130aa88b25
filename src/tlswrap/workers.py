"""``workers = N``: N processes serve the same services, to use N cores.

Each worker gets its own listening socket per service, bound with SO_REUSEPORT, so the kernel
spreads new connections over the workers (no thundering herd on one accept queue). The parent
binds everything (while still privileged), forks the workers, and then only supervises: it
forwards SIGTERM/SIGINT/SIGHUP, restarts a worker that died unexpectedly (at most once a second)
from the configuration as last reloaded, kills workers that outlive the drain bound, and keeps
every listening socket open, so a restarted worker finds its accept queue intact.
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
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from .metricsserver import WorkerMetrics

log = logging.getLogger("tlswrap.workers")

T = TypeVar("T")
RESTART_INTERVAL = 1.0
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


# After TIMEOUTdrain a worker still closes what it cut (exec children get a bounded finish);
# one that has not ended this long after that is stuck, and is killed.
STOP_GRACE = 5.0
_WATCHED = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1}


def usable_cpus() -> int:
    """The CPUs this process may run on (``workers = auto``)."""
    return max(1, len(os.sched_getaffinity(0)))


def supervise(worker_sets: Sequence[Sequence[tuple[socket.socket, T]]],
              serve: Callable[[list[tuple[socket.socket, T]], socket.socket | None], None],
              notify: Callable[[str], None] = lambda message: None,
              reload: Callable[[], Sequence[Sequence[tuple[socket.socket, T]]] | None]
              = lambda: None,
              drain: Callable[[], float] = lambda: 10.0,
              metrics: WorkerMetrics | None = None,
              helper: Callable[[], None] | None = None,
              reopen: Callable[[], None] = lambda: None) -> int:
    """Fork one worker per listener set and supervise them until a stop signal.

    Sets may share sockets (systemd's ``Accept=no`` sockets are inherited by every worker):
    a worker closes only the sockets that are not in its own set. ``notify`` receives the
    systemd notifications (READY=1, RELOADING=1, STOPPING=1), sent from this, the main,
    process. On SIGHUP ``reload()`` runs here first (so that ``serve``, which a replacement
    worker runs, starts from the reloaded configuration), then every worker reloads -- or,
    when ``reload()`` returns new listener sets (the services' addresses or the number of
    workers changed), new workers start on those and the old ones retire: they get SIGTERM
    and drain as on a stop, bounded the same way, and are not restarted. After
    SIGTERM/SIGINT a worker gets ``drain()`` seconds (TIMEOUTdrain) plus STOP_GRACE to end,
    then SIGKILL. ``metrics``: each worker gets a channel (its end is the second argument of
    ``serve``, None without) on which the supervisor asks for its metrics; ``helper`` runs
    once the signals are blocked (so that a thread it starts inherits the mask). SIGUSR1:
    ``reopen()`` here (the log file), then every worker is sent it.

    General theory of operation: the watched signals are blocked and taken one at a time
    with sigtimedwait, so a reload, a restart and a stop never interrupt one another; a
    worker unblocks them right after the fork."""
    children: dict[int, int] = {}
    retiring: dict[int, float] = {}  # replaced workers draining -> when they are killed
    sets = [list(pairs) for pairs in worker_sets]
    supervisor = os.getpid()

    def start(index: int) -> None:
        mine, theirs = metrics.pair() if metrics is not None else (None, None)
        pid = os.fork()
        if pid == 0:  # the worker
            if metrics is not None and mine is not None:
                mine.close()
                metrics.forget_in_child()
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the worker's own handler
            signal.signal(signal.SIGUSR1, signal.SIG_IGN)
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            end_with_parent(supervisor)
            code = 0
            try:
                own = {id(sock) for sock, _ in sets[index]}
                for listeners in sets:
                    for sock, _ in listeners:
                        if id(sock) not in own:
                            sock.close()
                serve(list(sets[index]), theirs)
            except BaseException:
                log.exception("worker %d failed", index)
                code = 1
            finally:
                logging.shutdown()
                os._exit(code)
        children[pid] = index
        if metrics is not None and mine is not None and theirs is not None:
            theirs.close()
            metrics.add(pid, mine)

    def forward(signum: int) -> None:
        for pid in [*children, *retiring]:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _WATCHED)
    if helper is not None:
        helper()
    try:
        for index in range(len(sets)):
            start(index)
        log.info("%d workers started: %s", len(children), " ".join(map(str, children)))
        notify("READY=1")
        waiting: list[int] = []  # workers to restart, oldest death first
        last_restart = 0.0
        kill_at = None  # once stopping: when the workers left are killed
        bound = 0.0
        while children or retiring:
            now = time.monotonic()
            for pid in [pid for pid, at in retiring.items() if now >= at]:
                log.error("replaced worker pid %d still running %gs after the reload; "
                          "killing it", pid, drain() + STOP_GRACE)
                _kill(pid)
                retiring[pid] = float("inf")
            if kill_at is not None and now >= kill_at:
                for pid in [*children, *retiring]:
                    log.error("worker pid %d still running %gs after the stop; killing it",
                              pid, bound)
                    _kill(pid)
                kill_at = float("inf")
            elif waiting and kill_at is None and now >= last_restart + RESTART_INTERVAL:
                last_restart = now
                start(waiting.pop(0))
                continue
            wake = min(kill_at if kill_at is not None else float("inf"), *retiring.values(),
                       last_restart + RESTART_INTERVAL if waiting and kill_at is None
                       else float("inf"))
            timeout = min(max(wake - now, 0.001), 3600.0)
            info = signal.sigtimedwait(_WATCHED, timeout)
            if info is None:
                continue
            if info.si_signo == signal.SIGCHLD:
                for pid, status in _reap():
                    if metrics is not None:
                        metrics.ended(pid)
                    if retiring.pop(pid, None) is not None:
                        log.info("replaced worker pid %d ended (%s)", pid, _describe(status))
                        continue
                    index = children.pop(pid, -1)
                    if index >= 0 and kill_at is None:
                        log.error("worker %d (pid %d) ended unexpectedly (%s); restarting it",
                                  index, pid, _describe(status))
                        waiting.append(index)
            elif info.si_signo == signal.SIGUSR1:
                reopen()
                forward(signal.SIGUSR1)
            elif info.si_signo == signal.SIGHUP and kill_at is None:
                notify("RELOADING=1")
                replaced = reload()
                if replaced is None:
                    forward(signal.SIGHUP)  # each reloads on its own; a bad config keeps its old
                else:
                    at = time.monotonic() + drain() + STOP_GRACE
                    for pid in list(children):
                        _kill(pid, signal.SIGTERM)
                        retiring[pid] = at
                    children.clear()
                    waiting.clear()
                    sets = [list(pairs) for pairs in replaced]
                    for index in range(len(sets)):
                        start(index)
                    log.info("workers replaced: %s", " ".join(map(str, children)))
                notify("READY=1")
            elif info.si_signo != signal.SIGHUP and kill_at is None:  # SIGTERM, SIGINT
                notify("STOPPING=1")
                forward(info.si_signo)
                bound = drain() + STOP_GRACE
                kill_at = time.monotonic() + bound
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    return 0


def _kill(pid: int, signum: int = signal.SIGKILL) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass  # ended already; reaped at its SIGCHLD


def _reap() -> list[tuple[int, int]]:
    """Every child that has ended, with its wait status (SIGCHLD signals merge)."""
    ended = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        ended.append((pid, status))
    return ended


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
