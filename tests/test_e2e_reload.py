"""SIGHUP: new certificates for new connections, live ones untouched, a bad config ignored."""

from __future__ import annotations

import signal
import socket
import ssl

import trustme

from conftest import free_port, greet_echo, service_config, wait_for


def peer_issuer(port: int) -> str:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw) as s:
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

    other = trustme.CA().issue_cert("localhost")
    cert, key = tmp_path / "new.pem", tmp_path / "new.key"
    other.cert_chain_pems[0].write_to_path(str(cert))
    other.private_key_pem.write_to_path(str(key))
    proc.config.write_text(proc.config.read_text()
                           .replace(str(certs.cert_file), str(cert))
                           .replace(str(certs.key_file), str(key)))
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
