"""SIGTERM's drain bounds everything: programs run by exec that ignore EOF (and SIGTERM) are
stopped when the drain runs out, not TIMEOUTclose later."""

from __future__ import annotations

import os
import signal
import socket
import subprocess

from conftest import free_port, wait_for
from test_e2e_inetd import _children

STUBBORN = "trap '' TERM HUP; echo '* OK stubborn'; while :; do sleep 1; done"


def test_drain_stops_an_exec_child_that_ignores_eof_and_sigterm(certs, tlswrap, tmp_path):
    script = tmp_path / "stubborn.sh"
    script.write_text(STUBBORN + "\n")
    port = free_port()
    proc = tlswrap(f"foreground = yes\ndebug = info\n[stubborn]\naccept = 127.0.0.1:{port}\n"
                   f"exec = /bin/sh\nexecArgs = sh {script}\n"
                   f"cert = {certs.cert_file}\nkey = {certs.key_file}\n"
                   "TIMEOUTclose = 300\n", [port])
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    tls = certs.client_context().wrap_socket(raw, server_hostname="localhost")
    children: list[int] = []
    try:
        assert tls.recv(100) == b"* OK stubborn\n"
        wait_for(lambda: len(_children(proc.proc.pid)) == 1, 10, "the program to run")
        children = _children(proc.proc.pid)
        proc.proc.send_signal(signal.SIGTERM)
        try:
            proc.proc.wait(60)  # the drain is 10 s; TIMEOUTclose (300 s) must not apply
        except subprocess.TimeoutExpired:
            raise AssertionError("the drain did not bound the exec'd program") from None
        assert proc.proc.returncode == 0
        log = proc.log()
        assert "killed by signal 9" in log, log
        assert ", shut down" in log, log
    finally:
        tls.close()
        for pid in children:  # whatever happened, the test leaves no program behind
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
