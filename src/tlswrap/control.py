"""``tlswrap reload CONFIG``: signal the daemon that the config's ``pid`` file names.

A convenience over ``kill -HUP $(cat PIDFILE)`` that checks what it signals: the pid file must
be a regular file holding a process id, and that process must be a tlswrap (its command line
says so), so a stale file whose pid was reused by another program is never signalled.
"""

from __future__ import annotations

import os
import signal
import sys

from . import pidfile
from .config import load_config
from .errors import TlswrapError

USAGE = "usage: tlswrap reload CONFIG   (SIGHUP to the daemon in CONFIG's pid file)\n"


def daemon_pid(config_path: str) -> int:
    """The pid of the tlswrap serving ``config_path``, from its ``pid`` file; TlswrapError
    saying why if there is none."""
    config = load_config(config_path)
    path = config.globals.pid
    if not path:
        raise TlswrapError(f"{config_path}: no 'pid' option, so there is no pid file to find "
                           "the daemon by: add pid = /run/tlswrap.pid, or send SIGHUP yourself")
    try:
        pid = pidfile.read(path)
    except pidfile.PidFileError as exc:
        raise config.error(f"pid = {path}: cannot read the pid file: {exc}", "pid") from None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except FileNotFoundError:
        raise TlswrapError(f"{path}: process {pid} is not running (a stale pid file?)") \
            from None
    except OSError:
        argv = None  # no /proc here: trust the file
    if argv is not None and not any(b"tlswrap" in arg for arg in argv):
        raise TlswrapError(f"{path}: process {pid} is not tlswrap (a stale pid file whose "
                           "pid was reused?)")
    return pid


def main(args: list[str]) -> int:
    if len(args) != 1 or args[0].startswith("-"):
        sys.stderr.write(USAGE)
        return 2
    pid = daemon_pid(args[0])
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        raise TlswrapError(f"cannot signal process {pid}: {exc.strerror}") from None
    print(f"tlswrap: sent SIGHUP to pid {pid}")
    return 0
