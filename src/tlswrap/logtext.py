"""Log text made safe to show: the one place control characters are escaped (pure).

A log line is one line, whatever a peer, a child's stderr or a file name put in it. This has
no ``re`` (importing it costs the inetd fast path ~6 ms): most text is printable and passes
after one ``str.isprintable`` call; the rest is escaped character by character.
"""

from __future__ import annotations

NOTICE = 25  # stunnel's default level, between Python's INFO and WARNING
# stunnel's levels 0-7 (emerg..debug) as Python's, and Python's as syslog's priorities
STUNNEL_LEVELS = {0: 50, 1: 50, 2: 50, 3: 40, 4: 30, 5: NOTICE, 6: 20, 7: 10}
LEVEL_NAMES = {50: "CRITICAL", 40: "ERROR", 30: "WARNING", NOTICE: "NOTICE", 20: "INFO",
               10: "DEBUG"}
# a tcp_wrappers rule's ``severity`` level (hosts_options(5)) as the refusal line's level
TCPD_SEVERITY_LEVELS = {"emerg": 50, "alert": 50, "crit": 50, "err": 40, "warning": 30,
                        "notice": NOTICE, "info": 20, "debug": 10}

_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def is_control(c: str) -> bool:
    """What a terminal, a log viewer or syslog could act on rather than show: C0 (tab
    included), DEL and C1 controls; the Unicode line and paragraph separators; the
    bidirectional overrides and isolates (they reorder what is shown); lone surrogates (not
    writable as UTF-8)."""
    o = ord(c)
    return (o < 0x20 or 0x7F <= o <= 0x9F or 0x2028 <= o <= 0x202E or 0x2066 <= o <= 0x2069
            or 0xD800 <= o <= 0xDFFF)


def _escape(c: str) -> str:
    return _SHORT.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def escape_controls(text: str, keep_newlines: bool = False) -> str:
    """``text`` with control characters written as ``repr`` writes them (``\\r``, ``\\x1b``,
    ``\\u2028``); other characters, backslashes and non-ASCII letters included, stay as they
    are. ``keep_newlines``: LF stays a line break (a traceback's own lines)."""
    if keep_newlines:
        return "\n".join(escape_controls(line) for line in text.split("\n"))
    if text.isprintable():  # every character escaped below is non-printable
        return text
    return "".join(_escape(c) if is_control(c) else c for c in text)


def syslog_tag(ident: str) -> str:
    """``ident`` as a syslog tag: RFC 3164 wants alphanumerics, so anything but word
    characters and ``.@+-`` becomes ``_`` ("my service" would end the tag at "my")."""
    return "".join(c if c.isalnum() or c in "_.@+-" else "_" for c in ident)
