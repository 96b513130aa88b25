"""%-expansion, as tcpd's percent_x(): hosts_access(5), section "% EXPANSIONS".

Used for the ``spawn``, ``twist``, ``aclexec`` and ``setenv`` option values and for banners.
The expansions are made shell-safe (every character outside tcpd's safe set becomes ``_``),
the template never is. Lookups happen only for the sequences that need them (%n, %N, %u);
%h, %H, %c and %s show the address until the name has been looked up (eval_hostinfo()).
"""

from __future__ import annotations

from tlswrap.tcpwrappers.cstring import equal
from tlswrap.tcpwrappers.request import UNKNOWN, known

TYPE_CHECKING = False  # typing costs milliseconds to import; annotations are strings here
if TYPE_CHECKING:
    from collections.abc import Callable

    from tlswrap.tcpwrappers.request import Host, Request

    Warn = Callable[[str], None]

__all__ = ["expand_percent"]

_SAFE = frozenset("1234567890!@%-_=+:,./abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _hostinfo(h: Host) -> str:  # eval_hostinfo(), built without ALWAYS_HOSTNAME
    if not h.name_ready():
        return h.addr()
    name = h.name()
    return name if known(name) else h.addr()


def _percent(ch: str, r: Request) -> str | None:
    if ch == "a":
        return r.client_hostaddr()
    if ch == "A":
        return r.server_hostaddr()
    if ch == "c":
        info = _hostinfo(r.client())
        if not r.user_ready():
            return info
        user = r.username()
        return info if equal(user, UNKNOWN) else f"{user}@{info}"
    if ch == "d":
        return r.daemon
    if ch == "h":
        return _hostinfo(r.client())
    if ch == "H":
        return _hostinfo(r.server())
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
        host = _hostinfo(r.server())
        return r.daemon if equal(host, UNKNOWN) else f"{r.daemon}@{host}"
    if ch == "u":
        return r.username()
    if ch == "%":
        return "%"
    return None


def _sanitize(s: str) -> str:
    """percent_x(): every byte outside tcpd's safe set becomes ``_`` (shell-safe)."""
    return "".join(c if c in _SAFE else "_" * len(c.encode("utf-8", "surrogatepass")) for c in s)


def expand_percent(template: str, request: Request, warn: Warn | None = None) -> str:
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
