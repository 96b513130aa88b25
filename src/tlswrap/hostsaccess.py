"""tcp_wrappers access control: hosts_access(5) and hosts_options(5), as Debian's tcpd 7.6.

Pure and I/O-free: the caller reads the files and passes their text to :func:`parse_hosts`;
everything that needs the outside world (name lookups, ``/path`` pattern files, netgroups,
user/group checks, banners, aclexec) is a function handed in and called only when a rule
needs it, so the matcher can run in a worker thread with the lookups bounded by a timeout.

General theory of operation (tcpd's hosts_access.c, misc.c, options.c, eval.c, percent_x.c):

* A file is read as logical lines (``xgets``): backslash-newline joins lines with no blank;
  a logical line that does not end in a newline (last line of the file, or longer than
  tcpd's 2048-byte buffer) stops the scan of that file with an error, which denies when it
  happens in hosts.deny. Lines whose first character is ``#`` and blank lines are skipped.
* A rule is split at the first ``:`` outside ``[...]`` (no backslash escape there), then
  again for the options. Lists split on blanks and commas; ``EXCEPT`` nests to the right.
* The first matching rule of a file decides; hosts.allow, then hosts.deny, then grant.
* Only the deciding rule's options are evaluated, in order; an error in them denies.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from tlswrap.hostsoptions import OPTION_TABLE, Option, OptionSpec, parse_options, split_at
from tlswrap.hostsoptions import fold as _fold

__all__ = [
    "ACLEXEC_FAILED", "PARANOID", "UNKNOWN", "Decision", "Option", "OptionSpec", "Request",
    "Rule", "Rules", "decide", "expand_percent", "parse_hosts", "OPTION_TABLE",
]

UNKNOWN = "unknown"  # tcpd's STRING_UNKNOWN: the lookup failed
PARANOID = "paranoid"  # tcpd's STRING_PARANOID: the name does not map back to the address
ACLEXEC_FAILED = "\0aclexec-failed"  # on_option result: the aclexec command exited non-zero

BUFLEN = 2048  # tcpd's logical line buffer, newline included
_SEP = re.compile(r"[, \t\r\n]+")  # list separators (hosts_access.c: sep[])
_BLANK = " \t\r\n"
_SAFE = frozenset("1234567890!@%-_=+:,./abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _eq(a: str, b: str) -> bool:
    return _fold(a) == _fold(b)


def _known(name: str) -> bool:  # HOSTNAME_KNOWN()
    return not _eq(name, UNKNOWN) and not _eq(name, PARANOID)


def _not_inaddr(tok: str) -> bool:  # NOT_INADDR(): has a character other than digits, '.', '/'
    return any(c not in "0123456789./" for c in tok)


# --- numeric helpers, as the C library sees them -------------------------------------------

def _atoi(s: str) -> int:
    m = re.match(r"[ \t\n\v\f\r]*([+-]?\d+)", s)
    return int(m.group(1)) if m else 0


def inet_addr(s: str) -> int | None:
    """glibc inet_addr(): dotted forms with hex/octal parts; None for errors and 255.255.255.255."""
    parts: list[int] = []
    i, n = 0, len(s)
    while True:
        if i >= n or not s[i].isdigit() or not s[i].isascii():
            return None
        if s[i] == "0" and i + 1 < n and s[i + 1] in "xX":
            m = re.match(r"0[xX]([0-9a-fA-F]*)", s[i:])
            assert m
            val = int(m.group(1), 16) if m.group(1) else 0
            if not m.group(1):  # strtoul stops after the "0"
                i += 1
            else:
                i += m.end()
        elif s[i] == "0":
            m = re.match(r"[0-7]*", s[i:])
            assert m
            val, i = int(m.group(0), 8), i + m.end()
        else:
            m = re.match(r"[0-9]+", s[i:])
            assert m
            val, i = int(m.group(0)), i + m.end()
        if val > 0xFFFFFFFF:
            return None
        if i < n and s[i] == ".":
            if len(parts) > 2 or val > 0xFF:
                return None
            parts.append(val)
            i += 1
            continue
        break
    if i < n and s[i] not in " \t\n\v\f\r":
        return None
    limit = (0xFFFFFFFF, 0xFFFFFF, 0xFFFF, 0xFF)[len(parts)]
    if val > limit:
        return None
    addr = val
    for k, p in enumerate(parts):
        addr |= p << (24 - 8 * k)
    return None if addr == 0xFFFFFFFF else addr


def dot_quad_addr(s: str) -> int | None:
    """misc.c dot_quad_addr(): exactly four runs of non-dots, then inet_addr()."""
    runs = sum(1 for r in s.split(".") if r)
    return inet_addr(s) if runs == 4 else None


def _inet6(s: str) -> ipaddress.IPv6Address | None:
    """getaddrinfo(AF_INET6, AI_NUMERICHOST), ignoring any %scope."""
    try:
        return ipaddress.IPv6Address(s.split("%", 1)[0] if "%" in s else s)
    except ValueError:
        return None


def _strip_mapped(s: str) -> str:
    """An IPv4-mapped address ``::ffff:a.b.c.d`` is matched as IPv4 (string_match)."""
    if _fold(s[:7]) == "::ffff:" and dot_quad_addr(s[7:]) is not None:
        return s[7:]
    return s


# --- the request -----------------------------------------------------------------------------

Lookup = Callable[[], "str | None"]


@dataclass
class Request:
    """What is known about one connection; name and user lookups are called lazily, once.

    ``client_name``/``server_name``: a name, or a function returning one; the value (or the
    function's result) is a host name, ``None``/``UNKNOWN`` when the lookup failed, or
    ``PARANOID`` when the name does not map back to the address. ``None`` for the whole field
    means no lookup is possible (tcpd's "unknown"). ``user``: likewise, for the RFC 931 user.
    Addresses are strings as printed (``10.0.0.1``, ``2001:db8::1``); ``None`` = unknown.
    """

    daemon: str
    client_addr: str | None = None
    client_name: Lookup | str | None = None
    server_addr: str | None = None
    server_name: Lookup | str | None = None
    user: Lookup | str | None = None
    client_port: int | None = None
    server_port: int | None = None
    pid: int | None = None
    _cache: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def _eval(self, key: str, source: Lookup | str | None) -> str:
        if key not in self._cache:
            value = source() if callable(source) else source
            self._cache[key] = value if value else UNKNOWN
        return self._cache[key]

    def _evaluated(self, key: str, source: Lookup | str | None) -> bool:
        return key in self._cache or not callable(source)

    def client_hostname(self) -> str:
        return self._eval("cn", self.client_name)

    def server_hostname(self) -> str:
        return self._eval("sn", self.server_name)

    def username(self) -> str:
        return self._eval("u", self.user)

    def client_hostaddr(self) -> str:
        return self.client_addr or UNKNOWN

    def server_hostaddr(self) -> str:
        return self.server_addr or UNKNOWN


class _Host(NamedTuple):
    addr: Callable[[], str]
    name: Callable[[], str]
    name_evaluated: Callable[[], bool]


def _client(r: Request) -> _Host:
    return _Host(r.client_hostaddr, r.client_hostname, lambda: r._evaluated("cn", r.client_name))


def _server(r: Request) -> _Host:
    return _Host(r.server_hostaddr, r.server_hostname, lambda: r._evaluated("sn", r.server_name))


# --- %-expansion ---------------------------------------------------------------------------

def _hostinfo(h: _Host) -> str:  # eval_hostinfo(), built without ALWAYS_HOSTNAME
    if not h.name_evaluated():
        return h.addr()
    name = h.name()
    return name if _known(name) else h.addr()


def _percent(ch: str, r: Request) -> str | None:
    if ch == "a":
        return r.client_hostaddr()
    if ch == "A":
        return r.server_hostaddr()
    if ch == "c":
        info = _hostinfo(_client(r))
        if not r._evaluated("u", r.user):
            return info
        user = r.username()
        return info if _eq(user, UNKNOWN) else f"{user}@{info}"
    if ch == "d":
        return r.daemon
    if ch == "h":
        return _hostinfo(_client(r))
    if ch == "H":
        return _hostinfo(_server(r))
    if ch == "n":
        return r.client_hostname()
    if ch == "N":
        return r.server_hostname()
    if ch == "p":
        return str(r.pid or 0)
    if ch == "r":
        return str(r.client_port or 0)
    if ch == "R":
        return str(r.server_port or 0)
    if ch == "s":
        host = _hostinfo(_server(r))
        return r.daemon if _eq(host, UNKNOWN) else f"{r.daemon}@{host}"
    if ch == "u":
        return r.username()
    if ch == "%":
        return "%"
    return None


def _sanitize(s: str) -> str:
    """percent_x(): every byte outside tcpd's safe set becomes ``_`` (shell-safe)."""
    return "".join(c if c in _SAFE else "_" * len(c.encode("utf-8", "surrogatepass")) for c in s)


def expand_percent(template: str, request: Request, warn: Callable[[str], None] | None = None) -> str:
    """Expand %a %A %c %d %h %H %n %N %p %r %R %s %u %% as tcpd's percent_x().

    Only the expansions are sanitized (characters that could confuse a shell become ``_``),
    never the template. An unknown ``%x`` expands to nothing, with a warning.
    """
    out: list[str] = []
    i, n = 0, len(template)
    while i < n:
        c = template[i]
        if c == "%" and i + 1 < n:
            ch = template[i + 1]
            i += 2
            exp = _percent(ch, request)
            if exp is None:
                if warn:
                    warn(f"unrecognized %{ch}")
                continue
            out.append(_sanitize(exp) if ch != "%" else "%")
        else:
            out.append(c)
            i += 1
    return "".join(out)


# --- parsing -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    """One rule: ``daemons : clients [: options]`` at ``lineno`` (tcpd's count: last line)."""

    filename: str
    lineno: int
    daemons: tuple[str, ...]
    clients: tuple[str, ...]
    options: tuple[OptionSpec, ...]  # parsed up to the first structural error
    option_error: str | None  # structural error after ``options`` (denies when decisive)


@dataclass(frozen=True)
class _Note:
    """A line tcpd skips with a warning, or (fatal) where it stops reading the file."""

    lineno: int
    messages: tuple[str, ...]
    fatal: bool


@dataclass(frozen=True)
class Rules:
    """A parsed hosts file. ``problems``: every syntax error, as ``(filename, lineno, msg)``."""

    filename: str
    entries: tuple[Rule | _Note, ...] = ()
    problems: tuple[tuple[str, int, str], ...] = ()
    open_error: str | None = None  # the file exists but cannot be read (tcpd denies)

    @property
    def rules(self) -> tuple[Rule, ...]:
        return tuple(e for e in self.entries if isinstance(e, Rule))

    @classmethod
    def empty(cls, filename: str) -> Rules:
        """A missing file: tcpd treats it as an empty one."""
        return cls(filename)

    @classmethod
    def unreadable(cls, filename: str, reason: str) -> Rules:
        """An unreadable file: tcpd warns ``cannot open FILE: reason`` and the check fails."""
        msg = f"cannot open {filename}: {reason}"
        return cls(filename, (), ((filename, 0, msg),), msg)


def _logical_lines(text: str):
    """misc.c xgets() over fgets(): yields (lineno, line, complete)."""
    text = text.replace("\0", "")
    pos, n, lineno = 0, len(text), 0
    while True:
        buf, room = "", BUFLEN
        while True:
            if pos >= n:
                if buf:
                    yield lineno, buf, False
                return
            end = text.find("\n", pos, pos + room - 1)
            chunk = text[pos:end + 1] if end >= 0 else text[pos:pos + room - 1]
            pos += len(chunk)
            if chunk.endswith("\n"):
                lineno += 1
                if len(chunk) >= 2 and chunk[-2] == "\\":
                    chunk = chunk[:-2]
                else:
                    yield lineno, buf + chunk, True
                    break
            buf += chunk
            room -= len(chunk)
            if room == 1:
                yield lineno, buf, False
                return


def parse_hosts(text: str, filename: str) -> Rules:
    """Parse a whole hosts.allow/hosts.deny text the way tcpd reads it at match time."""
    entries: list[Rule | _Note] = []
    problems: list[tuple[str, int, str]] = []
    for lineno, line, complete in _logical_lines(text):
        if not complete:
            msgs = ("missing newline or line too long", "all the subsequent rules will be ignored")
            entries.append(_Note(lineno, msgs, True))
            problems.append((filename, lineno + 1, msgs[0]))
            break
        if line[0] == "#" or not line.strip(_BLANK):
            continue
        daemons, rest = split_at(line, ":")
        if rest is None:
            entries.append(_Note(lineno, ('missing ":" separator',), False))
            problems.append((filename, lineno, 'missing ":" separator'))
            continue
        clients, sh_cmd = split_at(rest, ":")
        specs: tuple[OptionSpec, ...] = ()
        error = None
        if sh_cmd is not None:
            specs, error = parse_options(sh_cmd)
            problems += [(filename, lineno, s.error) for s in specs if s.error]
            if error:
                problems.append((filename, lineno, error))
        entries.append(Rule(filename, lineno, _tokens(daemons), _tokens(clients), specs, error))
    return Rules(filename, tuple(entries), tuple(problems))


def _tokens(s: str) -> tuple[str, ...]:
    return tuple(t for t in _SEP.split(s) if t)


# --- matching ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Decision:
    """The verdict and what decided it.

    ``verdict``: "granted" or "denied". ``file``/``line``: the deciding rule, or None when no
    rule matched. ``options``: the deciding rule's options that were processed, in order, with
    values expanded. ``delegated``: a ``twist`` was reached (tcpdmatch prints "delegated"; the
    daemon runs ``twist`` instead of the backend). ``error``: why access was denied by an error.
    ``log``: the lines tcpd would log in verbose mode (``matched:``, ``option:``, warnings).
    """

    verdict: str
    file: str | None
    line: int | None
    options: tuple[Option, ...] = ()
    delegated: bool = False
    error: str | None = None
    log: tuple[str, ...] = ()

    @property
    def granted(self) -> bool:
        return self.verdict == "granted"

    @property
    def access(self) -> str:
        """What tcpdmatch prints on its ``access:`` line."""
        return "delegated" if self.delegated else self.verdict

    def option(self, name: str) -> Option | None:
        """The last processed option called ``name`` (e.g. "twist"), or None."""
        found = [o for o in self.options if o.name == name]
        return found[-1] if found else None


class _Jump(Exception):
    def __init__(self, permit: bool):
        self.permit = permit


class _Matcher:
    def __init__(self, request: Request, read_patterns, netgroup, on_option, log):
        self.r = request
        self.read_patterns = read_patterns
        self.netgroup = netgroup
        self.on_option = on_option
        self.emit = log
        self.lines: list[str] = []
        self.where: tuple[str, int] | None = None
        self.rule: Rule | None = None
        self.options: list[Option] = []
        self.delegated = False
        self.error: str | None = None
        self.table_error: str | None = None

    def log(self, line: str) -> None:
        self.lines.append(line)
        if self.emit:
            self.emit(line)

    def diag(self, tag: str, msg: str) -> None:  # diag.c tcpd_diag()
        where = f"{self.where[0]}, line {self.where[1]}: " if self.where else ""
        self.log(f"{tag}: {where}{msg}")

    def jump(self, msg: str) -> None:
        self.diag("error", msg)
        self.error = msg
        raise _Jump(False)

    # hosts_access.c table_match(): True (YES), False (NO) or None (ERR)
    def table(self, rules: Rules) -> bool | None:
        if rules.open_error:
            self.where = None
            self.diag("warning", rules.open_error)
            self.table_error = rules.open_error
            return None
        try:
            for e in rules.entries:
                self.where = (rules.filename, e.lineno)
                if isinstance(e, _Note):
                    for m in e.messages:
                        self.diag("warning", m)
                    if e.fatal:
                        self.table_error = e.messages[0]
                        return None
                elif self.list_match(e.daemons, self.server_match) and self.list_match(
                        e.clients, self.client_match):
                    self.rule = e
                    self.log(f"matched:  {rules.filename} line {e.lineno}")
                    return self.process_options(e)
            return False
        finally:
            self.where = None

    def process_options(self, rule: Rule) -> bool:
        aclexec_failed = False
        for spec in rule.options:
            value = spec.value
            if value is not None and spec.expand:
                value = expand_percent(value, self.r, lambda m: self.diag("warning", m)).strip(
                    " \t\n\v\f\r")
            opt = spec.bind(value)
            self.log(f"option:   {spec.keyword} {value or ''}")
            self.options.append(opt)
            if spec.error:
                self.jump(spec.error)
            if self.on_option is not None:
                result = self.on_option(opt, lambda msg: self.diag("warning", msg))
                if result == ACLEXEC_FAILED:
                    aclexec_failed = True
                elif result:
                    self.jump(result)
            if opt.name == "allow":
                raise _Jump(True)
            if opt.name == "deny":
                raise _Jump(False)
            if opt.name == "twist":
                self.delegated = True
        if rule.option_error:
            self.jump(rule.option_error)
        if aclexec_failed:
            self.log("aclexec returned 1")
            self.rule = None
            self.options.clear()
            self.delegated = False
            return False
        return True

    @staticmethod
    def list_match(tokens: Sequence[str], fn: Callable[[str], bool], i: int = 0) -> bool:
        """list_match(): the first EXCEPT ends the list; exceptions nest to the right."""
        n = len(tokens)
        while i < n:
            tok = tokens[i]
            if _eq(tok, "EXCEPT"):
                return False
            if fn(tok):
                j = i + 1
                while j < n and not _eq(tokens[j], "EXCEPT"):
                    j += 1
                return j == n or not _Matcher.list_match(tokens, fn, j + 1)
            i += 1
        return False

    def daemon_or_port(self, tok: str) -> bool:
        m = re.fullmatch(r"[ \t\n\v\f\r]*([+-]?)(\d+)", tok)
        if m:
            port = int(m.group(2))
            port = min(port, 0xFFFFFFFF) if not m.group(1) == "-" else (-port) % (1 << 32)
            if port <= 65535:
                return self.r.server_port is not None and port == self.r.server_port
        return string_match(tok, self.r.daemon)

    def server_match(self, tok: str) -> bool:
        daemon, host = split_at(tok[1:], "@")
        if host is None:
            return self.daemon_or_port(tok)
        return self.daemon_or_port(tok[0] + daemon) and self.host_match(host, _server(self.r))

    def client_match(self, tok: str) -> bool:
        user, host = split_at(tok[1:], "@")
        if host is None:
            return self.host_match(tok, _client(self.r))
        return self.host_match(host, _client(self.r)) and string_match(tok[0] + user,
                                                                      self.r.username())

    def host_match(self, tok: str, h: _Host) -> bool:
        if tok.startswith("@"):  # NIS netgroup
            name = h.name()
            return bool(self.netgroup and self.netgroup(tok[1:], name))
        if tok.startswith("/"):  # a file of patterns
            return self.hostfile_match(tok, h)
        if _eq(tok, "KNOWN"):
            name = h.name()
            return not _eq(h.addr(), UNKNOWN) and _known(name)
        if _eq(tok, "LOCAL"):
            name = h.name()
            return "." not in name and _known(name)
        net, mask = split_at(tok, "/")
        if mask is not None:
            return masked_match(net, mask, h.addr())
        return string_match(tok, h.addr()) or (_not_inaddr(tok) and string_match(tok, h.name()))

    def hostfile_match(self, path: str, h: _Host) -> bool:
        if self.read_patterns is None:
            return False
        try:
            patterns = self.read_patterns(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            self.diag("warning", f"open {path}: {exc.strerror or exc}")
            return False
        return any(self.host_match(p, h) for p in patterns)


def string_match(tok: str, string: str) -> bool:
    """hosts_access.c string_match(): wildcards, .suffix, ALL, KNOWN, prefix., [v6], exact."""
    string = _strip_mapped(string)
    if "*" in tok or "?" in tok:
        return _wildcard(tok).fullmatch(string) is not None
    if tok.startswith("."):
        n = len(string) - len(tok)
        return n > 0 and _eq(tok, string[n:])
    if _eq(tok, "ALL"):
        return True
    if _eq(tok, "KNOWN"):
        return not _eq(string, UNKNOWN)
    if tok.endswith("."):
        return _fold(string[:len(tok)]) == _fold(tok)
    if len(tok) >= 2 and tok[0] == "[" and tok[-1] == "]":
        pat, addr = _inet6(tok[1:-1]), _inet6(string)
        return pat is not None and addr is not None and pat == addr
    return _eq(tok, string)


_WILDCARDS: dict[str, re.Pattern[str]] = {}


def _wildcard(tok: str) -> re.Pattern[str]:
    pat = _WILDCARDS.get(tok)
    if pat is None:
        body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in tok)
        pat = _WILDCARDS[tok] = re.compile(body, re.IGNORECASE | re.ASCII | re.DOTALL)
    return pat


def masked_match(net_tok: str, mask_tok: str, string: str) -> bool:
    """IPv4 ``net/mask`` or ``net/len`` (the net is not masked), or IPv6 ``[net]/len``."""
    return _masked4(net_tok, mask_tok, string) or _masked6(net_tok, mask_tok, string)


def _masked4(net_tok: str, mask_tok: str, string: str) -> bool:
    addr = dot_quad_addr(string)
    if addr is None:
        return False
    net = dot_quad_addr(net_tok)
    if net is None:
        return False
    mask = dot_quad_addr(mask_tok)
    if mask is None:
        bits = _atoi(mask_tok)
        if bits < 1 or bits > 32:
            return False
        mask = (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF
    return (addr & mask) == net


def _masked6(net_tok: str, mask_tok: str, string: str) -> bool:
    if _fold(string[:7]) == "::ffff:" and dot_quad_addr(string[7:]) is not None:
        return _masked4(net_tok, mask_tok, string[7:])
    addr = _inet6(string)
    if addr is None or len(net_tok) < 2 or net_tok[0] != "[" or net_tok[-1] != "]":
        return False
    net = _inet6(net_tok[1:-1])
    if net is None:
        return False
    bits = _atoi(mask_tok)
    if bits < 0 or bits > 128:
        return False
    shift = 128 - bits
    return (int(addr) >> shift) == (int(net) >> shift) if bits else True


def decide(
    allow: Rules,
    deny: Rules,
    request: Request,
    *,
    read_patterns: Callable[[str], Sequence[str]] | None = None,
    netgroup: Callable[[str, str], bool] | None = None,
    on_option: Callable[[Option, Callable[[str], None]], str | None] | None = None,
    log: Callable[[str], None] | None = None,
) -> Decision:
    """hosts_access(): allow file, then deny file, then grant; options of the deciding rule.

    ``read_patterns(path)`` returns the whitespace-separated patterns of a ``/path`` list
    (raise FileNotFoundError for a missing file: no match; other OSError: warning, no match).
    ``netgroup(group, hostname)`` answers ``@group`` patterns (None: never a member, as tcpd
    without NIS). ``on_option(option, warn)`` runs once per processed option, in order (``warn``
logs a warning located at the rule); it returns
    None, an error message (tcpd's jump: access denied) or ACLEXEC_FAILED. Nothing is executed
    here: spawn, twist and aclexec are only reported in ``Decision.options``.
    """
    m = _Matcher(request, read_patterns, netgroup, on_option, log)
    try:
        if m.table(allow) is True:
            permit = True
        else:
            found = m.table(deny)
            permit = found is False
            if found is None:
                m.error = m.table_error
    except _Jump as jump:
        permit = jump.permit
    rule = m.rule
    return Decision(
        verdict="granted" if permit else "denied",
        file=rule.filename if rule else None,
        line=rule.lineno if rule else None,
        options=tuple(m.options),
        delegated=m.delegated,
        error=m.error,
        log=tuple(m.lines),
    )
