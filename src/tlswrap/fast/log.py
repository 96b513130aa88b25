"""The inetd fast path's log lines: the lines ``logsetup`` writes, without ``logging``.

``import logging.handlers`` costs ~20 ms, more than a stunnel connection. One connection
writes a handful of lines, so this writes them itself, byte for byte as ``logsetup``'s
handlers do (``tests/test_fast_log.py`` compares them): ``YYYY-mm-dd HH:MM:SS LEVEL message``
on stderr (in the foreground, when stderr is not the connection) and to ``output``; and
``<PRI>tag[pid]: message`` plus a NUL to syslog on /dev/log, datagram or else stream, as
``logging.handlers.SysLogHandler`` sends it. Syslog that cannot be reached is said once, on
the other destinations or else stderr, as ``logsetup.SyslogHandler`` says it; its lines are
then dropped.
"""

from __future__ import annotations

import os
import time
from _socket import AF_UNIX, SOCK_DGRAM, SOCK_STREAM
from _socket import socket as raw_socket

from ..logtext import LEVEL_NAMES, NOTICE, STUNNEL_LEVELS, escape_controls, syslog_tag

SYSLOG_ADDRESS = "/dev/log"
SYSLOG_RETRY_SECONDS = 10.0  # logsetup.SYSLOG_RETRY_SECONDS
# logging.handlers.SysLogHandler.facility_names and priority_names (as its priority_map uses)
FACILITIES = {"auth": 4, "authpriv": 10, "cron": 9, "daemon": 3, "ftp": 11, "kern": 0,
              "lpr": 6, "mail": 2, "news": 7, "syslog": 5, "user": 1, "uucp": 8,
              **{f"local{i}": 16 + i for i in range(8)}}
PRIORITIES = {10: 7, 20: 6, NOTICE: 5, 30: 4, 40: 3, 50: 2}
DEBUG, INFO, WARNING, ERROR = 10, 20, 30, 40


class Syslog:
    """One unix socket to syslog, reconnected once when a send fails."""

    def __init__(self, address: str, facility: int, tag: str) -> None:
        self.address = address
        self.facility = facility
        self.tag = tag
        self.sock: raw_socket | None = None
        self.down_since: float | None = None
        self.problem = self._connect()

    def _connect(self) -> str | None:
        why = None
        for kind in (SOCK_DGRAM, SOCK_STREAM):
            sock = raw_socket(AF_UNIX, kind)
            try:
                sock.connect(self.address)
            except OSError as exc:
                sock.close()
                why = why or exc.strerror or str(exc)
                continue
            self.sock = sock
            return None
        return why

    def send(self, level: int, message: str) -> str | None:
        """None when sent, else why not."""
        data = (f"<{self.facility << 3 | PRIORITIES[level]}>{self.tag}[{os.getpid()}]: "
                f"{message}\0").encode()
        for _ in range(2):
            if self.sock is None:
                why = self._connect()
                if why:
                    return why
            assert self.sock is not None
            try:
                self.sock.sendall(data)
                return None
            except OSError as exc:
                why = exc.strerror or str(exc)
                self.sock.close()
                self.sock = None
        return why


class Log:
    """The destinations of one inetd connection's lines, at stunnel's ``debug`` level."""

    def __init__(self, level: int, *, stderr: bool, output: str | None, syslog: bool,
                 facility: str, ident: str, syslog_address: str = SYSLOG_ADDRESS) -> None:
        self.level = STUNNEL_LEVELS[level]
        self.files: list[int] = [2] if stderr else []
        if output:
            # as logsetup.open_log_file; a failure is the caller's to fall back on
            self.files.append(os.open(output, os.O_WRONLY | os.O_APPEND | os.O_CREAT
                                      | os.O_CLOEXEC, 0o640))
        self.syslog: Syslog | None = None
        self.where = " and ".join((["stderr"] if stderr else []) + ([output] if output else []))
        if syslog:
            self.syslog = Syslog(syslog_address, FACILITIES[facility], syslog_tag(ident))
            if self.syslog.problem:
                self._syslog_down(self.syslog.problem)

    def close(self) -> None:
        for fd in self.files[1:] if self.files[:1] == [2] else self.files:
            os.close(fd)
        self.files = []
        if self.syslog is not None and self.syslog.sock is not None:
            self.syslog.sock.close()
            self.syslog.sock = None

    def enabled(self, level: int) -> bool:
        return level >= self.level

    def __call__(self, level: int, message: str, exc_text: str | None = None) -> None:
        """One line (plus a traceback's own lines, as ``logging`` appends ``exc_info``)."""
        if level < self.level:
            return
        message = escape_controls(message)
        if exc_text:
            message += "\n" + escape_controls(exc_text.rstrip("\n"), keep_newlines=True)
        if self.files:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
            line = f"{stamp} {LEVEL_NAMES[level]} {message}\n".encode()
            for fd in self.files:
                try:
                    os.write(fd, line)
                except OSError:
                    pass  # as a StreamHandler whose stream failed: the line is lost
        syslog = self.syslog
        if syslog is not None:
            down = syslog.down_since
            if down is not None and time.monotonic() - down < SYSLOG_RETRY_SECONDS:
                return
            why = syslog.send(level, message)
            if why is None:
                syslog.down_since = None
            elif syslog.down_since is None:
                self._syslog_down(why)
            else:
                syslog.down_since = time.monotonic()

    def _syslog_down(self, why: str) -> None:
        assert self.syslog is not None
        self.syslog.down_since = time.monotonic()
        instead = f"logging to {self.where} only" if self.where else "log lines are dropped"
        msg = (f"syslog at {self.syslog.address} is unreachable ({why}): {instead}; "
               f"trying again every {SYSLOG_RETRY_SECONDS:g} s")
        if self.files:
            syslog, self.syslog = self.syslog, None
            try:
                self(WARNING, msg)
            finally:
                self.syslog = syslog
        else:
            try:
                os.write(2, f"tlswrap: {escape_controls(msg)}\n".encode())
            except OSError:
                pass
