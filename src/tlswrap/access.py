"""tcp_wrappers in the connection path: decide, then act on the deciding rule's options.

General theory of operation: the rules are re-read when hosts.allow/hosts.deny change (checked
at each connection, as tcpd reads them per connection). The decision is first made on the event
loop with name lookups forbidden; most rule sets only look at addresses, so that is the whole
cost. Only if a rule needs a host name is the decision made again in a worker thread, where the
C resolver may block, under ``LOOKUP_TIMEOUT``; a resolver that does not answer in time counts
as a failed lookup (the client's name is "unknown"), as with tcpd when DNS is down.

Options (hosts_options(5)) are carried out here or handed to the pipeline:
spawn runs now, in the background, with stdin/stdout/stderr on /dev/null; twist and banners
talk to the client inside TLS after the handshake; setenv, nice, umask and user apply to the
programs tlswrap runs for the connection (exec, twist); keepalive and linger set socket options;
severity sets the level of the log line; rfc931 is reported as unsupported (the user stays
"unknown", as when no ident server answers).
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import subprocess
from dataclasses import dataclass, field
from typing import cast

import trio

from .addresses import peer_host, peer_port
from .tcpwrappers import Decision, HostsFiles, Option, Request, decide, expand_percent
from .tcpwrappers.files import banner_path_error, check_option, hostname_for, read_patterns

log = logging.getLogger("tlswrap.access")

LOOKUP_TIMEOUT = 5.0

_SYSLOG_TO_PY = {"emerg": logging.CRITICAL, "alert": logging.CRITICAL, "crit": logging.CRITICAL,
                 "err": logging.ERROR, "warning": logging.WARNING, "notice": 25,
                 "info": logging.INFO, "debug": logging.DEBUG}


class _NeedsLookup(Exception):
    """A rule wants a host name: decide again where blocking is allowed."""


def _forbidden() -> str | None:
    raise _NeedsLookup


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




def _on_option(option: Option, warn) -> str | None:  # type: ignore[no-untyped-def]
    if option.name == "banners":
        problem = banner_path_error(str(option.arg))
        if problem:
            warn(problem)
        return None
    return check_option(option)


class AccessControl:
    """hosts.allow/hosts.deny for every service of a daemon."""

    def __init__(self, hosts: HostsFiles, resolver=hostname_for):  # type: ignore[no-untyped-def]
        self.hosts = hosts
        self.resolver = resolver  # address -> verified name, PARANOID or None (blocking)

    @classmethod
    def from_files(cls, allow: str, deny: str) -> AccessControl:
        """Rules from these files; a syntax error in either is a ConfigError (FILE:LINE),
        so that it stops the start or the reload."""
        hosts = HostsFiles(allow, deny)
        hosts.load_strict()
        return cls(hosts)

    def _decide(self, daemon: str, peer: object, local: object,
                lookups: bool | None) -> tuple[Decision, str, bytes | None]:
        """Decide; ``lookups``: True (may block), False (raise _NeedsLookup), None (unknown)."""
        allow, deny = self.hosts.rules()
        client_ip, server_ip = peer_host(peer), peer_host(local)
        client_name = server_name = None
        if lookups:
            resolve = self.resolver
            client_name = (lambda: resolve(client_ip)) if client_ip else None
            server_name = (lambda: resolve(server_ip)) if server_ip else None
        elif lookups is False:
            client_name = server_name = _forbidden
        request = Request(daemon=daemon, client_addr=client_ip, client_name=client_name,
                          server_addr=server_ip, server_name=server_name, user=None,
                          client_port=peer_port(peer), server_port=peer_port(local),
                          pid=os.getpid())
        decision = decide(allow, deny, request, read_patterns=read_patterns,
                          on_option=_on_option)
        banners = decision.option("banners")
        if banners is not None:
            decision_banner = _banner(str(banners.arg), daemon, request)
        else:
            decision_banner = None
        client = client_ip or "unknown"
        if lookups:  # name the client as tcpd's log lines do, when the name is known
            name = request.client_hostname()
            if name and name not in ("unknown", "paranoid"):
                client = name
        return decision, client, decision_banner

    async def check(self, daemon: str, peer: object, local: object) -> Verdict:
        try:
            result = self._decide(daemon, peer, local, lookups=False)
        except _NeedsLookup:
            result = None  # decided again below, outside the except clause
        if result is None:
            with trio.move_on_after(LOOKUP_TIMEOUT):
                result = await trio.to_thread.run_sync(
                    self._decide, daemon, peer, local, True, abandon_on_cancel=True)
                return self._verdict(daemon, *result)
            log.warning("[%s] host name lookup for %s timed out after %gs: name unknown",
                        daemon, peer_host(peer), LOOKUP_TIMEOUT)
            result = self._decide(daemon, peer, local, lookups=None)
        return self._verdict(daemon, *result)

    def _verdict(self, daemon: str, decision: Decision, client: str,
                 banner: bytes | None) -> Verdict:
        v = Verdict(decision, client, banner=banner)
        for opt in decision.options:
            name, arg = opt.name, opt.arg
            if name == "spawn":
                _spawn_detached(str(arg), daemon)
            elif name == "twist":
                v.twist = str(arg)
            elif name == "setenv":
                key, value = cast("tuple[str, str]", arg)
                v.env[key] = value
            elif name == "umask":
                v.umask = int(arg)  # type: ignore[call-overload]
            elif name == "nice":
                v.nice = int(arg)  # type: ignore[call-overload]
            elif name == "user":
                v.user = _user_ids(arg)  # type: ignore[arg-type]
            elif name == "rfc931":
                log.warning("[%s] rfc931: ident lookups are not supported; the user is unknown",
                            daemon)
        return v

    def log_refusal(self, daemon: str, verdict: Verdict) -> None:
        level = logging.WARNING
        sev = verdict.decision.option("severity")
        if sev is not None:
            level = _SYSLOG_TO_PY.get(sev.arg.level, logging.WARNING)  # type: ignore[attr-defined]
        d = verdict.decision
        where = f" ({d.file} line {d.line})" if d.file else ""
        log.log(level, "[%s] refused connect from %s%s", daemon, verdict.client, where)


def _user_ids(arg: tuple[str, str | None]) -> tuple[int, int]:
    import grp
    import pwd

    user, group = arg
    pw = pwd.getpwnam(user)
    gid = grp.getgrnam(group).gr_gid if group else pw.pw_gid
    return pw.pw_uid, gid


def _banner(directory: str, daemon: str, request: Request) -> bytes | None:
    """banners.c: the file named as the daemon, each line %-expanded, CRLF line ends."""
    try:
        with open(os.path.join(directory, daemon), encoding="utf-8",
                  errors="surrogateescape") as f:
            text = f.read(65536)
    except OSError:
        return None
    lines = [expand_percent(line, request) for line in text.splitlines()]
    return "".join(line + "\r\n" for line in lines).encode("utf-8", "surrogateescape")


def _spawn_detached(command: str, daemon: str) -> None:
    """Run a ``spawn`` command in the background, as tcpd does (stdio on /dev/null)."""
    try:
        proc = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                close_fds=True, start_new_session=True)
    except OSError as exc:
        log.error("[%s] spawn: cannot run /bin/sh: %s", daemon, exc.strerror)
        return
    _reap_later(proc)


_pending: list[subprocess.Popen[bytes]] = []


def _reap_later(proc: subprocess.Popen[bytes]) -> None:
    """Keep the child to reap it at the next spawn (spawned commands are short)."""
    _pending.append(proc)
    for p in list(_pending):
        if p.poll() is not None:
            _pending.remove(p)


def apply_socket_options(sock: socket.socket, decision: Decision) -> None:
    """keepalive and linger from the deciding rule."""
    if decision.option("keepalive") is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    linger = decision.option("linger")
    if linger is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                        struct.pack("ii", 1, int(linger.arg)))  # type: ignore[call-overload]
