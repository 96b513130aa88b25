"""stunnel's ``socket = a|l|r:OPTION=VALUE[:VALUE]``, parsed and checked. Pure.

The roles are stunnel's (src/options.c ``socket_option_parse``, src/stunnel.c and
src/client.c where they are applied):

- ``a``: the accepting (listening) socket, set before it is bound;
- ``l``: the local socket, each accepted client connection;
- ``r``: the remote socket, each connection to a backend.

The option table is stunnel 5.75's ``sock_opts_def[]`` as built on Linux; the value kinds are
its ``TYPE_FLAG`` (yes/no/1/0), ``TYPE_INT``, ``TYPE_LINGER`` (``on[:seconds]``),
``TYPE_TIMEVAL`` (``seconds[:microseconds]``) and ``TYPE_STRING``. Names are matched exactly
(stunnel uses strcmp). Values are checked against what Linux accepts, so a mistake is a
``FILE:LINE`` error at start, not a failure at the first connection. The I/O shell
(``sockstream.set_socket_options``) maps each name to its level and packs the value.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

ROLES = {"a": "the listening socket", "l": "each client connection",
         "r": "each backend connection"}
C_INT_MAX = 2**31 - 1
IFNAMSIZ = 16  # Linux interface names: 15 characters and the NUL


class Kind(enum.Enum):
    FLAG = "yes|no"
    INT = "a whole number"
    LINGER = "ON[:SECONDS]"
    TIMEVAL = "SECONDS[:MICROSECONDS]"
    STRING = "a name"


# name -> (kind, lowest, highest) for numbers; ranges are what Linux takes (socket(7), tcp(7),
# ip(7)): a value outside is refused by setsockopt(2).
TABLE: dict[str, tuple[Kind, int, int]] = {
    "SO_DEBUG": (Kind.FLAG, 0, 1),
    "SO_DONTROUTE": (Kind.FLAG, 0, 1),
    "SO_KEEPALIVE": (Kind.FLAG, 0, 1),
    "SO_LINGER": (Kind.LINGER, 0, 65535),
    "SO_OOBINLINE": (Kind.FLAG, 0, 1),
    "SO_RCVBUF": (Kind.INT, 0, C_INT_MAX),
    "SO_SNDBUF": (Kind.INT, 0, C_INT_MAX),
    "SO_RCVLOWAT": (Kind.INT, 1, C_INT_MAX),
    "SO_RCVTIMEO": (Kind.TIMEVAL, 0, C_INT_MAX),
    "SO_SNDTIMEO": (Kind.TIMEVAL, 0, C_INT_MAX),
    "SO_REUSEADDR": (Kind.FLAG, 0, 1),
    "SO_BINDTODEVICE": (Kind.STRING, 0, IFNAMSIZ - 1),
    "TCP_KEEPCNT": (Kind.INT, 1, 127),
    "TCP_KEEPIDLE": (Kind.INT, 1, 32767),
    "TCP_KEEPINTVL": (Kind.INT, 1, 32767),
    "IP_TOS": (Kind.INT, 0, 255),
    "IP_TTL": (Kind.INT, 1, 255),
    "TCP_MAXSEG": (Kind.INT, 88, 32767),
    "TCP_NODELAY": (Kind.FLAG, 0, 1),
    "IP_FREEBIND": (Kind.FLAG, 0, 1),
    "IPV6_V6ONLY": (Kind.FLAG, 0, 1),
}
# names stunnel knows on other systems: refused with the reason (stunnel on Linux refuses
# them too, as unknown)
ELSEWHERE = {
    "SO_EXCLUSIVEADDRUSE": "Windows only",
    "IP_BINDANY": "FreeBSD only (on Linux: IP_FREEBIND)",
    "IPV6_BINDANY": "FreeBSD only (on Linux: IP_FREEBIND)",
    "SO_SNDLOWAT": "Linux cannot change it (setsockopt(2) fails with ENOPROTOOPT)",
}
# options that mean nothing on one role
_NOT_ON = {
    ("a", "SO_RCVTIMEO"): "a listening socket does not block on reads here",
    ("a", "SO_SNDTIMEO"): "a listening socket does not send",
}

Value = int | tuple[int, int] | str


class SocketOption(NamedTuple):
    """One parsed ``socket =`` line: role (a/l/r), option name, value by kind."""

    role: str
    name: str
    value: Value

    @property
    def kind(self) -> Kind:
        return TABLE[self.name][0]

    def __str__(self) -> str:
        value = self.value
        shown = ":".join(map(str, value)) if isinstance(value, tuple) else str(value)
        return f"{self.role}:{self.name}={shown}"


def parse(text: str) -> SocketOption:
    """``a|l|r:OPTION=VALUE[:VALUE]`` -> SocketOption; ValueError with the reason."""
    role, colon, rest = text.strip().partition(":")
    name, eq, raw = rest.partition("=")
    if not colon or role not in ROLES or not eq:
        raise ValueError("expected a|l|r:OPTION=VALUE, e.g. l:TCP_NODELAY=yes")
    name, raw = name.strip(), raw.strip()
    if name in ELSEWHERE:
        raise ValueError(f"{name} is not available here: {ELSEWHERE[name]}")
    if name not in TABLE:
        raise ValueError(f"unknown socket option {name!r} (known: {', '.join(sorted(TABLE))})")
    if (role, name) in _NOT_ON:
        raise ValueError(f"{name} on {ROLES[role]}: {_NOT_ON[role, name]}")
    kind, low, high = TABLE[name]
    value: Value
    if kind is Kind.FLAG:
        value = _flag(name, raw)
    elif kind is Kind.INT:
        value = _number(name, raw, low, high)
    elif kind is Kind.STRING:
        if not raw or len(raw.encode()) > high or not raw.isprintable() or "/" in raw:
            raise ValueError(f"{name} needs an interface name of 1 to {high} characters, "
                             f"got {raw!r}")
        value = raw
    else:
        first, _, second = raw.partition(":")
        if kind is Kind.LINGER:
            value = (_number(f"{name} on/off", first, 0, 1),
                     _number(f"{name} seconds", second, low, high) if second else 0)
        else:
            value = (_number(f"{name} seconds", first, low, high),
                     _number(f"{name} microseconds", second, 0, 999_999) if second else 0)
    return SocketOption(role, name, value)


def _flag(name: str, raw: str) -> int:
    if raw.lower() == "yes" or raw == "1":
        return 1
    if raw.lower() == "no" or raw == "0":
        return 0
    raise ValueError(f"{name} is yes or no (or 1 or 0), got {raw!r}")


def _number(what: str, raw: str, low: int, high: int) -> int:
    text = raw.strip()
    digits = text[1:] if text[:1] in "+-" else text
    if not (digits.isascii() and digits.isdigit()):
        raise ValueError(f"{what} needs a whole number, got {raw!r}")
    number = int(text)
    if not low <= number <= high:
        raise ValueError(f"{what} must be {low} to {high}, got {number}")
    return number
