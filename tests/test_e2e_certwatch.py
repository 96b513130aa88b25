"""Certificates reload themselves: files replaced on disk are picked up with no signal, within
seconds; a half-written file or a key that does not match keeps the old pair, and says why."""

from __future__ import annotations

import os
import socket
import ssl

import trustme
from cryptography import x509

from conftest import free_port, greet_echo, wait_for

WAIT = 20  # seconds: CHECK_INTERVAL is 3, and the machine may be busy


def served_cert(port: int) -> x509.Certificate:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der)


def issue() -> tuple[bytes, bytes, int]:
    """A new certificate and key (PEM) and the certificate's serial."""
    leaf = trustme.CA().issue_cert("localhost")
    cert = leaf.cert_chain_pems[0].bytes()
    return cert, leaf.private_key_pem.bytes(), x509.load_pem_x509_certificate(cert).serial_number


def start(tlswrap, thread_server, tmp_path, combined: bool):
    srv = thread_server(greet_echo)
    port = free_port()
    cert_pem, key_pem, serial = issue()
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    if combined:
        cert.write_bytes(cert_pem + key_pem)
        files = f"cert = {cert}\n"
    else:
        cert.write_bytes(cert_pem)
        key.write_bytes(key_pem)
        files = f"cert = {cert}\nkey = {key}\n"
    proc = tlswrap(f"foreground = yes\ndebug = notice\n[imaps]\naccept = 127.0.0.1:{port}\n"
                   f"connect = 127.0.0.1:{srv.port}\n{files}", [port])
    assert served_cert(port).serial_number == serial
    assert f"[imaps] serving certificate {cert}: subject OU=Testing cert" in proc.log()
    assert f"serial {serial:#x}, not after " in proc.log()
    return proc, port, cert, key, serial


def rewrite_in_place(path, data: bytes) -> None:
    """Not atomic: the same inode truncated and written again."""
    with open(path, "r+b") as f:
        f.truncate(0)
        f.write(data)


def test_an_atomic_replacement_is_served_without_a_signal(tlswrap, thread_server, tmp_path):
    proc, port, cert, _, _ = start(tlswrap, thread_server, tmp_path, combined=True)
    cert_pem, key_pem, serial = issue()
    (tmp_path / "next.pem").write_bytes(cert_pem + key_pem)
    os.replace(tmp_path / "next.pem", cert)
    wait_for(lambda: served_cert(port).serial_number == serial, WAIT, "the new certificate")
    assert f"[imaps] now serving certificate {cert}: " in proc.log()
    assert f"serial {serial:#x}" in proc.log().split("now serving")[1]
    assert "configuration reloaded" not in proc.log()


def test_a_pair_rewritten_in_place_is_served_once_both_are_written(tlswrap, thread_server,
                                                                   tmp_path):
    proc, port, cert, key, old = start(tlswrap, thread_server, tmp_path, combined=False)
    cert_pem, key_pem, serial = issue()
    rewrite_in_place(cert, cert_pem)
    # the certificate alone does not match the old key: refused, the old pair serves on
    wait_for(lambda: "the private key does not match" in proc.log(), WAIT, "the refusal")
    assert served_cert(port).serial_number == old
    rewrite_in_place(key, key_pem)
    wait_for(lambda: served_cert(port).serial_number == serial, WAIT, "the new certificate")
    assert "certificate files changed but cannot be used; still serving the previous ones" \
        in proc.log()


def test_a_mismatched_or_half_written_file_keeps_the_old_pair(tlswrap, thread_server, tmp_path):
    proc, port, cert, key, old = start(tlswrap, thread_server, tmp_path, combined=False)
    cert_pem, key_pem, serial = issue()
    _, other_key, _ = issue()
    (tmp_path / "next.key").write_bytes(other_key)
    os.replace(tmp_path / "next.key", key)  # a key of another certificate
    wait_for(lambda: "the private key does not match" in proc.log(), WAIT, "the refusal")
    assert served_cert(port).serial_number == old
    assert proc.log().count("cannot be used") == 1  # said once, not at every look

    rewrite_in_place(cert, cert_pem[:len(cert_pem) // 2])  # a renewal caught half way
    wait_for(lambda: "no PEM certificate could be loaded" in proc.log(), WAIT, "the refusal")
    assert served_cert(port).serial_number == old
    (tmp_path / "next.key").write_bytes(key_pem)
    os.replace(tmp_path / "next.key", key)
    rewrite_in_place(cert, cert_pem)
    wait_for(lambda: served_cert(port).serial_number == serial, WAIT, "the new certificate")
