"""One error family for everything a user can get wrong."""

from __future__ import annotations

import errno

TYPE_CHECKING = False  # collections.abc costs ~1.5 ms, paid by every inetd connection
if TYPE_CHECKING:
    from collections.abc import Iterable

# A socket failing with one of these means the peer is gone (a reset, mostly): routine.
BROKEN_ERRNOS = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED, errno.ETIMEDOUT,
                           errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENOTCONN})


def broken_reason(exc: OSError) -> str:
    """How a failed socket is said in the closing log line: ``peer reset or vanished:
    Connection reset by peer``, or ``socket error: ...`` for anything else."""
    kind = "peer reset or vanished" if exc.errno in BROKEN_ERRNOS else "socket error"
    return f"{kind}: {exc.strerror or exc}"


class TlswrapError(Exception):
    """A problem the user can fix; the CLIs print it as one line, never a traceback."""


class SourceLine(int):
    """A line number that also names its file: a line of a file a config includes
    (``include = DIR``). It is an int everywhere a line number is; ConfigError and ``tlswrap
    check`` name its file instead of the main config's."""

    file: str

    def __new__(cls, number: int, file: str) -> SourceLine:
        line = super().__new__(cls, number)
        line.file = file
        return line


def located(filename: str, lineno: int | None) -> str:
    """The file a line number belongs to: its own for a SourceLine, else ``filename``."""
    return lineno.file if isinstance(lineno, SourceLine) else filename


class ConfigError(TlswrapError):
    """A mistake in a file, located as ``file:line: [service] message``.

    One error stands for all that were found in the same pass: ``str()`` is the first, and
    ``all()`` gives every one in file order, so ``tlswrap check`` can list them together.
    """

    def __init__(self, filename: str, lineno: int | None, msg: str,
                 service: str | None = None) -> None:
        self.filename = located(filename, lineno)
        self.lineno = lineno
        self.msg = msg
        self.service = service
        self.more: tuple[ConfigError, ...] = ()
        # a config file's parse: the services and options that did parse (a Config), so
        # that `tlswrap check` goes on to check them too; None elsewhere
        self.partial: object | None = None
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.filename}:{self.lineno}" if self.lineno else self.filename
        svc = f" [{self.service}]" if self.service else ""
        return f"{where}:{svc} {self.msg}"

    def all(self) -> tuple[ConfigError, ...]:
        """This error and the further ones found with it."""
        return (self, *self.more)

    @staticmethod
    def of(errors: Iterable[ConfigError]) -> ConfigError | None:
        """The first of ``errors`` carrying all the others (flattened), or None if none."""
        found = [each for error in errors for each in error.all()]
        if not found:
            return None
        first = found[0]
        first.more = tuple(found[1:])
        return first
