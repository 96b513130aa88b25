"""certnames: RFC 6125 name matching, the certificate chosen for a server name, and a client
certificate as text for logs and programs."""

from __future__ import annotations

import trustme
from cryptography import x509

from tlswrap.certnames import (
    PeerIdentity,
    cert_names,
    check_names,
    choose,
    match_host,
    oneline,
)


def test_match_host_rfc6125():
    assert match_host("mail.example.org", "MAIL.example.org.")
    assert match_host("*.example.org", "imap.example.org")
    assert not match_host("*.example.org", "example.org")  # one label, not zero
    assert not match_host("*.example.org", "a.b.example.org")  # one label, not two
    assert not match_host("*.org", "example.org")  # never a whole top-level domain
    assert not match_host("im*.example.org", "imap.example.org")  # whole label only
    assert not match_host("a.*.example.org", "a.b.example.org")
    assert not match_host("", "x") and not match_host("x", "")


def test_choose_prefers_an_exact_name_to_a_wildcard():
    table = [(("*.example.org",), "wild"), (("imap.example.org", "pop.example.org"), "exact")]
    assert choose(table, "imap.example.org") == "exact"
    assert choose(table, "smtp.example.org") == "wild"
    assert choose(table, "example.net") is None
    assert choose(table, None) is None


def _cert(*names: str, **kw: object) -> x509.Certificate:
    ca = trustme.CA()
    return x509.load_pem_x509_certificate(ca.issue_cert(*names, **kw).cert_chain_pems[0].bytes())


def test_cert_names_are_the_san_dns_names():
    cert = _cert("mail.example.org", "*.example.net", "192.0.2.1")
    assert cert_names(cert) == ("mail.example.org", "*.example.net")


def test_check_names_host_email_ip():
    cert = _cert("client.example.org", "192.0.2.7")
    assert check_names(cert, ["client.example.org"], [], []) is None
    assert check_names(cert, ["other.example.org"], [], []) == "host"
    assert check_names(cert, [], ["a@example.org"], []) == "email"
    assert check_names(cert, [], [], ["192.0.2.7"]) is None
    assert check_names(cert, [], [], ["192.0.2.8"]) == "ip"


def test_peer_identity_environment():
    ca = trustme.CA()
    leaf = ca.issue_cert("client@example.org", common_name="Client One")
    cert = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
    ident = PeerIdentity.of(cert)
    env = ident.environment()
    assert env["SSL_CLIENT_DN"] == oneline(cert.subject) == env["SSL_CLIENT_S_DN"]
    assert env["SSL_CLIENT_DN"].endswith("/CN=Client One")
    assert env["SSL_CLIENT_I_DN"] == oneline(cert.issuer)
    assert env["SSL_CLIENT_S_DN_CN"] == "Client One"
    assert env["SSL_CLIENT_SAN_Email_0"] == "client@example.org"
    assert env["SSL_CLIENT_M_SERIAL"] == f"{cert.serial_number:X}"
    assert len(env["SSL_CLIENT_CERT_SHA256"]) == 64
    assert env["SSL_CLIENT_VERIFY"] == "SUCCESS"
    assert "client@example.org" in ident.describe()
