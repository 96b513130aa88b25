"""curl against an ``alpn = imap`` service with client certificates, in front of the demo IMAP
server: the ALPACA case itself (an https:// request sent to the IMAP port is refused in the
handshake), an imaps:// client (no ALPN) served, and curl's client certificate checked."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from conftest import free_port, service_config

pytestmark = pytest.mark.skipif(not shutil.which("curl"), reason="curl not installed")


@pytest.fixture
def imaps(certs, demo_mailserver, tlswrap, tmp_path):
    imap_port, _ = demo_mailserver
    client = certs.ca.issue_cert("client@example.org", common_name="client")
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    client.cert_chain_pems[0].write_to_path(str(cert))
    client.private_key_pem.write_to_path(str(key))
    port = free_port()
    tlswrap(service_config(certs, port, f"127.0.0.1:{imap_port}",
                           extra=f"alpn = imap\nverify = 2\nCAfile = {certs.ca_file}"), [port])
    return port, cert, key


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", "--max-time", "10", *args], capture_output=True,
                          text=True, timeout=20)


def test_an_https_request_to_the_imap_port_is_refused_in_the_handshake(certs, imaps):
    port, cert, key = imaps
    out = curl("--cacert", str(certs.ca_file), "--cert", str(cert), "--key", str(key),
               f"https://localhost:{port}/")
    assert out.returncode == 35, out  # CURLE_SSL_CONNECT_ERROR: no HTTP byte ever sent
    assert "no application protocol" in out.stderr


def test_curl_imaps_with_a_client_certificate_lists_mailboxes(certs, imaps):
    port, cert, key = imaps
    out = curl("--cacert", str(certs.ca_file), "--cert", str(cert), "--key", str(key),
               "-u", "demo:secret", f"imaps://localhost:{port}/")
    assert out.returncode == 0, out.stderr
    assert "INBOX" in out.stdout


def test_curl_imaps_without_a_certificate_is_refused(certs, imaps):
    port, _, _ = imaps
    out = curl("--cacert", str(certs.ca_file), "-u", "demo:secret", f"imaps://localhost:{port}/")
    assert out.returncode != 0
    assert "INBOX" not in out.stdout
