"""hosts_options(5): the option fields of a tcp_wrappers rule, parsed and validated.

Pure; :mod:`tlswrap.tcpwrappers.rules` parses with it. Follows tcpd's options.c: fields are
separated by ``:`` (``\\:`` is a literal colon), an option is ``keyword [=] [value]``, and the
checks run in tcpd's order so the first error reported is the one tcpd would report.
Errors that need the system (an unknown user or group for ``user``/``group``, a missing
banners directory) are left to the caller's ``on_option`` hook.
"""

from __future__ import annotations

from tlswrap.tcpwrappers.cstring import SPACE, fold, leading_int, scan_int, split_at
from tlswrap.tcpwrappers.record import Record

__all__ = ["OPTION_TABLE", "Option", "OptionSpec", "Severity", "parse_options"]

_KEY_END = "= \t\r\n"  # options.c whitespace_eq

NEED_ARG, USE_LAST, OPT_ARG, EXPAND_ARG = 2, 4, 8, 16

#: keyword -> flags, as options.c option_table (Debian builds with ACLEXEC).
OPTION_TABLE: dict[str, int] = {
    "user": NEED_ARG,
    "group": NEED_ARG,
    "umask": NEED_ARG,
    "linger": NEED_ARG,
    "keepalive": 0,
    "aclexec": NEED_ARG | EXPAND_ARG,
    "spawn": NEED_ARG | EXPAND_ARG,
    "twist": NEED_ARG | EXPAND_ARG | USE_LAST,
    "rfc931": OPT_ARG,
    "setenv": NEED_ARG | EXPAND_ARG,
    "nice": OPT_ARG,
    "severity": NEED_ARG,
    "allow": USE_LAST,
    "deny": USE_LAST,
    "banners": NEED_ARG,
}

# syslog.h values; only the names tcpd's tables know.
FACILITIES = {name: code << 3 for name, code in (
    ("kern", 0), ("user", 1), ("mail", 2), ("daemon", 3), ("auth", 4), ("lpr", 6), ("news", 7),
    ("uucp", 8), ("cron", 9), ("local0", 16), ("local1", 17), ("local2", 18), ("local3", 19),
    ("local4", 20), ("local5", 21), ("local6", 22), ("local7", 23))}
LEVELS = {name: i for i, name in enumerate(
    ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"))}
DEFAULT_NICE = 10


class Severity(Record):
    """``severity [facility.]level``: ``priority`` is the syslog priority (facility | level)."""

    __slots__ = _fields = ("facility", "level", "priority")
    facility: str | None
    level: str
    priority: int

    def __init__(self, facility: str | None, level: str, priority: int) -> None:
        super().__init__(facility, level, priority)


class Option(Record):
    """One processed option of the deciding rule.

    ``name``: lower-case keyword; ``keyword``: as written; ``value``: the text tcpd works
    with (after %-expansion for spawn, twist, aclexec and setenv), None when absent.
    ``arg``: the value ready to act on:

    ======================  =========================================================
    spawn, twist, aclexec   ``str``: shell command, already %-expanded and shell-safe
    setenv                  ``(name, value)``
    umask, linger           ``int`` (umask parsed as octal)
    nice                    ``int`` (10 when no value)
    rfc931                  ``int | None``: timeout in seconds
    severity                :class:`Severity`
    user                    ``(user, group | None)`` from ``user name[.group]``
    group, banners          ``str`` (banners: directory holding a file named as the daemon)
    keepalive, allow, deny  ``None``
    ======================  =========================================================
    """

    __slots__ = _fields = ("name", "keyword", "value", "arg")
    name: str
    keyword: str
    value: str | None
    arg: object

    def __init__(self, name: str, keyword: str, value: str | None, arg: object = None) -> None:
        super().__init__(name, keyword, value, arg)


class OptionSpec(Record):
    """An option as written in the file, validated as far as that is possible statically."""

    __slots__ = _fields = ("name", "keyword", "value", "error")
    name: str
    keyword: str
    value: str | None
    error: str | None  # a bad value: tcpd reports it after logging the option

    def __init__(self, name: str, keyword: str, value: str | None,
                 error: str | None = None) -> None:
        super().__init__(name, keyword, value, error)

    @property
    def expand(self) -> bool:
        return bool(OPTION_TABLE[self.name] & EXPAND_ARG)

    def bind(self, value: str | None) -> Option:
        """The runnable option, given the (expanded) value."""
        if self.error:
            return Option(self.name, self.keyword, value)
        return Option(self.name, self.keyword, value, _convert(self.name, value))


def _check(name: str, value: str | None) -> str | None:
    """The value errors options.c reports (tcpd_jump) when it runs the option."""
    if value is None:
        return None
    if name == "umask":
        found = leading_int(value)  # then the digits must all be octal, and end the value
        octal = found is not None and not found[2] and all(c in "01234567" for c in found[1])
        mask = int(found[1], 8) if found and octal else -1
        if found and octal and found[0] == "-":
            mask = -mask % (1 << 32)
        if not 0 <= mask <= 0o777:
            return f'bad umask value: "{value}"'
    elif name == "linger":
        n = scan_int(value)
        if n is None or n < 0:
            return f'bad linger value: "{value}"'
    elif name == "nice":
        if scan_int(value) is None:
            return f'bad nice value: "{value}"'
    elif name == "rfc931":
        n = scan_int(value)
        if n is None or n <= 0:
            return f'bad rfc931 timeout: "{value}"'
    elif name == "severity":
        fac, dot, level = _split_dot(value)
        if dot and fold(fac) not in FACILITIES:
            return f'bad syslog facility or severity: "{fac}"'
        if fold(level) not in LEVELS:
            return f'bad syslog facility or severity: "{level}"'
    return None


def _split_dot(value: str) -> tuple[str, bool, str]:
    first, rest = split_at(value, ".")
    return (first, True, rest) if rest is not None else ("", False, value)


def _convert(name: str, value: str | None) -> object:
    if name in ("spawn", "twist", "aclexec", "group", "banners"):
        return value
    if value is None:
        return DEFAULT_NICE if name == "nice" else None
    if name == "setenv":
        cut = next((i for i, c in enumerate(value) if c in " \t\r\n"), len(value))
        return value[:cut].strip(SPACE), value[cut + 1:].strip(SPACE)
    if name == "umask":
        return int(value.strip(SPACE).lstrip("+-"), 8)
    if name in ("linger", "nice", "rfc931"):
        return scan_int(value)
    if name == "severity":
        fac, dot, level = _split_dot(value)
        prio = LEVELS[fold(level)] | (FACILITIES[fold(fac)] if dot else 0)
        return Severity(fold(fac) if dot else None, fold(level), prio)
    if name == "user":
        user, dot, group = _split_dot(value)
        return (user, group) if dot else (value, None)
    return None


def _fields(text: str) -> list[str]:
    """options.c get_field(): split at ``:``; ``\\:`` stands for a literal colon."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        buf: list[str] = []
        while i < n:
            ch = text[i]
            if ch == ":":
                i += 1
                break
            if ch == "\\" and i + 1 < n and text[i + 1] == ":":
                i += 1
            buf.append(text[i])
            i += 1
        out.append("".join(buf))
    return out


def parse_options(text: str) -> tuple[tuple[OptionSpec, ...], str | None]:
    """Parse the option part of a rule (after the second ``:``, newline included).

    Returns the options up to the first error and that error (None if none). Like tcpd,
    processing stops at the first option with an error; a value error is carried on the
    option itself (tcpd logs the option, then reports the error).
    """
    specs: list[OptionSpec] = []
    fields = _fields(text)
    for idx, raw in enumerate(fields):
        opt = raw.strip(SPACE)
        cut = next((i for i, c in enumerate(opt) if c in _KEY_END), len(opt))
        key, rest = opt[:cut], opt[cut:]
        if rest:
            if rest[0] != "=":
                rest = rest[1:].lstrip(_KEY_END[1:])
            if rest.startswith("="):
                rest = rest[1:].lstrip(_KEY_END[1:])
        value = rest or None
        if not key:
            return tuple(specs), "missing option name"
        name = fold(key)
        if name not in OPTION_TABLE:
            return tuple(specs), f'bad option name: "{key}"'
        flags = OPTION_TABLE[name]
        if value is None and flags & NEED_ARG:
            return tuple(specs), f'option "{key}" requires value'
        if value is not None and not flags & (NEED_ARG | OPT_ARG):
            return tuple(specs), f'option "{key}" requires no value'
        if idx + 1 < len(fields) and flags & USE_LAST:
            return tuple(specs), f'option "{key}" must be at end'
        spec = OptionSpec(name, key, value, None if flags & EXPAND_ARG else _check(name, value))
        specs.append(spec)
        if spec.error:
            break
    return tuple(specs), None
