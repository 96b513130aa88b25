"""systemd socket activation (LISTEN_FDS) and readiness notification (NOTIFY_SOCKET).

sd_listen_fds(3): when LISTEN_PID is this process, descriptors 3 .. 3+LISTEN_FDS-1 were passed,
named by LISTEN_FDNAMES (colon-separated) when the unit sets FileDescriptorName=. With
``Accept=no`` they are listening sockets; with ``Accept=yes`` there is one, already connected.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

SD_LISTEN_FDS_START = 3


def listen_fds(env: Mapping[str, str], pid: int) -> list[tuple[int, str]]:
    """The passed descriptors with their names (pure: reads only ``env``); [] when none."""
    if env.get("LISTEN_PID", "") != str(pid):
        return []
    try:
        count = int(env.get("LISTEN_FDS", "0"))
    except ValueError:
        return []
    names = env.get("LISTEN_FDNAMES", "").split(":") if env.get("LISTEN_FDNAMES") else []
    return [(SD_LISTEN_FDS_START + i, names[i] if i < len(names) else "")
            for i in range(max(count, 0))]


def forget_activation_env() -> None:
    """Unset the variables so children do not think the descriptors are theirs."""
    for var in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(var, None)


def is_listening(fd: int) -> bool:
    s = socket.socket(fileno=os.dup(fd))
    try:
        return bool(s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
    except OSError:
        return False
    finally:
        s.close()


def notify_socket() -> str | None:
    """NOTIFY_SOCKET: set when systemd runs this process as a ``Type=notify`` service."""
    return os.environ.get("NOTIFY_SOCKET") or None


def notify(message: str) -> None:
    """sd_notify(3): send READY=1, STOPPING=1, STATUS=... when NOTIFY_SOCKET is set.

    With ``NotifyAccess=main`` (the default) systemd listens only to the main pid, so the
    workers' supervisor, not a worker, sends these."""
    path = notify_socket()
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(path)
            s.sendall(message.encode())
    except OSError:
        pass  # the service manager went away: nothing to tell
