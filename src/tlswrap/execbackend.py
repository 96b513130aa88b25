"""The ``exec`` backend: run a program per connection with the plaintext on its stdin/stdout.

The program gets one end of a socketpair as stdin and stdout, so it sees EOF and half-close like
a network peer; its stderr goes to the log, line by line. Its environment (``execenv``) carries
both stunnel's variables and UCSPI-TCP's.

When the connection ends the program's socket is closed; it then has TIMEOUTclose to exit before
it is sent SIGTERM, and a second later SIGKILL. Every child is reaped and its status logged.
Nothing else is inherited: Python opens every descriptor close-on-exec, and only 0, 1 and 2 are
passed.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import signal
import socket
import subprocess
from collections.abc import Callable
from typing import Any

import trio

from .execenv import exec_environment
from .sockstream import SocketStream

__all__ = ["ExecStream", "exec_environment", "spawn"]  # exec_environment lives in execenv

log = logging.getLogger("tlswrap.exec")

TERM_GRACE = 1.0  # seconds between SIGTERM and SIGKILL for a program that will not stop

class ExecStream(SocketStream):
    """The parent's end of the socketpair, plus the child process it talks to."""

    def __init__(self, sock: socket.socket, process: trio.Process, label: str):
        super().__init__(sock)
        self.process = process
        self.label = label

    async def finish(self, grace: float, abort: bool = False) -> None:
        """Close our end, give the child ``grace`` seconds (TIMEOUTclose) to exit, then stop
        it (SIGTERM, and SIGKILL a second later); reap it. ``abort``: the connection broke (a
        reset, a stalled side): nothing is left to finish, so SIGTERM at once, and SIGKILL
        ``grace`` seconds later. If the connection is cancelled meanwhile (the SIGTERM drain
        ran out), the child is stopped at once: the drain bounds the programs too."""
        self.close()
        proc = self.process
        cut = False
        try:
            with trio.move_on_after(0 if abort else grace):
                await proc.wait()
        except trio.Cancelled:
            cut = True  # stopped below, outside this except clause
        if proc.returncode is None:
            if abort:
                log.warning("%s pid %d: its connection broke; terminating", self.label,
                            proc.pid)
            elif not cut:
                log.warning("%s pid %d still running %gs after its client left; terminating",
                            self.label, proc.pid, grace)
            with trio.CancelScope(shield=True):  # bounded: TERM_GRACE, then SIGKILL
                proc.send_signal(signal.SIGTERM)
                with trio.move_on_after(grace if abort and not cut else TERM_GRACE):
                    await proc.wait()
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
        status = proc.returncode
        assert status is not None  # waited for above
        level = logging.INFO if status == 0 else logging.WARNING
        how = f"killed by signal {-status}" if status < 0 else f"exited with status {status}"
        log.log(level, "%s pid %d %s", self.label, proc.pid, how)
        if cut:
            await trio.lowlevel.checkpoint()  # the cancellation goes on up


async def _log_stderr(stream: trio.abc.ReceiveStream, label: str, pid: int) -> None:
    buf = b""
    async with stream:
        while True:
            try:
                data = await stream.receive_some(4096)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                break
            buf += data
            *lines, buf = buf.split(b"\n")
            for line in lines:
                log.warning("%s pid %d: %s", label, pid, line.decode(errors="replace").rstrip())
            if len(buf) > 4096:
                log.warning("%s pid %d: %s", label, pid, buf.decode(errors="replace"))
                buf = b""
    if buf.strip():
        log.warning("%s pid %d: %s", label, pid, buf.decode(errors="replace").rstrip())


class PtyMaster:
    """The parent's end of a pseudo-terminal (``pty = yes``), with the few socket methods the
    streams call. A terminal has no half-close: ``shutdown`` does nothing, and the program
    sees its connection end when the terminal closes. Reading after the program (every holder
    of the other end) is gone fails with EIO: that is its EOF."""

    family = socket.AF_UNIX  # for the code that asks: no TCP options apply

    def __init__(self, fd: int):
        self.fd = fd

    def fileno(self) -> int:
        return self.fd

    def setblocking(self, flag: bool) -> None:
        os.set_blocking(self.fd, flag)

    def recv(self, size: int) -> bytes:
        try:
            return os.read(self.fd, size)
        except OSError as exc:
            if exc.errno == errno.EIO:
                return b""
            raise

    def send(self, data: bytes | bytearray | memoryview) -> int:
        return os.write(self.fd, data)

    def shutdown(self, how: int) -> None:
        pass

    def setsockopt(self, *args: object) -> None:
        pass  # SO_LINGER for a reset: a terminal just closes

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


async def spawn(program: str, argv: list[str], env: dict[str, str], nursery: trio.Nursery,
                label: str, umask: int | None = None, nice: int | None = None,
                user: tuple[int, int] | None = None, pty: bool = False) -> ExecStream:
    """Start ``program`` with ``argv`` (argv[0] included) on a fresh socketpair, or with
    ``pty`` on a pseudo-terminal (stunnel's ``pty = yes``, for programs such as pppd that want
    a terminal on stdin and stdout)."""
    if pty:
        master, child_fd = os.openpty()
        parent: Any = PtyMaster(master)
        close_child: Callable[[], None] = functools.partial(os.close, child_fd)
    else:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        child_fd, close_child = child.fileno(), child.close
    options: dict[str, Any] = {}
    if umask is not None:
        options["umask"] = umask
    if user is not None:
        options.update(user=user[0], group=user[1], extra_groups=[])
    if nice:
        options["preexec_fn"] = lambda: os.nice(nice)
    try:
        process = await trio.lowlevel.open_process(
            argv, executable=program, stdin=child_fd, stdout=child_fd,
            stderr=subprocess.PIPE, env=env, close_fds=True, **options)
    except OSError:
        parent.close()
        close_child()
        raise
    close_child()
    assert process.stderr is not None
    nursery.start_soon(_log_stderr, process.stderr, label, process.pid)
    return ExecStream(parent, process, label)
