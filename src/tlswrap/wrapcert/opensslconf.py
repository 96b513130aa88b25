"""Read openssl-style configuration files (the format of ``openssl.cnf``).

Pure: :func:`parse_conf` takes the text and the file name and returns a :class:`Conf`; it opens
no files and reads no environment unless a mapping is handed in.

General theory of operation: the text is read line by line as OpenSSL's default ``NCONF``
method does (``crypto/conf/conf_def.c``):

- ``#`` starts a comment anywhere outside quotes; a backslash at the end of a line joins the next.
- ``[ section ]`` opens a section; entries before the first one live in the section ``default``.
- ``name = value``: the value loses the blanks around it; ``"..."`` and ``'...'`` quote (blanks
  and ``#`` kept); outside quotes ``\\n``, ``\\r``, ``\\t``, ``\\b`` are control characters and a
  backslash before any other character keeps that character.
- ``$name``, ``${name}``, ``$(name)``, ``$section::name``, ``${section::name}`` are replaced
  *while reading*, as OpenSSL does: a variable must be defined above its use, in the current
  section or in ``default``; the section ``ENV`` reads the environment mapping given.

A name defined twice keeps its last value (OpenSSL's rule); every entry keeps its line number so
that a later semantic error can still say ``FILE:LINE:``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from tlswrap.errors import ConfigError

__all__ = ["Conf", "Entry", "parse_conf", "parse_number"]

# OpenSSL refuses values that grow past this through expansion (MAX_CONF_VALUE_LENGTH).
MAX_VALUE_LENGTH = 65536

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
# Characters OpenSSL accepts in entry and section names besides letters and digits.
_NAME_PUNCT = frozenset("!.%&*+,/;?@^~|-")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b"}
# ASCII digits only: Python's int() also takes "²", "٣", "1_000" and " +5", which OpenSSL does
# not. 4000 digits keeps int() below its limit on digit strings; far past every use's maximum.
_NUMBER = re.compile(r"[0-9]{1,4000}\Z")
_SIGNED_NUMBER = re.compile(r"[+-]?[0-9]{1,4000}\Z")


def parse_number(text: str, signed: bool = False) -> int | None:
    """*text* as a decimal number, or None: ASCII digits with the blanks around them ignored,
    as OpenSSL's ``NCONF_get_number`` (config values, never signed) and ``opt_long`` (command
    line, *signed*) read them."""
    text = text.strip(" \t")
    if not (_SIGNED_NUMBER if signed else _NUMBER).match(text):
        return None
    return int(text)


@dataclass(frozen=True)
class Entry:
    """One ``name = value`` line, after expansion."""

    name: str
    value: str
    lineno: int


@dataclass
class Conf:
    """Sections in file order, each a list of entries in file order."""

    filename: str
    sections: dict[str, list[Entry]] = field(default_factory=dict)
    section_lines: dict[str, int] = field(default_factory=dict)

    def section(self, name: str) -> list[Entry] | None:
        return self.sections.get(name)

    def get(self, section: str, name: str) -> Entry | None:
        """The last entry called *name* in *section*, or None."""
        found = None
        for entry in self.sections.get(section, ()):
            if entry.name == name:
                found = entry
        return found

    def error(self, lineno: int | None, msg: str) -> ConfigError:
        return ConfigError(self.filename, lineno, msg)


def _is_name_char(ch: str) -> bool:
    return ch in _NAME_CHARS or ch in _NAME_PUNCT


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join backslash-continued lines; each result keeps the number of its first line."""
    out: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for n, raw in enumerate(text.splitlines(), 1):
        if not pending:
            start = n
        # An odd number of trailing backslashes continues the line.
        stripped = raw.rstrip("\r")
        tail = len(stripped) - len(stripped.rstrip("\\"))
        if tail % 2 == 1:
            pending.append(stripped[:-1])
            continue
        pending.append(stripped)
        out.append((start, "".join(pending)))
        pending = []
    if pending:
        out.append((start, "".join(pending)))
    return out


def _strip_comment(line: str) -> str:
    quote = None
    i = 0
    while i < len(line):
        ch = line[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = None
        elif ch == "\\":
            i += 1
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return line[:i]
        i += 1
    return line


class _Reader:
    def __init__(self, filename: str, env: Mapping[str, str]):
        self.conf = Conf(filename)
        self.env = env
        self.current = "default"
        self.conf.sections["default"] = []

    def lookup(self, section: str | None, name: str) -> str | None:
        if section is not None:
            entry = self.conf.get(section, name)
            if entry is not None:
                return entry.value
            if section == "ENV":
                return self.env.get(name)
            return None
        for sect in (self.current, "default"):
            entry = self.conf.get(sect, name)
            if entry is not None:
                return entry.value
        return None

    def value(self, raw: str, lineno: int) -> str:
        """Unquote, unescape and expand one value (already stripped of its comment)."""
        out: list[str] = []
        i, n = 0, len(raw)
        while i < n:
            ch = raw[i]
            if ch in "\"'":
                j = i + 1
                while j < n and raw[j] != ch:
                    if raw[j] == "\\" and j + 1 < n:
                        j += 1
                    out.append(raw[j])
                    j += 1
                if j >= n:
                    raise self.conf.error(lineno, f"missing closing quote {ch} in value")
                i = j + 1
            elif ch == "\\":
                if i + 1 < n:
                    nxt = raw[i + 1]
                    out.append(_ESCAPES.get(nxt, nxt))
                i += 2
            elif ch == "$":
                text, i = self.expand(raw, i, lineno)
                out.append(text)
            else:
                out.append(ch)
                i += 1
            if sum(map(len, out)) > MAX_VALUE_LENGTH:
                raise self.conf.error(lineno, "value too long after variable expansion")
        return "".join(out)

    def expand(self, raw: str, i: int, lineno: int) -> tuple[str, int]:
        """Expand the variable at ``raw[i] == '$'``; returns its text and the next index."""
        j = i + 1
        close = None
        if j < len(raw) and raw[j] in "{(":
            close = "}" if raw[j] == "{" else ")"
            j += 1
        start = j
        while j < len(raw) and raw[j] in _NAME_CHARS:
            j += 1
        section = None
        name = raw[start:j]
        if raw.startswith("::", j):
            section = name
            j += 2
            start = j
            while j < len(raw) and raw[j] in _NAME_CHARS:
                j += 1
            name = raw[start:j]
        if close is not None:
            if j >= len(raw) or raw[j] != close:
                raise self.conf.error(lineno, f"missing closing {close!r} in variable reference")
            j += 1
        shown = f"{section}::{name}" if section is not None else name
        if not name:
            raise self.conf.error(lineno, "'$' without a variable name (write '\\$' for a dollar)")
        text = self.lookup(section, name)
        if text is None:
            raise self.conf.error(lineno, f"variable ${shown} has no value")
        return text, j

    def line(self, lineno: int, line: str) -> None:
        body = _strip_comment(line).strip()
        if not body:
            return
        if body.startswith("["):
            if not body.endswith("]"):
                raise self.conf.error(lineno, "missing ']' after section name")
            name = body[1:-1].strip()
            if not name or not all(_is_name_char(c) for c in name):
                raise self.conf.error(lineno, f"invalid section name {body!r}")
            self.current = name
            self.conf.sections.setdefault(name, [])
            self.conf.section_lines.setdefault(name, lineno)
            return
        if body.startswith("."):
            word = body.split(None, 1)[0].split("=", 1)[0]
            raise self.conf.error(lineno, f"directive {word!r} is not supported")
        j = 0
        while j < len(body) and (_is_name_char(body[j]) or body[j] == ":"):
            j += 1
        name = body[:j]
        rest = body[j:].lstrip()
        if not name:
            raise self.conf.error(lineno, f"expected 'name = value', got {body!r}")
        if not rest.startswith("="):
            raise self.conf.error(lineno, f"missing '=' after {name!r}")
        section = self.current
        if "::" in name:
            section, name = name.split("::", 1)
            if not section or not name or ":" in name:
                raise self.conf.error(lineno, f"invalid name {body[:j]!r}")
            self.conf.sections.setdefault(section, [])
        value = self.value(rest[1:].strip(), lineno)
        self.conf.sections[section].append(Entry(name, value, lineno))


def parse_conf(text: str, filename: str = "<config>", env: Mapping[str, str] | None = None) -> Conf:
    """Parse openssl-style config *text*; errors are :class:`ConfigError` naming *filename*."""
    reader = _Reader(filename, env or {})
    for lineno, line in _logical_lines(text):
        reader.line(lineno, line)
    return reader.conf
