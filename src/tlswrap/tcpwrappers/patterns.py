"""hosts_access(5) patterns: does one daemon or client pattern match a request.

As hosts_access.c (list_match, server_match, client_match, host_match, string_match,
masked_match) over misc.c dot_quad_addr() and the C library's inet_addr():

* Lists split on blanks and commas; the first ``EXCEPT`` ends a list, and the exception list
  is matched in turn, so ``a EXCEPT b EXCEPT c`` reads ``a EXCEPT (b EXCEPT c)``.
* A daemon pattern is a process name (or, as in Debian, a port number) with an optional
  ``@host`` for the server end; a client pattern is a host with an optional ``user@``.
* A host pattern is compared with the address, and, when it holds a character other than
  digits, dots and slashes, with the host name as well: ``ALL``, ``KNOWN``, ``LOCAL``,
  ``.suffix``, ``prefix.``, ``*``/``?`` wildcards, ``net/mask``, ``net/len``, ``[v6]``,
  ``[v6]/len``, ``@netgroup``, ``/file``. An IPv4-mapped client is matched as IPv4.

The outside world (``/file`` pattern lists, netgroups, tcpd's warnings) comes in as
:class:`Hooks`; host names are looked up through the request only when a pattern needs one.
"""

from __future__ import annotations

from tlswrap.tcpwrappers.cstring import atoi, equal, fold, leading_int, split_at
from tlswrap.tcpwrappers.record import Record
from tlswrap.tcpwrappers.request import UNKNOWN, known

# ipaddress and re are imported where a pattern needs them ([v6] and wildcard patterns):
# with typing, they would cost the inetd fast path milliseconds on every connection.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import ipaddress
    import re
    from collections.abc import Callable, Sequence

    from tlswrap.tcpwrappers.request import Host, Request

    ReadPatterns = Callable[[str], Sequence[str]]

__all__ = [
    "Hooks", "ReadPatterns", "bracketed", "client_match", "daemon_or_port", "dot_quad_addr",
    "host_match", "inet6", "inet_addr", "ipv4_mask", "ipv6_net", "list_match", "masked_match",
    "not_inaddr", "server_match", "string_match",
]

class Hooks(Record):
    """What a pattern may need from outside, asked only when a pattern needs it.

    ``read_patterns(path)``: the whitespace-separated patterns of a ``/path`` list (raise
    FileNotFoundError for a missing file: no match; other OSError: warning, no match).
    ``netgroup(group, hostname)``: answers ``@group`` (None: never a member, as tcpd without
    NIS). ``warn(message)``: one of tcpd's warnings, located at the rule by the caller.
    """

    __slots__ = _fields = ("read_patterns", "netgroup", "warn")
    read_patterns: ReadPatterns | None
    netgroup: Callable[[str, str], bool] | None
    warn: Callable[[str], None] | None

    def __init__(self, read_patterns: ReadPatterns | None = None,
                 netgroup: Callable[[str, str], bool] | None = None,
                 warn: Callable[[str], None] | None = None) -> None:
        super().__init__(read_patterns, netgroup, warn)


# --- addresses, as the C library reads them ---------------------------------------------------

def not_inaddr(tok: str) -> bool:
    """NOT_INADDR(): ``tok`` has a character other than digits, ``.`` and ``/``."""
    return any(c not in "0123456789./" for c in tok)


def inet_addr(s: str) -> int | None:
    """glibc inet_addr(): dotted forms with hex/octal parts; None for errors and 255.255.255.255."""
    parts: list[int] = []
    i, n = 0, len(s)
    while True:
        if i >= n or not s[i].isdigit() or not s[i].isascii():
            return None
        if s[i] == "0" and i + 1 < n and s[i + 1] in "xX":
            end = _run(s, i + 2, _HEX)
            if end == i + 2:  # strtoul stops after the "0"
                val, i = 0, i + 1
            else:
                val, i = int(s[i + 2:end], 16), end
        elif s[i] == "0":
            end = _run(s, i, _OCTAL)
            val, i = int(s[i:end], 8), end
        else:
            end = _run(s, i, _DECIMAL)
            val, i = int(s[i:end]), end
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


_OCTAL = frozenset("01234567")
_DECIMAL = frozenset("0123456789")
_HEX = frozenset("0123456789abcdefABCDEF")


def _run(s: str, i: int, chars: frozenset[str]) -> int:
    """Where the run of ``chars`` starting at ``s[i]`` ends."""
    while i < len(s) and s[i] in chars:
        i += 1
    return i


def dot_quad_addr(s: str) -> int | None:
    """misc.c dot_quad_addr(): exactly four runs of non-dots, then inet_addr()."""
    runs = sum(1 for r in s.split(".") if r)
    return inet_addr(s) if runs == 4 else None


def inet6(s: str) -> ipaddress.IPv6Address | None:
    """getaddrinfo(AF_INET6, AI_NUMERICHOST), ignoring any %scope."""
    import ipaddress

    try:
        return ipaddress.IPv6Address(s.split("%", 1)[0] if "%" in s else s)
    except ValueError:
        return None


def bracketed(tok: str) -> str | None:
    """The text inside ``[...]`` when ``tok`` is written so (an IPv6 pattern), else None."""
    return tok[1:-1] if len(tok) >= 2 and tok[0] == "[" and tok[-1] == "]" else None


def _strip_mapped(s: str) -> str:
    """An IPv4-mapped address ``::ffff:a.b.c.d`` is matched as IPv4 (string_match)."""
    if fold(s[:7]) == "::ffff:" and dot_quad_addr(s[7:]) is not None:
        return s[7:]
    return s


# --- lists and words --------------------------------------------------------------------------

def list_match(tokens: Sequence[str], fn: Callable[[str], bool], i: int = 0) -> bool:
    """list_match(): the first EXCEPT ends the list; exceptions nest to the right."""
    n = len(tokens)
    while i < n:
        tok = tokens[i]
        if equal(tok, "EXCEPT"):
            return False
        if fn(tok):
            j = i + 1
            while j < n and not equal(tokens[j], "EXCEPT"):
                j += 1
            return j == n or not list_match(tokens, fn, j + 1)
        i += 1
    return False


def string_match(tok: str, string: str) -> bool:
    """hosts_access.c string_match(): wildcards, .suffix, ALL, KNOWN, prefix., [v6], exact."""
    string = _strip_mapped(string)
    if "*" in tok or "?" in tok:
        return _wildcard(tok).fullmatch(string) is not None
    if tok.startswith("."):
        n = len(string) - len(tok)
        return n > 0 and equal(tok, string[n:])
    if equal(tok, "ALL"):
        return True
    if equal(tok, "KNOWN"):
        return not equal(string, UNKNOWN)
    if tok.endswith("."):
        return fold(string[:len(tok)]) == fold(tok)
    inner = bracketed(tok)
    if inner is not None:
        pat, addr = inet6(inner), inet6(string)
        return pat is not None and addr is not None and pat == addr
    return equal(tok, string)


_WILDCARDS: dict[str, re.Pattern[str]] = {}


def _wildcard(tok: str) -> re.Pattern[str]:
    pat = _WILDCARDS.get(tok)
    if pat is None:
        import re

        body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in tok)
        pat = _WILDCARDS[tok] = re.compile(body, re.IGNORECASE | re.ASCII | re.DOTALL)
    return pat


# --- net/mask ---------------------------------------------------------------------------------

def ipv4_mask(mask_tok: str) -> int | None:
    """The mask of an IPv4 ``net/mask`` (a dotted quad) or ``net/len`` (1 to 32), or None.

    255.255.255.255 is not a mask here: inet_addr() cannot tell it from an error.
    """
    mask = dot_quad_addr(mask_tok)
    if mask is None:
        bits = atoi(mask_tok)
        if bits < 1 or bits > 32:
            return None
        mask = (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF
    return mask


def ipv6_net(net_tok: str, mask_tok: str) -> tuple[ipaddress.IPv6Address, int] | None:
    """The network and prefix length (0 to 128) of an IPv6 ``[net]/len``, or None."""
    inner = bracketed(net_tok)
    net = inet6(inner) if inner is not None else None
    bits = atoi(mask_tok)
    if net is None or bits < 0 or bits > 128:
        return None
    return net, bits


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
    mask = ipv4_mask(mask_tok)
    return mask is not None and (addr & mask) == net


def _masked6(net_tok: str, mask_tok: str, string: str) -> bool:
    v4 = _strip_mapped(string)
    if v4 != string:
        return _masked4(net_tok, mask_tok, v4)
    found = ipv6_net(net_tok, mask_tok)  # first: only a [v6] pattern reads ipaddress
    if found is None:
        return False
    addr = inet6(string)
    if addr is None:
        return False
    net, bits = found
    shift = 128 - bits
    return (int(addr) >> shift) == (int(net) >> shift) if bits else True


# --- daemon and client patterns ---------------------------------------------------------------

def daemon_or_port(tok: str, daemon: str, port: int | None) -> bool:
    """A daemon pattern without ``@host``: a port number (Debian) or a process name."""
    found = leading_int(tok)
    if found and not found[2]:
        sign, digits, _ = found
        number = int(digits)
        number = min(number, 0xFFFFFFFF) if sign != "-" else (-number) % (1 << 32)
        if number <= 65535:
            return port is not None and number == port
    return string_match(tok, daemon)


def server_match(tok: str, request: Request, hooks: Hooks) -> bool:
    """A daemon pattern, ``daemon`` or ``daemon@host`` (the host is the server end)."""
    daemon, host = split_at(tok[1:], "@")
    if host is None:
        return daemon_or_port(tok, request.daemon, request.server_port)
    return (daemon_or_port(tok[0] + daemon, request.daemon, request.server_port)
            and host_match(host, request.server(), hooks))


def client_match(tok: str, request: Request, hooks: Hooks) -> bool:
    """A client pattern, ``host`` or ``user@host``."""
    user, host = split_at(tok[1:], "@")
    if host is None:
        return host_match(tok, request.client(), hooks)
    return (host_match(host, request.client(), hooks)
            and string_match(tok[0] + user, request.username()))


def host_match(tok: str, host: Host, hooks: Hooks) -> bool:
    """hosts_access.c host_match(): one host pattern against one end of the connection."""
    if tok.startswith("@"):  # NIS netgroup
        name = host.name()
        return bool(hooks.netgroup and hooks.netgroup(tok[1:], name))
    if tok.startswith("/"):  # a file of patterns
        return _hostfile_match(tok, host, hooks)
    if equal(tok, "KNOWN"):
        name = host.name()
        return not equal(host.addr(), UNKNOWN) and known(name)
    if equal(tok, "LOCAL"):
        name = host.name()
        return "." not in name and known(name)
    net, mask = split_at(tok, "/")
    if mask is not None:
        return masked_match(net, mask, host.addr())
    return string_match(tok, host.addr()) or (not_inaddr(tok) and string_match(tok, host.name()))


def _hostfile_match(path: str, host: Host, hooks: Hooks) -> bool:
    if hooks.read_patterns is None:
        return False
    try:
        patterns = hooks.read_patterns(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        if hooks.warn is not None:
            hooks.warn(f"open {path}: {exc.strerror or exc}")
        return False
    return any(host_match(p, host, hooks) for p in patterns)
