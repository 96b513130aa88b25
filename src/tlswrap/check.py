"""``tlswrap check [CONFIG]``: tcpdchk(8) for tlswrap, plus the config and its certificates.

    tlswrap check [-d] [-v] [-a FILE | --allow FILE] [-D FILE | --deny FILE] [CONFIG]

General theory of operation: every finding is ``FILE:LINE: error|warning|note: message``.
The hosts files are read with :func:`tlswrap.hostsfiles.read_hosts` and judged with the
engine's own functions (``string_match``, ``dot_quad_addr``, ``split_at``, the matcher's
``daemon_or_port``), so the checker and the matcher cannot disagree on what a pattern means.

- error: tlswrap would refuse to start (a syntax error: the daemon strict-loads the hosts
  files; a config, certificate, key or cipher problem, found by running ``daemon.prepare`` on
  each service without binding anything), an unknown ``user``/``group`` in an option (tcpd
  denies when the rule decides), an expired or not yet valid certificate.
- warning: tcpdchk's warnings; daemon names that match no ``[service]``; patterns that can
  never match; rules shadowed by an earlier rule of the same file; a certificate expiring
  within ``EXPIRY_DAYS``; a private key readable by group or others.
- note: a pattern or option that makes tlswrap look a name up in DNS per connection.

Exit status: 0 without errors, 1 with errors, 2 for a usage error. Without CONFIG nothing
heavy is imported (no trio, no OpenSSL), so the command starts fast.
"""

from __future__ import annotations

import datetime
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, TextIO

from tlswrap import hostsfiles
from tlswrap.errors import ConfigError, TlswrapError
from tlswrap.hostsaccess import (UNKNOWN, Request, Rule, _eq, _inet6, _Matcher,
                                 _not_inaddr, _atoi, dot_quad_addr, string_match)
from tlswrap.hostsoptions import split_at

if TYPE_CHECKING:
    from tlswrap.config import Config, Service

USAGE = """\
usage: tlswrap check [-d] [-v] [-a FILE] [-D FILE] [CONFIG]
	CONFIG: also check this config, its certificates and keys, and the hosts files it names
	-d: use hosts.allow and hosts.deny in the current directory
	-a FILE, --allow FILE: use FILE as hosts.allow
	-D FILE, --deny FILE: use FILE as hosts.deny
	-v: list all rules
"""

EXPIRY_DAYS = 30  # a certificate expiring sooner is a warning (Let's Encrypt renews at 30)
_MAX_DEPTH = 8  # /path lists naming /path lists: tcpd would recurse; stop somewhere
_SEVERITIES = ("error", "warning", "note")
_DNS = "needs a DNS lookup per connection"
_NAME_EXPANSIONS = re.compile(r"%[nN]")  # %h %c %H %s fall back to the address, no lookup

Emit = Callable[[str, str], None]  # (severity, message)


@dataclass(frozen=True)
class Finding:
    """One line of the report."""

    file: str
    line: int | None
    severity: str  # "error", "warning" or "note"
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.severity}: {self.message}"


@dataclass
class Report:
    """Findings in the order the files were checked, then by line."""

    findings: list[Finding] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def file(self, name: str) -> None:
        """Count ``name`` as checked (it is listed in the summary, in this order)."""
        if name not in self.files:
            self.files.append(name)

    def add(self, file: str, line: int | None, severity: str, message: str) -> None:
        self.file(file)
        self.findings.append(Finding(file, line, severity, message))

    def at(self, file: str, line: int | None, prefix: str = "") -> Emit:
        return lambda severity, message: self.add(file, line, severity, prefix + message)

    def sorted(self) -> list[Finding]:
        rank = {name: i for i, name in enumerate(self.files)}
        return sorted(self.findings, key=lambda f: (rank[f.file], f.line or 0))

    def count(self, severity: str) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    def summary(self) -> str:
        counts = []
        for sev in _SEVERITIES:
            n = self.count(sev)
            counts.append(f"{n} {sev}{'' if n == 1 else 's'}")
        checked = ", ".join(self.files) or "nothing"
        return f"checked {checked}: {', '.join(counts)}"


# --- host patterns (hosts_access.c host_match, as _Matcher.host_match does it) -------------

def check_host(tok: str, emit: Emit, read_patterns: Callable[[str], Sequence[str]],
               dns: str = _DNS, depth: int = 0) -> None:
    """What a client (or ``daemon@host``) host pattern can match, and whether it needs DNS."""
    if tok.startswith("@"):
        emit("warning", f"{tok}: never matches: no NIS netgroups here "
                        "(tcpd: unknown or empty netgroup)")
        return
    if tok.startswith("/"):
        _check_host_file(tok, emit, read_patterns, dns, depth)
        return
    if _eq(tok, "FAIL"):
        emit("warning", "FAIL is no longer recognized (use EXCEPT or DENY instead)")
    if _eq(tok, "KNOWN") or _eq(tok, "LOCAL"):
        emit("note", f"{tok}: {dns}")
        return
    net, mask = split_at(tok, "/")
    if mask is not None:
        _check_masked(tok, net, mask, emit)
        return
    if _eq(tok, "ALL"):
        return
    if _not_inaddr(tok):  # compared with the address, then with the host name
        if len(tok) >= 2 and tok[0] == "[" and tok[-1] == "]":
            if _inet6(tok[1:-1]) is None:
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


def _check_host_file(path: str, emit: Emit, read_patterns: Callable[[str], Sequence[str]],
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
    """hostsaccess.masked_match: IPv4 ``net/mask`` or ``net/len``, IPv6 ``[net]/len``."""
    if len(net_tok) >= 2 and net_tok[0] == "[" and net_tok[-1] == "]":
        if _inet6(net_tok[1:-1]) is None or not 0 <= _atoi(mask_tok) <= 128:
            emit("warning", f"{tok}: bad net/mask pattern: never matches")
        return
    net = dot_quad_addr(net_tok)
    mask = dot_quad_addr(mask_tok)
    if mask is None and 1 <= _atoi(mask_tok) <= 32:
        mask = (0xFFFFFFFF << (32 - _atoi(mask_tok))) & 0xFFFFFFFF
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
            request = Request(daemon=name, server_port=port)
            if _Matcher(request, None, None, None, None).daemon_or_port(pattern):
                found.append((name, port, libwrap))
        return found

    def port_unknown(self) -> bool:
        return any(port is None for _, port, _ in self.entries)


def _check_daemon(tok: str, emit: Emit, services: Services | None,
                  read_patterns: Callable[[str], Sequence[str]]) -> None:
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
    elif _eq(daemon, "ALL") or _eq(daemon, UNKNOWN):
        pass
    elif _eq(daemon, "FAIL"):
        emit("warning", "FAIL is no longer recognized (use EXCEPT or DENY instead)")
    elif any(_eq(daemon, w) for w in ("KNOWN", "PARANOID", "LOCAL")):
        emit("warning", f"{daemon}: daemon name may be reserved word")
    if services is None or _eq(daemon, "ALL"):
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


def _check_client(tok: str, emit: Emit, read_patterns: Callable[[str], Sequence[str]]) -> None:
    user, host = split_at(tok[1:], "@")
    if host is None:
        check_host(tok, emit, read_patterns)
        return
    user = tok[0] + user
    if not string_match(user, UNKNOWN):
        emit("warning", f"{tok}: never matches: tlswrap does no RFC 931 (ident) lookups, "
                        "so the user is always unknown")
        return
    check_host(host, emit, read_patterns)


def _list_tokens(tokens: Sequence[str], what: str, emit: Emit) -> list[str]:
    """The patterns of a list; tcpdchk's warning when it is empty or ends in EXCEPT."""
    if tokens and _eq(tokens[0], "EXCEPT"):
        emit("warning", f"{what} list begins with EXCEPT: this rule never matches")
        return []
    count = 0
    for tok in tokens:
        count = 0 if _eq(tok, "EXCEPT") else count + 1
    if count == 0:
        emit("warning", f"{what} list is empty or ends in EXCEPT")
    return [t for t in tokens if not _eq(t, "EXCEPT")]


def _check_options(rule: Rule, emit: Emit) -> None:
    """What tcpd checks only when the option runs: users, groups, banner directories."""
    for spec in rule.options:
        if spec.error:
            continue  # already among the syntax problems
        if spec.name in ("user", "group"):
            problem = hostsfiles.check_option(spec.bind(spec.value))
            if problem:
                emit("error", problem)
        elif spec.name == "banners" and spec.value:
            problem = hostsfiles.banner_path_error(spec.value)
            if problem:
                emit("warning", problem)
        elif spec.name == "rfc931":
            emit("warning", "rfc931: tlswrap does no ident lookups; the user stays unknown")
        if spec.expand and spec.value:
            for exp in sorted(set(_NAME_EXPANSIONS.findall(spec.value))):
                emit("note", f"{spec.keyword} {exp}: {_DNS}")


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
    return candidate if addr.count(":") >= 2 and _inet6(addr) is not None else None


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
    if any(_eq(t, "EXCEPT") for t in earlier):
        return False
    if any(_eq(t, "ALL") for t in earlier):
        return True
    return not any(_eq(t, "EXCEPT") for t in later) and set(later) <= set(earlier)


def _shadowing(rule: Rule, before: Sequence[Rule]) -> Rule | None:
    for earlier in before:
        if _covers(earlier.daemons, rule.daemons) and _covers(earlier.clients, rule.clients):
            return earlier
    return None


def _verdict(rule: Rule, default: str) -> str:
    """What tcpdchk -v prints on the ``access:`` line of a rule."""
    for spec in rule.options:
        if spec.error or (spec.name in ("user", "group")
                          and hostsfiles.check_option(spec.bind(spec.value))):
            return "denied"
        if spec.name in ("allow", "deny"):
            return "granted" if spec.name == "allow" else "denied"
    return "denied" if rule.option_error else default


def check_hosts(path: str, default: str, report: Report, services: Services | None,
                listing: list[str] | None = None) -> None:
    """Check one hosts file; ``default``: "granted" for hosts.allow, "denied" for hosts.deny."""
    rules = hostsfiles.read_hosts(path)
    report.file(path)
    if not os.path.lexists(path):
        report.add(path, None, "note", "no such file: tcpd treats it as empty")
        return
    for file, line, msg in rules.problems:
        report.add(file, line, "error", msg)
    raw_lines: list[str] | None = None
    seen: list[Rule] = []
    for rule in rules.rules:
        emit = report.at(path, rule.lineno)
        if listing is not None:
            listing += [f">>> Rule {path} line {rule.lineno}:",
                        f"daemons:  {' '.join(rule.daemons)}",
                        f"clients:  {' '.join(rule.clients)}",
                        f"access:   {_verdict(rule, default)}", ""]
        raw = None
        if rule.option_error or any(s.error for s in rule.options):
            if raw_lines is None:
                raw_lines = _read_lines(path)
            raw = raw_lines[rule.lineno - 1] if rule.lineno <= len(raw_lines) else None
        cut = _cut_ipv6(rule, raw)
        for tok in _list_tokens(rule.daemons, "daemon", emit):
            _check_daemon(tok, emit, services, hostsfiles.read_patterns)
        clients = _list_tokens(rule.clients, "client", emit)
        for i, tok in enumerate(clients):
            if cut is not None and i == len(clients) - 1 and cut.startswith(tok + ":"):
                emit("warning", _cut_message(cut))
                continue
            _check_client(tok, emit, hostsfiles.read_patterns)
        if cut is not None and not clients:
            emit("warning", _cut_message(cut))
        _check_options(rule, emit)
        earlier = _shadowing(rule, seen)
        if earlier is not None:
            emit("warning", f"shadowed by line {earlier.lineno} ({_rule_text(earlier)}): "
                            "every request this rule matches is decided there first")
        seen.append(rule)


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
            return f.read().split("\n")
    except OSError:
        return []


# --- the config: the daemon's own start-up validation, without binding -----------------------

def check_config(path: str, report: Report) -> Config | None:
    """Parse ``path`` and run ``daemon.prepare`` on each service; certificates, key modes."""
    from tlswrap.daemon import load_config, prepare

    report.file(path)
    try:
        config = load_config(path)
    except ConfigError as exc:
        _config_error(report, exc)
        return None
    for svc in config.services:
        # One service at a time, so that every broken service is reported; the hosts files,
        # which prepare() strict-loads, are checked in full by check_hosts().
        try:
            prepare(replace(config, services=(replace(svc, libwrap=False),)))
        except ConfigError as exc:
            _config_error(report, exc)
        except TlswrapError as exc:
            report.add(path, None, "error", f"[{svc.name}] {exc}")
        except OSError as exc:
            report.add(path, svc.line_of("cert"), "error",
                       f"[{svc.name}] {exc.filename or svc.cert}: {exc.strerror or exc}")
        _check_certificates(config, svc, report)
        _check_key_mode(config, svc, report)
    return config


def _config_error(report: Report, exc: ConfigError) -> None:
    svc = f"[{exc.service}] " if exc.service else ""
    report.add(exc.filename, exc.lineno, "error", f"{svc}{exc.msg}")


def _check_certificates(config: Config, svc: Service, report: Report,
                        now: datetime.datetime | None = None) -> None:
    from cryptography import x509

    if not svc.cert:
        return
    try:
        with open(svc.cert, "rb") as f:
            certs = x509.load_pem_x509_certificates(f.read())
    except (OSError, ValueError):
        return  # prepare() has said why
    now = now or datetime.datetime.now(datetime.timezone.utc)
    emit = report.at(config.filename, svc.line_of("cert"), f"[{svc.name}] cert = {svc.cert}: ")
    for i, cert in enumerate(certs):
        which = "" if i == 0 else f"chain certificate {cert.subject.rfc4514_string()}: "
        start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
        if now < start:
            emit("error", f"{which}not yet valid: valid from {start:%Y-%m-%d %H:%M:%S} UTC")
        elif now > end:
            emit("error", f"{which}expired on {end:%Y-%m-%d %H:%M:%S} UTC")
        elif end - now <= datetime.timedelta(days=EXPIRY_DAYS):
            emit("warning", f"{which}expiring in {(end - now).days} days "
                            f"(on {end:%Y-%m-%d %H:%M:%S} UTC)")


def _check_key_mode(config: Config, svc: Service, report: Report) -> None:
    from tlswrap.tlscontext import key_file_warning

    key = svc.key or svc.cert
    option = "key" if svc.key else "cert"
    warning = key_file_warning(key) if key else None
    if warning:
        report.add(config.filename, svc.line_of(option), "warning",
                   f"[{svc.name}] {option} = {warning}")


def _services(config: Config) -> Services:
    import socket

    entries = []
    for svc in config.services:
        port: int | None = None
        if svc.accept is not None:
            if isinstance(svc.accept.port, int):
                port = svc.accept.port
            else:
                try:
                    port = socket.getservbyname(svc.accept.port, "tcp")
                except OSError:
                    port = None
        entries.append((svc.name, port, svc.libwrap))
    return Services(config.filename, tuple(entries))


# --- the command -------------------------------------------------------------------------

@dataclass
class _Args:
    config: str | None = None
    allow: str | None = None
    deny: str | None = None
    verbose: bool = False


def _parse_args(argv: Sequence[str]) -> _Args | None:
    args = _Args()
    positional: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg == "--":
            positional.extend(it)
        elif arg == "-d":
            args.allow, args.deny = "hosts.allow", "hosts.deny"
        elif arg == "-v":
            args.verbose = True
        elif arg in ("-a", "--allow", "-D", "--deny"):
            value = next(it, None)
            if value is None:
                return None
            if arg in ("-a", "--allow"):
                args.allow = value
            else:
                args.deny = value
        elif arg.startswith(("--allow=", "--deny=")):
            key, _, value = arg.partition("=")
            if key == "--allow":
                args.allow = value
            else:
                args.deny = value
        elif arg.startswith("-") and len(arg) > 1:
            return None
        else:
            positional.append(arg)
    if len(positional) > 1:
        return None
    args.config = positional[0] if positional else None
    return args


def run(argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    """The command itself: prints the report on ``out``; returns the exit status."""
    if any(a in ("-h", "--help") for a in argv):
        out.write(USAGE)
        return 0
    args = _parse_args(argv)
    if args is None:
        err.write(USAGE)
        return 2
    report = Report()
    services = None
    allow, deny = args.allow, args.deny
    check_rules = True
    if args.config is not None:
        config = check_config(args.config, report)
        if config is not None:
            services = _services(config)
            allow = allow or config.globals.hosts_allow
            deny = deny or config.globals.hosts_deny
            if not any(svc.libwrap for svc in config.services) and not (args.allow or args.deny):
                report.add(config.filename, None, "note",
                           "every service has libwrap = no: the hosts files are not consulted")
                check_rules = False
        elif not (args.allow or args.deny):
            check_rules = False  # the config names the hosts files, and it did not parse
    listing: list[str] | None = [] if args.verbose else None
    if check_rules:
        check_hosts(allow or "/etc/hosts.allow", "granted", report, services, listing)
        check_hosts(deny or "/etc/hosts.deny", "denied", report, services, listing)
    lines = listing or []
    lines += [str(finding) for finding in report.sorted()]
    lines.append(report.summary())
    out.write("".join(_printable(line) + "\n" for line in lines))
    return 1 if report.count("error") else 0


def _printable(line: str) -> str:
    """Bytes that are not UTF-8 (kept as surrogates when the files were read) as escapes."""
    return line.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``tlswrap check ARGS`` (argv excludes the word ``check``)."""
    return run(sys.argv[1:] if argv is None else argv, sys.stdout, sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
