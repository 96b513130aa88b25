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


def served_to(port: int, name: str) -> x509.Certificate:
    """The certificate served for the server name ``name``."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname=name) as tls:
        der = tls.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der)


def pair_for(name: str) -> tuple[bytes, int]:
    leaf = trustme.CA().issue_cert(name)
    cert = leaf.cert_chain_pems[0].bytes()
    return cert + leaf.private_key_pem.bytes(), x509.load_pem_x509_certificate(cert).serial_number


def test_each_certificate_of_a_service_is_watched_and_sni_still_chooses(tlswrap, thread_server,
                                                                       tmp_path):
    """Two certificates chosen by server name: renewing either keeps the choice by name."""
    srv = thread_server(greet_echo)
    port = free_port()
    first, second = tmp_path / "a.pem", tmp_path / "b.pem"
    pem_a, serial_a = pair_for("a.example.org")
    pem_b, serial_b = pair_for("b.example.org")
    first.write_bytes(pem_a)
    second.write_bytes(pem_b)
    tlswrap(f"foreground = yes\n[imaps]\naccept = 127.0.0.1:{port}\n"
            f"connect = 127.0.0.1:{srv.port}\ncert = {first}\ncert = {second}\n", [port])
    assert served_to(port, "b.example.org").serial_number == serial_b
    pem_b, serial_b = pair_for("b.example.org")
    (tmp_path / "next.pem").write_bytes(pem_b)
    os.replace(tmp_path / "next.pem", second)  # the second one renewed
    wait_for(lambda: served_to(port, "b.example.org").serial_number == serial_b, WAIT,
             "the renewed second certificate")
    assert served_to(port, "a.example.org").serial_number == serial_a
    pem_a, serial_a = pair_for("a.example.org")
    (tmp_path / "next.pem").write_bytes(pem_a)
    os.replace(tmp_path / "next.pem", first)
    wait_for(lambda: served_to(port, "a.example.org").serial_number == serial_a, WAIT,
             "the renewed first certificate")
    assert served_to(port, "b.example.org").serial_number == serial_b


def test_a_new_crl_refuses_a_client_without_a_signal(certs, tlswrap, thread_server, tmp_path):
    import datetime

    from cryptography.hazmat.primitives import hashes, serialization

    from tlsclients import s_client

    now = datetime.datetime.now(datetime.UTC)
    client = certs.ca.issue_cert("client.example.org")
    client.cert_chain_pems[0].write_to_path(str(tmp_path / "client.pem"))
    client.private_key_pem.write_to_path(str(tmp_path / "client.key"))
    ca_key = serialization.load_pem_private_key(certs.ca.private_key_pem.bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(certs.ca.cert_pem.bytes())

    def crl(*serials: int) -> bytes:
        builder = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
                   .last_update(now - datetime.timedelta(hours=1))
                   .next_update(now + datetime.timedelta(days=7)))
        for serial in serials:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial)
                .revocation_date(now - datetime.timedelta(minutes=1)).build())
        return builder.sign(ca_key, hashes.SHA256()).public_bytes(  # type: ignore[arg-type]
            serialization.Encoding.PEM)

    crl_file = tmp_path / "ca.crl"
    crl_file.write_bytes(crl())
    srv = thread_server(greet_echo)
    port = free_port()
    tlswrap(f"foreground = yes\n[imaps]\naccept = 127.0.0.1:{port}\n"
            f"connect = 127.0.0.1:{srv.port}\ncert = {certs.cert_file}\n"
            f"key = {certs.key_file}\nverify = 2\nCAfile = {certs.ca_file}\n"
            f"CRLfile = {crl_file}\n", [port])

    def served() -> bool:
        out = s_client(port, "-cert", str(tmp_path / "client.pem"), "-key",
                       str(tmp_path / "client.key"))
        return b"* OK echo ready" in out.stdout

    assert served()
    serial = x509.load_pem_x509_certificate(client.cert_chain_pems[0].bytes()).serial_number
    (tmp_path / "next.crl").write_bytes(crl(serial))
    os.replace(tmp_path / "next.crl", crl_file)
    wait_for(lambda: not served(), WAIT, "the client refused by the new CRL")


def test_a_client_services_certificate_renewed_stays_a_client(certs, tlswrap, tmp_path):
    """client = yes with a client certificate: the renewed one is sent, the service still
    speaks TLS as a client."""
    from tlsclients import s_server

    client_pem = tmp_path / "client.pem"
    first = certs.ca.issue_cert("client.example.org")
    client_pem.write_bytes(first.cert_chain_pems[0].bytes() + first.private_key_pem.bytes())
    remote, port = free_port(), free_port()

    def through() -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"hello\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(100)
                if not chunk:
                    break
                data += chunk
        return data

    with s_server(remote, str(certs.cert_file), str(certs.key_file), "-rev", "-Verify", "1",
                  "-CAfile", str(certs.ca_file)) as server:
        proxy = tlswrap(f"foreground = yes\n[out]\nclient = yes\naccept = 127.0.0.1:{port}\n"
                        f"connect = localhost:{remote}\nCAfile = {certs.ca_file}\n"
                        f"cert = {client_pem}\n", [port])
        assert through() == b"olleh\n"
        second = certs.ca.issue_cert("renewed.example.org")
        renewed = x509.load_pem_x509_certificate(second.cert_chain_pems[0].bytes())
        (tmp_path / "next.pem").write_bytes(second.cert_chain_pems[0].bytes()
                                            + second.private_key_pem.bytes())
        os.replace(tmp_path / "next.pem", client_pem)
        wait_for(lambda: f"now serving certificate {client_pem}" in proxy.log(), WAIT,
                 "the renewal")
        assert through() == b"olleh\n"
        assert server.stdout is not None
        os.set_blocking(server.stdout.fileno(), False)
        seen = server.stdout.read() or b""
        unit = renewed.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATIONAL_UNIT_NAME)
        assert f"OU = {unit[0].value}".encode() in seen  # s_server got the renewed one
