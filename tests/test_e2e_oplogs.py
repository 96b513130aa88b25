"""Logs for operators: SIGUSR1 reopens ``output`` after a rename (logrotate's postrotate), in
one process and with workers; syslog lines reach the configured socket with stunnel's default
facility (daemon) or the one ``debug`` names."""

from __future__ import annotations

import signal
import socket

import pytest

from conftest import free_port, greet_echo, wait_for


def greeting(certs, port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            certs.client_context().wrap_socket(raw, server_hostname="localhost") as tls:
        return tls.recv(100)


@pytest.mark.parametrize("workers", [1, 2])
def test_sigusr1_reopens_the_output_file_after_a_rename(certs, thread_server, tlswrap,
                                                        tmp_path, workers):
    from test_e2e_inetd import _children

    srv = thread_server(greet_echo)
    port = free_port()
    out = tmp_path / "tlswrap.log"
    proc = tlswrap(f"foreground = yes\ndebug = notice\noutput = {out}\nworkers = {workers}\n"
                   f"[imaps]\naccept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{srv.port}\n"
                   f"cert = {certs.cert_file}\nkey = {certs.key_file}\n", [port])
    if workers > 1:
        wait_for(lambda: len(_children(proc.proc.pid)) == workers, 10, "the workers")
    assert greeting(certs, port) == b"* OK echo ready\r\n"
    wait_for(lambda: " closed: TLSv" in out.read_text(), 10, "a line in the first file")
    rotated = tmp_path / "tlswrap.log.1"
    out.rename(rotated)
    proc.proc.send_signal(signal.SIGUSR1)
    wait_for(lambda: out.exists() and out.read_text().count("SIGUSR1: log file reopened")
             == workers + (1 if workers > 1 else 0), 10, "every process to reopen")
    before = rotated.read_text()
    for _ in range(4):
        assert greeting(certs, port) == b"* OK echo ready\r\n"
    wait_for(lambda: out.read_text().count(" closed: TLSv") == 4, 10, "the new lines")
    assert rotated.read_text() == before  # nothing more went to the rotated file
    assert proc.proc.poll() is None
    if workers > 1:
        assert len(_children(proc.proc.pid)) == workers  # SIGUSR1 killed none


@pytest.mark.parametrize("transport", ["unix", "udp", "udp6"])
@pytest.mark.parametrize(("debug", "priority"), [("notice", 3 * 8 + 5), ("mail.notice", 2 * 8 + 5)])
def test_syslog_to_a_configured_socket_with_the_facility(certs, thread_server, tlswrap, tmp_path,
                                                         debug, priority, transport):
    """``syslogAddress`` names a unix socket, or ``HOST:PORT`` of a syslog server over UDP
    (here a socket the test owns): each line is one datagram, ``<PRI>tag[pid]: text``."""
    srv = thread_server(greet_echo)
    port = free_port()
    family = {"unix": socket.AF_UNIX, "udp": socket.AF_INET, "udp6": socket.AF_INET6}
    with socket.socket(family[transport], socket.SOCK_DGRAM) as syslogd:
        if transport == "unix":
            syslogd.bind(str(tmp_path / "log.sock"))
            address = str(tmp_path / "log.sock")
        else:
            syslogd.bind(("127.0.0.1" if transport == "udp" else "::1", 0))
            host, udp_port = syslogd.getsockname()[:2]
            address = f"{host}:{udp_port}" if transport == "udp" else f"[{host}]:{udp_port}"
        syslogd.settimeout(10)
        proc = tlswrap(f"foreground = yes\nsyslog = yes\ndebug = {debug}\n"
                       f"syslogAddress = {address}\n[imaps]\naccept = 127.0.0.1:{port}\n"
                       f"connect = 127.0.0.1:{srv.port}\ncert = {certs.cert_file}\n"
                       f"key = {certs.key_file}\n", [port])
        lines = []
        while not any(b"started with 1 service(s)" in line for line in lines):
            lines.append(syslogd.recv(65536))
        started = next(line for line in lines if b"started with 1 service(s)" in line)
        assert started.startswith(f"<{priority}>tlswrap[{proc.proc.pid}]: tlswrap ".encode())


def test_a_syslog_server_whose_name_does_not_resolve_is_said_once(certs, thread_server,
                                                                  tlswrap):
    srv = thread_server(greet_echo)
    port = free_port()
    proc = tlswrap(f"foreground = yes\nsyslog = yes\nsyslogAddress = syslog.invalid:514\n"
                   f"[imaps]\naccept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{srv.port}\n"
                   f"cert = {certs.cert_file}\nkey = {certs.key_file}\n", [port])
    wait_for(lambda: "started with 1 service(s)" in proc.log(), 10, "the start")
    log = proc.log()
    assert log.count("syslog at syslog.invalid:514 is unreachable") == 1
    assert "Traceback" not in log


def test_log_format_json_writes_one_object_per_line(certs, thread_server, tlswrap, tmp_path):
    import json

    srv = thread_server(greet_echo)
    port = free_port()
    out = tmp_path / "tlswrap.log"
    proc = tlswrap(f"foreground = yes\nlogFormat = json\ndebug = notice\noutput = {out}\n"
                   f"[imaps]\naccept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{srv.port}\n"
                   f"cert = {certs.cert_file}\nkey = {certs.key_file}\n", [port])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"\x16\x03\x01\x00\x05\n{\"forged\": 1}\n")  # a failed handshake
        try:
            while s.recv(100):
                pass
        except ConnectionResetError:
            pass
    wait_for(lambda: out.read_text().count('"message": "[imaps] 127.0.0.1:') >= 4, 10,
             "the connection lines")
    docs = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(set(doc) == {"time", "level", "logger", "pid", "message"} for doc in docs)
    assert {doc["pid"] for doc in docs} == {proc.proc.pid}
    assert any(doc["level"] == "NOTICE" and doc["message"].startswith("tlswrap ")
               and "started with 1 service(s)" in doc["message"] for doc in docs)
    assert all(doc["time"].endswith("Z") for doc in docs)
