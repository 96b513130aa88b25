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
``load_config(path)`` only reads the file and hands the text over, like tomli's ``load``: a
regular file of at most ``CONFIG_MAX_BYTES``, decoded as UTF-8 with an optional byte-order mark
(stunnel skips one too; Notepad writes it), so the text the parser sees starts at line 1.

Every value is checked here to the limits of what will use it, so that nothing refused later
escapes as a Python exception instead of ``FILE:LINE:``: host names as the resolver encodes them
(RFC 1035 lengths, IDNA), socket option values as a C int in the range the kernel takes, user
and group ids as ``uid_t``/``gid_t``, the session timeout below 2**31 seconds, unix socket
paths as ``sun_path``; no NUL character and no text that cannot be written as UTF-8 (a path or
a name goes to C as bytes).

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
from .limits import IPV6_PREFIX_DEFAULT, Rate, parse_ipv6_prefix, parse_rate

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
CONFIG_MAX_BYTES = 1 << 20  # a config file larger than 1 MiB is a mistake (or a device)
C_INT_MAX = 2**31 - 1
ID_MAX = 2**32 - 2  # uid_t/gid_t; 2**32 - 1 is (uid_t)-1, "no change" to setuid(2)
SESSION_TIMEOUT_MAX = C_INT_MAX  # seconds; OpenSSL keeps it in a long (68 years here)
HOST_NAME_MAX = 253  # RFC 1035: 255 octets on the wire, 253 characters written
HOST_LABEL_MAX = 63
SUN_PATH_MAX = 107  # bytes of a unix socket path (sun_path is 108 with the final NUL)


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
    accept: Address | None = None  # None: inetd mode; Address(path=...): a unix socket
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
    proxy_protocol: str | None = None  # "v1" or "v2": a PROXY header before the client's bytes
    accept_proxy: str | None = None  # "v1", "v2" or "any": clients send a PROXY header first
    proxy_trusted: tuple[str, ...] = ()  # networks allowed (and required) to send it
    max_connections: int | None = None  # limits (tlswrap's own; see limits.py): None: none
    max_client_connections: int | None = None
    max_client_rate: Rate | None = None
    client_ipv6_prefix: int = IPV6_PREFIX_DEFAULT
    # option name (lower case) -> line it was set on; for later FILE:LINE errors
    lines: dict[str, int] = field(default_factory=dict, compare=False)
    line: int | None = field(default=None, compare=False)  # its [section] header's line

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
    facility: str = "daemon"  # stunnel's default (debug = daemon.notice): rules keep working
    syslog_address: str = "/dev/log"  # tlswrap's own: the unix socket syslog listens on
    log_format: str = "text"  # tlswrap's own: "json" writes one JSON object per line
    hosts_allow: str = "/etc/hosts.allow"
    hosts_deny: str = "/etc/hosts.deny"
    setuid: str | None = None
    setgid: str | None = None
    workers: int = 1
    timeout_drain: float = 10.0  # tlswrap's own: seconds live connections get after SIGTERM
    max_handshakes: int | None = None  # TLS handshakes under way in one process; None: any
    metrics: Address | None = None  # where the Prometheus metrics are served (metricsserver)
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


def _is_number(value: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also takes '²' and '٣', which ``int`` may refuse."""
    return value.isascii() and value.isdigit()


def parse_positive_int(value: str) -> int:
    if not _is_number(value) or int(value) < 1:
        raise ValueError(f"expected a positive whole number, got {value!r}")
    return int(value)


def parse_port(value: str) -> int | str:
    if _is_number(value):
        port = int(value)
        if not 0 < port < 65536:
            raise ValueError(f"port out of range: {value!r}")
        return port
    if not value.isascii() or not value.replace("-", "").isalnum():
        raise ValueError(f"bad port: {value!r}")
    return value  # a service name, looked up when bound


def parse_address(value: str, default_host: str | None, allow_unix: bool) -> Address:
    """``[HOST:]PORT``, ``[IPV6]:PORT``, ``:::PORT`` or, where allowed, a unix socket path."""
    value = value.strip()
    host: str | None
    if value.startswith("/"):
        if not allow_unix:
            raise ValueError(f"a unix socket is not allowed here: {value!r}")
        size = len(value.encode())
        if size > SUN_PATH_MAX:
            raise ValueError(f"a unix socket path is at most {SUN_PATH_MAX} bytes, this one "
                             f"has {size}")
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
    elif host is not None:
        check_host_name(host)
    return Address(host=host, port=parse_port(port))


def check_host_name(host: str) -> None:
    """ValueError unless ``host`` is a name (or IPv4 address) the resolver can be asked for.

    Python encodes a name with the ``idna`` codec before getaddrinfo (a label over 63
    characters is a UnicodeError there), and trio encodes a non-ASCII one with the ``idna``
    package (IDNA 2008, UTS 46): a name is checked as both will, so neither fails later.
    """
    if not host or any(c.isspace() or not c.isprintable() for c in host):
        raise ValueError("not a valid host name")
    if not host.isascii():
        try:
            written = host.encode("idna").decode("ascii")
            import idna

            idna.encode(host, uts46=True)
        except UnicodeError as exc:  # idna.IDNAError is one too
            raise ValueError(f"not a valid host name ({exc})") from None
        host = written
    labels = host.split(".")
    if labels[-1] == "" and len(labels) > 1:
        labels.pop()  # the root: "mail.example.org."
    if any(not label for label in labels):
        raise ValueError("the host name has an empty label")
    if any(len(label) > HOST_LABEL_MAX for label in labels):
        raise ValueError(f"the host name has a label longer than {HOST_LABEL_MAX} characters")
    if len(".".join(labels)) > HOST_NAME_MAX:
        raise ValueError(f"the host name is longer than {HOST_NAME_MAX} characters")


def parse_accept(value: str) -> Address:
    return parse_address(value, default_host="0.0.0.0", allow_unix=True)


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
    if _is_number(lv) and int(lv) <= 7:
        return facility, int(lv)
    if lv in LOG_LEVELS:
        return facility, LOG_LEVELS[lv]
    raise ValueError(f"unknown debug level {level!r}: use 0-7 or emerg..debug")


def parse_protocol(value: str) -> str:
    """stunnel's ``protocol``: ``proxy`` (a PROXY v1 header to the backend) is implemented;
    the STARTTLS protocols are not yet."""
    name = value.lower()
    if name == "proxy":
        return "v1"
    if name in ("imap", "pop3", "smtp", "connect", "socks", "cifs", "pgsql", "nntp", "ldap",
                "capwin", "capwinctrl", "websocket"):
        raise ValueError("not supported yet (implicit TLS only); 'proxy' is")
    raise ValueError("unknown protocol")


def parse_proxy_version(value: str) -> str:
    """tlswrap's ``proxyProtocol = v1 | v2``: which PROXY header goes to the backend."""
    name = value.lower()
    if name not in ("v1", "v2"):
        raise ValueError("expected v1 or v2")
    return name


def parse_accept_proxy(value: str) -> str:
    """tlswrap's ``acceptProxy = v1 | v2 | any``: the PROXY header a trusted balancer sends."""
    name = value.lower()
    if name not in ("v1", "v2", "any"):
        raise ValueError("expected v1, v2 or any")
    return name


def parse_networks(value: str) -> tuple[str, ...]:
    """``proxyTrusted = 10.0.0.0/8, 2001:db8::/32, 192.0.2.7``: networks, as written."""
    import ipaddress

    nets = tuple(word for word in value.replace(",", " ").split() if word)
    if not nets:
        raise ValueError("empty value")
    for net in nets:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ValueError(f"{net!r} is not an address or network") from None
    return nets


def _not_a_path(value: str) -> str:
    raise ValueError(f"expected the path of syslog's unix socket (e.g. /dev/log), got {value!r}")


def parse_only_of(*allowed: str) -> Callable[[str], str]:
    """One of ``allowed`` (case-insensitive), as written there."""
    def parse(value: str) -> str:
        if value.lower() not in allowed:
            raise ValueError(f"expected {' or '.join(allowed)}")
        return value.lower()
    return parse


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


# socket = a|l|r:OPTION=VALUE (stunnel): a = accepted, l = listening, r = remote (backend).
# Each value is a C int, in the range Linux takes (tcp(7): MAX_TCP_KEEPIDLE, MAX_TCP_KEEPCNT):
# setsockopt(2) refuses the rest, and only when a connection is made for the ``a``/``r`` forms.
SOCKET_OPTIONS = {
    "TCP_NODELAY": (0, C_INT_MAX), "SO_KEEPALIVE": (0, C_INT_MAX),
    "SO_REUSEADDR": (0, C_INT_MAX), "SO_SNDBUF": (0, C_INT_MAX), "SO_RCVBUF": (0, C_INT_MAX),
    "TCP_KEEPIDLE": (1, 32767), "TCP_KEEPINTVL": (1, 32767), "TCP_KEEPCNT": (1, 127),
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
    low, high = SOCKET_OPTIONS[name]
    if not low <= number <= high:
        raise ValueError(f"{name} must be {low} to {high}, got {number}")
    return where, name, number


def parse_id(kind: str) -> Callable[[str], str]:
    """``setuid``/``setgid``: a name, or a number (as ``str.isdigit`` says, which is how it
    is told from a name when used) that fits ``uid_t``/``gid_t``."""
    def parse(value: str) -> str:
        value = parse_text(value)
        if value.isdigit() and not (value.isascii() and int(value) <= ID_MAX):
            shown = value if _is_number(value) else repr(value)
            raise ValueError(f"a {kind} id is 0 to {ID_MAX}, got {shown}")
        return value
    return parse


def parse_session_timeout(value: str) -> float:
    seconds = parse_seconds(value)
    if seconds > SESSION_TIMEOUT_MAX:
        raise ValueError(f"at most {SESSION_TIMEOUT_MAX} seconds")
    return seconds


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
    Option("logFormat", "global", "log_format", parse_only_of("text", "json")),
    Option("syslogAddress", "global", "syslog_address",
           lambda v: parse_address(v, None, True).path or _not_a_path(v)),
    Option("debug", "global", "debug", parse_debug),
    Option("hostsAllow", "global", "hosts_allow", parse_text),
    Option("hostsDeny", "global", "hosts_deny", parse_text),
    Option("setuid", "global", "setuid", parse_id("user")),
    Option("setgid", "global", "setgid", parse_id("group")),
    Option("workers", "global", "workers", parse_positive_int),
    Option("TIMEOUTdrain", "global", "timeout_drain", parse_seconds),
    Option("maxHandshakes", "global", "max_handshakes", parse_positive_int),
    Option("metrics", "global", "metrics", lambda v: parse_address(v, "127.0.0.1", False)),
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
    Option("sessionCacheTimeout", "service", "session_timeout", parse_session_timeout),
    Option("protocol", "service", "proxy_protocol", parse_protocol),
    Option("proxyProtocol", "service", "proxy_protocol", parse_proxy_version),
    Option("acceptProxy", "service", "accept_proxy", parse_accept_proxy),
    Option("proxyTrusted", "service", "proxy_trusted", parse_networks),
    Option("maxConnections", "service", "max_connections", parse_positive_int),
    Option("maxClientConnections", "service", "max_client_connections", parse_positive_int),
    Option("maxClientRate", "service", "max_client_rate", parse_rate),
    Option("clientIPv6Prefix", "service", "client_ipv6_prefix", parse_ipv6_prefix),
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
    """Read the config file at ``path`` and parse it; ConfigError if it cannot be read.

    Read as every file a config names is (``regularfile.read_regular``): opened without
    blocking, refused unless it is a regular file (a FIFO would block, a device never end),
    at most ``CONFIG_MAX_BYTES``. A UTF-8 byte-order mark is skipped.
    """
    from .regularfile import read_regular

    def fail(msg: str) -> ConfigError:
        return ConfigError(path, None, msg)

    try:
        data = read_regular(path, CONFIG_MAX_BYTES)
    except OSError as exc:
        raise fail(f"cannot read config: {exc.strerror or exc}") from None
    except ValueError as exc:  # a NUL in the path
        raise fail(f"cannot read config: {exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise fail(f"not UTF-8 text: {exc.reason}") from None
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
            _check_characters(line, lineno, current.name, filename)
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


def _check_characters(line: str, lineno: int, section: str | None, filename: str) -> None:
    """No NUL (C would cut the value there) and nothing that cannot be written as UTF-8."""
    if "\0" in line:
        raise ConfigError(filename, lineno, "a NUL character (\\x00) is not allowed in a config "
                                            "file", section)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(filename, lineno, f"cannot be written as UTF-8: {line!r}",
                          section) from None


def _section_name(line: str, sections: list[_Section], filename: str, lineno: int) -> str:
    """The name between the brackets: as in stunnel, any characters (spaces included)."""
    if not line.endswith("]") or len(line) < 3:
        raise ConfigError(filename, lineno, f"bad section header {line!r}")
    name = line[1:-1].strip()
    if not name:
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
        return ConfigError(filename, line or None, msg, sec.name)  # 0: no section line

    if values.get("connect") and values.get("exec"):
        raise fail("use either 'connect' or 'exec', not both", "exec")
    if not values.get("connect") and not values.get("exec"):
        raise fail("no 'connect' (or 'exec'): where should the plaintext go?")
    if "exec_args" in values and "exec" not in values:
        raise fail("'execArgs' without 'exec'", "execargs")
    if values.get("accept_proxy") and not values.get("proxy_trusted"):
        raise fail("acceptProxy: say which balancers may send the header (proxyTrusted = "
                   "NETWORKS); a header from anyone would let any client choose its address",
                   "acceptproxy")
    if values.get("proxy_trusted") and not values.get("accept_proxy"):
        raise fail("proxyTrusted without acceptProxy", "proxytrusted")
    if values.get("proxy_protocol") and values.get("exec"):
        option = _setter(lines, "proxy_protocol") or "proxyProtocol"
        raise fail(f"{option}: a PROXY header goes to a 'connect' backend; a program run by "
                   "'exec' gets the client's address in its environment", option)
    if not values.get("cert"):
        raise fail("no 'cert': a TLS server needs a certificate")
    accept = values.get("accept")
    if accept is not None and accept.is_unix:
        for where, name, _ in values.get("socket_options", ()):
            if where in "al" and name.startswith("TCP_"):
                raise fail(f"socket = {where}:{name}: a unix socket (accept = {accept}) has no "
                           "TCP options", "socket")
    service = Service(name=sec.name or "", lines=lines, line=sec.lineno or None, **values)
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
