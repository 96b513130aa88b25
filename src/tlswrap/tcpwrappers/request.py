"""The request: what is known about one connection, as tcpd's ``struct request_info``.

Host names and the user are looked up lazily and at most once: a field may hold a function,
called the first time a pattern or a %-sequence needs the value (hosts_access(5): patterns
that name hosts need a lookup, address patterns do not). A failed lookup reads as
:data:`UNKNOWN`, a name that does not map back to the address as :data:`PARANOID`.
"""

from __future__ import annotations

from tlswrap.tcpwrappers.cstring import equal
from tlswrap.tcpwrappers.record import Record

TYPE_CHECKING = False  # typing costs milliseconds to import; annotations are strings here
if TYPE_CHECKING:
    from collections.abc import Callable

    Lookup = Callable[[], "str | None"]

__all__ = ["PARANOID", "UNKNOWN", "Host", "Lookup", "Request", "known"]

UNKNOWN = "unknown"  # tcpd's STRING_UNKNOWN: the lookup failed
PARANOID = "paranoid"  # tcpd's STRING_PARANOID: the name does not map back to the address


def known(name: str) -> bool:
    """HOSTNAME_KNOWN(): a name that was looked up and verified."""
    return not equal(name, UNKNOWN) and not equal(name, PARANOID)


class Host(Record):
    """One end of the connection, as the matcher asks about it (tcpd's ``struct host_info``).

    ``name_ready()``: the name is at hand without a lookup (given as a string, or looked up
    already); %h and %c print the address until then, as tcpd's eval_hostinfo() does.
    """

    __slots__ = _fields = ("addr", "name", "name_ready")
    addr: Callable[[], str]
    name: Callable[[], str]
    name_ready: Callable[[], bool]

    def __init__(self, addr: Callable[[], str], name: Callable[[], str],
                 name_ready: Callable[[], bool]) -> None:
        super().__init__(addr, name, name_ready)


class Request(Record):
    """What is known about one connection; name and user lookups are called lazily, once.

    ``client_name``/``server_name``: a name, or a function returning one; the value (or the
    function's result) is a host name, ``None``/``UNKNOWN`` when the lookup failed, or
    ``PARANOID`` when the name does not map back to the address. ``None`` for the whole field
    means no lookup is possible (tcpd's "unknown"). ``user``: likewise, for the RFC 931 user.
    Addresses are strings as printed (``10.0.0.1``, ``2001:db8::1``); ``None`` = unknown.
    """

    _fields = ("daemon", "client_addr", "client_name", "server_addr", "server_name", "user",
               "client_port", "server_port", "pid")
    __slots__ = (*_fields, "_cache")  # the looked-up values: not a field
    daemon: str
    client_addr: str | None
    client_name: Lookup | str | None
    server_addr: str | None
    server_name: Lookup | str | None
    user: Lookup | str | None
    client_port: int | None
    server_port: int | None
    pid: int | None
    _cache: dict[str, str]

    def __init__(self, daemon: str, client_addr: str | None = None,
                 client_name: Lookup | str | None = None, server_addr: str | None = None,
                 server_name: Lookup | str | None = None, user: Lookup | str | None = None,
                 client_port: int | None = None, server_port: int | None = None,
                 pid: int | None = None) -> None:
        super().__init__(daemon, client_addr, client_name, server_addr, server_name, user,
                         client_port, server_port, pid)
        object.__setattr__(self, "_cache", {})

    def _eval(self, key: str, source: Lookup | str | None) -> str:
        if key not in self._cache:
            value = source() if callable(source) else source
            self._cache[key] = value if value else UNKNOWN
        return self._cache[key]

    def _ready(self, key: str, source: Lookup | str | None) -> bool:
        return key in self._cache or not callable(source)

    def client_hostname(self) -> str:
        return self._eval("cn", self.client_name)

    def server_hostname(self) -> str:
        return self._eval("sn", self.server_name)

    def username(self) -> str:
        return self._eval("u", self.user)

    def user_ready(self) -> bool:
        """The user is at hand without a lookup (%c adds it only then)."""
        return self._ready("u", self.user)

    def client_hostaddr(self) -> str:
        return self.client_addr or UNKNOWN

    def seen_as(self) -> str:
        """The client as tcpd's eval_client() names it in log lines, asking nothing: the host
        name if a rule looked it up (and it is a name), else the address; ``user@`` before
        it if a rule asked the user and the client's ident server named one."""
        client = self.client_hostaddr()
        if self._ready("cn", self.client_name) and (
                name := self.client_hostname()) not in (UNKNOWN, PARANOID):
            client = name
        if self.user_ready() and (user := self.username()) != UNKNOWN:
            client = f"{user}@{client}"
        return client

    def server_hostaddr(self) -> str:
        return self.server_addr or UNKNOWN

    def client(self) -> Host:
        return Host(self.client_hostaddr, self.client_hostname,
                    lambda: self._ready("cn", self.client_name))

    def server(self) -> Host:
        return Host(self.server_hostaddr, self.server_hostname,
                    lambda: self._ready("sn", self.server_name))
