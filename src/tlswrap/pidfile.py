"""The ``pid`` file: written by root, before the privilege drop, without trusting the path.

The directory may be writable by others (``/tmp``, a misconfigured ``/run`` subdirectory), so
the file is opened with O_NOFOLLOW (a planted symlink is refused, never followed), and an
existing file is emptied only when it is a regular file of ours that holds a process id (so
``pid = /etc/shadow`` destroys nothing). At exit it is removed only if it still holds our pid.
"""

from __future__ import annotations

import errno
import os
import stat

PID_MAX_BYTES = 32  # "4194304\n" is 8; anything much longer is not a pid file


class PidFileError(Exception):
    """Why the pid file could not be written; the message completes "cannot write the pid
    file: ..."."""


def write(path: str, pid: int) -> None:
    """Write ``pid`` to ``path`` (mode 0644 when created); PidFileError if it is unsafe."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PidFileError("it is a symbolic link") from None
        if exc.errno == errno.ENXIO:  # a FIFO with no reader (O_NONBLOCK)
            raise PidFileError("it is not a regular file") from None
        raise PidFileError(exc.strerror or str(exc)) from None
    try:
        problem = _foreign(fd)
        if problem:
            raise PidFileError(problem)
        os.ftruncate(fd, 0)
        os.write(fd, f"{pid}\n".encode("ascii"))
    except OSError as exc:
        raise PidFileError(exc.strerror or str(exc)) from None
    finally:
        os.close(fd)


def _foreign(fd: int) -> str | None:
    """Why the open file is not ours to overwrite, or None."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        return "it is not a regular file"
    if st.st_uid != os.geteuid():
        return f"it belongs to another user (uid {st.st_uid})"
    if st.st_size and not _holds_pid(os.pread(fd, PID_MAX_BYTES + 1, 0)):
        return "it exists and does not hold a process id"
    return None


def _holds_pid(data: bytes) -> bool:
    return len(data) <= PID_MAX_BYTES and data.strip().isdigit()


def problem(path: str) -> str | None:
    """What ``write`` would refuse about an existing ``path`` (for ``tlswrap check``), or None;
    changes nothing."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return "it is a symbolic link"
    if not stat.S_ISREG(st.st_mode):
        return "it is not a regular file"
    if st.st_size:
        try:
            with open(path, "rb") as f:
                if not _holds_pid(f.read(PID_MAX_BYTES + 1)):
                    return "it exists and does not hold a process id"
        except OSError:
            return None  # unreadable: writable_path_problem says so
    return None


def remove(path: str, pid: int) -> None:
    """Remove ``path`` if it still holds ``pid`` (a later start may have replaced it)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return
    try:
        ours = os.read(fd, PID_MAX_BYTES + 1).strip() == str(pid).encode("ascii")
    except OSError:
        ours = False
    finally:
        os.close(fd)
    if ours:
        try:
            os.unlink(path)
        except OSError:
            pass  # e.g. a root-owned directory after setuid: stale, and harmless


def read(path: str) -> int:
    """The process id ``path`` holds; PidFileError (completing "cannot read the pid file:
    ...") if it cannot be read, is not a regular file or holds no process id."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise PidFileError(exc.strerror or str(exc)) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PidFileError("it is not a regular file")
        data = os.read(fd, PID_MAX_BYTES + 1)
    finally:
        os.close(fd)
    if not _holds_pid(data) or int(data) < 1:
        raise PidFileError("it does not hold a process id")
    return int(data)
