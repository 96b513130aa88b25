"""The hosts-file half of ``tlswrap check``: what is wrong or noteworthy in one rule.

Pure, like tcpdchk(8): rules come in parsed (:mod:`tlswrap.tcpwrappers.rules`), ``/path``
lists through a callback, findings go out through ``emit(severity, message)``. Patterns are
judged with the matcher's own functions (:mod:`tlswrap.tcpwrappers.patterns`), so the checker
and the matcher cannot disagree on what a pattern means.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from tlswrap.tcpwrappers.cstring import equal, split_at
from tlswrap.tcpwrappers.options import Option
from tlswrap.tcpwrappers.patterns import (
    bracketed,
    daemon_or_port,
    dot_quad_addr,
    inet6,
    ipv4_mask,
    ipv6_net,
    not_inaddr,
)
from tlswrap.tcpwrappers.request import UNKNOWN
from tlswrap.tcpwrappers.rules import Rule

if TYPE_CHECKING:
    from tlswrap.tcpwrappers.patterns import ReadPatterns

__all__ = ["ACLEXEC_NOTE", "DNS", "Emit", "Services", "System", "check_host", "lint_rule",
           "rule_listing"]

_MAX_DEPTH = 8  # /path lists naming /path lists: tcpd would recurse; stop somewhere
DNS = "needs a DNS lookup per connection"
IDENT = "asks the client's ident server (RFC 931) for each connection"
ACLEXEC_NOTE = ("aclexec: the command runs for every connection this rule matches, before "
                "any TLS, and decides: exit 0 and the rule applies; any other status, a "
                "signal or a time-out and the rule does not match (in hosts.deny that "
                "grants access)")
_NAME_EXPANSIONS = re.compile(r"%[nN]")  # %h %c %H %s fall back to the address, no lookup

Emit = Callable[[str, str], None]  # (severity, message)


class System(NamedTuple):
    """The questions only the system can answer, asked through callbacks (the shell's)."""

    read_patterns: ReadPatterns  # the words of a /path list
    check_option: Callable[[Option], str | None]  # unknown user/group: tcpd's message
    banner_path_error: Callable[[str], str | None]  # a banners directory that is missing
    banner_file_errors: Callable[[str], list[str]]  # its files that are not regular files


# --- host patterns (hosts_access.c host_match, as patterns.host_match does it) ----------

def check_host(tok: str, emit: Emit, read_patterns: ReadPatterns,
               dns: str = DNS, depth: int = 0) -> None:
    """What a client (or ``daemon@host``) host pattern can match, and whether it needs DNS."""
    if tok.startswith("@"):
        emit("warning", f"{tok}: never matches: no NIS netgroups here "
                        "(tcpd: unknown or empty netgroup)")
        return
    if tok.startswith("/"):
        _check_host_file(tok, emit, read_patterns, dns, depth)
        return
    if equal(tok, "FAIL"):
        emit("warning", "FAIL is no longer recognized (use EXCEPT or DENY instead)")
    if equal(tok, "KNOWN") or equal(tok, "LOCAL"):
        emit("note", f"{tok}: {dns}")
        return
    net, mask = split_at(tok, "/")
    if mask is not None:
        _check_masked(tok, net, mask, emit)
        return
    if equal(tok, "ALL"):
        return
    if not_inaddr(tok):  # compared with the address, then with the host name
        inner = bracketed(tok)
        if inner is not None:
            if inet6(inner) is None:
                emit("warning", f"{tok}: never matches: not an IPv6 address")
                return
            emit("note", f"{tok}: {dns} for clients with another address "
                         f"(tcpd also compares the name; {tok}/128 compares only the address)")
            return
        if tok.endswith(".") and "*" not in tok and "?" not in tok:
            emit("warning", f"{tok}: domain or host name ends in dot "
                            "(matches only host names that begin with it)")
        emit("note", f"{tok}: {dns}")
        return
    if tok.startswith("."):
        emit("warning", f"{tok}: network number begins with dot")
    elif tok.endswith("."):
        labels = tok[:-1].split(".")
        if len(labels) > 3 or not all(_decimal_octet(x) for x in labels):
            emit("warning", f"{tok}: never matches: no IPv4 address begins with it")
    elif not all(_decimal_octet(x) for x in tok.split(".")) or tok.count(".") != 3:
        emit("warning", f"{tok}: never matches: not an IPv4 address as tcpd compares it "
                        "(four numbers 0-255, no leading zeros)")


def _decimal_octet(s: str) -> bool:
    return s.isdigit() and s.isascii() and str(int(s)) == s and int(s) <= 255


def _check_host_file(path: str, emit: Emit, read_patterns: ReadPatterns,
                     dns: str, depth: int) -> None:
    try:
        patterns = read_patterns(path)
    except FileNotFoundError:
        emit("warning", f"{path}: never matches: no such file")
        return
    except OSError as exc:
        emit("warning", f"open {path}: {exc.strerror or exc}")
        return
    if not patterns:
        emit("warning", f"{path}: never matches: the file holds no patterns")
    if depth >= _MAX_DEPTH:
        emit("warning", f"{path}: pattern files nested too deep")
        return
    for p in patterns:
        check_host(p, lambda sev, msg: emit(sev, f"in {path}: {msg}"), read_patterns, dns,
                   depth + 1)


def _check_masked(tok: str, net_tok: str, mask_tok: str, emit: Emit) -> None:
    """patterns.masked_match: IPv4 ``net/mask`` or ``net/len``, IPv6 ``[net]/len``."""
    if bracketed(net_tok) is not None:
        if ipv6_net(net_tok, mask_tok) is None:
            emit("warning", f"{tok}: bad net/mask pattern: never matches")
        return
    net = dot_quad_addr(net_tok)
    mask = ipv4_mask(mask_tok)
    if net is None or mask is None:
        hint = ""
        if net is not None and mask_tok.strip() == "255.255.255.255":
            hint = f" (tcpd cannot read the mask 255.255.255.255: write {net_tok}/32)"
        emit("warning", f"{tok}: bad net/mask pattern: never matches{hint}")
        return
    if net & ~mask & 0xFFFFFFFF:
        fixed = ".".join(str((net & mask) >> s & 0xFF) for s in (24, 16, 8, 0))
        emit("warning", f"{tok}: never matches: the net has bits outside the mask "
                        f"(tcpd does not mask it; write {fixed}/{mask_tok})")


# --- daemon and client lists -----------------------------------------------------------------

@dataclass(frozen=True)
class Services:
    """The configured services as the daemon names them: (name, port, libwrap)."""

    config: str
    entries: tuple[tuple[str, int | None, bool], ...]

    def matching(self, pattern: str) -> list[tuple[str, int | None, bool]]:
        found = []
        for name, port, libwrap in self.entries:
            if daemon_or_port(pattern, name, port):
                found.append((name, port, libwrap))
        return found

    def port_unknown(self) -> bool:
        return any(port is None for _, port, _ in self.entries)


def _check_daemon(tok: str, emit: Emit, services: Services | None,
                  read_patterns: ReadPatterns) -> None:
    """tcpdchk's check_daemon(), then the services of the config."""
    daemon, host = split_at(tok[1:], "@")
    if host is not None:
        daemon = tok[0] + daemon
        check_host(host, emit, read_patterns,
                   "needs a DNS lookup of the server address per connection")
    else:
        daemon = tok
    if not daemon:
        return
    if daemon[0] in "@/":
        emit("warning", f'{daemon}: daemon name begins with "{daemon[0]}"')
    elif daemon[0] == ".":
        emit("warning", f"{daemon}: daemon name begins with dot")
    elif daemon[-1] == ".":
        emit("warning", f"{daemon}: daemon name ends in dot")
    elif equal(daemon, "ALL") or equal(daemon, UNKNOWN):
        pass
    elif equal(daemon, "FAIL"):
        emit("warning", "FAIL is no longer recognized (use EXCEPT or DENY instead)")
    elif any(equal(daemon, w) for w in ("KNOWN", "PARANOID", "LOCAL")):
        emit("warning", f"{daemon}: daemon name may be reserved word")
    if services is None or equal(daemon, "ALL"):
        return
    found = services.matching(daemon)
    if not found:
        if daemon.isdigit() and services.port_unknown():
            return  # a port, and some service listens where the config does not say
        if daemon.isdigit():
            emit("warning", f"{daemon}: no service accepts on port {daemon} in {services.config}")
        else:
            emit("warning", f"{daemon}: no such service in {services.config}")
    elif not any(libwrap for _, _, libwrap in found):
        names = ", ".join(f"[{name}]" for name, _, _ in found)
        emit("warning", f"{daemon}: {names} has libwrap = no: this rule never applies to it")


def _check_client(tok: str, emit: Emit, read_patterns: ReadPatterns) -> None:
    _, host = split_at(tok[1:], "@")
    if host is None:
        check_host(tok, emit, read_patterns)
        return
    emit("note", f"{tok}: {IDENT} when the host matches")
    check_host(host, emit, read_patterns)


def _list_tokens(tokens: Sequence[str], what: str, emit: Emit) -> list[str]:
    """The patterns of a list; tcpdchk's warning when it is empty or ends in EXCEPT."""
    if tokens and equal(tokens[0], "EXCEPT"):
        emit("warning", f"{what} list begins with EXCEPT: this rule never matches")
        return []
    count = 0
    for tok in tokens:
        count = 0 if equal(tok, "EXCEPT") else count + 1
    if count == 0:
        emit("warning", f"{what} list is empty or ends in EXCEPT")
    return [t for t in tokens if not equal(t, "EXCEPT")]


def _check_options(rule: Rule, emit: Emit, system: System) -> None:
    """What tcpd checks only when the option runs: users, groups, banner directories (and
    what it would wait on there forever)."""
    for spec in rule.options:
        if spec.error:
            continue  # already among the syntax problems
        if spec.name in ("user", "group"):
            problem = system.check_option(spec.bind(spec.value))
            if problem:
                emit("error", problem)
        elif spec.name == "banners" and spec.value:
            problem = system.banner_path_error(spec.value)
            if problem:
                emit("warning", problem)
            for problem in system.banner_file_errors(spec.value):
                emit("error", problem)
        elif spec.name == "rfc931":
            emit("note", f"rfc931: {IDENT} this rule decides")
        elif spec.name == "aclexec" and spec.value:
            emit("note", ACLEXEC_NOTE)
        if spec.expand and spec.value:
            for exp in sorted(set(_NAME_EXPANSIONS.findall(spec.value))):
                emit("note", f"{spec.keyword} {exp}: {DNS}")


def _cut_ipv6(rule: Rule, raw: str | None) -> str | None:
    """An IPv6 address written bare in the client list: tcpd cuts it at its first ``:``."""
    if raw is None or (not rule.option_error and not any(s.error for s in rule.options)):
        return None
    _daemons, rest = split_at(raw, ":")
    if rest is None:
        return None
    clients, options = split_at(rest, ":")
    if options is None:
        return None
    head, tail = clients.replace(",", " ").split(), options.replace(",", " ").split()
    if not tail:
        return None
    candidate = (head[-1] if head else "") + ":" + tail[0]
    addr = candidate.split("/", 1)[0]
    return candidate if addr.count(":") >= 2 and inet6(addr) is not None else None


def _cut_message(cut: str) -> str:
    addr, slash, bits = cut.partition("/")
    return (f"{cut}: never matches: an IPv6 address is cut at its first ':' "
            f"(write [{addr}]{slash}{bits})")


def _rule_text(rule: Rule) -> str:
    return f"{' '.join(rule.daemons)} : {' '.join(rule.clients)}"


def _covers(earlier: Sequence[str], later: Sequence[str]) -> bool:
    """Every request ``later`` matches, ``earlier`` matches too (provably, no lookups needed)."""
    if not later:
        return False
    if tuple(earlier) == tuple(later):
        return True
    if any(equal(t, "EXCEPT") for t in earlier):
        return False
    if any(equal(t, "ALL") for t in earlier):
        return True
    return not any(equal(t, "EXCEPT") for t in later) and set(later) <= set(earlier)


def _shadowing(rule: Rule, before: Sequence[Rule]) -> Rule | None:
    for earlier in before:
        if _covers(earlier.daemons, rule.daemons) and _covers(earlier.clients, rule.clients):
            return earlier
    return None


def _verdict(rule: Rule, default: str, system: System) -> str:
    """What tcpdchk -v prints on the ``access:`` line of a rule."""
    for spec in rule.options:
        if spec.error or (spec.name in ("user", "group")
                          and system.check_option(spec.bind(spec.value))):
            return "denied"
        if spec.name in ("allow", "deny"):
            return "granted" if spec.name == "allow" else "denied"
    return "denied" if rule.option_error else default


def lint_rule(rule: Rule, raw: str | None, seen: Sequence[Rule], services: Services | None,
              system: System, emit: Emit) -> None:
    """Every finding for one rule; ``raw``: its source line (for an IPv6 address cut at ':'),
    ``seen``: the rules before it in the same file (for shadowing)."""
    cut = _cut_ipv6(rule, raw)
    for tok in _list_tokens(rule.daemons, "daemon", emit):
        _check_daemon(tok, emit, services, system.read_patterns)
    clients = _list_tokens(rule.clients, "client", emit)
    for i, tok in enumerate(clients):
        if cut is not None and i == len(clients) - 1 and cut.startswith(tok + ":"):
            emit("warning", _cut_message(cut))
            continue
        _check_client(tok, emit, system.read_patterns)
    if cut is not None and not clients:
        emit("warning", _cut_message(cut))
    _check_options(rule, emit, system)
    earlier = _shadowing(rule, seen)
    if earlier is not None:
        emit("warning", f"shadowed by line {earlier.lineno} ({_rule_text(earlier)}): "
                        "every request this rule matches is decided there first")


def rule_listing(rule: Rule, path: str, default: str, system: System) -> list[str]:
    """The ``-v`` lines for one rule, as tcpdchk -v prints them."""
    return [f">>> Rule {path} line {rule.lineno}:", f"daemons:  {' '.join(rule.daemons)}",
            f"clients:  {' '.join(rule.clients)}",
            f"access:   {_verdict(rule, default, system)}", ""]
