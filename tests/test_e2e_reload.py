"""SIGHUP: new certificates for new connections, live ones untouched, a bad config ignored."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest
import trustme

from conftest import free_port, greet_echo, service_config, two_workers, wait_for


def switch_to_a_new_certificate(proc, certs, tmp_path) -> None:
    """A certificate from another CA, written into the running config (no signal sent)."""
    other = trustme.CA().issue_cert("localhost")
    cert, key = tmp_path / "new.pem", tmp_path / "new.key"
    other.cert_chain_pems[0].write_to_path(str(cert))
    other.private_key_pem.write_to_path(str(key))
    proc.config.write_text(proc.config.read_text()
                           .replace(str(certs.cert_file), str(cert))
                           .replace(str(certs.key_file), str(key)))


def peer_issuer(port: int) -> str:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw) as s:
        der = s.getpeercert(binary_form=True)
    from cryptography import x509

    return x509.load_der_x509_certificate(der).issuer.rfc4514_string()


def test_sighup_reloads_certificates_and_survives_a_bad_config(certs, thread_server, tlswrap,
                                                                 tmp_path):
    srv = thread_server(greet_echo)
    port = free_port()
    proc = tlswrap(service_config(certs, port, f"127.0.0.1:{srv.port}"), [port])
    old_issuer = peer_issuer(port)

    live = socket.create_connection(("127.0.0.1", port), timeout=10)
    live = certs.client_context().wrap_socket(live, server_hostname="localhost")
    assert live.recv(100) == b"* OK echo ready\r\n"

    switch_to_a_new_certificate(proc, certs, tmp_path)
    proc.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in proc.log(), 10, "the reload")
    new_issuer = peer_issuer(port)
    assert new_issuer != old_issuer

    live.sendall(b"still the old session\r\n")  # the live connection was not cut
    assert live.recv(100) == b"still the old session\r\n"
    live.close()

    proc.config.write_text(proc.config.read_text() + "bogus = 1\n")
    proc.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload failed, keeping the running configuration" in proc.log(), 10,
             "the failed reload")
    assert "unknown option 'bogus'" in proc.log()
    assert peer_issuer(port) == new_issuer
    assert proc.proc.poll() is None


def test_reload_under_load_never_mixes_two_configurations(certs, thread_server, tlswrap,
                                                          tmp_path):
    """20 reloads while 50 clients connect over and over; each reload changes both the
    certificate and the backend. Every connection must see the certificate and the backend
    of one and the same configuration."""
    kinds = 3
    fingerprints: dict[bytes, int] = {}
    pems = []
    for i in range(kinds):
        issued = trustme.CA().issue_cert("localhost")
        cert, key = tmp_path / f"c{i}.pem", tmp_path / f"c{i}.key"
        issued.cert_chain_pems[0].write_to_path(str(cert))
        issued.private_key_pem.write_to_path(str(key))
        der = ssl.PEM_cert_to_DER_cert(issued.cert_chain_pems[0].bytes().decode())
        fingerprints[hashlib.sha256(der).digest()] = i
        pems.append((cert, key))

    def backend(i: int):
        def serve(conn: socket.socket) -> None:
            conn.sendall(f"* OK backend {i}\r\n".encode())
            while data := conn.recv(1000):
                conn.sendall(data)
        return serve

    backends = [thread_server(backend(i)) for i in range(kinds)]
    port = free_port()

    def config(generation: int) -> str:
        i = generation % kinds
        return service_config(certs, port, f"127.0.0.1:{backends[i].port}").replace(
            str(certs.cert_file), str(pems[i][0])).replace(str(certs.key_file), str(pems[i][1]))

    proc = tlswrap(config(0), [port])
    stop = threading.Event()
    seen: list[tuple[int, int]] = []
    errors: list[str] = []
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    def client() -> None:
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                        ctx.wrap_socket(raw) as s:
                    cert = fingerprints[hashlib.sha256(s.getpeercert(binary_form=True)).digest()]
                    greeting = s.recv(100)
                    s.sendall(b"a1 NOOP\r\n")
                    assert s.recv(100) == b"a1 NOOP\r\n"
            except (OSError, AssertionError) as exc:
                errors.append(repr(exc))
                continue
            seen.append((cert, int(greeting.split()[-1])))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(50)]
    for t in threads:
        t.start()
    try:
        for generation in range(1, 21):
            new = proc.config.with_suffix(".new")
            new.write_text(config(generation))
            os.replace(new, proc.config)  # the reload reads a whole file
            proc.proc.send_signal(signal.SIGHUP)
            wait_for(lambda g=generation: proc.log().count("configuration reloaded") >= g, 15,
                     f"reload {generation}")
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    mixed = [pair for pair in seen if pair[0] != pair[1]]
    assert not mixed, f"{len(mixed)} of {len(seen)} connections mixed configurations"
    assert len({cert for cert, _ in seen}) == kinds  # the reloads did take effect
    assert len(seen) >= 200 and not errors, errors[:5]
    assert proc.proc.poll() is None


def test_a_restarted_worker_serves_the_reloaded_configuration(certs, thread_server, tlswrap,
                                                               tmp_path):
    """workers = 2, SIGHUP to a new certificate, then SIGKILL a worker: its replacement starts
    from the supervisor's configuration, which must be the reloaded one."""
    from test_e2e_inetd import _children

    proc, port = two_workers(certs, thread_server, tlswrap)
    old_issuer = peer_issuer(port)
    switch_to_a_new_certificate(proc, certs, tmp_path)
    proc.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: proc.log().count("configuration reloaded") >= 2, 10, "both reloads")
    first = _children(proc.proc.pid)
    os.kill(first[0], signal.SIGKILL)
    wait_for(lambda: len(_children(proc.proc.pid)) == 2
             and first[0] not in _children(proc.proc.pid), 10, "the worker to be replaced")
    issuers = {peer_issuer(port) for _ in range(16)}
    assert issuers == {peer_issuer(port)} and old_issuer not in issuers


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (setuid)")
def test_reload_as_the_setuid_user_says_which_file_it_cannot_read(certs, thread_server):
    """The daemon reloads as the dropped user: a root-only key is named at start-up and again
    when the reload fails on it, with the fix; the old configuration serves on."""
    import tempfile

    from conftest import Tlswrap

    srv = thread_server(greet_echo)
    port = free_port()
    with tempfile.TemporaryDirectory(dir="/tmp") as scratch:
        here = Path(scratch)
        os.chmod(here, 0o755)
        shutil.copy(certs.cert_file, here / "server.pem")
        shutil.copy(certs.key_file, here / "server.key")
        os.chmod(here / "server.pem", 0o644)
        os.chmod(here / "server.key", 0o600)
        text = service_config(certs, port, f"127.0.0.1:{srv.port}",
                              global_extra="setuid = nobody")
        text = (text.replace(str(certs.cert_file), str(here / "server.pem"))
                .replace(str(certs.key_file), str(here / "server.key")))
        proc = Tlswrap(here, text, [port], name="t.conf")
        os.chmod(here / "t.conf", 0o644)
        try:
            key = here / "server.key"
            hint = (f"{here}/t.conf:8: [imaps] key = {key}: user nobody cannot read it, so a "
                    "SIGHUP reload will not be able to re-read it: make it readable by group ")
            wait_for(lambda: proc.log().count(hint) == 1, 10, "the start-up hint")
            proc.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: "reload failed" in proc.log(), 10, "the failed reload")
            wait_for(lambda: proc.log().count(hint) == 2, 5, "the hint")
            assert peer_issuer(port)
            assert proc.proc.poll() is None
        finally:
            proc.stop()
