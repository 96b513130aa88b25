"""Strings as tcpd's C code reads them: strcasecmp(), atoi(), sscanf("%d"), misc.c split_at().

tcpd compares words with strcasecmp() (ASCII letters folded, nothing else) and reads numbers
with the C library's lenient parsers; every module of the package reads text through these, so
the parser, the matcher and the checker see the same thing.
"""

from __future__ import annotations

__all__ = ["SPACE", "atoi", "equal", "fold", "leading_int", "scan_int", "split_at"]

SPACE = " \t\n\v\f\r"  # isspace()

_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold(s: str) -> str:
    """strcasecmp's view of a string: ASCII letters folded, nothing else."""
    return s.translate(_LOWER)


def equal(a: str, b: str) -> bool:
    """``strcasecmp(a, b) == 0``."""
    return fold(a) == fold(b)


def leading_int(s: str) -> tuple[str, str, str] | None:
    """What strtol() reads: blanks, then ``(sign, digits, rest)``; None without digits.

    ``sign`` is "", "+" or "-"; ``digits`` the decimal digits that follow (``str.isdecimal``,
    as the engine has always read them), ``rest`` what comes after.
    """
    i, n = 0, len(s)
    while i < n and s[i] in SPACE:
        i += 1
    sign = s[i] if i < n and s[i] in "+-" else ""
    start = j = i + len(sign)
    while j < n and s[j].isdecimal():
        j += 1
    return (sign, s[start:j], s[j:]) if j > start else None


def atoi(s: str) -> int:
    """atoi(): leading blanks, an optional sign and digits; 0 when there are none."""
    found = leading_int(s)
    return int(found[0] + found[1]) if found else 0


def scan_int(value: str) -> int | None:
    """``sscanf(value, "%d%c") == 1``: an optionally signed decimal and nothing after it."""
    found = leading_int(value)
    return int(found[0] + found[1]) if found and not found[2] else None


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
