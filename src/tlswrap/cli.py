"""``tlswrap`` command line: argument parsing only; the work is done by the modules it calls."""

from __future__ import annotations

import sys

from . import __version__
from .errors import TlswrapError

USAGE = """\
usage: tlswrap CONFIG                 run the services of a stunnel-format config file
       tlswrap check [CONFIG]         check a config, its certificates and the hosts files
       tlswrap match [-d] [--allow FILE] [--deny FILE] DAEMON[@SERVER] [USER@]CLIENT
                                      which hosts.allow/hosts.deny rule decides (like tcpdmatch)
       tlswrap --version | --help
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        if not args or args[0] in ("-h", "--help", "help"):
            print(USAGE, end="")
            return 0 if args else 2
        if args[0] in ("-V", "--version", "-version"):
            print(f"tlswrap {__version__}")
            return 0
        if args[0] == "match":
            from .matchcli import main as match_main

            return match_main(args[1:])
        if args[0] == "check":
            from .check import main as check_main

            return check_main(args[1:])
        if len(args) == 1 and not args[0].startswith("-"):
            from .daemon import run

            return run(args[0])
        print(USAGE, end="", file=sys.stderr)
        return 2
    except TlswrapError as exc:
        print(f"tlswrap: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
