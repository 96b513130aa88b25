"""hosts_access(5) rule files: hosts.allow/hosts.deny text -> :class:`Rules`.

Pure: the caller reads the file and passes its text and name to :func:`parse_hosts`. Read as
tcpd reads it at match time (hosts_access.c table_match() over misc.c xgets()):

* A file is read as logical lines: backslash-newline joins lines with no blank; a logical line
  that does not end in a newline (last line of the file, or longer than tcpd's 2048-byte
  buffer) stops the scan of that file with an error, which denies when it happens in
  hosts.deny. Lines whose first character is ``#`` and blank lines are skipped.
* A rule is ``daemons : clients [: options]``, split at the first ``:`` outside ``[...]`` (no
  backslash escape there), then again for the options (hosts_options(5)). Lists split on
  blanks and commas.
* A line without ``:`` is skipped with a warning; everything tcpd would warn about is kept in
  place (:class:`Note`) so the matcher warns at the same point in the scan.
"""

from __future__ import annotations

from tlswrap.tcpwrappers.cstring import split_at
from tlswrap.tcpwrappers.options import OptionSpec, parse_options
from tlswrap.tcpwrappers.record import Record

TYPE_CHECKING = False  # typing costs milliseconds to import; annotations are strings here
if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["BUFLEN", "Note", "Problem", "Rule", "Rules", "parse_hosts"]

BUFLEN = 2048  # tcpd's logical line buffer, newline included
_SEP = str.maketrans(",\t\r\n", "    ")  # list separators (hosts_access.c: sep[]) to blanks
_BLANK = " \t\r\n"

Problem = tuple[str, int, str]  # (filename, lineno, message)


class Rule(Record):
    """One rule: ``daemons : clients [: options]`` at ``lineno`` (tcpd's count: last line)."""

    __slots__ = _fields = ("filename", "lineno", "daemons", "clients", "options",
                           "option_error")
    filename: str
    lineno: int
    daemons: tuple[str, ...]
    clients: tuple[str, ...]
    options: tuple[OptionSpec, ...]  # parsed up to the first structural error
    option_error: str | None  # structural error after ``options`` (denies when decisive)

    def __init__(self, filename: str, lineno: int, daemons: tuple[str, ...],
                 clients: tuple[str, ...], options: tuple[OptionSpec, ...],
                 option_error: str | None) -> None:
        super().__init__(filename, lineno, daemons, clients, options, option_error)


class Note(Record):
    """A line tcpd skips with a warning, or (fatal) where it stops reading the file."""

    __slots__ = _fields = ("lineno", "messages", "fatal")
    lineno: int
    messages: tuple[str, ...]
    fatal: bool

    def __init__(self, lineno: int, messages: tuple[str, ...], fatal: bool) -> None:
        super().__init__(lineno, messages, fatal)


class Rules(Record):
    """A parsed hosts file. ``problems``: every syntax error, as ``(filename, lineno, msg)``."""

    __slots__ = _fields = ("filename", "entries", "problems", "open_error")
    filename: str
    entries: tuple[Rule | Note, ...]
    problems: tuple[Problem, ...]
    open_error: str | None  # the file exists but cannot be read (tcpd denies)

    def __init__(self, filename: str, entries: tuple[Rule | Note, ...] = (),
                 problems: tuple[Problem, ...] = (), open_error: str | None = None) -> None:
        super().__init__(filename, entries, problems, open_error)

    @property
    def rules(self) -> tuple[Rule, ...]:
        return tuple(e for e in self.entries if isinstance(e, Rule))

    @classmethod
    def empty(cls, filename: str) -> Rules:
        """A missing file: tcpd treats it as an empty one."""
        return cls(filename)

    @classmethod
    def unreadable(cls, filename: str, reason: str) -> Rules:
        """An unreadable file: tcpd warns ``cannot open FILE: reason`` and the check fails."""
        msg = f"cannot open {filename}: {reason}"
        return cls(filename, (), ((filename, 0, msg),), msg)


def _logical_lines(text: str) -> Iterator[tuple[int, str, bool]]:
    """misc.c xgets() over fgets(): yields (lineno, line, complete)."""
    text = text.replace("\0", "")
    pos, n, lineno = 0, len(text), 0
    while True:
        buf, room = "", BUFLEN
        while True:
            if pos >= n:
                if buf:
                    yield lineno, buf, False
                return
            end = text.find("\n", pos, pos + room - 1)
            chunk = text[pos:end + 1] if end >= 0 else text[pos:pos + room - 1]
            pos += len(chunk)
            if chunk.endswith("\n"):
                lineno += 1
                if len(chunk) >= 2 and chunk[-2] == "\\":
                    chunk = chunk[:-2]
                else:
                    yield lineno, buf + chunk, True
                    break
            buf += chunk
            room -= len(chunk)
            if room == 1:
                yield lineno, buf, False
                return


def parse_hosts(text: str, filename: str) -> Rules:
    """Parse a whole hosts.allow/hosts.deny text the way tcpd reads it at match time."""
    entries: list[Rule | Note] = []
    problems: list[Problem] = []
    for lineno, line, complete in _logical_lines(text):
        if not complete:
            msgs = ("missing newline or line too long", "all the subsequent rules will be ignored")
            entries.append(Note(lineno, msgs, True))
            problems.append((filename, lineno + 1, msgs[0]))
            break
        if line[0] == "#" or not line.strip(_BLANK):
            continue
        daemons, rest = split_at(line, ":")
        if rest is None:
            entries.append(Note(lineno, ('missing ":" separator',), False))
            problems.append((filename, lineno, 'missing ":" separator'))
            continue
        clients, sh_cmd = split_at(rest, ":")
        specs: tuple[OptionSpec, ...] = ()
        error = None
        if sh_cmd is not None:
            specs, error = parse_options(sh_cmd)
            problems += [(filename, lineno, s.error) for s in specs if s.error]
            if error:
                problems.append((filename, lineno, error))
        entries.append(Rule(filename, lineno, _tokens(daemons), _tokens(clients), specs, error))
    return Rules(filename, tuple(entries), tuple(problems))


def _tokens(s: str) -> tuple[str, ...]:
    return tuple(t for t in s.translate(_SEP).split(" ") if t)
