"""tcp_wrappers in the connection path: decide, then act on the deciding rule's options.

General theory of operation: the rules are re-read when hosts.allow/hosts.deny change (checked
at each connection, as tcpd reads them per connection). The decision is first made on the event
loop with name lookups and commands forbidden; most rule sets only look at addresses, so that is
the whole cost. Only if a rule needs a host name or the client's user name, or runs an
``aclexec`` command, is the decision made again in a worker thread, where the C resolver, the
RFC 931 (ident) query and the command may block, bounded by ``LOOKUP_TIMEOUT`` (plus
``ACLEXEC_TIMEOUT`` when the rules hold an aclexec, plus ``IDENT_TIMEOUT`` when they want the
user). A resolver that does not answer in time counts as a failed lookup (the client's name is
"unknown"), as with tcpd when DNS is down; so does an ident server (the user is "unknown");
an aclexec command still running at its bound is killed (its whole process group) and counts
as failed.

Options (hosts_options(5)) act in order, as tcpd applies them to its own process: setenv,
umask, nice and user reach every command started after them (aclexec and spawn now, twist and
the exec'd program later), never one started before. aclexec runs while deciding, with
stdin/stdout/stderr on /dev/null, and its exit status decides (see tcpwrappers.decide). spawn
runs in the background once the decision is made, at most ``SPAWN_LIMIT`` at once (a command
counts until its process group is empty, so ``spawn (...) &`` counts too); more are dropped and
counted in one log line per ``SPAWN_REPORT_INTERVAL``. twist and banners talk to the client
inside TLS after the handshake; keepalive and linger set socket options; severity sets the
level of the log line; rfc931 asks the client's ident server for the user at once (its value,
if any, is the timeout), as tcpd does, for ``%u`` and the log line (``user@host``); a
``user@host`` pattern asks too, when it is reached.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import trio

from .addresses import peer_host, peer_port
from .ident import IdentError, lookup
from .logtext import TCPD_SEVERITY_LEVELS
from .regularfile import read_regular_text
from .tcpwrappers import (
    ACLEXEC_FAILED,
    Decision,
    HostsFiles,
    Option,
    Request,
    Rule,
    Rules,
    decide,
    expand_percent,
)
from .tcpwrappers.files import (
    HOSTS_MAX_BYTES,
    LOOKUP_TIMEOUT,
    banner_path_error,
    check_option,
    hostname_for,
    late_decision,
    read_patterns,
    shared_hosts_files,
)

log = logging.getLogger("tlswrap.access")

ACLEXEC_TIMEOUT = 5.0  # an aclexec command still running then is killed: it failed
IDENT_TIMEOUT = 10.0  # tcpd's RFC931_TIMEOUT: the ident exchange, unless rfc931 gives one
SPAWN_LIMIT = 32  # spawn commands running at once; tcpd has no bound (a connect flood forks)
SPAWN_REPORT_INTERVAL = 10.0
_SPAWN_POLL = 0.2  # how often a finished spawn's process group is checked for stragglers
_SHELL = "/bin/sh"



class _NeedsThread(Exception):
    """A rule wants a host name or the user, or runs a command: decide again where blocking
    is allowed."""


def _forbidden() -> str | None:
    raise _NeedsThread


@dataclass(frozen=True)
class Command:
    """A shell command and the process state the options before it set up (tcpd's own)."""

    command: str
    env: dict[str, str]
    umask: int | None = None
    nice: int = 0
    user: tuple[int, int] | None = None
    base: Mapping[str, str] = field(default_factory=lambda: os.environ)  # under ``env``

    def popen_options(self) -> dict[str, Any]:
        """subprocess options: ``/bin/sh -c``, stdio on /dev/null, its own process group."""
        options: dict[str, Any] = {
            "args": ["sh", "-c", self.command], "executable": _SHELL,
            "stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL,
            "stderr": subprocess.DEVNULL, "close_fds": True, "start_new_session": True,
            "env": {**self.base, **self.env}}
        if self.umask is not None:
            options["umask"] = self.umask
        if self.user is not None:
            options.update(user=self.user[0], group=self.user[1], extra_groups=[])
        if self.nice:
            niceness = self.nice
            options["preexec_fn"] = lambda: os.nice(niceness)
        return options


def run_aclexec(cmd: Command, timeout: float, label: str) -> bool:
    """Run an aclexec command to its end (blocking): True when it exited 0.

    Still running after ``timeout`` seconds: its process group is killed and it failed. A
    command that cannot be started failed too (tcpd then drops the connection).
    """
    if timeout <= 0:
        log.warning("%s aclexec: no time left to run it: it counts as failed", label)
        return False
    try:
        proc = subprocess.Popen(**cmd.popen_options())
    except OSError as exc:
        log.error("%s aclexec: cannot run %s: %s", label, _SHELL, exc.strerror or exc)
        return False
    try:
        status = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        proc.wait()
        log.warning("%s aclexec: still running after %gs: killed, it counts as failed",
                    label, timeout)
        return False
    if status < 0:
        log.warning("%s aclexec: process %d exited with signal %d", label, proc.pid, -status)
    return status == 0


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # EPERM: a member exists (it changed identity)
    return True


class _Spawner:
    """spawn commands in the background, off the event loop, at most SPAWN_LIMIT at once."""

    def __init__(self) -> None:
        self.running = 0
        self.dropped = 0
        self.reporting = False

    def start(self, cmd: Command, label: str) -> None:
        """Start ``cmd`` now, or drop it when the bound is reached (on the trio thread)."""
        if self.running >= SPAWN_LIMIT:
            self.dropped += 1
            if not self.reporting:
                self.reporting = True
                trio.lowlevel.spawn_system_task(self._report)
            return
        self.running += 1
        trio.lowlevel.spawn_system_task(self._run, cmd, label)

    async def _run(self, cmd: Command, label: str) -> None:
        try:
            options = cmd.popen_options()
            argv = options.pop("args")
            proc = await trio.lowlevel.open_process(argv, **options)  # forks in a thread
            await proc.wait()
            # ``(...) &``: the background part still runs. No event says when a process
            # group empties, so poll.
            while _group_alive(proc.pid):  # noqa: ASYNC110
                await trio.sleep(_SPAWN_POLL)
        except OSError as exc:
            log.error("%s spawn: cannot run %s: %s", label, _SHELL, exc.strerror or exc)
        except Exception:  # a system task must not raise: it would end the daemon
            log.exception("%s spawn failed", label)
        finally:
            self.running -= 1

    async def _report(self) -> None:
        try:
            await trio.sleep(SPAWN_REPORT_INTERVAL)
        finally:
            count, self.dropped, self.reporting = self.dropped, 0, False
        log.warning("spawn: %d commands dropped in the last %gs (%d running)",
                    count, SPAWN_REPORT_INTERVAL, self.running)


_spawner = _Spawner()


@dataclass
class Verdict:
    """The decision plus what the pipeline must still do for it."""

    decision: Decision
    client: str  # the client as tcpd names it in log lines (name or address)
    env: dict[str, str] = field(default_factory=dict)
    twist: str | None = None
    banner: bytes | None = None
    umask: int | None = None
    nice: int | None = None
    user: tuple[int, int] | None = None


# How a decision treats what may block: on the event loop both are forbidden (decide again in
# a thread), in the thread both run, after the thread's bound lookups fail and aclexec fails.
_LOOP, _THREAD, _LATE = "loop", "thread", "late"


class _Effects:
    """What the options did so far to "the process", in order; the on_option hook of decide.

    tcpd applies each option to itself as it comes: setenv, umask, nice and user shape every
    command started after them. aclexec runs here (in the thread pass); spawns are kept, each
    with the state of its moment, and started once the decision is final.
    """

    def __init__(self, mode: str, label: str, deadline: float = 0.0,
                 base: Mapping[str, str] | None = None):
        self.mode = mode
        self.label = label
        self.deadline = deadline
        self.base = os.environ if base is None else base  # the daemon's, with setEnv applied
        self.env: dict[str, str] = {}
        self.umask: int | None = None
        self.nice = 0
        self.user: tuple[int, int] | None = None
        self.spawns: list[Command] = []
        self.ident_seconds = IDENT_TIMEOUT  # rfc931 = N sets it for the lookups after it
        self.request: Request | None = None  # the connection being decided

    def command(self, text: str) -> Command:
        return Command(text, dict(self.env), self.umask, self.nice, self.user, self.base)

    def on_option(self, option: Option, warn: Callable[[str], None]) -> str | None:
        name, arg = option.name, option.arg
        if name == "banners":
            problem = banner_path_error(str(arg))
            if problem:
                warn(problem)
            return None
        problem = check_option(option)
        if problem:
            return problem
        if name == "setenv":
            key, value = cast("tuple[str, str]", arg)
            self.env[key] = value
        elif name == "umask":
            self.umask = cast(int, arg)
        elif name == "nice":
            self.nice += cast(int, arg)  # nice(3) adds, like tcpd's nice_option
        elif name == "user":
            self.user = _user_ids(cast("tuple[str, str | None]", arg))
        elif name == "spawn":
            self.spawns.append(self.command(str(arg)))
        elif name == "aclexec":
            return self.aclexec(str(arg))
        elif name == "rfc931":
            self.rfc931(cast("int | None", arg))
        return None

    def rfc931(self, seconds: int | None) -> None:
        """tcpd's rfc931_option(): the timeout, then the user looked up now (eval_user)."""
        if self.mode == _LOOP:
            raise _NeedsThread
        if seconds:
            self.ident_seconds = float(seconds)
        if self.request is not None:
            self.request.username()

    def aclexec(self, text: str) -> str | None:
        if self.mode == _LOOP:
            raise _NeedsThread
        if self.mode == _LATE:
            log.warning("%s aclexec: not run, the decision ran out of time: it counts as failed",
                        self.label)
            return ACLEXEC_FAILED
        timeout = min(ACLEXEC_TIMEOUT, self.deadline - time.monotonic())
        return None if run_aclexec(self.command(text), timeout, self.label) else ACLEXEC_FAILED


def _rules(tables: tuple[Rules, ...]) -> Iterator[Rule]:
    return (rule for rules in tables for rule in rules.entries if isinstance(rule, Rule))


def _runs_aclexec(*tables: Rules) -> bool:
    return any(spec.name == "aclexec" for rule in _rules(tables) for spec in rule.options)


def _wants_user(*tables: Rules) -> bool:
    """A rule that may ask the client's ident server: a ``user@host`` client pattern, the
    rfc931 option, or ``%u`` in an option."""
    return any(any("@" in tok[1:] for tok in rule.clients)
               or any(spec.name == "rfc931" or "%u" in (spec.value or "")
                      for spec in rule.options) for rule in _rules(tables))


def ident_user(peer: object, local: object, seconds: float) -> str | None:
    """tcpd's rfc931(): the user the client's ident server names, None when it names none
    in ``seconds`` (the user is then "unknown")."""
    host, server = peer_host(peer), peer_host(local)
    if seconds <= 0 or host is None or server is None:
        return None
    try:
        return lookup(cast("tuple[Any, ...]", peer), cast("tuple[Any, ...]", local), seconds)
    except IdentError:
        return None


class AccessControl:
    """hosts.allow/hosts.deny for every service of a daemon."""

    def __init__(self, hosts: HostsFiles, resolver=hostname_for,  # type: ignore[no-untyped-def]
                 child_env: Mapping[str, str] | None = None,
                 ident: Callable[[object, object, float], str | None] = ident_user):
        self.hosts = hosts
        self.resolver = resolver  # address -> verified name, PARANOID or None (blocking)
        self.ident = ident  # (peer, local, seconds) -> the client's user or None (blocking)
        self.child_env = child_env  # the environment commands start from (None: the daemon's)

    @classmethod
    def from_files(cls, allow: str, deny: str,
                   child_env: Mapping[str, str] | None = None) -> AccessControl:
        """Rules from these files; a syntax error in either is a ConfigError (FILE:LINE),
        so that it stops the start or the reload."""
        hosts = shared_hosts_files(allow, deny)
        hosts.load_strict()
        return cls(hosts, child_env=child_env)

    def _decide(self, rules: tuple[Rules, Rules], daemon: str, peer: object, local: object,
                effects: _Effects) -> tuple[Decision, str, bytes | None, _Effects]:
        """Decide in ``effects.mode``: _LOOP raises _NeedsThread for a lookup or an aclexec,
        _THREAD may block on both, _LATE counts lookups and aclexec as failed."""
        allow, deny = rules
        client_ip, server_ip = peer_host(peer), peer_host(local)
        client_name = server_name = user = None
        if effects.mode == _THREAD:
            resolve, ident = self.resolver, self.ident
            client_name = (lambda: resolve(client_ip)) if client_ip else None
            server_name = (lambda: resolve(server_ip)) if server_ip else None
            user = lambda: ident(peer, local,  # noqa: E731 - one lookup, called lazily
                                 min(effects.ident_seconds, effects.deadline - time.monotonic()))
        elif effects.mode == _LOOP:
            client_name = server_name = user = _forbidden
        request = Request(daemon=daemon, client_addr=client_ip, client_name=client_name,
                          server_addr=server_ip, server_name=server_name, user=user,
                          client_port=peer_port(peer), server_port=peer_port(local),
                          pid=os.getpid())
        effects.request = request
        decision = decide(allow, deny, request, read_patterns=read_patterns,
                          on_option=effects.on_option)
        banners = decision.option("banners")
        if banners is not None:
            decision_banner = _banner(str(banners.arg), daemon, request, effects.label)
        else:
            decision_banner = None
        return decision, request.seen_as(), decision_banner, effects

    async def check(self, daemon: str, peer: object, local: object,
                    label: str | None = None) -> Verdict:
        """The verdict for a client of ``daemon``; ``label`` starts each log line (default
        ``[daemon]``; the pipeline adds the connection id)."""
        label = label or f"[{daemon}]"
        rules = self.hosts.rules()
        try:
            first = _Effects(_LOOP, label, 0.0, self.child_env)
            result = self._decide(rules, daemon, peer, local, first)
        except _NeedsThread:
            result = None  # decided again below, outside the except clause
        if result is None:
            bound = LOOKUP_TIMEOUT + (ACLEXEC_TIMEOUT if _runs_aclexec(*rules) else 0.0) + (
                IDENT_TIMEOUT if _wants_user(*rules) else 0.0)
            effects = _Effects(_THREAD, label, time.monotonic() + bound, self.child_env)
            with trio.move_on_after(bound + 1.0):  # aclexec's own bound comes first
                result = await trio.to_thread.run_sync(
                    self._decide, rules, daemon, peer, local, effects, abandon_on_cancel=True)
                return self._verdict(label, *result)
            log.warning("%s", late_decision(label, peer_host(peer), bound))
            late = _Effects(_LATE, label, 0.0, self.child_env)
            result = self._decide(rules, daemon, peer, local, late)
        return self._verdict(label, *result)

    def _verdict(self, label: str, decision: Decision, client: str, banner: bytes | None,
                 effects: _Effects) -> Verdict:
        for cmd in effects.spawns:
            _spawner.start(cmd, label)
        twist = decision.option("twist")
        return Verdict(decision, client, env=effects.env, banner=banner,
                       twist=None if twist is None else str(twist.arg), umask=effects.umask,
                       nice=effects.nice or None, user=effects.user)

    def log_refusal(self, daemon: str, verdict: Verdict, label: str | None = None) -> None:
        level = logging.WARNING
        sev = verdict.decision.option("severity")
        if sev is not None:
            level = TCPD_SEVERITY_LEVELS.get(sev.arg.level,  # type: ignore[attr-defined]
                                             logging.WARNING)
        d = verdict.decision
        where = f" ({d.file} line {d.line})" if d.file else ""
        log.log(level, "%s refused connect from %s%s", label or f"[{daemon}]", verdict.client,
                where)


def _user_ids(arg: tuple[str, str | None]) -> tuple[int, int]:
    import grp
    import pwd

    user, group = arg
    pw = pwd.getpwnam(user)
    gid = grp.getgrnam(group).gr_gid if group else pw.pw_gid
    return pw.pw_uid, gid


def _banner(directory: str, daemon: str, request: Request, label: str) -> bytes | None:
    """banners.c: the file named as the daemon, each line %-expanded, CRLF line ends; none
    when it cannot be read (a FIFO is refused and logged: tcpd would wait on it forever)."""
    path = os.path.join(directory, daemon)
    try:
        text = read_regular_text(path, HOSTS_MAX_BYTES)
    except OSError as exc:
        if exc.errno == errno.EINVAL:  # not a regular file
            log.warning("%s banners: %s: %s: no banner sent", label, path, exc.strerror)
        return None
    lines = [expand_percent(line, request) for line in text.splitlines()]
    return "".join(line + "\r\n" for line in lines).encode("utf-8", "surrogateescape")


def apply_socket_options(sock: socket.socket, decision: Decision) -> None:
    """keepalive and linger from the deciding rule."""
    if decision.option("keepalive") is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    linger = decision.option("linger")
    if linger is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                        struct.pack("ii", 1, int(linger.arg)))  # type: ignore[call-overload]
