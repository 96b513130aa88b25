"""Where log lines go: stderr in the foreground, ``output = FILE``, syslog when asked.

stunnel's levels 0-7 (emerg..debug) map onto Python's; ``notice`` (5, the default) gets a level
of its own between INFO and WARNING. Connection lines are INFO, so the default stays quiet.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys

NOTICE = 25
logging.addLevelName(NOTICE, "NOTICE")

# stunnel level -> Python level
_LEVELS = {0: logging.CRITICAL, 1: logging.CRITICAL, 2: logging.CRITICAL, 3: logging.ERROR,
           4: logging.WARNING, 5: NOTICE, 6: logging.INFO, 7: logging.DEBUG}


def python_level(stunnel_level: int) -> int:
    return _LEVELS[stunnel_level]


def setup_logging(level: int, *, stderr: bool, output: str | None = None,
                  syslog: bool = False, facility: str = "daemon", ident: str = "tlswrap") -> None:
    """Configure the ``tlswrap`` logger tree; ``level`` is stunnel's 0-7."""
    root = logging.getLogger("tlswrap")
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    root.setLevel(python_level(level))
    root.propagate = False
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    if stderr:
        h: logging.Handler = logging.StreamHandler(sys.stderr)
        h.setFormatter(fmt)
        root.addHandler(h)
    if output:
        fd = os.open(output, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        h = logging.StreamHandler(os.fdopen(fd, "a", buffering=1))
        h.setFormatter(fmt)
        root.addHandler(h)
    if syslog:
        try:
            h = logging.handlers.SysLogHandler(
                address="/dev/log",
                facility=logging.handlers.SysLogHandler.facility_names[facility])
        except OSError:
            h = None  # no syslog daemon here; the other handlers still work
        if h is not None:
            h.priority_map = {**h.priority_map, "NOTICE": "notice"}  # type: ignore[attr-defined]
            h.setFormatter(logging.Formatter(f"{ident}[%(process)d]: %(message)s"))
            root.addHandler(h)
    if not root.handlers:
        root.addHandler(logging.NullHandler())
