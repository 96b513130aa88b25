"""Where log lines go: stderr in the foreground, ``output = FILE``, syslog when asked.

stunnel's levels 0-7 (emerg..debug) map onto Python's; ``notice`` (5, the default) gets a level
of its own between INFO and WARNING. Connection lines are INFO, so the default stays quiet.

Syslog may not be there (a container, ``systemd-socket-activate`` with no syslog daemon) or may
go away: then one warning line says so -- on the other destinations, or on stderr when there are
none -- and log lines meant for syslog are dropped quietly, never a traceback per line. The
handler tries again every ``SYSLOG_RETRY_SECONDS`` and, once syslog answers, tells it how many
lines were lost.

A log line is one line, whatever a peer, a child's stderr or a file name put in it: every
handler of the ``tlswrap`` tree formats through ``EscapingFormatter``, which writes control
characters as escapes (``escape_controls``) in the message -- the one place every line is
formatted, so no caller has to remember it.
"""

from __future__ import annotations

import errno
import logging
import logging.handlers
import os
import socket
import sys
import time
from typing import ClassVar, TextIO

from . import logtext
from .addresses import format_sockaddr
from .errors import TlswrapError
from .logtext import STUNNEL_LEVELS, escape_controls, syslog_tag

NOTICE = logtext.NOTICE
logging.addLevelName(NOTICE, "NOTICE")
SYSLOG_ADDRESS = "/dev/log"
SYSLOG_RETRY_SECONDS = 10.0  # while syslog is unreachable, how often a log line tries again

_LEVELS = STUNNEL_LEVELS  # stunnel level -> Python level


def python_level(stunnel_level: int) -> int:
    return _LEVELS[stunnel_level]


class EscapingFormatter(logging.Formatter):
    """A Formatter whose message, and exception text, hold no raw control characters.

    The message is escaped whole (an LF in it cannot start a forged line); a traceback keeps
    its own line breaks, each of its lines escaped.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        return super().formatMessage(record)

    def formatException(self, ei):  # type: ignore[no-untyped-def]
        return escape_controls(super().formatException(ei), keep_newlines=True)

    def formatStack(self, stack_info: str) -> str:
        return escape_controls(super().formatStack(stack_info), keep_newlines=True)


class JsonFormatter(logging.Formatter):
    """``logFormat = json``: one JSON object per line -- time (UTC, ISO 8601), level,
    logger, pid and message, plus the traceback when there is one. JSON escapes every control
    character itself, so a peer's bytes cannot start a line of their own here either.
    ``prefix``: written before the object (a syslog tag)."""

    def __init__(self, prefix: str = "") -> None:
        super().__init__()
        self.prefix = prefix

    def format(self, record: logging.LogRecord) -> str:
        import datetime
        import json

        doc = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname, "logger": record.name, "pid": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["traceback"] = self.formatException(record.exc_info)
        return (self.prefix % {"process": record.process}) + json.dumps(doc, ensure_ascii=True)


def setup_logging(level: int, *, stderr: bool, output: str | None = None,
                  syslog: bool = False, facility: str = "daemon", ident: str = "tlswrap",
                  syslog_address: str | tuple[str, int] = SYSLOG_ADDRESS,
                  json_lines: bool = False,
                  overwrite: bool = False) -> None:
    """Configure the ``tlswrap`` logger tree; ``level`` is stunnel's 0-7. ``overwrite``:
    stunnel's ``log = overwrite``, the output file is emptied when opened (and reopened).

    TlswrapError ``output = PATH: cannot open log file: REASON`` if the log file cannot be
    opened (the caller may locate it: ``config.error(str(exc), "output")``); logging is then
    left as it was.
    """
    log_file = open_log_file(output, overwrite) if output else None
    root = logging.getLogger("tlswrap")
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    root.setLevel(python_level(level))
    root.propagate = False
    fmt: logging.Formatter = (
        JsonFormatter() if json_lines
        else EscapingFormatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    handlers = ([logging.StreamHandler(sys.stderr)] if stderr else []) + (
        [_LogFileHandler(log_file, output, overwrite)] if log_file and output else [])
    for handler in handlers:
        handler.setFormatter(fmt)
        root.addHandler(handler)
    if syslog:
        where = " and ".join((["stderr"] if stderr else []) + ([output] if output else []))
        to_syslog = SyslogHandler(
            syslog_address, logging.handlers.SysLogHandler.facility_names[facility],
            instead=f"logging to {where} only" if where else "log lines are dropped")
        tag = syslog_tag(ident)
        to_syslog.setFormatter(JsonFormatter(f"{tag}[%(process)d]: ") if json_lines else
                               EscapingFormatter(f"{tag}[%(process)d]: %(message)s"))
        root.addHandler(to_syslog)
        if to_syslog.unreachable:
            to_syslog.down(to_syslog.unreachable)
    if not root.handlers:
        root.addHandler(logging.NullHandler())


def reopen_log_files() -> list[str]:
    """SIGUSR1: every ``output`` file of the ``tlswrap`` logger opened again at its path
    (logrotate's ``postrotate``); the problems, for the caller to log (the old file is kept)."""
    problems = []
    for handler in logging.getLogger("tlswrap").handlers:
        if isinstance(handler, _LogFileHandler):
            try:
                handler.reopen()
            except TlswrapError as exc:
                problems.append(str(exc))
    return problems


def log_files_seen_inside_jail(path: str) -> None:
    """After ``chroot``: the ``output`` file, opened before at its place under the jail, is
    ``path`` from now on (where SIGUSR1 opens it again)."""
    for handler in logging.getLogger("tlswrap").handlers:
        if isinstance(handler, _LogFileHandler):
            handler.path = path


def open_log_file(path: str, overwrite: bool = False) -> TextIO:
    """``path`` opened for appending (created 0640 if missing; emptied first with
    ``overwrite``), line-buffered."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOCTTY
    try:
        fd = os.open(path, flags | (os.O_TRUNC if overwrite else 0), 0o640)
    except OSError as exc:
        raise TlswrapError(f"output = {path}: cannot open log file: {exc.strerror}") from None
    return os.fdopen(fd, "a", buffering=1)


def writable_path_problem(path: str, *, directory: bool = False) -> str | None:
    """Why a file at ``path`` could not be written -- created if missing -- or None.

    Changes nothing: an existing file is opened for appending and closed, so neither its
    contents nor its times change; for a missing one the directory must let it be created.
    ``directory=True`` asks that of the directory in any case (a pid file is replaced and
    removed). The reason is the OS's wording, e.g. "No such file or directory". It judges as
    the user running it: tlswrap opens its log file before dropping privileges.
    """
    if os.path.exists(path):
        if os.path.isdir(path):
            return os.strerror(errno.EISDIR)
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOCTTY | os.O_NONBLOCK
                             | os.O_CLOEXEC))
        except OSError as exc:
            return exc.strerror or str(exc)
        if not directory:
            return None
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(parent):
        return os.strerror(errno.ENOENT)
    if not os.path.isdir(parent):
        return os.strerror(errno.ENOTDIR)
    if not os.access(parent, os.W_OK | os.X_OK):
        return os.strerror(errno.EACCES)
    return None


class _LogFileHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler that owns its file: closing the handler closes the file; ``reopen`` opens
    the path again (SIGUSR1, after logrotate renamed the file)."""

    def __init__(self, stream: TextIO, path: str, overwrite: bool = False) -> None:
        super().__init__(stream)
        self.path = path
        self.overwrite = overwrite  # log = overwrite: a reopened file starts empty too

    def reopen(self) -> None:
        """Write to a file opened at ``path`` now; TlswrapError (the old file stays) if it
        cannot be opened."""
        fresh = open_log_file(self.path, self.overwrite)
        old = self.setStream(fresh)
        if old is not None:
            old.close()

    def close(self) -> None:
        try:
            self.stream.close()
        finally:
            super().close()


class SyslogHandler(logging.handlers.SysLogHandler):
    """Syslog over a unix socket that says once when it cannot be reached, then keeps quiet.

    ``unreachable``: why it could not connect when made (None: it could). While down, a log
    line is dropped, except one every SYSLOG_RETRY_SECONDS that tries syslog again.
    """

    priority_map: ClassVar[dict[str, str]] = {
        **logging.handlers.SysLogHandler.priority_map, "NOTICE": "notice"}

    def __init__(self, address: str | tuple[str, int], facility: int, instead: str) -> None:
        self.unreachable: str | None = None
        self.instead = instead
        self.dropped = 0
        self._down = False
        self._tried_at = 0.0  # when syslog last failed
        self._failed = False
        try:
            super().__init__(address, facility)  # connects, and keeps quiet if it cannot
        except OSError as exc:  # a server's name that does not resolve: emit tries again
            self.unreachable = exc.strerror or str(exc)
        else:
            self.unreachable = _connect_problem(address)

    def down(self, why: str) -> None:
        """Syslog failed: warn once (on the other handlers, else stderr), then drop lines."""
        self._down = True
        self._tried_at = time.monotonic()
        _announce(self, f"syslog at {format_sockaddr(self.address)} is unreachable ({why}): "
                        f"{self.instead}; trying again every {SYSLOG_RETRY_SECONDS:g} s")

    def emit(self, record: logging.LogRecord) -> None:
        if self._down and time.monotonic() - self._tried_at < SYSLOG_RETRY_SECONDS:
            self.dropped += 1
            return
        self._failed = False
        super().emit(record)  # reconnects when the socket is closed; handleError if it fails
        if self._down and not self._failed:
            self._down = False
            lost, self.dropped = self.dropped, 0
            if lost:
                super().emit(logging.makeLogRecord({
                    "name": record.name, "levelno": logging.WARNING, "levelname": "WARNING",
                    "msg": f"syslog was unreachable: {lost} log line(s) dropped"}))

    def handleError(self, record: logging.LogRecord) -> None:
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):
            super().handleError(record)  # a bug in a log call: keep the stdlib's traceback
            return
        self._failed = True
        self.dropped += 1
        if self._down:
            self._tried_at = time.monotonic()
        else:
            self.down(exc.strerror or str(exc))


def _connect_problem(address: str | tuple[str, int]) -> str | None:
    """Why no unix socket, datagram or stream (as the stdlib tries), connects to ``address``;
    None for a server over UDP (nothing to connect: a datagram that is lost is lost)."""
    if not isinstance(address, str):
        return None
    why = None
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_UNIX, kind) as probe:
            try:
                probe.connect(address)
            except OSError as exc:
                why = why or exc.strerror or str(exc)
            else:
                return None
    return why


def _announce(source: logging.Handler, msg: str) -> None:
    """One warning on the tlswrap handlers other than ``source``; on stderr if there are none."""
    root = logging.getLogger("tlswrap")
    others = [h for h in root.handlers
              if h is not source and not isinstance(h, logging.NullHandler)]
    record = root.makeRecord(root.name, logging.WARNING, __file__, 0, msg, (), None)
    for handler in others:
        handler.handle(record)
    if not others and sys.stderr is not None:
        try:
            sys.stderr.write(f"tlswrap: {escape_controls(msg)}\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass  # stderr closed too: nowhere left to say it
