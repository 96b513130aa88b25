"""The I/O shell around the rule engine: hosts files, reloading, and the C resolver.

Reads hosts.allow/hosts.deny and ``/path`` pattern lists, re-reads them when they change, and
answers what only the system can: host names through the C library (so /etc/hosts and NSS
apply, as in tcpd's socket.c), users and groups, banner directories. Everything here blocks;
the daemon runs it in a worker thread under a timeout.
"""

from __future__ import annotations

import errno
import grp
import ipaddress
import logging
import os
import pwd
import socket
import threading
from collections.abc import Callable
from typing import Any

from tlswrap.errors import ConfigError
from tlswrap.regularfile import HOSTS_MAX_BYTES, irregular_kind, read_regular_text
from tlswrap.tcpwrappers.cstring import fold, split_at
from tlswrap.tcpwrappers.options import Option
from tlswrap.tcpwrappers.request import PARANOID
from tlswrap.tcpwrappers.rules import Rules, parse_hosts

__all__ = [
    "HOSTS_MAX_BYTES", "LOOKUP_TIMEOUT", "HostsFiles", "banner_file_errors", "banner_path_error",
    "check_option", "find_inet_addr", "hostname_for", "read_hosts", "read_patterns",
]

log = logging.getLogger("tlswrap.tcpwrappers.files")
Warn = Callable[[str], None]
_Identity = tuple[int, int, int, int]
LOOKUP_TIMEOUT = 5.0  # a decision's host name lookups: after that the names count as unknown


def late_decision(label: str, client: str | None, seconds: float) -> str:
    """The line said when a decision outlives its bound (both access paths say it)."""
    return (f"{label} deciding for {client} took over {seconds:g}s (host name or ident "
            "lookup, or aclexec): the name and user count as unknown, an aclexec as failed")

_SockAddr = tuple[Any, ...]  # (host, port) or (host, port, flowinfo, scope_id)


def _strerror(exc: OSError) -> str:
    return exc.strerror or str(exc)


def read_hosts(path: str, name: str | None = None) -> Rules:
    """Read and parse one hosts file as tcpd does: missing = empty, unreadable = error.

    ``name``: the file name to report (default: ``path``).
    """
    name = path if name is None else name
    try:
        text = read_regular_text(path, HOSTS_MAX_BYTES)
    except FileNotFoundError:
        return Rules.empty(name)
    except OSError as exc:  # a FIFO or a device too: tcpd would hang on it, tlswrap refuses
        return Rules.unreadable(name, _strerror(exc))
    return parse_hosts(text, name)


def read_patterns(path: str) -> list[str]:
    """The patterns of a ``/path`` list in a rule: whitespace-separated words. OSError when
    it cannot be read (not a regular file included)."""
    return read_regular_text(path, HOSTS_MAX_BYTES).split()


def _identity(path: str) -> _Identity | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)


class _Cached:
    """One file: the last good rules, re-read only when the file's identity changes."""

    def __init__(self, path: str):
        self.path = path
        self.rules: Rules | None = None
        self.seen: _Identity | bool | None = False  # identity of the last attempt
        self.jailed = False  # the process is chrooted: the path now names a file in the jail

    def load(self, strict: bool) -> Rules:
        try:
            ident = _identity(self.path)
        except OSError as exc:
            return self._failed(f"cannot stat {self.path}: {_strerror(exc)}", strict, None)
        if self.rules is not None and ident == self.seen:
            return self.rules
        if not strict and ident == self.seen:  # same broken file as last time
            return self.rules if self.rules is not None else read_hosts(self.path)
        if ident is None and self.jailed and self.rules is not None:
            if self.seen is not None:  # said once
                log.warning("%s is not inside the chroot jail: the rules read at start stay in "
                            "force (copy the file into the jail to edit them without a restart)",
                            self.path)
            self.seen = None
            return self.rules
        self.seen = ident
        if ident is None:
            if self.rules is not None and self.rules.entries:
                log.warning("%s disappeared: treating it as empty, as tcpd does", self.path)
            self.rules = Rules.empty(self.path)
            return self.rules
        rules = read_hosts(self.path)
        if rules.problems:
            filename, lineno, msg = rules.problems[0]
            return self._failed(f"{filename}:{lineno}: {msg}", strict, rules, lineno, msg)
        self.rules = rules
        return rules

    def _failed(self, text: str, strict: bool, rules: Rules | None, lineno: int | None = None,
                msg: str | None = None) -> Rules:
        if strict:
            raise ConfigError(self.path, lineno, msg or text)
        if self.rules is not None:
            log.error("%s; keeping the rules read before", text)
            return self.rules
        log.error("%s; no earlier rules to keep, using it as tcpd would", text)
        return rules if rules is not None else Rules.unreadable(self.path, text)


class HostsFiles:
    """hosts.allow and hosts.deny, re-read at once when they change (checked at each call).

    A change is seen through (st_mtime_ns, st_size, st_ino, st_dev). At run time a file that
    becomes unreadable or gets a syntax error keeps the last good rules (an error is logged at
    each reload attempt); a file that disappears counts as empty, like in tcpd.
    """

    def __init__(self, allow_path: str = "/etc/hosts.allow", deny_path: str = "/etc/hosts.deny"):
        self.allow_path = allow_path
        self.deny_path = deny_path
        self._allow = _Cached(allow_path)
        self._deny = _Cached(deny_path)
        self._lock = threading.Lock()

    def load_strict(self) -> tuple[Rules, Rules]:
        """Start-up load: raise ConfigError(file, line, msg) on the first syntax error."""
        with self._lock:
            return self._allow.load(True), self._deny.load(True)

    def rules(self) -> tuple[Rules, Rules]:
        """The current (allow, deny) rules, re-read if either file changed."""
        with self._lock:
            return self._allow.load(False), self._deny.load(False)

    def enter_jail(self) -> None:
        with self._lock:
            self._allow.jailed = self._deny.jailed = True


_shared: dict[tuple[str, str], HostsFiles] = {}


def shared_hosts_files(allow: str, deny: str) -> HostsFiles:
    """The one HostsFiles of the process for these paths: a reload reuses it, so the last
    good rules (and, in a chroot jail, the rules read before entering it) carry over."""
    files = _shared.get((allow, deny))
    if files is None:
        files = _shared[allow, deny] = HostsFiles(allow, deny)
    return files


def enter_jail() -> None:
    """The process has been chrooted: from now on its paths name files inside the jail. A
    hosts file missing there keeps the rules read before (never fewer rules: a missing
    hosts.deny must not let everyone in); one present there is read as tcpd would."""
    for files in _shared.values():
        files.enter_jail()


# --- the resolver, through the C library (so /etc/hosts and NSS apply) ------------------------

def _sockaddr(addr: str) -> tuple[int, _SockAddr]:
    ip = ipaddress.ip_address(addr.split("%", 1)[0])
    if ip.version == 6:
        if ip.ipv4_mapped is not None:  # sock_hostname() looks up mapped clients as IPv4
            return socket.AF_INET, (str(ip.ipv4_mapped), 0)
        info = socket.getaddrinfo(addr, None, socket.AF_INET6, socket.SOCK_STREAM, 0,
                                  socket.AI_NUMERICHOST)
        return socket.AF_INET6, info[0][4]
    return socket.AF_INET, (str(ip), 0)


def _same(family: int, a: _SockAddr, b: _SockAddr) -> bool:
    if family == socket.AF_INET6:
        return (ipaddress.ip_address(a[0].split("%")[0]) == ipaddress.ip_address(b[0].split("%")[0])
                and a[3] == b[3])
    return ipaddress.ip_address(a[0]) == ipaddress.ip_address(b[0])


def hostname_for(addr: str, warn: Warn | None = None) -> str | None:
    """tcpd's sock_hostname(): the verified name of ``addr``, PARANOID, or None (unknown).

    Reverse lookup with NI_NAMEREQD, then the name must not be numeric, must resolve forward
    to the same canonical name (``localhost`` excepted) and list ``addr`` among its addresses.
    """
    say = warn or (lambda m: log.warning("%s", m))
    try:
        family, sa = _sockaddr(addr)
        name = socket.getnameinfo(sa, socket.NI_NAMEREQD)[0]
    except (OSError, ValueError):
        return None
    try:
        socket.getaddrinfo(name, None, family, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
    except socket.gaierror:
        pass
    else:
        say(f"host name/name mismatch: reverse lookup results in non-FQDN {name}")
        return PARANOID
    try:
        res = socket.getaddrinfo(name, None, family, socket.SOCK_STREAM, 0,
                                 socket.AI_PASSIVE | socket.AI_CANONNAME)
    except OSError:
        fam = "AF_INET" if family == socket.AF_INET else "AF_INET6"
        say(f"can't verify hostname: getaddrinfo({name}, {fam}) failed")
        return PARANOID
    canon = res[0][3] if res else ""
    if (not canon or fold(canon) != fold(name)) and fold(name) != "localhost":
        say(f"host name/name mismatch: {name} != {canon[:128]}")
        return PARANOID
    if any(r[0] == family and _same(family, r[4], sa) for r in res):
        return name
    numeric = socket.getnameinfo(sa, socket.NI_NUMERICHOST)[0]
    say(f"host name/address mismatch: {numeric} != {canon[:128]}")
    return PARANOID


def find_inet_addr(host: str, warn: Warn | None = None) -> list[tuple[int, str]] | None:
    """scaffold.c find_inet_addr(): every (family, numeric address) of ``host``, or None."""
    say = warn or (lambda m: log.warning("%s", m))
    flags = socket.AI_PASSIVE
    try:
        res = socket.getaddrinfo(host, None, 0, socket.SOCK_STREAM, 0,
                                 flags | socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError):
        try:
            res = socket.getaddrinfo(host, None, 0, socket.SOCK_STREAM, 0,
                                     flags | socket.AI_CANONNAME)
        except (OSError, UnicodeError):
            say(f"{host}: host not found")
            return None
        canon = res[0][3]
        if not canon:
            say(f"{host}: hostname alias")
            say("(cannot obtain official name)")
        elif fold(host) != fold(canon):
            say(f"{host}: hostname alias")
            say(f"(official name: {canon[:128]})")
    return [(r[0], socket.getnameinfo(r[4], socket.NI_NUMERICHOST)[0]) for r in res
            if r[0] in (socket.AF_INET, socket.AF_INET6)]


def check_option(option: Option) -> str | None:
    """The system checks tcpd makes when it runs ``user``/``group``: the names must exist.

    Returns tcpd's error message, or None. (tcpd then switches ids; the daemon does that.)
    """
    if option.name == "user" and option.value is not None:
        user, group = split_at(option.value, ".")
        if group is not None and not _group_exists(group):
            return f'unknown group: "{group}"'
        try:
            pwd.getpwnam(user)
        except KeyError:
            return f'unknown user: "{user}"'
    elif (option.name == "group" and option.value is not None
          and not _group_exists(option.value)):
        return f'unknown group: "{option.value}"'
    return None


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def banner_path_error(directory: str) -> str | None:
    """tcpd warns ``DIR: strerror`` when a banners directory cannot be stat()ed."""
    try:
        os.stat(directory)
    except OSError as exc:
        return f"{directory}: {os.strerror(exc.errno or errno.EIO)}"
    return None


def banner_file_errors(directory: str) -> list[str]:
    """The files of a banners directory that are not regular files (a FIFO, a device, a
    socket): tcpd would wait on one forever, tlswrap sends no banner from it. Followed as
    the read follows them (a symbolic link to a FIFO is one); nothing is opened."""
    try:
        entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
    except OSError:
        return []  # banner_path_error says why
    found = []
    for entry in entries:
        try:
            kind = irregular_kind(entry.stat().st_mode)
        except OSError:
            continue  # a dangling link: no file, no banner, as tcpd
        if kind:
            found.append(f"{entry.path}: not a regular file ({kind}): no banner is sent from "
                         "it (tcpd would wait on it forever)")
    return found
