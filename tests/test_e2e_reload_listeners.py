"""SIGHUP rebinds: a service added is served, one removed is refused while its live connection
finishes, a moved ``accept`` listens anew; as root with ``setuid = nobody`` too, where a new
port below 1024 cannot be bound: a clear error, and the rest of the reload applies."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import tempfile
from pathlib import Path

import pytest
import trustme

from conftest import Tlswrap, free_port, greet_echo, port_open, wait_for
from test_e2e_reload import peer_issuer


def section(name: str, port: int, backend: int, cert: Path, key: Path) -> str:
    return (f"[{name}]\naccept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{backend}\n"
            f"cert = {cert}\nkey = {key}\n")


def greeting(certs, port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            certs.client_context().wrap_socket(raw, server_hostname="localhost") as tls:
        return tls.recv(100)


def reload(proc, text: str, count: int) -> None:
    proc.config.write_text(text)
    proc.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: proc.log().count("configuration reloaded") == count, 10, "the reload")


def test_reload_adds_removes_and_moves_services(certs, thread_server, tlswrap):
    srv = thread_server(greet_echo)
    a, b, a2, c = (free_port() for _ in range(4))
    head = "foreground = yes\ndebug = notice\n"
    cert, key = certs.cert_file, certs.key_file
    proc = tlswrap(head + section("imaps", a, srv.port, cert, key)
                   + section("pop3s", b, srv.port, cert, key), [a, b])
    live = certs.client_context().wrap_socket(
        socket.create_connection(("127.0.0.1", b), timeout=10), server_hostname="localhost")
    assert live.recv(100) == b"* OK echo ready\r\n"

    reload(proc, head + section("imaps", a2, srv.port, cert, key)
           + section("smtps", c, srv.port, cert, key), 1)
    assert greeting(certs, c) == b"* OK echo ready\r\n"  # added: served
    assert greeting(certs, a2) == b"* OK echo ready\r\n"  # moved: listens anew
    assert not port_open(b)  # removed: refused
    assert not port_open(a)  # the old address of the moved one: refused
    live.sendall(b"the removed service's connection goes on\r\n")
    assert live.recv(100) == b"the removed service's connection goes on\r\n"
    live.close()
    wait_for(lambda: "[pop3s] 127.0.0.1" in proc.log().split("configuration reloaded")[1]
             and " closed: TLSv" in proc.log().split("configuration reloaded")[1], 10,
             "the removed service's connection to end")
    log = proc.log()
    assert f"[pop3s] no longer listening on 127.0.0.1:{b}" in log
    assert f"[imaps] no longer listening on 127.0.0.1:{a}" in log
    assert f"[smtps] listening on 127.0.0.1:{c}" in log

    # an address in use: an error at the accept line, the rest of the reload applies
    with socket.create_server(("127.0.0.1", 0)) as squatter:
        taken = squatter.getsockname()[1]
        text = (head + section("imaps", taken, srv.port, cert, key)
                + section("smtps", c, srv.port, cert, key)
                + section("submissions", a, srv.port, cert, key))
        reload(proc, text, 2)
        assert greeting(certs, a) == b"* OK echo ready\r\n"
        assert greeting(certs, a2) == b"* OK echo ready\r\n"  # imaps stays where it was
    assert (f"reload: {proc.config}:4: [imaps] accept = 127.0.0.1:{taken}: cannot listen: "
            f"Address already in use; [imaps] stays on 127.0.0.1:{a2} with its previous "
            "settings") in proc.log()
    assert proc.stop() == 0
    for port in (a, a2, c):
        assert not port_open(port)


def free_privileged_port() -> int:
    ports = list(range(600, 1000))
    random.shuffle(ports)
    for port in ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port below 1024")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (ports below 1024, setuid)")
def test_reload_as_nobody_keeps_privileged_listeners_by_address(certs, thread_server):
    srv = thread_server(greet_echo)
    low1, low2 = free_privileged_port(), free_privileged_port()
    high = free_port()
    with tempfile.TemporaryDirectory(dir="/tmp") as scratch:
        here = Path(scratch)
        os.chmod(here, 0o755)
        cert, key = here / "server.pem", here / "server.key"
        shutil.copy(certs.cert_file, cert)
        shutil.copy(certs.key_file, key)
        other = trustme.CA().issue_cert("localhost")
        new_cert, new_key = here / "new.pem", here / "new.key"
        other.cert_chain_pems[0].write_to_path(str(new_cert))
        other.private_key_pem.write_to_path(str(new_key))
        for path in (cert, key, new_cert, new_key):
            os.chmod(path, 0o644)  # readable by nobody, for the reload
        head = "foreground = yes\ndebug = notice\nsetuid = nobody\nsetgid = nogroup\n"
        text = head + section("imaps", low1, srv.port, cert, key) \
            + section("pop3s", low2, srv.port, cert, key)
        proc = Tlswrap(here, text, [low1, low2], name="t.conf")
        os.chmod(proc.config, 0o644)
        try:
            old_issuer = peer_issuer(low1)
            low3 = free_privileged_port()
            text = (head + section("imaps", low1, srv.port, new_cert, new_key)
                    + section("smtps", high, srv.port, cert, key)
                    + section("submissions", low3, srv.port, cert, key))
            proc.config.write_text(text)
            proc.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: "configuration reloaded" in proc.log(), 10, "the reload")
            assert peer_issuer(low1) != old_issuer  # kept port, new certificate
            assert greeting(certs, high) == b"* OK echo ready\r\n"  # added
            assert not port_open(low2)  # removed
            assert not port_open(low3)  # could not be bound as nobody
            assert (f"reload: {proc.config}:16: [submissions] accept = 127.0.0.1:{low3}: "
                    "cannot listen: Permission denied; [submissions] is not served") \
                in proc.log(), proc.log()
        finally:
            assert proc.stop() == 0, proc.log()


def test_workers_follow_a_reload_that_changes_listeners_or_their_number(certs, thread_server,
                                                                        tlswrap):
    """workers = 2 -> 3 with a service added: new workers serve both services, the replaced
    ones drain (the live connection finishes); then a service removed, workers = 2."""
    from test_e2e_inetd import _children

    srv = thread_server(greet_echo)
    a, b = free_port(), free_port()
    head = "foreground = yes\ndebug = notice\nworkers = {}\n"
    cert, key = certs.cert_file, certs.key_file
    proc = tlswrap(head.format(2) + section("imaps", a, srv.port, cert, key), [a])
    wait_for(lambda: len(_children(proc.proc.pid)) == 2, 10, "two workers")
    first = set(_children(proc.proc.pid))
    live = certs.client_context().wrap_socket(
        socket.create_connection(("127.0.0.1", a), timeout=10), server_hostname="localhost")
    assert live.recv(100) == b"* OK echo ready\r\n"

    proc.config.write_text(head.format(3) + section("imaps", a, srv.port, cert, key)
                           + section("pop3s", b, srv.port, cert, key))
    proc.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "3 new workers replace the old ones" in proc.log(), 10, "the reload")
    live.sendall(b"on a replaced worker\r\n")
    assert live.recv(100) == b"on a replaced worker\r\n"
    for _ in range(12):
        assert greeting(certs, a) == b"* OK echo ready\r\n"
        assert greeting(certs, b) == b"* OK echo ready\r\n"
    live.close()
    wait_for(lambda: len(_children(proc.proc.pid)) == 3, 15, "the replaced workers to end")
    assert not first & set(_children(proc.proc.pid))

    proc.config.write_text(head.format(2) + section("pop3s", b, srv.port, cert, key))
    proc.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "2 new workers replace the old ones" in proc.log(), 10, "the reload")
    wait_for(lambda: not port_open(a), 10, "imaps to stop listening")
    for _ in range(8):
        assert greeting(certs, b) == b"* OK echo ready\r\n"
    wait_for(lambda: len(_children(proc.proc.pid)) == 2, 15, "two workers")
    assert f"[imaps] no longer listening on 127.0.0.1:{a}" in proc.log()
    assert proc.stop() == 0
    assert not port_open(b)


def test_a_reload_that_changes_only_the_number_of_workers(certs, thread_server, tlswrap):
    from test_e2e_inetd import _children

    srv = thread_server(greet_echo)
    port = free_port()
    text = ("foreground = yes\ndebug = notice\nworkers = {}\n"
            + section("imaps", port, srv.port, certs.cert_file, certs.key_file))
    proc = tlswrap(text.format(2), [port])
    wait_for(lambda: len(_children(proc.proc.pid)) == 2, 10, "two workers")
    reload(proc, text.format(3), 1)  # the supervisor's line: the workers are replaced
    assert "3 new workers replace the old ones" in proc.log()
    wait_for(lambda: len(_children(proc.proc.pid)) == 3, 15, "three workers")
    for _ in range(12):
        assert greeting(certs, port) == b"* OK echo ready\r\n"
    reload(proc, text.format(1), 2)
    assert "a new worker replaces the old ones" in proc.log()
    wait_for(lambda: len(_children(proc.proc.pid)) == 1, 15, "one worker")
    for _ in range(4):
        assert greeting(certs, port) == b"* OK echo ready\r\n"
