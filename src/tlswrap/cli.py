"""``tlswrap`` command line: argument parsing only; the work is done by the modules it calls."""

from __future__ import annotations

import os
import sys

from . import __version__
from .errors import TlswrapError

USAGE = """\
usage: tlswrap CONFIG                 run the services of a stunnel-format config file
       tlswrap [-d [HOST:]PORT] (-r [HOST:]PORT | -l PROGRAM [-- ARGV0 ARG...]) -p PEM [options]
                                      one service from the command line; without -d the
                                      connection is on stdin (inetd, systemd Accept=yes)
       tlswrap check [CONFIG]         check a config, its certificates and the hosts files
       tlswrap reload CONFIG          SIGHUP to the daemon in CONFIG's pid file
       tlswrap status CONFIG          the daemon's metrics (CONFIG's metrics address) as a table
       tlswrap inetd-script [FILE]    write an entry script for inetd lines (python -IS)
       tlswrap match [-d] [--allow FILE] [--deny FILE] DAEMON[@SERVER] [USER@]CLIENT
                                      which hosts.allow/hosts.deny rule decides (like tcpdmatch)
       tlswrap --version | --help

one-service options (stunnel 3 spellings in brackets):
  --accept [-d] [HOST:]PORT   listen here (daemon); omit for inetd mode
  --connect [-r] [HOST:]PORT  relay to this plaintext address (or a unix socket path)
  --exec [-l] PROGRAM         run PROGRAM per connection on stdin/stdout; after '--' come its
                              argv[0] and arguments (default argv[0]: PROGRAM's basename)
  --cert [-p] PEM             certificate chain (and key, unless --key)
  --key PEM                   private key
  --service [-N] NAME         service name for hosts.allow and logs (default: the program's
                              basename, else 'tlswrap')
  --foreground [-f]           stay in the foreground, log to stderr
  --debug [-D] LEVEL          log level: 0-7 or emerg..debug (default notice)
  --output [-o] FILE          append log lines to FILE
"""

_ALIASES = {
    "-d": "--accept", "-r": "--connect", "-l": "--exec", "-p": "--cert", "-N": "--service",
    "-f": "--foreground", "-D": "--debug", "-o": "--output",
}
_WITH_VALUE = {"--accept", "--connect", "--exec", "--cert", "--key", "--service", "--debug",
               "--output"}


def split_one_service_args(args: list[str]) -> tuple[dict[str, str | bool], list[str] | None]:
    """The one-service options (long names without ``--``) and the argv after ``--`` (None
    when there is no ``--``); TlswrapError for an unknown option or a missing value."""
    exec_argv: list[str] | None = None
    if "--" in args:
        cut = args.index("--")
        args, exec_argv = args[:cut], args[cut + 1:]
    opts: dict[str, str | bool] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, inline = arg.partition("=")
        name = _ALIASES.get(name, name)
        if name == "--foreground":
            opts["foreground"] = True
        elif name in _WITH_VALUE:
            if eq:
                value = inline
            elif i + 1 < len(args):
                i += 1
                value = args[i]
            else:
                raise TlswrapError(f"{arg} needs a value")
            opts[name[2:]] = value
        else:
            raise TlswrapError(f"unknown option {arg!r} (see tlswrap --help)")
        i += 1
    return opts, exec_argv


def one_service_config(args: list[str]):  # type: ignore[no-untyped-def]
    """The command-line options of one service, as the Config a file would give."""
    from .config import Config, GlobalOptions, parse_debug, service_from_options

    opts, exec_argv = split_one_service_args(args)
    program = opts.get("exec")
    name = str(opts.get("service") or (os.path.basename(str(program)) if program else "tlswrap"))
    pairs = [(opt, str(opts[key])) for key, opt in
             (("accept", "accept"), ("connect", "connect"), ("exec", "exec"),
              ("cert", "cert"), ("key", "key")) if key in opts]
    service = service_from_options(name, pairs)
    if exec_argv is not None:
        if not program:
            raise TlswrapError("arguments after '--' need --exec/-l PROGRAM")
        import dataclasses

        service = dataclasses.replace(service, exec_args=tuple(exec_argv) or None)
    debug = 5
    if "debug" in opts:
        try:
            debug = parse_debug(str(opts["debug"]))[1]
        except ValueError as exc:
            raise TlswrapError(f"--debug: {exc}") from None
    foreground = bool(opts.get("foreground"))
    glob = GlobalOptions(foreground=foreground, debug=debug,
                         output=str(opts["output"]) if "output" in opts else None)
    return Config("command line", glob, (service,))


def main(argv: list[str] | None = None, *, inetd_fast: bool = True) -> int:
    """The command line; ``inetd_fast=False`` serves an inetd connection the full way (the
    tests run both ways on the same input)."""
    args = sys.argv[1:] if argv is None else argv
    try:
        if not args or args[0] in ("-h", "--help", "help"):
            print(USAGE, end="")
            return 0 if args else 2
        if args[0] in ("-V", "--version", "-version"):
            print(f"tlswrap {__version__}")
            return 0
        if args[0] == "match":
            from .tcpwrappers.matchcli import main as match_main

            return match_main(args[1:])
        if args[0] == "status":
            from .control import status_main

            return status_main(args[1:])
        if args[0] == "reload":
            from .control import main as reload_main

            return reload_main(args[1:])
        if args[0] == "check":
            from .check import main as check_main

            return check_main(args[1:])
        if args[0] == "inetd-script":
            from .entryscript import main as script_main

            return script_main(args[1:])
        if inetd_fast:
            from .fast.entry import serve_inetd  # an inetd connection, without trio

            status = serve_inetd(args)
            if status is not None:
                return status
        if len(args) == 1 and not args[0].startswith("-"):
            from .daemon import run

            return run(args[0])
        if args[0].startswith("-"):
            from .daemon import run_config

            return run_config(one_service_config(args))
        print(USAGE, end="", file=sys.stderr)
        return 2
    except TlswrapError as exc:
        print(f"tlswrap: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
