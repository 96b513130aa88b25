"""PROXY protocol towards the backend: the header a real backend reads before any client byte
says who the client is (and, in v2, how it spoke TLS)."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from conftest import free_port, service_config, wait_for
from tlswrap import proxyproto


def proxy_backend(seen: list[proxyproto.ProxyHeader]):
    """Reads the PROXY header (nothing before it), then greets and echoes."""
    def serve(conn: socket.socket) -> None:
        data = b""
        while (got := proxyproto.decode(data)) is None:
            chunk = conn.recv(1)  # one byte at a time: the header must be complete on its own
            if not chunk:
                return
            data += chunk
        header, used = got
        assert used == len(data)
        seen.append(header)
        conn.sendall(b"* OK proxied\r\n")
        while chunk := conn.recv(65536):
            conn.sendall(chunk)
    return serve


@pytest.mark.parametrize("option", ["protocol = proxy", "proxyProtocol = v1",
                                    "proxyProtocol = v2"])
def test_the_backend_learns_the_client_address(certs, thread_server, tlswrap, option):
    seen: list[proxyproto.ProxyHeader] = []
    srv = thread_server(proxy_backend(seen))
    port = free_port()
    tlswrap(service_config(certs, port, f"127.0.0.1:{srv.port}", extra=option), [port])
    ctx = certs.client_context()
    ctx.set_alpn_protocols(["imap"])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        assert tls.recv(100) == b"* OK proxied\r\n"
        tls.sendall(b"a1 NOOP\r\n")
        assert tls.recv(100) == b"a1 NOOP\r\n"
        client_port = tls.getsockname()[1]
        version = tls.version()
    wait_for(lambda: len(seen) == 1, 5, "the header")
    header = seen[0]
    assert header.command == proxyproto.PROXY
    assert header.source == ("127.0.0.1", client_port)
    assert header.destination == ("127.0.0.1", port)
    if option.endswith("v2"):
        assert header.version == 2
        ssl_info = header.ssl()
        assert ssl_info is not None
        assert ssl_info.client & proxyproto.PP2_CLIENT_SSL
        assert ssl_info.version == version
        assert ssl_info.cipher
        assert header.tlv(proxyproto.PP2_TYPE_AUTHORITY) == b"localhost"
    else:
        assert header.version == 1


def test_a_proxy_header_is_not_for_exec_programs(certs, tlswrap, tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text(f"[x]\naccept = 127.0.0.1:{free_port()}\nexec = /bin/cat\n"
                    f"cert = {certs.cert_file}\nproxyProtocol = v2\n")
    out = subprocess.run([sys.executable, "-m", "tlswrap", "check", str(conf)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert (f"{conf}:5: error: [x] proxyProtocol: a PROXY header goes to a 'connect' backend"
            in out.stdout)
