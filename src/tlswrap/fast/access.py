"""hosts.allow/hosts.deny on the inetd fast path: the one rule engine, a thin shell.

As ``access.AccessControl.check`` decides for the full path, with the same engine
(``tcpwrappers``: parse_hosts, decide), for one connection and before any log line: the
caller logs the ``accepted`` line, then ``Verdict.warnings``, then acts on the verdict.

The fast path honours the options that only change the verdict, the refusal line's level or
the socket: ``allow``, ``deny``, ``severity``, ``keepalive``, ``linger``. A deciding rule that
reaches any other option (spawn, twist, banners, setenv, umask, nice, user, group, rfc931,
aclexec) raises :class:`HandOver`, as does a rule that wants the client's user (a
``user@host`` pattern reached) and a hosts file the full path would refuse to start with
(unreadable, a syntax error): nothing has been read from the connection or logged yet,
so the full path then serves it from the start, deciding again itself.

Host names are looked up only when a rule needs one, as on the full path: the decision is
made first with lookups forbidden; if a pattern needs a name, it is made again in a thread
bounded by ``LOOKUP_TIMEOUT``, then, past the bound, with the names unknown. Only that branch
imports the resolver (``tcpwrappers.files``: socket, ipaddress, logging) and ``threading``.
"""

from __future__ import annotations

import os

from ..addresses import peer_host, peer_port
from ..regularfile import HOSTS_MAX_BYTES, read_regular_text
from ..tcpwrappers.decide import Decision, decide
from ..tcpwrappers.request import Request
from ..tcpwrappers.rules import Rules, parse_hosts

TYPE_CHECKING = False  # typing costs milliseconds to import; annotations are strings here
if TYPE_CHECKING:
    from collections.abc import Callable

    from ..tcpwrappers.options import Option

HONOURED = frozenset({"allow", "deny", "severity", "keepalive", "linger"})


class HandOver(Exception):
    """Not for the fast path: the full path serves this connection (and decides again)."""


class _NeedsLookup(Exception):
    """A rule wants a host name: decide again where a lookup may block."""


class Verdict:
    """The decision, the client as tcpd names it in log lines, and the resolver's warnings."""

    __slots__ = ("client", "decision", "warnings")

    def __init__(self, decision: Decision, client: str, warnings: list[str]) -> None:
        self.decision = decision
        self.client = client
        self.warnings = warnings


def load(path: str) -> Rules:
    """One hosts file, as ``tcpwrappers.files.read_hosts`` reads it; HandOver when the full
    path would not start with it (``HostsFiles.load_strict``)."""
    try:
        text = read_regular_text(path, HOSTS_MAX_BYTES)
    except FileNotFoundError:
        return Rules.empty(path)
    except (OSError, ValueError):
        raise HandOver from None
    rules = parse_hosts(text, path)
    if rules.problems:
        raise HandOver
    return rules


def _on_option(option: Option, warn: Callable[[str], None]) -> str | None:
    if option.name not in HONOURED:
        raise HandOver
    return None


def _read_patterns(path: str) -> list[str]:
    from ..tcpwrappers.files import read_patterns

    return read_patterns(path)


def _forbidden() -> str | None:
    raise _NeedsLookup


def _user() -> str | None:
    raise HandOver  # the client's user (RFC 931): the full path asks for it


def _decide(allow: Rules, deny: Rules, daemon: str, peer: object, local: object,
            resolve: Callable[[str], str | None] | None) -> tuple[Decision, str]:
    """``access.AccessControl._decide``: ``resolve`` None: names unknown; ``_forbidden``'s
    raise when a lookup is reached in the first pass."""
    client_ip, server_ip = peer_host(peer), peer_host(local)
    client_name: Callable[[], str | None] | None = None
    server_name: Callable[[], str | None] | None = None
    if resolve is not None:
        client_name = (lambda: resolve(client_ip)) if client_ip else None
        server_name = (lambda: resolve(server_ip)) if server_ip else None
    request = Request(daemon=daemon, client_addr=client_ip, client_name=client_name,
                      server_addr=server_ip, server_name=server_name, user=_user,
                      client_port=peer_port(peer), server_port=peer_port(local),
                      pid=os.getpid())
    decision = decide(allow, deny, request, read_patterns=_read_patterns,
                      on_option=_on_option)
    return decision, request.seen_as()


def check(daemon: str, allow_path: str, deny_path: str, peer: object, local: object,
          label: str) -> Verdict:
    """The verdict for this connection; HandOver when it is the full path's. ``label``
    starts the line said when the lookups run out of time (``[service]``)."""
    allow, deny = load(allow_path), load(deny_path)
    try:
        return Verdict(*_decide(allow, deny, daemon, peer, local,
                                lambda addr: _forbidden()), [])
    except _NeedsLookup:
        pass
    import threading

    from ..tcpwrappers.files import LOOKUP_TIMEOUT, hostname_for, late_decision

    warnings: list[str] = []
    found: list[tuple[Decision, str] | BaseException] = []

    def resolve(addr: str) -> str | None:
        return hostname_for(addr, warnings.append)

    def run() -> None:
        try:
            found.append(_decide(allow, deny, daemon, peer, local, resolve))
        except BaseException as exc:  # noqa: BLE001 - raised again on the caller's thread
            found.append(exc)

    thread = threading.Thread(target=run, name="tcpwrappers lookup", daemon=True)
    thread.start()
    thread.join(LOOKUP_TIMEOUT + 1.0)  # access.AccessControl.check's bound
    if found:
        result = found[0]
        if isinstance(result, BaseException):
            raise result
        return Verdict(*result, list(warnings))
    late = [*warnings, late_decision(label, peer_host(peer), LOOKUP_TIMEOUT)]
    return Verdict(*_decide(allow, deny, daemon, peer, local, None), late)
