"""``tlswrap check [CONFIG]``: tcpdchk(8) for tlswrap, plus the config and its certificates.

    tlswrap check [-d] [-v] [-a FILE | --allow FILE] [-D FILE | --deny FILE] [CONFIG]

General theory of operation: every finding is ``FILE:LINE: error|warning|note: message``.
The hosts files are read with :func:`tlswrap.tcpwrappers.files.read_hosts` and each rule is
judged by the pure :mod:`tlswrap.tcpwrappers.lint`; the config by the daemon's own start-up
path (:func:`tlswrap.snapshot.prepare`).

- error: tlswrap would refuse to start (a syntax error: the daemon strict-loads the hosts
  files; a config, certificate, key or cipher problem, found by running the daemon's
  ``prepare`` on each service without binding anything; an ``output`` log file or ``pid``
  file it could not write; a ``setuid``/``setgid`` that names nobody), an unknown
  ``user``/``group`` in an option (tcpd denies when the rule decides), a file in a
  ``banners`` directory that is not a regular file (tcpd would wait on a FIFO there forever;
  tlswrap sends no banner from it), an expired or not yet valid certificate. Every mistake
  of the config is listed, not only the first.
- warning: tcpdchk's warnings; daemon names that match no ``[service]``; patterns that can
  never match; rules shadowed by an earlier rule of the same file; a certificate expiring
  within ``EXPIRY_DAYS``; a private key readable by group or others (except 640 with the
  ``setgid`` group); a certificate or key the ``setuid`` user could not re-read on SIGHUP
  (:func:`tlswrap.privileges.reread_problems`); an option tlswrap reads
  differently (``sslVersionMin = TLSv1``: it serves TLS 1.2 and up); a service name that a
  hosts.allow daemon list cannot spell (a space, ``,``, ``:`` or ``@`` in it: tcpd splits
  the list there), so that only ``ALL`` matches it.
- note: a pattern or option that makes tlswrap look a name up in DNS per connection.

``output`` and ``pid`` are checked as the user running the check, without creating or
changing either file (:func:`tlswrap.logsetup.writable_path_problem`), and a pid file that
tlswrap would refuse to replace (a symlink, not a regular file, not holding a pid) is an
error; tlswrap opens both before it drops privileges.

Exit status: 0 without errors, 1 with errors, 2 for a usage error. Without CONFIG nothing
heavy is imported (no trio, no OpenSSL), so the command starts fast.
"""

from __future__ import annotations

import datetime
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, TextIO

from tlswrap.errors import ConfigError, TlswrapError, located
from tlswrap.regularfile import read_regular_text
from tlswrap.tcpwrappers import Emit, Rule, Services, System, lint_rule, rule_listing
from tlswrap.tcpwrappers import files as hostsfiles

if TYPE_CHECKING:
    from OpenSSL import SSL

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
_SEVERITIES = ("error", "warning", "note")
# tcpd splits a daemon list at ", \t\r\n" (hosts_access.c), the fields at ':', and a
# daemon pattern at '@' (daemon@host): a service name with one of these has no spelling there.
_UNSPELLABLE = frozenset(", \t\r\n:@")



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
        file = located(file, line)  # a line of an included file names that file
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
        if listing is not None:
            listing += rule_listing(rule, path, default, _SYSTEM)
        raw = None
        if rule.option_error or any(s.error for s in rule.options):
            if raw_lines is None:
                raw_lines = _read_lines(path)
            raw = raw_lines[rule.lineno - 1] if rule.lineno <= len(raw_lines) else None
        lint_rule(rule, raw, seen, services, _SYSTEM, report.at(path, rule.lineno))
        seen.append(rule)


SAMPLE_CLIENT = "192.0.2.1"  # RFC 5737 documentation address: a client no rule names


def check_verdicts(config: Config, allow_path: str, deny_path: str, report: Report) -> None:
    """For each service applying the rules: what they decide for a client no rule names (an
    address from RFC 5737, no host name), when they refuse it and no hosts.allow rule names
    the service at all -- that is, every client is refused. A warning when the file has no
    ``libwrap`` line (stunnel 5 applies no rules by default, so a migrated config would lock
    everyone out without a word), a note when it asks for the rules itself."""
    from tlswrap.tcpwrappers import Request, Rules, decide

    allow, deny = hostsfiles.read_hosts(allow_path), hostsfiles.read_hosts(deny_path)
    # hosts.allow with every rule open to every client: grants a service iff a rule names it
    naming = Rules(allow.filename, tuple(r.replace(clients=("ALL",), options=(),
                                                option_error=None) for r in allow.rules))
    for svc in config.services:
        if not svc.libwrap or (svc.accept is not None and svc.accept.is_unix):
            continue
        server = svc.accept.host if svc.accept is not None else None
        request = Request(daemon=svc.name, client_addr=SAMPLE_CLIENT, server_addr=server)
        decision = decide(allow, deny, request, read_patterns=hostsfiles.read_patterns)
        if decision.granted or decision.delegated:
            continue
        if decide(naming, Rules(deny.filename), request).file is not None:
            continue  # some clients are granted: the usual "deny all, allow some"
        rule = f"{decision.file} line {decision.line}" if decision.file else \
            f"an error in {deny_path}"
        msg = (f"[{svc.name}] every client is refused: {rule} refuses, and no rule of "
               f"{allow_path} names the service")
        said = svc.line_of("libwrap")
        if said is None:
            report.add(config.filename, svc.line, "warning",
                       f"{msg}; this file has no libwrap line: stunnel 5 applies no rules "
                       f"unless told, tlswrap does: grant the clients in {allow_path}, or "
                       "write libwrap = no to keep stunnel's way")
        else:
            report.add(config.filename, said, "note", msg)


_SYSTEM = System(hostsfiles.read_patterns, hostsfiles.check_option,
                 hostsfiles.banner_path_error, hostsfiles.banner_file_errors)


def _read_lines(path: str) -> list[str]:
    try:
        return read_regular_text(path, hostsfiles.HOSTS_MAX_BYTES).split("\n")
    except OSError:
        return []


# --- the config: the daemon's own start-up validation, without binding -----------------------

def check_config(path: str, report: Report) -> Config | None:
    """Parse ``path``, run the daemon's ``prepare`` on each service and check what the daemon
    writes (log file, pid file) and who it runs as; certificates, key modes."""
    from tlswrap.config import Config, config_notes, config_warnings, load_config
    from tlswrap.snapshot import prepare

    report.file(path)
    try:
        config = load_config(path)
    except ConfigError as exc:
        _config_findings(report, exc)
        if not isinstance(exc.partial, Config):
            return None
        config = exc.partial  # check what did parse too: every problem in one run
    for warning in config_warnings(config):
        _config_findings(report, warning, "warning")
    for note in config_notes(config):
        _config_findings(report, note, "note")
    _check_globals(config, report)
    for svc in config.services:
        # One service at a time, so that every broken service is reported; the hosts files,
        # which prepare() strict-loads, are checked in full by check_hosts().
        try:
            ready = prepare(replace(config, services=(replace(svc, libwrap=False),)))
            _check_handshakes(config, svc, ready.services[svc.name].context, report)
        except ConfigError as exc:
            _config_findings(report, exc)
        except TlswrapError as exc:
            report.add(path, None, "error", f"[{svc.name}] {exc}")
        except OSError as exc:
            report.add(path, svc.line_of("cert"), "error",
                       f"[{svc.name}] {exc.filename or svc.cert}: {exc.strerror or exc}")
        _check_certificates(config, svc, report)
        _check_key_mode(config, svc, report)
        _check_daemon_name(config, svc, report)
    return config


def _check_handshakes(config: Config, svc: Service, context: SSL.Context,
                      report: Report) -> None:
    """Each TLS version the service serves must let a client finish a handshake with its
    settings (ciphers, groups, certificate): none left is an error, one left a warning."""
    from tlswrap.config import TLS_SERVED
    from tlswrap.tlscontext import probe_handshake

    if not svc.cert or svc.client:
        # PSK only: a client without the key has nothing to agree on, by design; client =
        # yes: the context is a client's (its cert is the one it shows a server that asks)
        return
    low, high = svc.tls_range
    versions = TLS_SERVED[TLS_SERVED.index(low):TLS_SERVED.index(high) + 1]
    failed = {v: why for v in versions if (why := probe_handshake(context, v)) is not None}
    if not failed:
        return
    option = next((o for o in ("ciphers", "ciphersuites", "curves", "options", "sslVersion",
                               "sslVersionMin", "sslVersionMax") if svc.line_of(o)), "cert")
    said = "; ".join(f"{v}: {why}" for v, why in failed.items())
    if len(failed) == len(versions):
        report.add(config.filename, svc.line_of(option), "error",
                   f"[{svc.name}] no client can complete a TLS handshake with these settings "
                   f"({said})")
    else:
        report.add(config.filename, svc.line_of(option), "warning",
                   f"[{svc.name}] {' and '.join(failed)} clients cannot complete a handshake "
                   f"with these settings ({said})")


def _check_daemon_name(config: Config, svc: Service, report: Report) -> None:
    if svc.libwrap and (_UNSPELLABLE.intersection(svc.name)
                        or any(c.isspace() for c in svc.name)):
        report.add(config.filename, svc.line, "warning",
                   f"[{svc.name}] the service name cannot be written in a hosts.allow daemon "
                   "list (it holds a space, ',', ':' or '@'): only ALL matches this service")


def _config_findings(report: Report, exc: ConfigError, severity: str = "error") -> None:
    """Every located message ``exc`` stands for (``ConfigError.all()``) as a finding."""
    for each in exc.all():
        svc = f"[{each.service}] " if each.service else ""
        report.add(each.filename, each.lineno, severity, f"{svc}{each.msg}")


def _check_globals(config: Config, report: Report) -> None:
    """What the daemon does with the global options before serving: open the log file, write
    the pid file, become ``setuid``/``setgid``."""
    from tlswrap import pidfile
    from tlswrap.logsetup import writable_path_problem
    from tlswrap.privileges import in_jail

    g = config.globals
    if g.chroot is not None and not os.path.isdir(g.chroot):
        _config_findings(report, config.error(f"chroot = {g.chroot}: no such directory",
                                              "chroot"))
    checks = [("output", g.output and in_jail(config, g.output), "cannot open log file", False),
              ("pid", g.pid and in_jail(config, g.pid), "cannot write the pid file", True)]
    for option, path, what, directory in checks:
        problem = writable_path_problem(path, directory=directory) if path else None
        if path and option == "pid":
            problem = pidfile.problem(path) or problem
        if problem:
            _config_findings(report, config.error(f"{option} = {path}: {what}: {problem}", option))
    for svc in config.services:  # stunnel: exec paths are inside the jail
        if g.chroot and svc.exec and not os.access(in_jail(config, svc.exec), os.X_OK):
            _config_findings(report, config.error(
                f"exec = {svc.exec}: not an executable inside the chroot jail "
                f"({in_jail(config, svc.exec)})", "exec", svc))
    for option, known in (("setuid", _is_user), ("setgid", _is_group)):
        name = getattr(g, option)
        if name is not None and not known(name):
            kind = "user" if option == "setuid" else "group"
            _config_findings(report, config.error(f"{option} = {name}: no such {kind}", option))


def _is_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _is_group(name: str) -> bool:
    if name.isdigit():
        return True  # setgid() takes any number
    import grp

    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _check_certificates(config: Config, svc: Service, report: Report,
                        now: datetime.datetime | None = None) -> None:
    for section in svc.sni_sections:  # sni = SERVICE:PATTERN sections, with their own certs
        _check_certificates(config, section, report, now)
    files = [(svc.cert, svc.line_of("cert")), *((c, line) for c, _, line in svc.more_certs)]
    for path, line in files:
        if path:
            _check_certificate_file(config, svc, report, path, line, now)


def _check_certificate_file(config: Config, svc: Service, report: Report, path: str,
                            line: int | None, now: datetime.datetime | None) -> None:
    from cryptography import x509

    from tlswrap.tlscontext import read_pem_file

    try:
        certs = x509.load_pem_x509_certificates(read_pem_file(path))
    except (OSError, ValueError):
        return  # prepare() has said why
    now = now or datetime.datetime.now(datetime.UTC)
    emit = report.at(config.filename, line, f"[{svc.name}] cert = {path}: ")
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
    """The key's mode, and the files a reload could not read as the ``setuid`` user."""
    from tlswrap.privileges import key_file_findings, target_identity

    try:
        ident = target_identity(config)
    except ConfigError:
        ident = None  # _check_globals reports the unknown name
    for option, problem in key_file_findings(svc, ident, config.filename):
        report.add(config.filename, svc.line_of(option), "warning", f"[{svc.name}] {problem}")


def _services(config: Config) -> Services:
    import socket

    entries = []
    for svc in config.services:
        port: int | None = None
        if svc.accept is not None and not svc.accept.is_unix:
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
    config = None
    allow, deny = args.allow, args.deny
    check_rules = True
    if args.config is not None:
        config = check_config(args.config, report)
        if config is not None:
            services = _services(config)
            allow = allow or config.globals.hosts_allow
            deny = deny or config.globals.hosts_deny
            if not config.services:  # none parsed: no service would consult the rules
                check_rules = bool(args.allow or args.deny)
            elif not any(svc.libwrap for svc in config.services) \
                    and not (args.allow or args.deny):
                report.add(config.filename, None, "note",
                           "every service has libwrap = no: the hosts files are not consulted")
                check_rules = False
        elif not (args.allow or args.deny):
            check_rules = False  # the config names the hosts files, and it did not parse
    listing: list[str] | None = [] if args.verbose else None
    if check_rules:
        check_hosts(allow or "/etc/hosts.allow", "granted", report, services, listing)
        check_hosts(deny or "/etc/hosts.deny", "denied", report, services, listing)
        if config is not None:
            check_verdicts(config, allow or "/etc/hosts.allow", deny or "/etc/hosts.deny",
                           report)
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
