"""Hostile clients against a service using every TLS callback (SNI, ALPN, client
certificates, stapling): mutated ClientHellos (server names, ALPN lists and extensions cut or
flipped) never crash a callback into the server, never leak a descriptor, and a legitimate
client is served afterwards."""

from __future__ import annotations

import random
import socket
import ssl

from conftest import free_port, greet_echo, service_config, wait_for
from test_e2e_hostile import client_hello


def hello(server_name: str, alpn: list[str]) -> bytes:
    ctx = ssl.create_default_context()
    ctx.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def test_mutated_hellos_do_not_hurt_a_service_with_every_callback(certs, thread_server,
                                                                  tlswrap, tmp_path):
    srv = thread_server(greet_echo)
    port = free_port()
    staple = tmp_path / "ocsp.der"
    staple.write_bytes(b"not a response")
    proxy = tlswrap(service_config(
        certs, port, f"127.0.0.1:{srv.port}",
        extra=f"alpn = imap, pop3\nverify = 1\nCAfile = {certs.ca_file}\nsniStrict = yes\n"
              f"cert = {certs.cert_file}\nkey = {certs.key_file}\nOCSPstaple = {staple}"),
        [port])
    idle = proxy.idle_fd_count()
    rng = random.Random(12)
    long_name = "x" * 60 + "." + "y" * 60 + ".example"
    seeds = [hello("localhost", ["imap"]), hello(long_name, ["a" * 255] * 3),
             hello("mail.example.org", ["h2", "http/1.1"]), client_hello()]
    for i in range(150):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 8)):
            at = rng.randrange(5, len(data))  # the record header stays: the hello is parsed
            data[at] = rng.randrange(256)
        if i % 5 == 0:
            data = data[:rng.randrange(5, len(data))]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(bytes(data))
            s.shutdown(socket.SHUT_WR)
            try:
                while s.recv(4096):
                    pass
            except OSError:
                pass
    ctx = certs.client_context()
    ctx.set_alpn_protocols(["imap"])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        assert tls.recv(100) == b"* OK echo ready\r\n"
    wait_for(lambda: proxy.log().count(" closed: ") >= 151, 20, "every closing line")
    assert "internal error" not in proxy.log()
    assert "Traceback" not in proxy.log()
    assert proxy.proc.poll() is None
    wait_for(lambda: proxy.fd_count() <= idle + 2, 30, f"descriptors back near {idle}")
