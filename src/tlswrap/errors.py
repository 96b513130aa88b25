"""One error family for everything a user can get wrong."""

from __future__ import annotations


class TlswrapError(Exception):
    """A problem the user can fix; the CLIs print it as one line, never a traceback."""


class ConfigError(TlswrapError):
    """A mistake in a file, located as ``file:line: [service] message``."""

    def __init__(self, filename: str, lineno: int | None, msg: str, service: str | None = None):
        self.filename = filename
        self.lineno = lineno
        self.msg = msg
        self.service = service
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.filename}:{self.lineno}" if self.lineno else self.filename
        svc = f" [{self.service}]" if self.service else ""
        return f"{where}:{svc} {self.msg}"
