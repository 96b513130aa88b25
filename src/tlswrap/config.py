"""The stunnel 5 configuration format, parsed into an immutable model.

General theory of operation: the file is global options, then ``[service]`` sections of
``key = value`` lines. Whole-line comments start with ``;`` or ``#``. Option names are
case-insensitive, as in stunnel. A service option written in the global part is the default for
every service (stunnel's rule). Every option is declared once in ``OPTIONS`` with the function that
parses its value, so adding an option is one line there plus a field on the model.

This module is pure: it takes text and a file name and returns values. Every parsed option keeps
its line number (``Service.lines``), so a later semantic error -- a certificate that does not load,
a cipher string OpenSSL refuses -- can still say ``FILE:LINE:``. A mistake does not stop the
parse: every line is read, and the ConfigError raised carries all that were found (``all()``).
``load_config(path)`` only reads the file and hands the text over, like tomli's ``load``.

TLS versions: tlswrap serves TLS 1.2 and 1.3 only (RFC 8996 deprecates the older ones, and the
OpenSSL in use will not negotiate them at its security level). Old stunnel files name them, so
the names are understood: a minimum below TLS 1.2 is read as TLS 1.2 (``tlswrap check`` warns,
see ``config_warnings``), while a maximum below TLS 1.2 -- nothing tlswrap could serve -- is an
error at its line.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

LOG_LEVELS = {
    "emerg": 0, "alert": 1, "crit": 2, "err": 3, "warning": 4, "notice": 5, "info": 6, "debug": 7,
}
SYSLOG_FACILITIES = {
    "auth", "authpriv", "cron", "daemon", "ftp", "kern", "lpr", "mail", "news", "syslog", "user",
    "uucp", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
}
TLS_ORDER = ("SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")  # stunnel's names
TLS_VERSIONS: dict[str, str | None] = {"all": None, **{v.lower(): v for v in TLS_ORDER}}
TLS_SERVED = ("TLSv1.2", "TLSv1.3")  # what tlswrap negotiates, oldest first (RFC 8996)
_TLS_POLICY = "tlswrap serves TLS 1.2 and 1.3 only (RFC 8996 deprecates the older versions)"


@dataclass(frozen=True)
class Address:
    """A TCP endpoint (``host`` may be a name, resolved when used) or a unix socket ``path``."""

    host: str | None = None
    port: int | str = 0
    path: str | None = None

    @property
    def is_unix(self) -> bool:
        return self.path is not None

    def __str__(self) -> str:
        if self.path is not None:
            return self.path
        host = self.host or "*"
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"


@dataclass(frozen=True)
class Service:
    """One ``[section]``: where to listen, the TLS settings, where to relay."""

    name: str
    accept: Address | None = None
    connect: tuple[Address, ...] = ()
    exec: str | None = None
    exec_args: tuple[str, ...] | None = None
    cert: str | None = None
    key: str | None = None
    ca_file: str | None = None
    ciphers: str | None = None
    ciphersuites: str | None = None
    version_min: str | None = "TLSv1.2"
    version_max: str | None = None
    curves: str | None = None
    timeout_busy: float = 10.0
    timeout_close: float = 60.0
    timeout_connect: float = 10.0
    timeout_idle: float = 43200.0
    libwrap: bool = True
    ssl_options: tuple[str, ...] = ()
    socket_options: tuple[tuple[str, str, int], ...] = ()
    session_timeout: float = 300.0
    # option name (lower case) -> line it was set on; for later FILE:LINE errors
    lines: dict[str, int] = field(default_factory=dict, compare=False)

    def line_of(self, option: str) -> int | None:
        return self.lines.get(option.lower())

    def option_for(self, attr: str) -> str | None:
        """The option (stunnel's spelling) that gave field ``attr`` its value, None: default."""
        return _setter(self.lines, attr)

    @property
    def tls_range(self) -> tuple[str, str]:
        """The TLS versions served, (lowest, highest): the configured range within TLS_SERVED."""
        low = max(self.version_min or TLS_SERVED[0], TLS_SERVED[0], key=TLS_ORDER.index)
        return low, self.version_max or TLS_SERVED[-1]


@dataclass(frozen=True)
class GlobalOptions:
    foreground: bool = False
    pid: str | None = None
    output: str | None = None
    syslog: bool | None = None  # None: syslog unless in the foreground (stunnel's default)
    debug: int = 5
    facility: str = "daemon"
    hosts_allow: str = "/etc/hosts.allow"
    hosts_deny: str = "/etc/hosts.deny"
    setuid: str | None = None
    setgid: str | None = None
    workers: int = 1
    lines: dict[str, int] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Config:
    filename: str
    globals: GlobalOptions
    services: tuple[Service, ...]

    def error(self, msg: str, option: str | None = None,
              service: Service | None = None) -> ConfigError:
        """A ConfigError pointing at the line where ``option`` was set (in ``service`` or
        global)."""
        line = None
        if option is not None:
            if service is not None:
                line = service.line_of(option)
            if line is None:
                line = self.globals.lines.get(option.lower())
        return ConfigError(self.filename, line, msg, service.name if service else None)


# ---------------------------------------------------------------- value parsers
# Each takes the raw value and returns the parsed one or raises ValueError(message).

def parse_bool(value: str) -> bool:
    v = value.lower()
    if v in ("yes", "true", "on", "1"):
        return True
    if v in ("no", "false", "off", "0"):
        return False
    raise ValueError(f"expected yes or no, got {value!r}")


def parse_foreground(value: str) -> bool:
    # stunnel also knows "quiet" (foreground, no stderr echo of syslog lines)
    return True if value.lower() == "quiet" else parse_bool(value)


def parse_seconds(value: str) -> float:
    try:
        n = float(value)
    except ValueError:
        raise ValueError(f"expected a number of seconds, got {value!r}") from None
    if not n >= 0 or n == float("inf"):
        raise ValueError(f"expected a number of seconds, got {value!r}")
    return n


def parse_positive_int(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"expected a positive whole number, got {value!r}")
    return int(value)


def parse_port(value: str) -> int | str:
    if value.isdigit():
        port = int(value)
        if not 0 < port < 65536:
            raise ValueError(f"port out of range: {value!r}")
        return port
    if not value or not value.replace("-", "").isalnum():
        raise ValueError(f"bad port: {value!r}")
    return value  # a service name, looked up when bound


def parse_address(value: str, default_host: str | None, allow_unix: bool) -> Address:
    """``[HOST:]PORT``, ``[IPV6]:PORT``, ``:::PORT`` or, where allowed, a unix socket path."""
    value = value.strip()
    host: str | None
    if value.startswith("/"):
        if not allow_unix:
            raise ValueError(f"a unix socket is not allowed here: {value!r}")
        return Address(path=value)
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or value[end + 1:end + 2] != ":":
            raise ValueError(f"bad address {value!r}: expected [IPV6]:PORT")
        host, port = value[1:end], value[end + 2:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"bad IPv6 address {host!r} in {value!r}") from None
    elif ":" in value:
        host, port = value.rsplit(":", 1)
        if not host:
            raise ValueError(f"bad address {value!r}: empty host")
    else:
        host, port = default_host, value
    if host is not None and ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"bad IPv6 address {host!r} in {value!r}") from None
    return Address(host=host, port=parse_port(port))


def parse_accept(value: str) -> Address:
    return parse_address(value, default_host="0.0.0.0", allow_unix=False)


def parse_connect(value: str) -> Address:
    return parse_address(value, default_host="localhost", allow_unix=True)


def parse_version(value: str) -> str | None:
    try:
        return TLS_VERSIONS[value.lower()]
    except KeyError:
        raise ValueError(
            f"unknown TLS version {value!r}: use TLSv1.2, TLSv1.3 or all") from None


def parse_debug(value: str) -> tuple[str | None, int]:
    prefix, _, level = value.rpartition(".")
    facility = prefix.lower() or None
    if facility is not None and facility not in SYSLOG_FACILITIES:
        raise ValueError(f"unknown syslog facility {facility!r}")
    lv = level.lower()
    if lv.isdigit() and int(lv) <= 7:
        return facility, int(lv)
    if lv in LOG_LEVELS:
        return facility, LOG_LEVELS[lv]
    raise ValueError(f"unknown debug level {level!r}: use 0-7 or emerg..debug")


def parse_only(allowed: str, why: str) -> Callable[[str], str]:
    """An stunnel option tlswrap accepts with one value only (so existing files keep working)."""
    def parse(value: str) -> str:
        if value.lower() != allowed:
            raise ValueError(why)
        return allowed
    return parse


def parse_bool_only(allowed: bool, why: str) -> Callable[[str], bool]:
    def parse(value: str) -> bool:
        if parse_bool(value) != allowed:
            raise ValueError(why)
        return allowed
    return parse


# OpenSSL options an stunnel file may name in ``options =`` (stunnel's spellings).
SSL_OPTIONS = {
    "NO_SSLV2", "NO_SSLV3", "NO_TLSV1", "NO_TLSV1_1", "NO_TLSV1_2", "NO_TLSV1_3",
    "NO_COMPRESSION", "NO_TICKET", "CIPHER_SERVER_PREFERENCE", "SINGLE_DH_USE",
    "SINGLE_ECDH_USE", "NO_RENEGOTIATION", "ALL",
}


def parse_ssl_option(value: str) -> str:
    name = value.upper()
    if name.startswith("-"):
        raise ValueError("clearing an OpenSSL option is not supported")
    if name not in SSL_OPTIONS:
        raise ValueError(f"unknown or unsupported OpenSSL option {value!r} "
                         f"(known: {', '.join(sorted(SSL_OPTIONS))})")
    return name


# socket = a|l|r:OPTION=VALUE (stunnel): a = accepted, l = listening, r = remote (backend)
SOCKET_OPTIONS = {
    "TCP_NODELAY": "int", "SO_KEEPALIVE": "int", "SO_REUSEADDR": "int", "SO_SNDBUF": "int",
    "SO_RCVBUF": "int", "TCP_KEEPIDLE": "int", "TCP_KEEPINTVL": "int", "TCP_KEEPCNT": "int",
}


def parse_socket_option(value: str) -> tuple[str, str, int]:
    where, colon, rest = value.partition(":")
    name, eq, num = rest.partition("=")
    if not colon or where not in ("a", "l", "r") or not eq:
        raise ValueError("expected a|l|r:OPTION=VALUE, e.g. l:TCP_NODELAY=1")
    name = name.strip().upper()
    if name not in SOCKET_OPTIONS:
        raise ValueError(f"unsupported socket option {name!r} "
                         f"(supported: {', '.join(sorted(SOCKET_OPTIONS))})")
    try:
        number = int(num.strip())
    except ValueError:
        raise ValueError(f"{name} needs a whole number, got {num.strip()!r}") from None
    return where, name, number


def parse_text(value: str) -> str:
    if not value:
        raise ValueError("empty value")
    return value


def parse_args(value: str) -> tuple[str, ...]:
    return tuple(value.split())


@dataclass(frozen=True)
class Option:
    name: str               # stunnel's spelling, for messages
    scope: str              # "global" or "service"
    attr: str               # field on GlobalOptions / Service
    parse: Callable[[str], Any]
    repeat: bool = False    # values accumulate into a tuple
    also: tuple[str, ...] = ()  # more fields that get the same value (sslVersion: min and max)


OPTIONS: dict[str, Option] = {o.name.lower(): o for o in [
    Option("foreground", "global", "foreground", parse_foreground),
    Option("pid", "global", "pid", lambda v: v or None),
    Option("output", "global", "output", parse_text),
    Option("syslog", "global", "syslog", parse_bool),
    Option("debug", "global", "debug", parse_debug),
    Option("hostsAllow", "global", "hosts_allow", parse_text),
    Option("hostsDeny", "global", "hosts_deny", parse_text),
    Option("setuid", "global", "setuid", parse_text),
    Option("setgid", "global", "setgid", parse_text),
    Option("workers", "global", "workers", parse_positive_int),
    Option("accept", "service", "accept", parse_accept),
    Option("connect", "service", "connect", parse_connect, repeat=True),
    Option("exec", "service", "exec", parse_text),
    Option("execArgs", "service", "exec_args", parse_args),
    Option("cert", "service", "cert", parse_text),
    Option("key", "service", "key", parse_text),
    Option("CAfile", "service", "ca_file", parse_text),
    Option("ciphers", "service", "ciphers", parse_text),
    Option("ciphersuites", "service", "ciphersuites", parse_text),
    Option("curves", "service", "curves", parse_text),
    Option("sslVersionMin", "service", "version_min", parse_version),
    Option("sslVersionMax", "service", "version_max", parse_version),
    Option("TIMEOUTbusy", "service", "timeout_busy", parse_seconds),
    Option("TIMEOUTclose", "service", "timeout_close", parse_seconds),
    Option("TIMEOUTconnect", "service", "timeout_connect", parse_seconds),
    Option("TIMEOUTidle", "service", "timeout_idle", parse_seconds),
    Option("libwrap", "service", "libwrap", parse_bool),
    Option("sslVersion", "service", "version_min", parse_version, also=("version_max",)),
    Option("options", "service", "ssl_options", parse_ssl_option, repeat=True),
    Option("socket", "service", "socket_options", parse_socket_option, repeat=True),
    Option("sessionCacheTimeout", "service", "session_timeout", parse_seconds),
    # stunnel options accepted with the value tlswrap implements, so files carrying them work
    Option("client", "service", "_client", parse_bool_only(
        False, "client = yes (TLS towards the backend) is not supported; tlswrap is a server")),
    Option("verify", "service", "_verify", parse_only(
        "0", "client certificate verification is not supported yet: use verify = 0")),
    Option("renegotiation", "service", "_renegotiation", parse_bool_only(
        False, "tlswrap never allows renegotiation (a client-driven CPU drain)")),
    Option("fips", "global", "_fips", parse_bool_only(
        False, "FIPS mode is not supported")),
    Option("delay", "service", "_delay", parse_bool_only(
        False, "delay = yes (resolve at each connection) is what tlswrap does for names anyway; "
               "use delay = no")),
]}


class _Section:
    """Options collected for one section (or the global part) before the model is built."""

    def __init__(self, name: str | None, lineno: int):
        self.name = name
        self.lineno = lineno
        self.values: dict[str, Any] = {}
        self.lines: dict[str, int] = {}
        self.broken = False  # a line of it was wrong: not built, so no follow-on errors

    def set(self, opt: Option, value: Any, lineno: int) -> None:
        if opt.attr.startswith("_"):  # accepted for compatibility, nothing to store
            pass
        elif opt.repeat:
            self.values[opt.attr] = (*self.values.get(opt.attr, ()), value)
        else:
            for attr in (opt.attr, *opt.also):
                self.values[attr] = value
        self.lines[opt.name.lower()] = lineno


def load_config(path: str) -> Config:
    """Read the config file at ``path`` and parse it; ConfigError if it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(path, None, f"cannot read config: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(path, None, f"not UTF-8 text: {exc.reason}") from None
    return parse_config(text, path)


def parse_config(text: str, filename: str = "<config>") -> Config:
    """Parse stunnel-format ``text``; raise ConfigError(filename, line, message) on any mistake.

    Every line is read even after a mistake; the error raised is the first, carrying the
    others (``ConfigError.all()``). A section with a wrong line is not checked as a whole, so
    one mistake does not bring a second, made-up one ("no 'connect'" after a bad connect line).
    """
    glob = _Section(None, 0)
    sections: list[_Section] = []
    current = glob
    errors: list[ConfigError] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in ";#":
            continue
        try:
            if line.startswith("["):
                current = _Section(None, lineno)
                current.name = _section_name(line, sections, filename, lineno)
                sections.append(current)
            else:
                _read_option(line, lineno, current, current is glob, filename)
        except ConfigError as exc:
            errors.append(exc)
            current.broken = True

    gvalues = {k: v for k, v in glob.values.items() if k in _GLOBAL_FIELDS}
    globals_ = GlobalOptions(**gvalues, lines={k: v for k, v in glob.lines.items()
                                               if OPTIONS[k].scope == "global"})
    defaults = {k: v for k, v in glob.values.items() if k in _SERVICE_FIELDS}
    default_lines = {k: v for k, v in glob.lines.items() if OPTIONS[k].scope == "service"}
    if not sections and (defaults.get("connect") or defaults.get("exec")):
        # stunnel's inetd form: no section, the service's options in the global part. It is
        # named like tcpd names a daemon: the program's basename, or "tlswrap".
        exe = defaults.get("exec")
        sections = [_Section(exe.rsplit("/", 1)[-1] if exe else "tlswrap", 0)]
    services = []
    for sec in sections:
        if glob.broken or sec.broken:
            continue
        try:
            services.append(_build_service(sec, defaults, default_lines, filename))
        except ConfigError as exc:
            errors.append(exc)
    if not errors and not services:
        errors.append(ConfigError(filename, None, "no [service] section: nothing to do"))
    first = ConfigError.of(sorted(errors, key=lambda e: e.lineno or 0))
    if first is not None:
        raise first
    return Config(filename, globals_, tuple(services))


def _section_name(line: str, sections: list[_Section], filename: str, lineno: int) -> str:
    if not line.endswith("]") or len(line) < 3:
        raise ConfigError(filename, lineno, f"bad section header {line!r}")
    name = line[1:-1].strip()
    if not name or any(c.isspace() or c in "[]" for c in name):
        raise ConfigError(filename, lineno, f"bad service name {name!r}")
    if any(s.name == name for s in sections):
        raise ConfigError(filename, lineno, f"service [{name}] is defined twice")
    return name


def _read_option(line: str, lineno: int, section: _Section, is_global: bool,
                 filename: str) -> None:
    """One ``key = value`` line into ``section``; ConfigError if it is wrong."""
    key, eq, value = line.partition("=")
    key, value = key.strip(), value.strip()

    def fail(msg: str) -> ConfigError:
        return ConfigError(filename, lineno, msg, section.name)

    if not eq or not key:
        raise fail(f"expected 'option = value', got {line!r}")
    opt = OPTIONS.get(key.lower())
    if opt is None:
        raise fail(f"unknown option {key!r}")
    if opt.scope == "global" and not is_global:
        raise fail(f"{opt.name!r} is a global option: put it before the first [service] "
                   "section")
    try:
        if opt.attr == "debug" and is_global:
            facility, level = parse_debug(value)
            section.set(opt, level, lineno)
            if facility:
                section.values["facility"] = facility
        else:
            section.set(opt, opt.parse(value), lineno)
    except ValueError as exc:
        raise fail(f"{opt.name} = {value}: {exc}") from None


def service_from_options(name: str, options: list[tuple[str, str]],
                         filename: str = "command line") -> Service:
    """Build one service from (option, value) pairs, parsed and checked as in a file."""
    sec = _Section(name, 0)
    for key, value in options:
        opt = OPTIONS[key.lower()]
        try:
            sec.set(opt, opt.parse(value), 0)
        except ValueError as exc:
            raise ConfigError(filename, None, f"{opt.name} = {value}: {exc}", name) from None
    return _build_service(sec, {}, {}, filename)


_GLOBAL_FIELDS = {f.name for f in dataclasses.fields(GlobalOptions)} - {"lines"}
_SERVICE_FIELDS = {f.name for f in dataclasses.fields(Service)} - {"lines", "name"}


def _build_service(sec: _Section, defaults: dict[str, Any], default_lines: dict[str, int],
                   filename: str) -> Service:
    values = {**defaults, **sec.values}
    lines = {**default_lines, **sec.lines}

    def fail(msg: str, option: str | None = None) -> ConfigError:
        line = lines.get(option.lower(), sec.lineno) if option else sec.lineno
        return ConfigError(filename, line, msg, sec.name)

    if values.get("connect") and values.get("exec"):
        raise fail("use either 'connect' or 'exec', not both", "exec")
    if not values.get("connect") and not values.get("exec"):
        raise fail("no 'connect' (or 'exec'): where should the plaintext go?")
    if "exec_args" in values and "exec" not in values:
        raise fail("'execArgs' without 'exec'", "execargs")
    if not values.get("cert"):
        raise fail("no 'cert': a TLS server needs a certificate")
    service = Service(name=sec.name or "", lines=lines, **values)
    problem = version_problem(service)
    if problem:
        raise fail(*problem)
    return service


def _setter(lines: dict[str, int], attr: str) -> str | None:
    """The option, of those in ``lines``, that set field ``attr`` last (stunnel's spelling)."""
    setters = [(line, opt.name) for key, opt in OPTIONS.items()
               if attr in (opt.attr, *opt.also) and (line := lines.get(key)) is not None]
    return max(setters)[1] if setters else None


def version_problem(svc: Service) -> tuple[str, str | None] | None:
    """Why ``svc`` could serve no TLS version: (message, option that says so), or None."""
    vmin, vmax = svc.version_min or TLS_ORDER[0], svc.version_max or TLS_ORDER[-1]
    low, high = svc.tls_range
    max_opt = svc.option_for("version_max") or "sslVersionMax"
    if TLS_ORDER.index(vmax) < TLS_ORDER.index(TLS_SERVED[0]):
        return (f"{max_opt} = {vmax}: {_TLS_POLICY}: write {max_opt} = TLSv1.2 or TLSv1.3, "
                "or remove the line to allow both", max_opt)
    if TLS_ORDER.index(vmin) > TLS_ORDER.index(vmax):
        return (f"sslVersionMin {vmin} is above sslVersionMax {vmax}",
                svc.option_for("version_min"))
    served = TLS_SERVED[TLS_SERVED.index(low):TLS_SERVED.index(high) + 1]
    turned_off = [f"NO_{v.upper().replace('.', '_')}" for v in served]
    if all(name in svc.ssl_options for name in turned_off):
        return (f"options = {', '.join(turned_off)}: no TLS version is left to serve "
                f"(from {low} to {high})", "options")
    return None


def config_warnings(config: Config) -> list[ConfigError]:
    """What ``config`` says that tlswrap reads differently, located like errors; not fatal.

    A minimum TLS version below 1.2 (old stunnel files carry ``sslVersionMin = TLSv1``) is read
    as TLS 1.2. A warning written in the global part is given once, without a service.
    """
    found: dict[tuple[int | None, str], list[Service]] = {}
    for svc in config.services:
        opt = svc.option_for("version_min")
        if opt and svc.version_min and svc.version_min != svc.tls_range[0]:
            msg = (f"{opt} = {svc.version_min}: {_TLS_POLICY}, so the lowest version served is "
                   f"{svc.tls_range[0]}: write sslVersionMin = {svc.tls_range[0]} to say so")
            found.setdefault((svc.line_of(opt), msg), []).append(svc)
    return [ConfigError(config.filename, line, msg,
                        svcs[0].name if len(svcs) == 1 else None)
            for (line, msg), svcs in found.items()]
