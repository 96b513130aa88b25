"""``workers = 2``: two processes share the services; a dead worker is replaced."""

from __future__ import annotations

import os
import signal
import socket

from conftest import free_port, greet_echo, service_config, wait_for
from test_e2e_inetd import _children


def echo_once(certs, port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with certs.client_context().wrap_socket(raw, server_hostname="localhost") as s:
            assert s.recv(100) == b"* OK echo ready\r\n"
            s.sendall(b"hi\r\n")
            assert s.recv(100) == b"hi\r\n"


def test_two_workers_serve_and_a_dead_one_is_restarted(certs, thread_server, tlswrap):
    srv = thread_server(greet_echo)
    port = free_port()
    proc = tlswrap(service_config(certs, port, f"127.0.0.1:{srv.port}",
                                  global_extra="workers = 2"), [port])
    wait_for(lambda: len(_children(proc.proc.pid)) == 2, 10, "two workers")
    for _ in range(20):
        echo_once(certs, port)
    first = _children(proc.proc.pid)
    os.kill(first[0], signal.SIGKILL)
    wait_for(lambda: len(_children(proc.proc.pid)) == 2
             and first[0] not in _children(proc.proc.pid), 10, "the worker to be replaced")
    for _ in range(20):
        echo_once(certs, port)
    assert "ended unexpectedly (killed by signal 9); restarting it" in proc.log()
    assert proc.stop() == 0
    assert not _children(proc.proc.pid)
