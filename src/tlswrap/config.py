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
import functools
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import proxyproto, sockopts, ssloptions
from .errors import ConfigError, SourceLine
from .limits import IPV6_PREFIX_DEFAULT, Rate, parse_ipv6_prefix, parse_rate
from .sockopts import SocketOption
from .tlsoptions import (
    VerifyLevel,
    parse_alpn,
    parse_email,
    parse_ip,
    parse_security_level,
    parse_sni,
    parse_verify_level,
    resolve_verify,
    service_problems,
    sni_problems,
    tls_warnings,
)

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
# proxyTLVs: what a v2 header may carry (unique_id: the logId, when there is one)
PROXY_TLVS = ("ssl", "cn", "authority", "alpn", "unique_id")
SMTP_PORTS = (25, 465, 587, 10025, "smtp", "smtps", "submission", "submissions")
STARTTLS_PROTOCOLS = ("imap", "pop3", "smtp")  # protocol = NAME: STARTTLS, server side


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
    socket_options: tuple[SocketOption, ...] = ()
    session_timeout: float = 300.0
    proxy_protocol: str | None = None  # "v1" or "v2": a PROXY header before the client's bytes
    protocol: str | None = None  # "imap", "pop3" or "smtp": STARTTLS (None: implicit TLS)
    # STARTTLS required before mail commands (secure by default: a submission port, 587, needs
    # it; an MX on port 25 must say optional, RFC 3207 section 4)
    starttls: str = "required"
    accept_proxy: str | None = None  # "v1", "v2" or "any": clients send a PROXY header first
    proxy_trusted: tuple[str, ...] = ()  # networks allowed (and required) to send it
    local: str | None = None  # source address for backend connections
    failover: str = "prio"  # "rr": each connection starts at the next connect target
    delay: bool = False  # resolve connect host names at each connection, not at start
    transparent: str = "none"  # "source": the backend sees the client's address
    session_resume: bool = True  # sessionResume: session cache and tickets
    reset: bool = True  # end a failed connection with a TCP RST, not a FIN
    log_id: str | None = None  # logId: sequential | unique | thread | process; None: no id
    ident: str | None = None  # the user an RFC 1413 server must name for the client
    pty: bool = False  # exec: the program gets a pseudo-terminal instead of a socket
    retry: float | None = None  # connect+exec: seconds before reconnecting; None: once only
    psk_secrets: str | None = None  # PSKsecrets: IDENTITY:KEY lines (TLS-PSK, no certificate)
    psk_identity: str | None = None  # PSKidentity: the identity a client sends (client mode)
    protocol_host: str | None = None  # client = yes, protocol = smtp: the name sent in EHLO
    # proxyProtocol = v2: which TLVs to send (a smaller header for postfix's 536-byte limit)
    proxy_tlvs: tuple[str, ...] = PROXY_TLVS
    # TLS features (tlsoptions): ALPN, SNI, client certificates, client mode, stapling
    alpn: tuple[str, ...] = ()
    more_certs: tuple[tuple[str, str | None, int], ...] = ()  # later (cert, key, line)s
    sni: tuple[str, ...] = ()  # SERVICE:PATTERN (a secondary section), or client = yes's name
    sni_strict: bool = False
    sni_sections: tuple[Service, ...] = ()  # this service's secondaries, in file order
    verify: int | None = None
    verify_chain: bool | None = None
    verify_peer: bool | None = None
    require_cert: bool | None = None
    ca_path: str | None = None
    crl_file: str | None = None
    crl_path: str | None = None
    check_host: tuple[str, ...] = ()
    check_email: tuple[str, ...] = ()
    check_ip: tuple[str, ...] = ()
    redirect: tuple[Address, ...] = ()
    client: bool = False
    ocsp_staple: str | None = None
    ocsp_aia: bool = False  # staple what the certificate's AIA responder says
    ocsp_url: str | None = None  # ... or what this responder says
    security_level: int | None = None
    max_connections: int | None = None  # limits (tlswrap's own; see limits.py): None: none
    max_client_connections: int | None = None
    max_client_rate: Rate | None = None
    client_ipv6_prefix: int = IPV6_PREFIX_DEFAULT
    # option name (lower case) -> line it was set on; for later FILE:LINE errors
    lines: dict[str, int] = field(default_factory=dict, compare=False)
    # field of a repeated option -> the line of each of its values, in order
    value_lines: dict[str, tuple[int, ...]] = field(default_factory=dict, compare=False)
    line: int | None = field(default=None, compare=False)  # its [section] header's line

    def line_of(self, option: str) -> int | None:
        return self.lines.get(option.lower())

    def option_for(self, attr: str) -> str | None:
        """The option (stunnel's spelling) that gave field ``attr`` its value, None: default."""
        return _setter(self.lines, attr)

    @functools.cached_property
    def verification(self) -> VerifyLevel:
        """The peer-certificate policy: the client's (a server) or the server's (client =
        yes, where the chain is verified unless ``verifyChain = no`` says otherwise)."""
        chain = self.verify_chain
        if self.client and chain is None and self.verify is None and self.verify_peer is None:
            chain = True  # secure by default, unlike stunnel
        return resolve_verify(self.verify, chain, self.verify_peer,
                              self.require_cert)

    @property
    def outbound(self) -> bool:
        """stunnel's connect+exec service: no listener; it connects to ``connect`` (TLS on that
        connection) and runs ``exec`` for it, again after ``retry``."""
        return self.accept is None and bool(self.connect) and self.exec is not None

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
    service: str | None = None  # the syslog tag and, in inetd mode, the libwrap daemon name
    chroot: str | None = None  # the jail entered after start-up (pid and exec paths are in it)
    set_env: tuple[tuple[str, str], ...] = ()  # setEnv: for every program tlswrap starts
    log_mode: str = "append"  # log = append | overwrite (the output file at each opening)
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
    """stunnel's ``protocol``: ``proxy`` (a PROXY v1 header to the backend) or a STARTTLS
    protocol, ``imap``, ``pop3`` or ``smtp`` (stunnel's names; server side)."""
    name = value.lower()
    if name in ("proxy", *STARTTLS_PROTOCOLS):
        return name
    if name in ("connect", "socks", "cifs", "pgsql", "nntp", "ldap", "capwin", "capwinctrl",
                "websocket"):
        raise ValueError(f"{name} is not a mail protocol; tlswrap speaks imap, pop3, smtp "
                         "(STARTTLS) and proxy")
    raise ValueError("unknown protocol: tlswrap speaks imap, pop3, smtp (STARTTLS) and proxy")


def parse_starttls(value: str) -> str:
    """tlswrap's ``starttls = required | optional``: may a client go on without TLS?"""
    name = value.lower()
    if name not in ("required", "optional"):
        raise ValueError("expected required or optional")
    return name


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


def parse_choice(*allowed: str) -> Callable[[str], str]:
    """One of ``allowed`` (case ignored, as stunnel does)."""
    def parse(value: str) -> str:
        if value.lower() not in allowed:
            raise ValueError(f"expected {' or '.join(allowed)}")
        return value.lower()
    return parse


def parse_host(value: str) -> str:
    """A host name or an IP address (no port)."""
    host = value.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    check_host_name(host)
    return host


def parse_transparent(value: str) -> str:
    """stunnel's ``transparent``: none, source (and its old spellings no/yes); destination and
    both are refused (they need the netfilter redirect stunnel documents, not built here)."""
    word = {"no": "none", "yes": "source"}.get(value.lower(), value.lower())
    if word in ("destination", "both"):
        raise ValueError("transparent destination (the netfilter-redirected original "
                         "destination) is not supported; use connect")
    if word not in ("none", "source"):
        raise ValueError("expected none, source, destination or both")
    return word


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


def parse_count(value: str) -> int:
    """A whole number, 0 or more, that fits a C int."""
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or int(text) > C_INT_MAX:
        raise ValueError(f"expected a whole number from 0 to {C_INT_MAX}, got {value!r}")
    return int(text)


def parse_session_timeout(value: str) -> float:
    seconds = parse_seconds(value)
    if seconds > SESSION_TIMEOUT_MAX:
        raise ValueError(f"at most {SESSION_TIMEOUT_MAX} seconds")
    return seconds


def parse_http_url(value: str) -> str:
    """An http:// URL (OCSP responders are plain HTTP: the response is signed)."""
    scheme, sep, rest = value.partition("://")
    if scheme.lower() != "http" or not sep or not rest or any(c.isspace() for c in value):
        raise ValueError("expected an http:// URL")
    return value


def parse_check_host(value: str) -> str:
    check_host_name(value)
    return value


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
    note: str | None = None  # accepted without effect: what `tlswrap check` says about it


def no_effect(name: str, scope: str, why: str,
              parse: Callable[[str], Any] | None = None) -> Option:
    """An stunnel option with no meaning for tlswrap: accepted (its value still checked by
    ``parse``), stored nowhere, and noted by ``tlswrap check``."""
    return Option(name, scope, f"_{name.lower()}", parse or parse_text,
                  note=f"{name}: no effect: {why}")


def refused(why: str) -> Callable[[str], Any]:
    """A parser for an stunnel option tlswrap cannot honour: every value is an error."""
    def parse(value: str) -> Any:
        raise ValueError(why)
    return parse


def parse_set_env(value: str) -> tuple[str, str]:
    """``setEnv = NAME=VALUE`` (sets), ``setEnv = NAME`` or ``NAME=`` (removes), as stunnel."""
    name, _, text = value.partition("=")
    name = name.strip()
    if not name:
        raise ValueError("expected NAME=VALUE")
    return name, text.strip()


def parse_retry(value: str) -> float | None:
    """stunnel's ``retry = yes | no | DELAY``: DELAY in milliseconds, ``yes`` is 1000."""
    word = value.strip().lower()
    if word in ("yes", "no"):
        return 1.0 if word == "yes" else None
    if not (word.isascii() and word.isdigit()) or int(word) > C_INT_MAX:
        raise ValueError("expected yes, no or a delay in milliseconds")
    return int(word) / 1000


def parse_proxy_tlvs(value: str) -> tuple[str, ...]:
    """``proxyTLVs = ssl, cn, authority, alpn`` (or ``none``): what a v2 header carries."""
    names = tuple(n.strip().lower() for n in value.replace(",", " ").split())
    if names == ("none",):
        return ()
    wrong = [n for n in names if n not in PROXY_TLVS]
    if wrong or not names:
        raise ValueError(f"expected some of {', '.join(PROXY_TLVS)}, or none")
    if "cn" in names and "ssl" not in names:
        raise ValueError("cn travels inside the ssl TLV: name ssl too")
    return tuple(n for n in PROXY_TLVS if n in names)


def parse_absolute_path(value: str) -> str:
    path = parse_text(value)
    if not path.startswith("/"):
        raise ValueError("needs an absolute path")
    return path


def parse_service_name(value: str) -> str:
    name = parse_text(value)
    if not name.isprintable() or len(name) > 64:
        raise ValueError("a service name is at most 64 printable characters")
    return name


_NO_RANDOM = "OpenSSL seeds itself from the kernel (getrandom(2)); no seed file or EGD is read"
_GUI = "a Windows GUI option"
_ENGINE = ("hardware engines and providers are not supported: keys and certificates are read "
           "from PEM files")


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
    Option("options", "service", "ssl_options", ssloptions.parse, repeat=True),
    Option("socket", "service", "socket_options", sockopts.parse, repeat=True),
    Option("sessionCacheTimeout", "service", "session_timeout", parse_session_timeout),
    Option("protocol", "service", "protocol", parse_protocol),
    Option("starttls", "service", "starttls", parse_starttls),
    Option("proxyProtocol", "service", "proxy_protocol", parse_proxy_version),
    Option("acceptProxy", "service", "accept_proxy", parse_accept_proxy),
    Option("proxyTrusted", "service", "proxy_trusted", parse_networks),
    Option("local", "service", "local", parse_host),
    Option("failover", "service", "failover", parse_choice("rr", "prio")),
    Option("delay", "service", "delay", parse_bool),
    Option("transparent", "service", "transparent", parse_transparent),
    Option("service", "global", "service", parse_service_name),
    Option("chroot", "global", "chroot", parse_absolute_path),
    Option("setEnv", "global", "set_env", parse_set_env, repeat=True),
    Option("log", "global", "log_mode", parse_choice("append", "overwrite")),
    Option("sessionResume", "service", "session_resume", parse_bool),
    Option("ident", "service", "ident", parse_text),
    Option("pty", "service", "pty", parse_bool),
    Option("retry", "service", "retry", parse_retry),
    Option("PSKsecrets", "service", "psk_secrets", parse_text),
    Option("PSKidentity", "service", "psk_identity", parse_text),
    Option("protocolHost", "service", "protocol_host", parse_host),
    Option("proxyTLVs", "service", "proxy_tlvs", parse_proxy_tlvs),
    Option("reset", "service", "reset", parse_bool),
    Option("logId", "service", "log_id", parse_choice("sequential", "unique", "thread",
                                                      "process")),
    # stunnel options with no meaning here: accepted, and noted by `tlswrap check`
    no_effect("RNDbytes", "global", _NO_RANDOM, parse_positive_int),
    no_effect("RNDfile", "global", _NO_RANDOM),
    no_effect("RNDoverwrite", "global", _NO_RANDOM, parse_bool),
    no_effect("EGD", "global", _NO_RANDOM),
    no_effect("iconActive", "global", _GUI),
    no_effect("iconError", "global", _GUI),
    no_effect("iconIdle", "global", _GUI),
    no_effect("taskbar", "global", _GUI, parse_bool),
    no_effect("stack", "service", "tlswrap starts no thread per connection",
              parse_positive_int),
    no_effect("sessionCacheSize", "service", "OpenSSL's own bound on cached sessions (20480) "
              "applies; tlswrap cannot change it", parse_count),
    no_effect("sessiond", "service", "there is no session cache server; clients resume with "
              "session tickets", parse_connect),
    Option("compression", "global", "_compression", refused(
        "compression leaks what it compresses (CRIME): tlswrap never enables it; remove the "
        "line (stunnel takes only deflate or zlib here, never none)")),
    no_effect("engine", "global", "only 'auto' is accepted, and tlswrap uses no engine",
              parse_only("auto", _ENGINE)),
    no_effect("provider", "global", "OpenSSL's default provider is always used",
              parse_only("default", _ENGINE)),
    Option("providerParameter", "global", "_providerparameter", refused(_ENGINE)),
    Option("engineCtrl", "global", "_enginectrl", refused(_ENGINE)),
    Option("engineDefault", "global", "_enginedefault", refused(_ENGINE)),
    Option("engineId", "service", "_engineid", refused(_ENGINE)),
    Option("engineNum", "service", "_enginenum", refused(_ENGINE)),
    Option("CAengine", "service", "_caengine", refused(_ENGINE)),
    Option("config", "service", "_config", refused(
        "OpenSSL configuration commands (SSL_CONF_cmd) are not supported: use the matching "
        "option (ciphers, curves, options, sslVersionMin...)")),
    Option("alpn", "service", "alpn", parse_alpn),
    Option("sni", "service", "sni", parse_sni, repeat=True),
    Option("sniStrict", "service", "sni_strict", parse_bool),
    Option("verify", "service", "verify", parse_verify_level),
    Option("verifyChain", "service", "verify_chain", parse_bool),
    Option("verifyPeer", "service", "verify_peer", parse_bool),
    Option("requireCert", "service", "require_cert", parse_bool),
    Option("CApath", "service", "ca_path", parse_text),
    Option("CRLfile", "service", "crl_file", parse_text),
    Option("CRLpath", "service", "crl_path", parse_text),
    Option("checkHost", "service", "check_host", parse_check_host, repeat=True),
    Option("checkEmail", "service", "check_email", parse_email, repeat=True),
    Option("checkIP", "service", "check_ip", parse_ip, repeat=True),
    Option("redirect", "service", "redirect", parse_connect, repeat=True),
    Option("client", "service", "client", parse_bool),
    Option("OCSPstaple", "service", "ocsp_staple", parse_text),
    Option("OCSPaia", "service", "ocsp_aia", parse_bool),
    Option("OCSP", "service", "ocsp_url", parse_http_url),
    Option("securityLevel", "service", "security_level", parse_security_level),
    Option("maxConnections", "service", "max_connections", parse_positive_int),
    Option("maxClientConnections", "service", "max_client_connections", parse_positive_int),
    Option("maxClientRate", "service", "max_client_rate", parse_rate),
    Option("clientIPv6Prefix", "service", "client_ipv6_prefix", parse_ipv6_prefix),
    # stunnel options accepted with the value tlswrap implements, so files carrying them work
    Option("renegotiation", "service", "_renegotiation", parse_bool_only(
        False, "tlswrap never allows renegotiation (a client-driven CPU drain)")),
    Option("fips", "global", "_fips", parse_bool_only(
        False, "FIPS mode is not supported")),
]}


class _Section:
    """Options collected for one section (or the global part) before the model is built."""

    def __init__(self, name: str | None, lineno: int):
        self.name = name
        self.lineno = lineno
        self.values: dict[str, Any] = {}
        self.lines: dict[str, int] = {}
        self.value_lines: dict[str, tuple[int, ...]] = {}
        self.broken = False  # a line of it was wrong: not built, so no follow-on errors

    def set(self, opt: Option, value: Any, lineno: int) -> None:
        more = self.values.get("more_certs", ())
        if opt.attr.startswith("_"):  # accepted for compatibility, nothing to store
            pass
        elif opt.attr == "cert" and "cert" in self.values:  # one more certificate (SNI)
            self.values["more_certs"] = (*more, (value, None, lineno))
        elif opt.attr == "key" and more:  # the key of the certificate above it
            self.values["more_certs"] = (*more[:-1], (more[-1][0], value, more[-1][2]))
        elif opt.repeat:
            self.values[opt.attr] = (*self.values.get(opt.attr, ()), value)
            self.value_lines[opt.attr] = (*self.value_lines.get(opt.attr, ()), lineno)
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
    from .regularfile import read_include_dir, read_regular

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
    return parse_config(text, path, lambda d: read_include_dir(d, CONFIG_MAX_BYTES))


# include = DIR: the directory's files, (path, text) in stunnel's order, read by the caller
Include = Callable[[str], list[tuple[str, str]]]
INCLUDE_DEPTH_MAX = 8  # include lines inside included files, at most this deep (a loop ends)


def parse_config(text: str, filename: str = "<config>",
                 include: Include | None = None) -> Config:
    """Parse stunnel-format ``text``; raise ConfigError(filename, line, message) on any mistake.

    ``include = DIR`` reads the files of DIR through ``include`` (``load_config`` gives one
    that reads them; without it an include line is an error) and parses them in its place, as
    stunnel does: in name order, each continuing the section it is in, sections it opens
    staying open after it. Their lines are located in their own files (``SourceLine``).

    Every line is read even after a mistake; the error raised is the first, carrying the
    others (``ConfigError.all()``). A section with a wrong line is not checked as a whole, so
    one mistake does not bring a second, made-up one ("no 'connect'" after a bad connect line).
    """
    glob = _Section(None, 0)
    sections: list[_Section] = []
    current = glob
    errors: list[ConfigError] = []
    read: dict[tuple[str, int], int] = {}  # (file, line) -> when it was read: errors' order
    pending = [(filename, enumerate(text.splitlines(), 1))]
    while pending:
        name, numbered = pending[-1]
        item = next(numbered, None)
        if item is None:
            pending.pop()
            continue
        number, raw = item
        lineno = number if name == filename else SourceLine(number, name)
        read[name, number] = len(read)
        line = raw.strip()
        if not line or line[0] in ";#":
            continue
        try:
            _check_characters(line, lineno, current.name, filename)
            key, eq, value = line.partition("=")
            if line.startswith("["):
                current = _Section(None, lineno)
                current.name = _section_name(line, sections, filename, lineno)
                sections.append(current)
            elif eq and key.strip().lower() == "include":
                try:
                    files = _included(value.strip(), include, len(pending))
                except ValueError as exc:
                    raise ConfigError(filename, lineno, f"include = {value.strip()}: {exc}",
                                      current.name) from None
                pending.extend((each, enumerate(body.splitlines(), 1))
                               for each, body in reversed(files))
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
    default_value_lines = {k: v for k, v in glob.value_lines.items() if k in _SERVICE_FIELDS}
    if not sections and (defaults.get("connect") or defaults.get("exec")):
        # stunnel's inetd form: no section, the service's options in the global part. It is
        # named like tcpd names a daemon: the program's basename, or "tlswrap".
        exe = defaults.get("exec")
        name = glob.values.get("service") or (exe.rsplit("/", 1)[-1] if exe else "tlswrap")
        # no section line: what the service lacks is said at the line that makes it one
        sections = [_Section(name, default_lines.get("exec") or default_lines.get("connect")
                             or 0)]
    services = []
    for sec in sections:
        if sec.broken:
            continue
        try:
            services.append(_build_service(sec, defaults, default_lines, filename,
                                           default_value_lines))
        except ConfigError as exc:
            if not glob.broken:  # else it may only echo the global part's mistake
                errors.append(exc)
    services, sni_errors = sni_problems(services)
    errors += [ConfigError(filename, line, msg, name) for line, msg, name in sni_errors]
    if not errors and not services:
        errors.append(ConfigError(filename, None, "no [service] section: nothing to do"))
    outbound = [svc.name for svc in services if svc.outbound]
    if outbound and globals_.workers > 1:
        errors.append(ConfigError(filename, globals_.lines.get("workers"),
                                  f"workers = {globals_.workers}: a connect+exec service "
                                  f"([{outbound[0]}]) makes one connection, not one per worker"))
    first = ConfigError.of(sorted(errors, key=lambda e: read.get((e.filename, e.lineno or 0),
                                                                 -1)))
    config = Config(filename, globals_, tuple(services))
    if first is not None:
        first.partial = config  # what did parse, for `tlswrap check` to go on checking
        raise first
    return config


def _included(directory: str, include: Include | None, depth: int) -> list[tuple[str, str]]:
    if not directory:
        raise ValueError("empty value")
    if include is None:
        raise ValueError("include needs the files of a directory: give the config as a file")
    if depth > INCLUDE_DEPTH_MAX:
        raise ValueError(f"includes nested more than {INCLUDE_DEPTH_MAX} deep (does a "
                         "directory include itself?)")
    return include(directory)


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
    if opt.attr == "debug" and not is_global:
        # stunnel 5.75 takes a service-level debug; tlswrap has one level: noted by check
        try:
            parse_debug(value)
        except ValueError as exc:
            raise fail(f"{opt.name} = {value}: {exc}") from None
        section.lines["debug"] = lineno
        return
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
_SERVICE_FIELDS = {f.name for f in dataclasses.fields(Service)} - {"lines", "value_lines",
                                                                  "name"}
_REPEATED = {o.attr for o in OPTIONS.values() if o.repeat}


def _build_service(sec: _Section, defaults: dict[str, Any], default_lines: dict[str, int],
                   filename: str,
                   default_value_lines: dict[str, tuple[int, ...]] | None = None) -> Service:
    values = {**defaults, **sec.values}
    lines = {**default_lines, **sec.lines}
    value_lines = {**(default_value_lines or {}), **sec.value_lines}
    for attr in _REPEATED:  # as stunnel: a section adds to what the global part gave
        if attr in defaults and attr in sec.values:
            values[attr] = defaults[attr] + sec.values[attr]
            value_lines[attr] = (default_value_lines or {}).get(attr, ()) + \
                sec.value_lines.get(attr, ())

    def fail(msg: str, option: str | None = None) -> ConfigError:
        line = lines.get(option.lower(), sec.lineno) if option else sec.lineno
        return ConfigError(filename, line or None, msg, sec.name)  # 0: no section line

    if values.get("connect") and values.get("exec") and (values.get("accept") or not sec.lineno):
        raise fail("use either 'connect' or 'exec', not both (both, and no 'accept', is "
                   "stunnel's connect+exec service: it connects out and runs the program)",
                   "exec")
    if values.get("retry") is not None and not (values.get("connect") and values.get("exec")):
        raise fail("retry: only for a connect+exec service (no 'accept'): it reconnects when "
                   "the connection ends", "retry")
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
    if values.get("protocol") == "proxy":  # stunnel's PROXY v1 (proxyProtocol chooses too)
        del values["protocol"]
        values.setdefault("proxy_protocol", "v1")
    if "starttls" in values and not values.get("protocol"):
        raise fail("starttls: say which protocol speaks it (protocol = imap, pop3 or smtp)",
                   "starttls")
    if values.get("proxy_protocol") and values.get("exec"):
        option = "proxyProtocol" if "proxyprotocol" in lines else "protocol"
        raise fail(f"{option}: a PROXY header goes to a 'connect' backend; a program run by "
                   "'exec' gets the client's address in its environment", option)
    if values.get("exec") and not values.get("connect") and (
            values.get("local") or values.get("transparent", "none") != "none"
                               or values.get("failover", "prio") != "prio"):
        option = next(o for o in ("local", "transparent", "failover") if o in lines)
        raise fail(f"{_setter(lines, option)}: applies to 'connect' backends, not to 'exec'",
                   option)
    if not values.get("cert") and not values.get("client") and not values.get("psk_secrets"):
        raise fail("no 'cert': a TLS server needs a certificate (or PSKsecrets)")
    if values.get("protocol_host") and not (values.get("client")
                                            and values.get("protocol") == "smtp"):
        raise fail("protocolHost: the name sent in EHLO by client = yes with protocol = smtp "
                   "(stunnel's other protocols that use it, connect and socks, are not "
                   "supported)", "protocolhost")
    problems = service_problems(values)
    if problems:
        raise fail(*problems[0])
    accept = values.get("accept")
    if accept is not None and accept.is_unix:
        for option in values.get("socket_options", ()):
            if option.role in "al" and not option.name.startswith("SO_"):
                raise fail(f"socket = {option}: a unix socket (accept = {accept}) has no "
                           "TCP or IP options", "socket")
    service = Service(name=sec.name or "", lines=lines, value_lines=value_lines,
                      line=sec.lineno or None, **values)
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
    if set(served) <= ssloptions.versions_off(svc.ssl_options):
        turned_off = [o for o in ssloptions.effective(svc.ssl_options)
                      if set(ssloptions.VERSION_OFF.get(o, ())) & set(served)]
        return (f"options = {', '.join(turned_off)}: no TLS version is left to serve "
                f"(from {low} to {high})", "options")
    return None


def proxy_v2_size(svc: Service) -> int:
    """The largest PROXY v2 header ``svc`` can send (0 without one; with STARTTLS the header
    goes before TLS and carries a flag at most)."""
    if svc.proxy_protocol != "v2" or svc.protocol is not None:
        return 0
    tlvs = svc.proxy_tlvs
    alpn = max((len(a) for a in svc.alpn), default=0) if "alpn" in tlvs else 0
    return proxyproto.largest_v2("ssl" in tlvs, "cn" in tlvs and svc.verification.request,
                                 "authority" in tlvs, alpn,
                                 "unique_id" in tlvs and svc.log_id is not None)


def config_warnings(config: Config) -> list[ConfigError]:
    """What ``config`` says that tlswrap reads differently, located like errors; not fatal.

    A minimum TLS version below 1.2 (old stunnel files carry ``sslVersionMin = TLSv1``) is read
    as TLS 1.2. SMTP STARTTLS required on port 25 would turn away senders without TLS. A
    warning written in the global part is given once, without a service.
    """
    found: dict[tuple[int | None, str], list[Service]] = {}
    for svc in config.services:
        opt = svc.option_for("version_min")
        if opt and svc.version_min and svc.version_min != svc.tls_range[0]:
            msg = (f"{opt} = {svc.version_min}: {_TLS_POLICY}, so the lowest version served is "
                   f"{svc.tls_range[0]}: write sslVersionMin = {svc.tls_range[0]} to say so")
            found.setdefault((svc.line_of(opt), msg), []).append(svc)
        if (svc.protocol == "smtp" and svc.starttls == "required" and svc.accept is not None
                and svc.accept.port in (25, "smtp")):
            msg = ("protocol = smtp on port 25 with starttls = required: RFC 3207 section 4 "
                   "forbids a public MX to require TLS, senders without it could not deliver; "
                   "write starttls = optional (required is for submission, port 587)")
            line = svc.line_of("starttls") or svc.line_of("protocol")
            found.setdefault((line, msg), []).append(svc)
        size = proxy_v2_size(svc)
        smtp = any(a.port in SMTP_PORTS for a in svc.connect)
        if size > proxyproto.POSTFIX_MAX_HEADER and smtp:
            msg = (f"proxyProtocol = v2 to an SMTP port: a header can reach {size} bytes here "
                   "(a long server name, client certificate CN or ALPN name); postfix refuses "
                   f"headers over {proxyproto.POSTFIX_MAX_HEADER} bytes and reads no TLV: "
                   "write proxyTLVs = ssl (or none) for it")
            found.setdefault((svc.line_of("proxyProtocol"), msg), []).append(svc)
        for msg, option in tls_warnings(svc):
            found.setdefault((svc.line_of(option) or svc.line, msg), []).append(svc)
    return [ConfigError(config.filename, line, msg,
                        svcs[0].name if len(svcs) == 1 else None)
            for (line, msg), svcs in found.items()]


_SERVICE_DEBUG = ("debug: no effect in a service section: tlswrap logs every service at the "
                  "global debug level")


def config_notes(config: Config) -> list[ConfigError]:
    """Options ``config`` carries that have no effect in tlswrap (stunnel's seed files, GUI
    icons, obsolete OpenSSL options...), each located like an error; for ``tlswrap check``."""
    found: dict[tuple[int | None, str], list[str | None]] = {}

    def add(line: int | None, msg: str, service: str | None) -> None:
        found.setdefault((line, msg), []).append(service)

    for key, line in config.globals.lines.items():
        note = OPTIONS[key].note
        if note:
            add(line, note, None)
    for svc in config.services:
        for key, line in svc.lines.items():
            opt = OPTIONS[key]
            if opt.note:
                add(line, opt.note, svc.name)
            elif key == "debug":
                add(line, _SERVICE_DEBUG, svc.name)
            elif key == "pskidentity":
                add(line, "PSKidentity: no effect in a server section (as in stunnel: it picks "
                          "the identity a client sends)", svc.name)
        where = svc.value_lines.get("ssl_options", ())
        for index, option in enumerate(svc.ssl_options):
            note = ssloptions.note(option)
            if note:
                add(where[index] if index < len(where) else svc.line_of("options"), note,
                    svc.name)
    return [ConfigError(config.filename, line, msg, names[0] if len(set(names)) == 1 else None)
            for (line, msg), names in found.items()]
