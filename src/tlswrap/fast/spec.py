"""The inetd fast path's reading of a config or a command line: a strict subset, or None (pure).

``config.parse_config`` costs ~20 ms to import (dataclasses, typing, ipaddress), more than
the whole of a stunnel connection. So the fast path reads the options one inetd connection
commonly needs, checked exactly as ``config`` checks them, and answers None -- "use the full
path" -- for anything else: an option it does not know, a value it is not sure of, a second
service, a mistake. It never reports an error itself: the full path then parses the same
input and says what is wrong at its line, as today. ``tests/test_fast_spec.py`` holds every
answer against ``config.parse_config`` (same values, or None).
"""

from __future__ import annotations

from _socket import AF_INET6, inet_pton

LEVELS = {"emerg": 0, "alert": 1, "crit": 2, "err": 3, "warning": 4, "notice": 5, "info": 6,
          "debug": 7}
FACILITIES = ("auth", "authpriv", "cron", "daemon", "ftp", "kern", "lpr", "mail", "news",
              "syslog", "user", "uucp", "local0", "local1", "local2", "local3", "local4",
              "local5", "local6", "local7")
VERSIONS = {"all": None, "tlsv1.2": "TLSv1.2", "tlsv1.3": "TLSv1.3"}
SERVED = ("TLSv1.2", "TLSv1.3")
# the OpenSSL option names config reads, less the version switches (the full path checks
# what those leave)
SSL_OPTIONS = ("NO_SSLV2", "NO_SSLV3", "NO_TLSV1", "NO_TLSV1_1", "NO_COMPRESSION", "NO_TICKET",
               "CIPHER_SERVER_PREFERENCE", "SINGLE_DH_USE", "SINGLE_ECDH_USE",
               "NO_RENEGOTIATION", "ALL")
CONFIG_MAX_BYTES = 1 << 20  # config.CONFIG_MAX_BYTES
SUN_PATH_MAX = 107
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.")


class Unsupported(Exception):
    """Not for the fast path: the full path reads this input (and reports any mistake)."""


class Spec:
    """One inetd service: the fields of ``config.Service`` and ``GlobalOptions`` it uses."""

    __slots__ = ("cert", "ciphers", "ciphersuites", "connect", "curves", "debug", "exec",
                 "exec_args", "facility", "foreground", "hosts_allow", "hosts_deny", "key",
                 "libwrap", "name", "output", "session_timeout", "ssl_options", "syslog",
                 "timeout_busy", "timeout_close", "timeout_connect", "timeout_idle",
                 "version_max", "version_min")

    def __init__(self, name: str, values: dict[str, object]) -> None:
        self.name = name
        self.connect: tuple[tuple[str | None, int, str | None], ...] = ()  # host, port, path
        self.exec: str | None = None
        self.exec_args: tuple[str, ...] | None = None
        self.cert: str | None = None
        self.key: str | None = None
        self.ciphers: str | None = None
        self.ciphersuites: str | None = None
        self.curves: str | None = None
        self.version_min: str | None = "TLSv1.2"
        self.version_max: str | None = None
        self.timeout_busy = 10.0
        self.timeout_close = 60.0
        self.timeout_connect = 10.0
        self.timeout_idle = 43200.0
        self.libwrap = True
        self.ssl_options: tuple[str, ...] = ()
        self.session_timeout = 300.0
        self.foreground = False
        self.output: str | None = None
        self.syslog: bool | None = None
        self.debug = 5
        self.facility = "daemon"
        self.hosts_allow = "/etc/hosts.allow"
        self.hosts_deny = "/etc/hosts.deny"
        for attr, value in values.items():
            setattr(self, attr, value)

    @property
    def tls_range(self) -> tuple[str, str]:
        """As ``Service.tls_range``: the configured versions within TLS 1.2 and 1.3."""
        low = self.version_min or SERVED[0]
        return low, self.version_max or SERVED[-1]


def address_text(address: tuple[str | None, int, str | None]) -> str:
    """As ``str(config.Address)``: the path, ``host:port`` or ``[v6]:port``."""
    host, port, path = address
    if path is not None:
        return path
    host = host or "*"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# ---------------------------------------------------------------- values (as config's parsers)

def _bool(value: str) -> bool:
    v = value.lower()
    if v in ("yes", "true", "on", "1"):
        return True
    if v in ("no", "false", "off", "0"):
        return False
    raise Unsupported


def _seconds(value: str) -> float:
    if not value.isascii() or not value.replace(".", "", 1).isdigit():
        raise Unsupported  # plain decimals only: float() takes more ("1e3", "inf", "_")
    return float(value)


def _session_seconds(value: str) -> float:
    seconds = _seconds(value)
    if seconds > 2**31 - 1:  # config.SESSION_TIMEOUT_MAX: the full path says why, at its line
        raise Unsupported
    return seconds


def _text(value: str) -> str:
    if not value:
        raise Unsupported
    return value


def _port(value: str) -> int:
    if not (value.isascii() and value.isdigit()) or not 0 < int(value) < 65536:
        raise Unsupported  # a service name is resolved by the full path
    return int(value)


def _host_name(host: str) -> str:
    labels = host.split(".")
    if labels[-1] == "" and len(labels) > 1:
        labels.pop()
    if (not host or not set(host) <= _HOST_CHARS or any(not label for label in labels)
            or any(len(label) > 63 for label in labels) or len(".".join(labels)) > 253):
        raise Unsupported
    return host


def connect_address(value: str) -> tuple[str | None, int, str | None]:
    """``config.parse_connect``: ``[HOST:]PORT``, ``[IPV6]:PORT`` or a unix socket path."""
    value = value.strip()
    if value.startswith("/"):
        if len(value.encode()) > SUN_PATH_MAX:
            raise Unsupported
        return None, 0, value
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or value[end + 1:end + 2] != ":":
            raise Unsupported
        host, port = value[1:end], value[end + 2:]
        try:
            inet_pton(AF_INET6, host)
        except OSError:
            raise Unsupported from None
        return host, _port(port), None
    if ":" in value:
        host, port = value.rsplit(":", 1)
        if ":" in host:
            raise Unsupported
        return _host_name(host), _port(port), None
    return "localhost", _port(value), None


def _version(value: str) -> str | None:
    try:
        return VERSIONS[value.lower()]
    except KeyError:
        raise Unsupported from None


def debug_level(value: str) -> tuple[str | None, int]:
    """``config.parse_debug``: ``[FACILITY.]LEVEL``, a level 0-7 or its name."""
    prefix, _, level = value.rpartition(".")
    facility = prefix.lower() or None
    if facility is not None and facility not in FACILITIES:
        raise Unsupported
    lv = level.lower()
    if lv.isascii() and lv.isdigit() and int(lv) <= 7:
        return facility, int(lv)
    if lv in LEVELS:
        return facility, LEVELS[lv]
    raise Unsupported


def _ssl_option(value: str) -> str:
    name = value.upper()
    if name not in SSL_OPTIONS:
        raise Unsupported
    return name


def _only(*allowed: str):  # type: ignore[no-untyped-def]
    def parse(value: str) -> None:
        if value.lower() not in allowed:
            raise Unsupported
    return parse


# option (lower case) -> (scope, field, parser, repeats); fields None: accepted, not stored
OPTIONS = {
    "foreground": ("global", "foreground", _bool, False),
    "pid": ("global", None, str, False),  # inetd mode writes no pid file
    "output": ("global", "output", _text, False),
    "syslog": ("global", "syslog", _bool, False),
    "debug": ("global", "debug", debug_level, False),
    "hostsallow": ("global", "hosts_allow", _text, False),
    "hostsdeny": ("global", "hosts_deny", _text, False),
    "fips": ("global", None, _only("no", "false", "off", "0"), False),
    "connect": ("service", "connect", connect_address, True),
    "exec": ("service", "exec", _text, False),
    "execargs": ("service", "exec_args", lambda v: tuple(v.split()), False),
    "cert": ("service", "cert", _text, False),
    "key": ("service", "key", _text, False),
    "ciphers": ("service", "ciphers", _text, False),
    "ciphersuites": ("service", "ciphersuites", _text, False),
    "curves": ("service", "curves", _text, False),
    "sslversionmin": ("service", "version_min", _version, False),
    "sslversionmax": ("service", "version_max", _version, False),
    "sslversion": ("service", "version_min+version_max", _version, False),
    "timeoutbusy": ("service", "timeout_busy", _seconds, False),
    "timeoutclose": ("service", "timeout_close", _seconds, False),
    "timeoutconnect": ("service", "timeout_connect", _seconds, False),
    "timeoutidle": ("service", "timeout_idle", _seconds, False),
    "libwrap": ("service", "libwrap", _bool, False),
    "options": ("service", "ssl_options", _ssl_option, True),
    "sessioncachetimeout": ("service", "session_timeout", _session_seconds, False),
    "client": ("service", None, _only("no", "false", "off", "0"), False),
    "renegotiation": ("service", None, _only("no", "false", "off", "0"), False),
    "delay": ("service", None, _only("no", "false", "off", "0"), False),
}


def _set(values: dict[str, object], key: str, raw: str) -> None:
    try:
        _scope, attr, parse, repeats = OPTIONS[key]
    except KeyError:
        raise Unsupported from None
    value = parse(raw)
    if attr is None:
        return
    if key in ("cert", "key") and attr in values:
        raise Unsupported  # several certificates in one section: the full path's SNI choice
    if attr == "debug":
        facility, value = value
        if facility:
            values["facility"] = facility
    if repeats:
        before = values.get(attr, ())
        assert isinstance(before, tuple)
        value = (*before, value)
    for each in attr.split("+"):
        values[each] = value


def _finish(name: str, values: dict[str, object]) -> Spec:
    """``config._build_service``'s checks; the ones the fast path leaves out are Unsupported."""
    if bool(values.get("connect")) == bool(values.get("exec")):
        raise Unsupported  # both, or neither
    if "exec_args" in values and "exec" not in values:
        raise Unsupported
    if not values.get("cert"):
        raise Unsupported
    spec = Spec(name, values)
    low, high = spec.tls_range
    if SERVED.index(low) > SERVED.index(high):
        raise Unsupported
    if spec.exec is not None and not spec.exec.startswith("/"):
        raise Unsupported  # PATH search: the full path does it as subprocess does
    return spec


def from_config_text(text: str) -> Spec:
    """A config file with one service and no ``accept`` (stunnel's inetd form, with or
    without a section)."""
    glob: dict[str, object] = {}
    section: dict[str, object] | None = None
    name = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in ";#":
            continue
        if "\0" in line:
            raise Unsupported
        if line.startswith("["):
            if section is not None or not line.endswith("]") or len(line) < 3:
                raise Unsupported
            name = line[1:-1].strip()
            if not name:
                raise Unsupported
            section = {}
            continue
        key, eq, value = line.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not eq or not key or key not in OPTIONS:
            raise Unsupported
        if section is not None and OPTIONS[key][0] == "global":
            raise Unsupported
        _set(glob if section is None else section, key, value)
    global_keys = {"foreground", "output", "syslog", "debug", "facility", "hosts_allow",
                   "hosts_deny"}
    values = {k: v for k, v in glob.items() if k in global_keys}
    defaults = {k: v for k, v in glob.items() if k not in global_keys}
    if section is None:
        if not defaults.get("connect") and not defaults.get("exec"):
            raise Unsupported
        exe = defaults.get("exec")
        name = str(exe).rsplit("/", 1)[-1] if exe else "tlswrap"
        section = {}
    return _finish(name, {**values, **defaults, **section})


def from_args(opts: dict[str, str | bool], exec_argv: list[str] | None) -> Spec:
    """The command line's one service (``cli.split_one_service_args``), as
    ``cli.one_service_config`` reads it."""
    if "accept" in opts:
        raise Unsupported  # a daemon
    program = opts.get("exec")
    name = str(opts.get("service") or (str(program).rsplit("/", 1)[-1] if program
                                       else "tlswrap"))
    values: dict[str, object] = {}
    for key in ("connect", "exec", "cert", "key"):
        if key in opts:
            _set(values, key, str(opts[key]))
    if exec_argv is not None:
        if not program:
            raise Unsupported
        values["exec_args"] = tuple(exec_argv) or None
    if "debug" in opts:
        values["debug"] = debug_level(str(opts["debug"]))[1]
    values["foreground"] = bool(opts.get("foreground"))
    if "output" in opts:
        values["output"] = str(opts["output"])
    return _finish(name, values)
