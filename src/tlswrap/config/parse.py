"""Config text to model: sections, lines, ``include``; every mistake located and all of them
collected (``ConfigError.all()``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError, SourceLine
from ..tlsoptions import service_problems, sni_problems
from .checks import version_problem
from .model import CONFIG_MAX_BYTES, Config, GlobalOptions, Service
from .options import NOT_YET, OPTIONS, Option, setter
from .values import WORKERS_AUTO, parse_debug


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
    from ..regularfile import read_include_dir, read_regular

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
    config = parse_config(text, path, lambda d: read_include_dir(d, CONFIG_MAX_BYTES))
    if config.globals.workers == WORKERS_AUTO:
        from ..workers import usable_cpus

        config = dataclasses.replace(
            config, globals=dataclasses.replace(config.globals, workers=usable_cpus()))
    return config


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
    if outbound and globals_.workers != 1:
        count = globals_.workers or "auto"
        errors.append(ConfigError(filename, globals_.lines.get("workers"),
                                  f"workers = {count}: a connect+exec service "
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
        raise fail(NOT_YET.get(key.lower(), f"unknown option {key!r}"))
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
        raise fail(_value_error(opt, value, exc)) from None


def _value_error(opt: Option, value: str, exc: ValueError) -> str:
    """What is wrong with ``opt = value``; a secret's value is never shown."""
    return f"{opt.name} = {'(not shown)' if opt.secret else value}: {exc}"


def service_from_options(name: str, options: list[tuple[str, str]],
                         filename: str = "command line") -> Service:
    """Build one service from (option, value) pairs, parsed and checked as in a file."""
    sec = _Section(name, 0)
    for key, value in options:
        opt = OPTIONS[key.lower()]
        try:
            sec.set(opt, opt.parse(value), 0)
        except ValueError as exc:
            raise ConfigError(filename, None, _value_error(opt, value, exc), name) from None
    return _build_service(sec, {}, {}, filename)


_GLOBAL_FIELDS = {f.name for f in dataclasses.fields(GlobalOptions)} - {"lines"}
_SERVICE_FIELDS = {f.name for f in dataclasses.fields(Service)} - {"lines", "value_lines",
                                                                  "name"}
_REPEATED = {o.attr for o in OPTIONS.values() if o.repeat}


_AUTH_OPTIONS = {"protocol_authentication": "protocolAuthentication",
                 "protocol_username": "protocolUsername",
                 "protocol_password": "protocolPassword"}


def _smtp_auth_problem(values: dict[str, Any],
                       lines: dict[str, int]) -> tuple[str, str] | None:
    """Why the SMTP AUTH options (stunnel's protocolAuthentication, protocolUsername,
    protocolPassword) cannot be taken as they stand: (message, option), or None.

    stunnel authenticates only when both the user name and the password are given, and skips
    authentication in silence when one is missing. Here half a pair (or a mechanism with
    neither) is an error: nobody writes one without meaning to authenticate, and a session that
    goes on unauthenticated fails later and elsewhere -- the smarthost refusing to relay at
    RCPT time, or worse, relaying for a while on an address-based rule until the address
    changes. The cost is that such a file, which stunnel ran without authenticating, must lose
    the stray line (or gain the missing one) before tlswrap starts.
    """
    given = sorted((lines[name.lower()], name) for attr, name in _AUTH_OPTIONS.items()
                   if values.get(attr) is not None and name.lower() in lines)
    if not given:
        return None
    first = given[0][1]
    protocol = values.get("protocol")
    if not values.get("client") or protocol != "smtp":
        if protocol in ("imap", "pop3"):
            return (f"{first}: stunnel supports it only for protocol = smtp and connect, not "
                    f"{protocol}: the mail client logs in itself, inside TLS", first)
        return (f"{first}: SMTP AUTH to a remote server: it needs client = yes and "
                "protocol = smtp", first)
    if values.get("protocol_username") is None or values.get("protocol_password") is None:
        missing = " and ".join(name for attr, name in _AUTH_OPTIONS.items()
                               if attr != "protocol_authentication" and values.get(attr) is None)
        return (f"{first} without {missing}: SMTP AUTH needs both protocolUsername and "
                "protocolPassword (stunnel would skip authentication in silence)", first)
    return None


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
        raise fail(f"{setter(lines, option)}: applies to 'connect' backends, not to 'exec'",
                   option)
    if not values.get("cert") and not values.get("client") and not values.get("psk_secrets"):
        raise fail("no 'cert': a TLS server needs a certificate (or PSKsecrets)")
    if values.get("protocol_host") and not (values.get("client")
                                            and values.get("protocol") == "smtp"):
        raise fail("protocolHost: the name sent in EHLO by client = yes with protocol = smtp "
                   "(stunnel's other protocols that use it, connect and socks, are not "
                   "supported)", "protocolhost")
    auth_problem = _smtp_auth_problem(values, lines)
    if auth_problem:
        raise fail(*auth_problem)
    first = ConfigError.of(fail(*problem) for problem in service_problems(values))
    if first is not None:  # every one of them: they do not follow from each other
        raise first
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
