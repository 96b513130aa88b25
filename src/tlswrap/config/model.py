"""The values a config becomes: ``Address``, ``Service``, ``GlobalOptions``, ``Config``, and
the limits and names the parsers check against."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from ..errors import ConfigError
from ..limits import IPV6_PREFIX_DEFAULT, Rate
from ..sockopts import SocketOption
from ..tlsoptions import VerifyLevel, resolve_verify

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
TLS_POLICY = "tlswrap serves TLS 1.2 and 1.3 only (RFC 8996 deprecates the older versions)"
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
class Secret:
    """A password from the config: ``repr`` and ``str`` never show it (a Service may be
    printed, logged or compared); ``reveal()`` gives it to the one place that sends it."""

    _value: str = field(repr=False)

    def reveal(self) -> str:
        return self._value


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
    # client = yes, protocol = smtp: SMTP AUTH to the server inside TLS, before the relay
    protocol_authentication: str | None = None  # "plain" (None: the default) or "login"
    protocol_username: str | None = None
    protocol_password: Secret | None = None
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
    ca_store: str | None = None  # CAstore: a PEM file or a hashed directory (told apart at load)
    crl_file: str | None = None
    crl_path: str | None = None
    check_host: tuple[str, ...] = ()
    check_email: tuple[str, ...] = ()
    check_ip: tuple[str, ...] = ()
    redirect: tuple[Address, ...] = ()
    client: bool = False
    # OCSPstaple: "auto" (what the certificate's AIA responder says, as stunnel), "no", a FILE
    ocsp_staple: str = "auto"
    # OCSP checks of the peer's certificates (stunnel's meaning; ocspcheck.py)
    ocsp_aia: bool = False  # ask each certificate's AIA responders
    ocsp_url: str | None = None  # ask this responder about the peer's own certificate
    ocsp_flags: tuple[str, ...] = ()  # OCSPflag names, upper case
    ocsp_nonce: bool = False
    ocsp_require: bool = True  # no conclusive answer refuses the peer
    timeout_ocsp: float = 5.0  # TIMEOUTocsp: to connect a responder
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
        from .options import setter

        return setter(self.lines, attr)

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
    def ocsp_staple_file(self) -> str | None:
        """``OCSPstaple = FILE``: the file; None for ``auto`` and ``no``."""
        return None if self.ocsp_staple in ("auto", "no") else self.ocsp_staple

    @property
    def ocsp_checks(self) -> bool:
        """Whether the peer's certificates are checked with OCSP responders."""
        return self.ocsp_aia or self.ocsp_url is not None

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
    # tlswrap's own: the unix socket syslog listens on, or (HOST, PORT) of one over UDP
    syslog_address: str | tuple[str, int] = "/dev/log"
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
