"""The stunnel 5 configuration format, parsed into an immutable model.

General theory of operation: the file is global options, then ``[service]`` sections of
``key = value`` lines. Whole-line comments start with ``;`` or ``#``. Option names are
case-insensitive, as in stunnel. A service option written in the global part is the default for
every service (stunnel's rule). Every option is declared once in ``OPTIONS`` with the function that
parses its value, so adding an option is one line there plus a field on the model.

This package is pure: it takes text and a file name and returns values. Every parsed option keeps
its line number (``Service.lines``), so a later semantic error -- a certificate that does not load,
a cipher string OpenSSL refuses -- can still say ``FILE:LINE:``. A mistake does not stop the
parse: every line is read, and the ConfigError raised carries all that were found (``all()``).
``load_config(path)`` only reads the file and hands the text over, like tomli's ``load``: a
regular file of at most ``CONFIG_MAX_BYTES``, decoded as UTF-8 with an optional byte-order mark
(stunnel skips one too; Notepad writes it), so the text the parser sees starts at line 1.

Every value is checked here to the limits of what will use it, so that nothing refused later
escapes as a Python exception instead of ``FILE:LINE:``: host names as the resolver encodes them
(RFC 1035 lengths, IDNA), socket option values as a C int in the range the kernel takes, user
and group ids as ``uid_t``/``gid_t``, the session timeout below 2**31 seconds, unix socket
paths as ``sun_path``; no NUL character and no text that cannot be written as UTF-8 (a path or
a name goes to C as bytes).

TLS versions: tlswrap serves TLS 1.2 and 1.3 only (RFC 8996 deprecates the older ones, and the
OpenSSL in use will not negotiate them at its security level). Old stunnel files name them, so
the names are understood: a minimum below TLS 1.2 is read as TLS 1.2 (``tlswrap check`` warns,
see ``config_warnings``), while a maximum below TLS 1.2 -- nothing tlswrap could serve -- is an
error at its line.

The package: ``model`` (the values a config becomes), ``values`` (one parser per kind of
value), ``options`` (the table of every option), ``parse`` (text to model, ``include``),
``checks`` (what is allowed but worth a word: warnings and notes).
"""

from __future__ import annotations

from .checks import config_notes, config_warnings, proxy_v2_size, version_problem
from .model import (
    CONFIG_MAX_BYTES,
    PROXY_TLVS,
    SYSLOG_FACILITIES,
    TLS_ORDER,
    TLS_SERVED,
    Address,
    Config,
    GlobalOptions,
    Service,
)
from .options import OPTIONS, Option
from .parse import load_config, parse_config, service_from_options
from .values import parse_accept, parse_connect, parse_debug

__all__ = [
    "CONFIG_MAX_BYTES", "OPTIONS", "PROXY_TLVS", "SYSLOG_FACILITIES", "TLS_ORDER", "TLS_SERVED",
    "Address",
    "Config", "GlobalOptions", "Option", "Service", "config_notes", "config_warnings",
    "load_config", "parse_accept", "parse_config", "parse_connect", "parse_debug",
    "proxy_v2_size", "service_from_options", "version_problem",
]
