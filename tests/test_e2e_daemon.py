"""The daemon as an administrator starts it: the pid file, detaching, dropping privileges,
a port already taken, a unix-socket listener, the drain bound."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import free_port, greet_echo, port_open, service_config, two_workers, wait_for

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (setuid)")


def start_detached(config: Path, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """``tlswrap CONFIG`` with ``foreground = no``: returns once the starting process exits."""
    return subprocess.run([sys.executable, "-m", "tlswrap", str(config)], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=timeout)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stop_group(pid: int) -> None:
    """SIGTERM the process group of ``pid`` (a daemon and its workers), then SIGKILL."""
    try:
        group = os.getpgid(pid)
    except ProcessLookupError:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(group, sig)
        except ProcessLookupError:
            return
        try:
            wait_for(lambda: not alive(pid), 10, f"pid {pid} to end")
            return
        except AssertionError:
            continue


def daemons_of(config: Path) -> list[int]:
    """Every process started on ``config`` (found by its command line)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if str(config).encode() in argv and alive(int(entry)):
                found.append(int(entry))
    return found


def stop_daemons(config: Path) -> None:
    for pid in daemons_of(config):
        stop_group(pid)


def detached_config(certs, port: int, backend: int, extra: str) -> str:
    return (service_config(certs, port, f"127.0.0.1:{backend}", global_extra=extra)
            .replace("foreground = yes", "foreground = no\nsyslog = no"))


def test_pid_file_never_follows_a_symlink(certs, thread_server, tmp_path):
    srv = thread_server(greet_echo)
    port = free_port()
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "tlswrap.pid").symlink_to(victim)
    cfg = tmp_path / "t.conf"
    cfg.write_text(detached_config(certs, port, srv.port, f"pid = {tmp_path / 'tlswrap.pid'}"))
    done = start_detached(cfg)
    try:
        assert done.returncode == 1, done
        assert f"t.conf:4: pid = {tmp_path / 'tlswrap.pid'}: cannot write the pid file: " \
               "it is a symbolic link" in done.stderr
        assert victim.read_text() == "precious\n"
        assert not port_open(port)
    finally:
        stop_daemons(cfg)


def test_pid_file_refuses_a_file_that_holds_no_pid(certs, thread_server, tmp_path):
    srv = thread_server(greet_echo)
    port = free_port()
    pid = tmp_path / "config.txt"
    pid.write_text("not a pid file\n")
    cfg = tmp_path / "t.conf"
    cfg.write_text(detached_config(certs, port, srv.port, f"pid = {pid}"))
    done = start_detached(cfg)
    try:
        assert done.returncode == 1, done
        assert "cannot write the pid file: it exists and does not hold a process id" \
               in done.stderr
        assert pid.read_text() == "not a pid file\n"
    finally:
        stop_daemons(cfg)


@needs_root
def test_pid_file_in_a_root_directory_with_setuid_nobody(certs, thread_server, tmp_path):
    """Written before the drop, by the daemon itself (the pid is the detached process's), and
    the starting process exits 0 only once the daemon serves."""
    srv = thread_server(greet_echo)
    port = free_port()
    rundir = tmp_path / "run"
    rundir.mkdir(mode=0o755)
    os.chmod(rundir, 0o755)
    pid_path = rundir / "tlswrap.pid"
    cfg = tmp_path / "t.conf"
    cfg.write_text(detached_config(certs, port, srv.port,
                                   f"pid = {pid_path}\nsetuid = nobody"))
    done = start_detached(cfg)
    daemon_pid = int(pid_path.read_text()) if pid_path.exists() else None
    try:
        assert done.returncode == 0, done
        assert daemon_pid is not None
        assert pid_path.read_text() == f"{daemon_pid}\n"
        assert oct(pid_path.stat().st_mode & 0o777) == "0o644"
        assert alive(daemon_pid)
        with open(f"/proc/{daemon_pid}/status") as f:
            uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
        assert set(uids) == {str(__import__("pwd").getpwnam("nobody").pw_uid)}
        assert port_open(port)
    finally:
        stop_daemons(cfg)


def test_a_start_failure_after_detaching_is_reported(certs, thread_server, tmp_path):
    """The starting process waits for the detached daemon's word: an error after the fork is
    printed and the exit status is 1, never a silent 0."""
    srv = thread_server(greet_echo)
    port = free_port()
    cfg = tmp_path / "t.conf"
    cfg.write_text(detached_config(certs, port, srv.port,
                                   f"pid = {tmp_path / 'no' / 'such' / 'dir.pid'}"))
    done = start_detached(cfg)
    try:
        assert done.returncode == 1, done
        assert "cannot write the pid file: No such file or directory" in done.stderr
        assert not port_open(port)
    finally:
        stop_daemons(cfg)


@pytest.mark.parametrize("workers", [1, 2])
def test_unix_socket_listener(certs, thread_server, tlswrap, tmp_path, workers):
    """``accept = /path``: a stale socket file is replaced, TLS is served over it (libwrap does
    not apply: the file's permissions do), log lines name the path, and it is removed at exit."""
    import socket

    srv = thread_server(greet_echo)
    path = tmp_path / "imaps.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # a socket file with no one listening, as a killed daemon leaves
    (tmp_path / "deny").write_text("ALL: ALL\n")
    (tmp_path / "allow").write_text("")
    text = service_config(certs, 1, f"127.0.0.1:{srv.port}",
                          global_extra=f"hostsAllow = {tmp_path / 'allow'}\n"
                                       f"hostsDeny = {tmp_path / 'deny'}\n"
                                       f"workers = {workers}")
    proc = tlswrap(text.replace("accept = 127.0.0.1:1", f"accept = {path}"))
    wait_for(lambda: "started with" in proc.log() or proc.proc.poll() is not None, 15,
             "the start")
    assert proc.proc.poll() is None, proc.log()
    assert oct(path.stat().st_mode & 0o777) == "0o666"
    for _ in range(4):
        with socket.socket(socket.AF_UNIX) as raw:
            raw.settimeout(10)
            raw.connect(str(path))
            with certs.client_context().wrap_socket(raw, server_hostname="localhost") as s:
                assert s.recv(100) == b"* OK echo ready\r\n"
                s.sendall(b"hi\r\n")
                assert s.recv(100) == b"hi\r\n"
    wait_for(lambda: f"[imaps] {path} closed:" in proc.log(), 10, "the closing line")
    assert f"[imaps] listening on {path}" in proc.log()
    assert proc.stop() == 0
    assert not path.exists()


def test_unix_socket_listener_in_use_or_not_a_socket(certs, thread_server, tlswrap, tmp_path):
    import socket

    srv = thread_server(greet_echo)
    path = tmp_path / "imaps.sock"
    busy = socket.socket(socket.AF_UNIX)
    busy.bind(str(path))
    busy.listen()
    try:
        text = service_config(certs, 1, f"127.0.0.1:{srv.port}").replace(
            "accept = 127.0.0.1:1", f"accept = {path}")
        proc = tlswrap(text)
        assert proc.proc.wait(15) == 1
        assert f"tlswrap0.conf:5: [imaps] accept = {path}: cannot listen: Address already " \
               "in use" in proc.log()
    finally:
        busy.close()
    path.unlink()
    path.write_text("precious\n")
    proc = tlswrap(text)
    assert proc.proc.wait(15) == 1
    assert f"accept = {path}: cannot listen: it exists and is not a socket" in proc.log()
    assert path.read_text() == "precious\n"


def test_timeout_drain_bounds_the_stop(certs, thread_server, tlswrap):
    """A client that keeps its connection open holds the stop for TIMEOUTdrain, no longer; the
    connection is logged as shut down."""
    import socket
    import time

    srv = thread_server(greet_echo)
    port = free_port()
    proc = tlswrap(service_config(certs, port, f"127.0.0.1:{srv.port}",
                                  global_extra="TIMEOUTdrain = 1"), [port])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            certs.client_context().wrap_socket(raw, server_hostname="localhost") as s:
        assert s.recv(100) == b"* OK echo ready\r\n"
        began = time.monotonic()
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(8) == 0
        assert time.monotonic() - began < 4
    assert "shut down" in proc.log()


def test_supervisor_kills_a_worker_that_outlives_the_drain(certs, thread_server, tlswrap):
    """workers = 2 and one worker stopped (SIGSTOP: it cannot drain): the supervisor's stop
    still ends, after TIMEOUTdrain plus a grace, by killing it."""
    import time

    from test_e2e_inetd import _children

    proc, _ = two_workers(certs, thread_server, tlswrap, "TIMEOUTdrain = 1")
    workers = _children(proc.proc.pid)
    try:
        os.kill(workers[0], signal.SIGSTOP)
        began = time.monotonic()
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(15) == 0
        assert time.monotonic() - began < 10
        assert "still running" in proc.log() and "killing it" in proc.log()
        assert all(not alive(pid) for pid in workers)
    finally:
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
