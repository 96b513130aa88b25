"""The ``wrapcert`` command line: argument parsing only; :mod:`tlswrap.wrapcert.commands` runs it.

``openssl req`` spellings (``-config``, ``-days``, ``-out``, ``-keyout``, ``-subj``, ``-newkey``,
``-nodes``, ``-new``, ``-x509``) are declared next to the long options, so a recipe keeps working
with ``openssl req`` replaced by ``wrapcert new``. A user mistake prints ``wrapcert: message``
and returns non-zero, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from tlswrap.errors import TlswrapError
from tlswrap.wrapcert.opensslconf import parse_number

__all__ = ["ascii_number", "main"]


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{message} (see '{self.prog} --help')")


def ascii_number(text: str) -> int:
    """An argparse type: a decimal number in ASCII digits, as openssl's options take it
    (``int()`` would take ``²``, ``٣`` and ``1_000`` too)."""
    number = parse_number(text, signed=True)
    if number is None:
        raise argparse.ArgumentTypeError(f"not a number: {text!r} (use the digits 0-9)")
    return number


def _req_options(p: argparse.ArgumentParser, default_days: int, ca: bool = False) -> None:
    add = p.add_argument
    add("-config", "--config", metavar="FILE", help="openssl-style config with a [req] section")
    add(
        "-days",
        "--days",
        type=ascii_number,
        metavar="N",
        help=f"validity in days (default {default_days})",
    )
    add("-out", "--out", metavar="FILE", help="where the certificate goes")
    add(
        "-keyout",
        "--key-out",
        "--keyout",
        dest="keyout",
        metavar="FILE",
        help="where the private key goes" + ("" if ca else " (default: with the certificate)"),
    )
    add(
        "-subj",
        "--subject",
        dest="subj",
        metavar="/C=../O=../CN=..",
        help="the subject; asked for on a terminal when absent",
    )
    add(
        "-newkey",
        "--key-type",
        dest="newkey",
        metavar="TYPE",
        help="rsa:BITS, ec:P-256, ec:P-384 or ed25519"
        + (" (default ec:P-256)" if ca else " (default rsa:2048)"),
    )
    add(
        "-pkeyopt",
        action="append",
        default=[],
        metavar="OPT:VALUE",
        help="ec_paramgen_curve:P-256 or rsa_keygen_bits:N",
    )
    add("-key", "--key", dest="key", metavar="FILE", help="use this existing private key")
    add(
        "-nodes",
        "-noenc",
        "--nodes",
        dest="nodes",
        action="store_true",
        help="accepted: keys are never encrypted",
    )
    add(
        "-batch",
        "--batch",
        dest="batch",
        action="store_true",
        help="never ask; use the config's defaults",
    )
    add(
        "--san",
        action="append",
        default=[],
        metavar="DNS:name,IP:addr",
        help="subject alternative names",
    )
    add(
        "-addext",
        "--addext",
        action="append",
        default=[],
        metavar="EXT=VALUE",
        help="an extension, config syntax",
    )
    add(
        "-extensions",
        "-reqexts",
        "--extensions",
        dest="extensions",
        metavar="SECTION",
        help="extension section to use",
    )
    for md in ("sha256", "sha384", "sha512"):
        add(f"-{md}", f"--{md}", dest="md", action="store_const", const=md, help=argparse.SUPPRESS)
    add("-new", "-x509", dest="ignored", action="store_true", help=argparse.SUPPRESS)
    add(
        "-force",
        "--force",
        dest="force",
        action="store_true",
        help="replace existing files",
    )


def _parser() -> argparse.ArgumentParser:
    top = _Parser(
        prog="wrapcert",
        description="Certificates for a TLS wrapper, the openssl-req way, without openssl.",
        allow_abbrev=False,
    )
    sub = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    p = sub.add_parser(
        "new",
        help="a self-signed server certificate and its key",
        allow_abbrev=False,
        description="Like 'openssl req -new -x509': a self-signed server certificate and key.",
    )
    _req_options(p, 365)
    p = sub.add_parser(
        "csr", help="a key and a certificate signing request for a CA", allow_abbrev=False
    )
    _req_options(p, 365)
    p = sub.add_parser(
        "show",
        help="print a certificate like 'openssl x509 -subject -dates -fingerprint'",
        allow_abbrev=False,
    )
    p.add_argument("files", nargs="*", metavar="FILE")
    p.add_argument(
        "-in", dest="infiles", action="append", default=[], metavar="FILE", help=argparse.SUPPRESS
    )
    p.add_argument(
        "-subject",
        "-dates",
        "-fingerprint",
        "-noout",
        dest="ignored",
        action="store_true",
        help=argparse.SUPPRESS,
    )  # so 'openssl x509 -subject ... -in F' works as 'wrapcert show ...'
    for md in ("sha1", "sha256", "sha384", "sha512"):
        p.add_argument(
            f"-{md}",
            f"--{md}",
            dest="digest",
            action="store_const",
            const=md,
            help="fingerprint digest (default SHA1, as openssl)"
            if md == "sha256"
            else argparse.SUPPRESS,
        )
    p.add_argument(
        "--all", action="store_true", help="every certificate of each file, not just the first"
    )
    p = sub.add_parser(
        "check",
        help="exit 0 if valid for more than N days (for cron and monitoring)",
        allow_abbrev=False,
        description="Exit 0: valid; 1: expiring within --days; 2: invalid; 3: unreadable.",
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument(
        "--days",
        type=ascii_number,
        default=30,
        metavar="N",
        help="warn when expiring within N days (default 30)",
    )
    p.add_argument(
        "--key", metavar="FILE", help="the key to match (default: a key in FILE, if any)"
    )
    ca = sub.add_parser("ca", help="a small local CA ('ca new')", allow_abbrev=False)
    ca_sub = ca.add_subparsers(dest="ca_command", metavar="COMMAND", parser_class=_Parser)
    p = ca_sub.add_parser("new", help="make a CA certificate and key", allow_abbrev=False)
    _req_options(p, 3650, ca=True)
    p = sub.add_parser(
        "issue", help="a server certificate signed by a 'wrapcert ca new' CA", allow_abbrev=False
    )
    _req_options(p, 365)
    p.add_argument(
        "--ca",
        required=True,
        metavar="FILE",
        help="the CA certificate (and key, if --ca-key is absent)",
    )
    p.add_argument("--ca-key", metavar="FILE", help="the CA's private key")
    p.add_argument("--csr", metavar="FILE", help="sign this request instead of making a key")
    p.add_argument("--chain", action="store_true", help="append the CA certificate to the output")
    p = sub.add_parser(
        "tlsa", help="the DANE TLSA 3 1 1 record of a certificate", allow_abbrev=False
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument("--port", type=ascii_number, metavar="N", help="e.g. 993")
    p.add_argument("--host", metavar="NAME", help="e.g. mail.example.org")
    p.add_argument("--proto", default="tcp", choices=("tcp", "udp", "sctp"))
    return top


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:
            prog = " ".join(
                [
                    "wrapcert",
                    *[
                        w
                        for w in (getattr(args, "command", None), getattr(args, "ca_command", None))
                        if w
                    ],
                ]
            )
            raise _UsageError(f"unrecognized arguments: {' '.join(extra)} (see '{prog} --help')")
    except _UsageError as exc:
        print(f"wrapcert: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    if args.command is None or (args.command == "ca" and args.ca_command is None):
        parser.print_help() if args.command is None else print("usage: wrapcert ca new [options]")
        return 2
    # imported here: 'wrapcert --help' and usage errors need no cryptography
    from tlswrap.wrapcert import commands

    handler = commands.COMMANDS[args.command]
    try:
        return handler(args, sys.stdin, sys.stdout, sys.stderr)
    except TlswrapError as exc:
        print(f"wrapcert: {exc}", file=sys.stderr)
        return commands.CHECK_UNREADABLE if args.command == "check" else 1
    except KeyboardInterrupt:
        print("wrapcert: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
