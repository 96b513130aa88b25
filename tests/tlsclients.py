"""Real TLS clients for the TLS-feature tests: openssl s_client/s_server as subprocesses,
each bounded in time and always stopped."""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from conftest import port_open, wait_for

needs_openssl = pytest.mark.skipif(not shutil.which("openssl"), reason="openssl not installed")


GREETING = b"* OK echo ready"


def s_client(port: int, *args: str, until: bytes = GREETING, timeout: float = 20,
             host: str = "127.0.0.1") -> subprocess.CompletedProcess[bytes]:
    """``openssl s_client -connect HOST:PORT ARGS``, its input held open until ``until``
    appears in its output (the backend's greeting) or it ends; then it is told EOF. The
    handshake's summary is in stdout, alerts in stderr."""
    proc = subprocess.Popen(["openssl", "s_client", "-connect", f"{host}:{port}", *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    assert proc.stdout is not None and proc.stdin is not None
    out = b""
    deadline = time.monotonic() + timeout
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while until not in out and time.monotonic() < deadline:
                if not sel.select(max(0.0, deadline - time.monotonic())):
                    break
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                out += chunk
        proc.stdin.close()
        proc.stdin = None  # communicate() would flush it
        rest, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: the whole group
            proc.wait(5)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out + rest, err)


@contextmanager
def s_server(port: int, cert: str, key: str, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """``openssl s_server`` on 127.0.0.1:PORT (stopped at the end, whatever happens)."""
    proc = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert",
                             cert, "-key", key, "-naccept", "100", *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: port_open(port) or proc.poll() is not None, 10, "openssl s_server")
        if proc.poll() is not None:
            raise AssertionError(f"s_server exited: {proc.stdout.read() if proc.stdout else ''}")
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: the whole group
        proc.wait(5)
        if proc.stdout:
            proc.stdout.close()
        if proc.stdin:
            proc.stdin.close()


def wait_log(proxy, text: str, timeout: float = 10) -> str:  # type: ignore[no-untyped-def]
    """The proxy's log once it holds ``text`` (the closing line comes after the client ends)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = proxy.log()
        if text in log:
            return log
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in the log:\n{proxy.log()}")
