"""ALPN and the ALPACA cross-protocol attack: ``alpn = imap`` refuses a client offering only
other protocols with the no_application_protocol alert; ALPN clients naming imap, and clients
without ALPN, are served (RFC 7301 section 3.2, as dovecot and nginx mail do)."""

from __future__ import annotations

import socket
import ssl

import pytest

from conftest import free_port, greet_echo, service_config
from tlsclients import needs_openssl, s_client, wait_log


@pytest.fixture
def imap_alpn(certs, thread_server, tlswrap):
    srv = thread_server(greet_echo)
    port = free_port()
    proxy = tlswrap(service_config(certs, port, f"127.0.0.1:{srv.port}",
                                   extra="alpn = imap, pop3"), [port])
    return proxy, port


@needs_openssl
def test_a_client_offering_only_http_is_refused_with_the_alert(imap_alpn):
    proxy, port = imap_alpn
    out = s_client(port, "-alpn", "http/1.1,h2")
    assert out.returncode != 0
    assert b"no application protocol" in out.stderr
    assert b"* OK echo ready" not in out.stdout
    log = wait_log(proxy, "no application protocol")
    assert "TLS handshake failed: TLS error: no application protocol" in log


@needs_openssl
def test_a_client_offering_imap_gets_it(imap_alpn):
    _, port = imap_alpn
    out = s_client(port, "-alpn", "http/1.1,imap")
    assert b"ALPN protocol: imap" in out.stdout
    assert b"* OK echo ready" in out.stdout


@needs_openssl
def test_a_client_without_alpn_is_served(imap_alpn):
    _, port = imap_alpn
    out = s_client(port)
    assert b"No ALPN negotiated" in out.stdout
    assert b"* OK echo ready" in out.stdout


def test_the_server_order_wins_for_python_ssl(certs, imap_alpn):
    proxy, port = imap_alpn
    ctx = certs.client_context()
    ctx.set_alpn_protocols(["pop3", "imap"])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            assert s.selected_alpn_protocol() == "imap"
            assert s.recv(100) == b"* OK echo ready\r\n"
    assert " alpn imap sni localhost, " in wait_log(proxy, " alpn imap")


def test_python_ssl_offering_h2_only_is_refused(certs, imap_alpn):
    _, port = imap_alpn
    ctx = certs.client_context()
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with pytest.raises(ssl.SSLError, match="no application protocol"):
            ctx.wrap_socket(raw, server_hostname="localhost")
