"""``tlswrap match``: what tcpd would do with one request, as tcpdmatch(8) prints it.

    tlswrap match [-d] [--allow FILE] [--deny FILE] DAEMON[@SERVER] [USER@]CLIENT

A dry run: spawn, twist and aclexec are shown, never executed (as in tcpdmatch, an aclexec
counts as exiting 0). Exit status 0 whenever a verdict is printed, 1 for a usage error or a
name that cannot be looked up. Imports nothing heavy (no trio, no OpenSSL) so it starts fast.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import sys
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, TextIO

from tlswrap.regularfile import read_regular
from tlswrap.tcpwrappers import files
from tlswrap.tcpwrappers.cstring import equal, split_at
from tlswrap.tcpwrappers.decide import Decision, decide
from tlswrap.tcpwrappers.expand import expand_percent
from tlswrap.tcpwrappers.options import Option
from tlswrap.tcpwrappers.patterns import dot_quad_addr, not_inaddr
from tlswrap.tcpwrappers.request import UNKNOWN, Request, known
from tlswrap.tcpwrappers.rules import Rules

if TYPE_CHECKING:
    from tlswrap.tcpwrappers.request import Lookup

__all__ = ["USAGE", "main", "run"]

USAGE = """\
usage: tlswrap match [-d] [--allow FILE] [--deny FILE] daemon[@host] [user@]host
	-d: use allow/deny files in current directory
	--allow FILE, --deny FILE: use these files
"""


def _parse_args(argv: list[str]) -> tuple[str, str, str, str] | None:
    allow, deny = "/etc/hosts.allow", "/etc/hosts.deny"
    args: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg == "--":
            args.extend(it)
        elif arg == "-d":
            allow, deny = "hosts.allow", "hosts.deny"
        elif arg in ("--allow", "--deny", "-i"):
            value = next(it, None)
            if value is None:
                return None
            if arg == "--allow":
                allow = value
            elif arg == "--deny":
                deny = value
        elif arg.startswith(("--allow=", "--deny=")):
            key, _, value = arg.partition("=")
            if key == "--allow":
                allow = value
            else:
                deny = value
        elif arg.startswith("-") and len(arg) > 1:
            return None
        else:
            args.append(arg)
    if len(args) != 2:
        return None
    return allow, deny, args[0], args[1]


def _inet6_numeric(host: str) -> bool:
    try:
        socket.getaddrinfo(host, None, socket.AF_INET6, socket.SOCK_STREAM, 0,
                           socket.AI_PASSIVE | socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError, ValueError):
        return False
    return True


def _link_local(family: int, addr: str) -> bool:
    return family == socket.AF_INET6 and ipaddress.ip_address(addr.split("%", 1)[0]).is_link_local


def run(argv: list[str], out: TextIO, cwd: str | None = None) -> int:
    """The command itself; ``cwd`` resolves relative file names (tests run it in-process)."""
    parsed = _parse_args(argv)
    if parsed is None:
        sys.stderr.write(USAGE)
        return 1
    allow_path, deny_path, daemon_arg, client_arg = parsed

    def say(line: str) -> None:
        out.write(line + "\n")

    def warn(msg: str) -> None:
        say(f"warning: {msg}")

    def where(path: str) -> str:
        return os.path.join(cwd, path) if cwd else path

    daemon, server = split_at(daemon_arg, "@")
    server = UNKNOWN if server is None else server
    if daemon.startswith("/"):
        short = daemon.rsplit("/", 1)[1]
        warn(f"{daemon}: daemon name normalized to: {short}")
        daemon = short
    user_part, client = split_at(client_arg, "@")
    user = user_part if client is not None else UNKNOWN
    client = client if client is not None else client_arg

    base = Request(daemon, user=user or None, pid=os.getpid())
    if not not_inaddr(server) or known(server):
        found = files.find_inet_addr(server, warn)
        if found is None:
            return 1
        for _family, addr in found:
            name = files.hostname_for(addr, warn)
            if name is None:
                warn(f"host address {addr}->name lookup failed")
            base = base.replace(server_addr=addr, server_name=name, server_port=0)
        if len(found) > 1:
            sys.stderr.write(f"Error: {server} has more than one address\n"
                             "Please specify an address instead\n")
            return 1
    else:
        base = base.replace(server_name=server)

    allow = _read(allow_path, where)
    deny = _read(deny_path, where)
    requests: list[Request] = []
    if dot_quad_addr(client) is not None or _inet6_numeric(client):
        requests.append(base.replace(client_addr=client))
    elif not_inaddr(client) and not known(client):
        requests.append(base.replace(client_name=client))
    else:
        found = files.find_inet_addr(client, warn)
        if found is None:
            return 1
        for i, (family, addr) in enumerate(found):
            client_name: Lookup | str | None
            if _link_local(family, addr):
                client_name = partial(files.hostname_for, addr, warn)
            else:
                client_name = files.hostname_for(addr, warn)
                if client_name is None:
                    warn(f"host address {addr}->name lookup failed")
            req = base.replace(client_addr=addr, client_name=client_name, client_port=0)
            _match(req, allow, deny, say, out, where)
            if i + 1 < len(found):
                say("")
        return 0
    for req in requests:
        _match(req, allow, deny, say, out, where)
    return 0


def _read(path: str, where: Callable[[str], str]) -> Rules:
    return files.read_hosts(where(path), path)


def _match(req: Request, allow: Rules, deny: Rules, say: Callable[[str], None], out: TextIO,
           where: Callable[[str], str]) -> Decision:
    for label, template in (("client:   hostname", "%n"), ("client:   address ", "%a"),
                            ("client:   username", "%u"), ("server:   hostname", "%N"),
                            ("server:   address ", "%A"), ("server:   process ", "%d")):
        text = expand_percent(template, req)
        if not equal(text, UNKNOWN):
            say(f"{label} {text}")

    def on_option(option: Option, warn: Callable[[str], None]) -> str | None:
        if option.name == "banners" and option.value is not None:
            _banner(option.value, req, out, warn, where)
            return None
        return files.check_option(option)

    decision = decide(allow, deny, req, read_patterns=lambda p: files.read_patterns(where(p)),
                      on_option=on_option, log=say)
    say(f"access:   {decision.access}")
    return decision


def _banner(directory: str, req: Request, out: TextIO, warn: Callable[[str], None],
            where: Callable[[str], str]) -> None:
    """options.c banners_option(): copy DIR/DAEMON, newlines as CRLF, %-sequences expanded."""
    path = f"{directory}/{req.daemon}"
    try:
        data = read_regular(where(path), files.HOSTS_MAX_BYTES)
    except OSError as exc:
        if exc.errno == errno.EINVAL:  # not a regular file: tcpd would wait on a FIFO forever
            warn(f"{path}: {exc.strerror}")
            return
        problem = files.banner_path_error(where(directory))
        if problem:
            warn(problem.replace(where(directory), directory, 1))
        return
    text = data.decode("utf-8", "surrogateescape")
    stripped = text.lstrip("\0")
    out.write("\0" * (len(text) - len(stripped)))
    for line in stripped.splitlines(keepends=True):
        crlf = line[:-1] + "\r\n" if line.endswith("\n") else line
        out.write(expand_percent(crlf, req, warn))
    out.flush()


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``tlswrap match ARGS`` (argv excludes the word ``match``)."""
    return run(sys.argv[1:] if argv is None else argv, sys.stdout)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
