"""``workers = 2``: two processes share the services; a dead worker is replaced; under
systemd the main process talks to systemd and shared sockets stay open in every worker."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time

from conftest import free_port, greet_echo, service_config, two_workers, wait_for
from test_e2e_daemon import alive
from test_e2e_inetd import SOCKET_ACTIVATE, TLSWRAP, Activated, _children, needs_sa


def echo_once(certs, port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            certs.client_context().wrap_socket(raw, server_hostname="localhost") as s:
            assert s.recv(100) == b"* OK echo ready\r\n"
            s.sendall(b"hi\r\n")
            assert s.recv(100) == b"hi\r\n"


def test_two_workers_serve_and_a_dead_one_is_restarted(certs, thread_server, tlswrap):
    proc, port = two_workers(certs, thread_server, tlswrap)
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


def notify_listener(path: str) -> socket.socket:
    """A NOTIFY_SOCKET stand-in that learns each message's sender pid (SCM_CREDENTIALS)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    s.bind(path)
    s.settimeout(15)
    return s


def next_notification(s: socket.socket) -> tuple[str, int]:
    msg, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(12))
    pid = next(struct.unpack("iII", data)[0] for level, kind, data in anc
               if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS)
    return msg.decode(), pid


def test_type_notify_with_workers_ready_comes_from_the_main_pid(certs, thread_server,
                                                                 tmp_path):
    """systemd (NotifyAccess=main) listens to the pid it started: that process must not fork
    away (no daemonizing under NOTIFY_SOCKET, even without foreground = yes), and READY=1 and
    STOPPING=1 must come from it, not from a worker."""
    srv = thread_server(greet_echo)
    port = free_port()
    cfg = tmp_path / "notify.conf"
    cfg.write_text(service_config(certs, port, f"127.0.0.1:{srv.port}",
                                  global_extra="workers = 2\nsyslog = no")
                   .replace("foreground = yes", "foreground = no"))
    listener = notify_listener(str(tmp_path / "notify.sock"))
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock")}
    proc = subprocess.Popen([sys.executable, "-m", "tlswrap", str(cfg)], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        message, sender = next_notification(listener)
        assert (message, sender) == ("READY=1", proc.pid)
        assert proc.poll() is None  # still the main process: it did not fork away
        wait_for(lambda: len(_children(proc.pid)) == 2, 10, "two workers")
        for _ in range(10):
            echo_once(certs, port)
        proc.send_signal(signal.SIGHUP)
        assert next_notification(listener) == ("RELOADING=1", proc.pid)
        assert next_notification(listener) == ("READY=1", proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert next_notification(listener) == ("STOPPING=1", proc.pid)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        listener.close()


@needs_sa
def test_socket_activation_accept_no_with_two_workers(certs, thread_server, tmp_path):
    """systemd's listening socket is shared by every worker: each keeps it open and serves."""
    srv = thread_server(greet_echo)
    port = free_port()
    cfg = tmp_path / "activated.conf"
    cfg.write_text(service_config(certs, 1, f"127.0.0.1:{srv.port}",
                                  global_extra="workers = 2"))
    a = Activated(tmp_path, [SOCKET_ACTIVATE, "-l", f"127.0.0.1:{port}", "--fdname=imaps",
                             TLSWRAP, str(cfg)], port)
    try:
        wait_for(lambda: len(_children(a.proc.pid)) == 2, 10, "two workers")
        workers = _children(a.proc.pid)
        for pid in workers:  # each worker holds the listening socket
            assert any(os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
                       for fd in os.listdir(f"/proc/{pid}/fd") if fd == "3")
        for _ in range(30):
            echo_once(certs, port)
        time.sleep(0.5)
        log = a.log_path.read_text()
        assert "Bad file descriptor" not in log and "accept:" not in log, log
    finally:
        a.stop()


def _kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_workers_end_when_the_supervisor_is_killed(certs, thread_server, tlswrap):
    proc, _ = two_workers(certs, thread_server, tlswrap)
    workers = _children(proc.proc.pid)
    try:
        proc.proc.kill()
        proc.proc.wait(5)
        wait_for(lambda: not any(map(alive, workers)), 10, "the orphaned workers to end")
    finally:
        _kill_all(workers)


def test_a_second_start_on_a_port_in_use_by_workers_fails(certs, thread_server, tlswrap):
    """SO_REUSEPORT is for a start's own workers: another tlswrap (or anything else) listening
    on the port makes a start fail as a single process would."""
    srv = thread_server(greet_echo)
    port = free_port()
    text = service_config(certs, port, f"127.0.0.1:{srv.port}", global_extra="workers = 2")
    first = tlswrap(text, [port])
    wait_for(lambda: len(_children(first.proc.pid)) == 2, 10, "two workers")
    second = tlswrap(text)
    try:
        assert second.proc.wait(15) == 1
    finally:
        if second.proc.poll() is None:
            _kill_all(_children(second.proc.pid))
    assert (f"tlswrap1.conf:5: [imaps] accept = 127.0.0.1:{port}: cannot listen: Address "
            "already in use") in second.log()
    echo_once(certs, port)
