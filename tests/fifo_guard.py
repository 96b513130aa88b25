"""Run a call that might block opening or reading a FIFO: a failed test, never a hung run."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

T = TypeVar("T")


def call_unless_blocked(fn: Callable[[], T], fifo: str | Path, seconds: float = 10) -> T:
    """``fn()``'s result (exceptions re-raised); pytest.fail if it is still running after
    ``seconds``, once the FIFO's write side has been opened and closed to let it go."""
    outcome: list[tuple[bool, object]] = []

    def run() -> None:
        try:
            outcome.append((True, fn()))
        except BaseException as exc:
            outcome.append((False, exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # EOF for the blocked reader
        thread.join(5)
        pytest.fail(f"blocked on the FIFO {fifo}")
    ok, value = outcome[0]
    if not ok:
        raise value  # type: ignore[misc]
    return value  # type: ignore[return-value]
