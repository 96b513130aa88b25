"""SNI: several certificates in one service chosen by the client's server name (RFC 6125
names), RSA and ECDSA for one name chosen by what the client supports, a default for unknown
names or refusal with unrecognized_name (``sniStrict``), and stunnel's ``sni =
SERVICE:PATTERN`` secondary sections with their own certificate and ``connect``."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest
import trustme

from conftest import free_port, greet_echo, wait_for
from tlsclients import needs_openssl, s_client, wait_log

pytestmark = needs_openssl


class Site:
    """A certificate (chain file) and key for ``names``, as files in ``tmp``."""

    def __init__(self, ca: trustme.CA, tmp: Path, label: str, *names: str,
                 key_type: trustme.KeyType = trustme.KeyType.ECDSA):
        issued = ca.issue_cert(*names, key_type=key_type)
        self.pem = issued.cert_chain_pems[0].bytes()
        self.cert = tmp / f"{label}.pem"
        self.key = tmp / f"{label}.key"
        issued.cert_chain_pems[0].write_to_path(str(self.cert))
        issued.private_key_pem.write_to_path(str(self.key))
        os.chmod(self.key, 0o600)

    def lines(self) -> str:
        return f"cert = {self.cert}\nkey = {self.key}\n"


def served_pem(out: bytes) -> bytes:
    """The server certificate s_client printed."""
    found = re.search(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n", out,
                      re.DOTALL)
    assert found, out
    return found.group(0)


def greeter(text: bytes):  # type: ignore[no-untyped-def]
    def handler(conn: socket.socket) -> None:
        conn.sendall(text)
        while conn.recv(65536):
            pass
    return handler


@pytest.fixture
def sites(tmp_path):
    ca = trustme.CA()
    return {
        "mail": Site(ca, tmp_path, "mail", "mail.example.org"),
        "mail-rsa": Site(ca, tmp_path, "mail-rsa", "mail.example.org",
                         key_type=trustme.KeyType.RSA),
        "wild": Site(ca, tmp_path, "wild", "*.example.net"),
        "other": Site(ca, tmp_path, "other", "other.example.com"),
    }


def start(tlswrap, port: int, sections: str):  # type: ignore[no-untyped-def]
    return tlswrap(f"foreground = yes\ndebug = info\n{sections}", [port])


@pytest.fixture
def multi(sites, thread_server, tlswrap):
    srv = thread_server(greet_echo)
    port = free_port()
    start(tlswrap, port, f"[imaps]\naccept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{srv.port}\n"
          + sites["mail"].lines() + sites["wild"].lines() + sites["mail-rsa"].lines())
    return port


def test_each_name_gets_its_certificate(sites, multi):
    for name, site in [("mail.example.org", "mail"), ("imap.example.net", "wild"),
                       ("MAIL.Example.ORG", "mail")]:
        out = s_client(multi, "-servername", name)
        assert served_pem(out.stdout) == sites[site].pem, name
        assert b"* OK echo ready" in out.stdout


def test_an_unknown_name_and_no_name_get_the_first_certificate(sites, multi):
    assert served_pem(s_client(multi, "-servername", "nowhere.example").stdout) == \
        sites["mail"].pem
    assert served_pem(s_client(multi, "-noservername").stdout) == sites["mail"].pem


@pytest.mark.parametrize(("sigalgs", "kind"), [("ecdsa_secp256r1_sha256", b"ECDSA"),
                                               ("rsa_pss_rsae_sha256", b"RSA-PSS")])
def test_rsa_and_ecdsa_for_one_name_by_what_the_client_supports(sites, multi, sigalgs, kind):
    out = s_client(multi, "-servername", "mail.example.org", "-sigalgs", sigalgs)
    assert b"Peer signature type: " + kind in out.stdout
    site = "mail" if kind == b"ECDSA" else "mail-rsa"
    assert served_pem(out.stdout) == sites[site].pem


def test_sni_strict_refuses_an_unknown_name(sites, thread_server, tlswrap):
    srv = thread_server(greet_echo)
    port = free_port()
    proxy = start(tlswrap, port, f"[imaps]\naccept = 127.0.0.1:{port}\n"
                  f"connect = 127.0.0.1:{srv.port}\nsniStrict = yes\n" + sites["mail"].lines()
                  + sites["wild"].lines())
    out = s_client(port, "-servername", "nowhere.example")
    assert b"unrecognized name" in out.stderr
    assert b"* OK echo ready" not in out.stdout
    log = wait_log(proxy, "server name 'nowhere.example'")
    assert "TLS handshake failed: TLS error: callback failed (server name" in log
    assert b"* OK echo ready" in s_client(port, "-servername", "x.example.net").stdout
    assert b"* OK echo ready" in s_client(port, "-noservername").stdout  # no name: default


def test_secondary_sections_have_their_own_certificate_and_connect(sites, thread_server,
                                                                    tlswrap):
    main = thread_server(greeter(b"* OK main\r\n"))
    second = thread_server(greeter(b"* OK second\r\n"))
    port = free_port()
    proxy = start(tlswrap, port, f"[imaps]\naccept = 127.0.0.1:{port}\n"
                  f"connect = 127.0.0.1:{main.port}\n" + sites["mail"].lines()
                  + f"[virtual]\nsni = imaps:*.example.net\nsni = imaps:other.example.com\n"
                  f"connect = 127.0.0.1:{second.port}\n" + sites["wild"].lines())
    out = s_client(port, "-servername", "imap.example.net", until=b"* OK second")
    assert served_pem(out.stdout) == sites["wild"].pem
    assert b"* OK second" in out.stdout
    out = s_client(port, "-servername", "mail.example.org", until=b"* OK main")
    assert served_pem(out.stdout) == sites["mail"].pem
    assert b"* OK main" in out.stdout
    out = s_client(port, "-servername", "other.example.com", until=b"* OK second")
    assert served_pem(out.stdout) == sites["wild"].pem  # the section's certificate
    assert "[imaps/virtual]" in wait_log(proxy, "[imaps/virtual]")


def test_a_secondary_section_s_own_client_certificate_policy_applies(certs, sites,
                                                                      thread_server, tlswrap,
                                                                      tmp_path):
    """OpenSSL keeps the verify mode of the context a connection was made from; switching to
    a secondary's context by SNI applies the secondary's (both ways)."""
    client = certs.ca.issue_cert("client@example.org")
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    client.cert_chain_pems[0].write_to_path(str(cert))
    client.private_key_pem.write_to_path(str(key))
    srv = thread_server(greet_echo)
    port = free_port()
    start(tlswrap, port, f"[imaps]\naccept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{srv.port}\n"
          + sites["mail"].lines()
          + f"[strict]\nsni = imaps:*.example.net\nconnect = 127.0.0.1:{srv.port}\n"
          f"verify = 2\nCAfile = {certs.ca_file}\n" + sites["wild"].lines())
    assert b"* OK echo ready" in s_client(port, "-servername", "mail.example.org").stdout
    refused = s_client(port, "-servername", "imap.example.net")
    assert b"* OK echo ready" not in refused.stdout
    assert b"certificate required" in refused.stderr
    with_cert = s_client(port, "-servername", "imap.example.net", "-cert", str(cert), "-key",
                         str(key))
    assert b"* OK echo ready" in with_cert.stdout


def test_a_secondary_without_client_certificates_under_a_primary_that_requires_them(
        certs, sites, thread_server, tlswrap):
    srv = thread_server(greet_echo)
    port = free_port()
    start(tlswrap, port, f"[imaps]\naccept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{srv.port}\n"
          f"verify = 2\nCAfile = {certs.ca_file}\n" + sites["mail"].lines()
          + f"[open]\nsni = imaps:*.example.net\nconnect = 127.0.0.1:{srv.port}\n"
          + sites["wild"].lines())
    assert b"* OK echo ready" in s_client(port, "-servername", "imap.example.net").stdout
    refused = s_client(port, "-servername", "mail.example.org")
    assert b"certificate required" in refused.stderr


@pytest.mark.parametrize("version", ["-tls1_3", "-tls1_2"])
def test_a_primary_s_session_does_not_skip_a_secondary_s_client_certificate(certs, sites,
                                                                            thread_server,
                                                                            tlswrap, tmp_path,
                                                                            version):
    """TLS 1.3 ties no server name to a session, and OpenSSL resumes before the SNI callback
    switches sections: a session from the primary offered with a secondary's name is refused,
    not served without the certificate the secondary asks for. (openssl s_client resuming a
    TLS 1.2 session sends the session's own name, so that one reaches the primary.)"""
    srv = thread_server(greet_echo)
    port = free_port()
    proxy = start(tlswrap, port, f"[imaps]\naccept = 127.0.0.1:{port}\n"
                  f"connect = 127.0.0.1:{srv.port}\n" + sites["mail"].lines()
                  + f"[strict]\nsni = imaps:*.example.net\nconnect = 127.0.0.1:{srv.port}\n"
                  f"verify = 2\nCAfile = {certs.ca_file}\n" + sites["wild"].lines())
    session = tmp_path / "session.pem"
    out = s_client(port, version, "-servername", "mail.example.org", "-sess_out", str(session))
    assert b"* OK echo ready" in out.stdout
    s_client(port, version, "-servername", "imap.example.net", "-sess_in", str(session))
    wait_for(lambda: proxy.log().count(" closed: ") >= 3, 10, "the probe's, the session's "
             "and the attempt's closing lines")
    served = [line for line in proxy.log().splitlines()
              if "[imaps/strict]" in line and " closed: " in line]
    # refused; or (TLS 1.2: the client resumes with the session's own name) the primary
    assert all("resumed for [strict]" in line for line in served), served
    if version == "-tls1_3":
        assert served
    again = s_client(port, version, "-servername", "mail.example.org", "-sess_in",
                     str(session))
    assert b"Reused" in again.stdout and b"* OK echo ready" in again.stdout
