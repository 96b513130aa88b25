"""Waiting on descriptors until a deadline, for the inetd fast path.

poll() takes its timeout as a C int of milliseconds (at most 24.8 days) while a TIMEOUT
option may say more, so every wait here is cut into slices of at most ``SLICE`` seconds and
resumed until the deadline.
"""

from __future__ import annotations

import select
import time

SLICE = 3600.0  # seconds: one poll() at most; the deadline decides when the wait ends
POLLIN, POLLOUT = select.POLLIN, select.POLLOUT


def poll_until(poller: select.poll, deadline: float) -> list[tuple[int, int]]:
    """The ready descriptors, or [] once ``deadline`` (time.monotonic) has passed."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return []
        events = poller.poll(min(left, SLICE) * 1000)
        if events:
            return events


def wait_fd(fd: int, events: int, deadline: float) -> bool:
    """True when ``fd`` is ready for ``events`` before ``deadline``, else False."""
    poller = select.poll()
    poller.register(fd, events)
    return bool(poll_until(poller, deadline))
