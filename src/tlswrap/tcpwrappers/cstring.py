"""Strings as tcpd's C code reads them: strcasecmp(), atoi(), sscanf("%d"), misc.c split_at().

tcpd compares words with strcasecmp() (ASCII letters folded, nothing else) and reads numbers
with the C library's lenient parsers; every module of the package reads text through these, so
the parser, the matcher and the checker see the same thing.
"""

from __future__ import annotations

import re
import string

__all__ = ["SPACE", "atoi", "equal", "fold", "scan_int", "split_at"]

SPACE = " \t\n\v\f\r"  # isspace()

_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_ATOI = re.compile(r"[ \t\n\v\f\r]*([+-]?\d+)")


def fold(s: str) -> str:
    """strcasecmp's view of a string: ASCII letters folded, nothing else."""
    return s.translate(_LOWER)


def equal(a: str, b: str) -> bool:
    """``strcasecmp(a, b) == 0``."""
    return fold(a) == fold(b)


def atoi(s: str) -> int:
    """atoi(): leading blanks, an optional sign and digits; 0 when there are none."""
    m = _ATOI.match(s)
    return int(m.group(1)) if m else 0


def scan_int(value: str) -> int | None:
    """``sscanf(value, "%d%c") == 1``: an optionally signed decimal and nothing after it."""
    m = _ATOI.fullmatch(value)
    return int(m.group(1)) if m else None


def split_at(s: str, delim: str) -> tuple[str, str | None]:
    """misc.c split_at(): cut at the first ``delim`` outside ``[...]`` (brackets counted)."""
    depth = 0
    for i, ch in enumerate(s):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif depth == 0 and ch == delim:
            return s[:i], s[i + 1:]
    return s, None
