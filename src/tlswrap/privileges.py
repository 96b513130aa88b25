"""Dropping root: ``setuid``/``setgid`` after the listeners are bound and the keys are read."""

from __future__ import annotations

import os

from .config import Config
from .errors import TlswrapError


def drop_privileges(config: Config) -> None:
    """setgid/setuid as configured; refuse to go on as root when a user was asked for."""
    g = config.globals
    if g.setgid is None and g.setuid is None:
        return
    import grp
    import pwd

    gid = uid = None
    try:
        if g.setgid is not None:
            gid = int(g.setgid) if g.setgid.isdigit() else grp.getgrnam(g.setgid).gr_gid
        if g.setuid is not None:
            pw = pwd.getpwuid(int(g.setuid)) if g.setuid.isdigit() else pwd.getpwnam(g.setuid)
            uid = pw.pw_uid
            if gid is None:
                gid = pw.pw_gid
    except KeyError as exc:
        raise config.error(f"no such user or group: {exc.args[0]}",
                           "setuid" if g.setuid else "setgid") from None
    try:
        if gid is not None:
            os.setgroups([gid])
            os.setgid(gid)
        if uid is not None:
            os.setuid(uid)
    except PermissionError:
        raise config.error("cannot change user/group (not started as root?)",
                           "setuid" if g.setuid else "setgid") from None
    if uid is not None and uid != 0 and (os.getuid() == 0 or os.geteuid() == 0):
        raise TlswrapError("still running as root after setuid; refusing to serve")
