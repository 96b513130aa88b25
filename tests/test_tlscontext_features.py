"""tlscontext, the issue-12 options: securityLevel, several certificates, the verify files;
each problem a located ConfigError."""

from __future__ import annotations

import os

import pytest
import trustme

from tlswrap.config import parse_config
from tlswrap.errors import ConfigError
from tlswrap.tlscontext import server_context, server_contexts


def _service(text: str):  # type: ignore[no-untyped-def]
    cfg = parse_config("[imaps]\naccept = 993\nconnect = 143\n" + text, "s.conf")
    return cfg, cfg.services[0]


@pytest.fixture(scope="module")
def rsa2048(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rsa")
    issued = trustme.CA().issue_cert("mail.example.org", key_type=trustme.KeyType.RSA)
    cert, key = tmp / "rsa.pem", tmp / "rsa.key"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    os.chmod(key, 0o600)
    return cert, key


def test_security_level_3_refuses_a_2048_bit_rsa_key_at_its_line(rsa2048):
    cert, key = rsa2048
    server_context(*_service(f"cert = {cert}\nkey = {key}\nsecurityLevel = 2\n"))
    with pytest.raises(ConfigError) as info:
        server_context(*_service(f"cert = {cert}\nkey = {key}\nsecurityLevel = 3\n"))
    assert str(info.value).startswith(f"s.conf:4: [imaps] cert = {cert}: OpenSSL refuses")
    assert "too small" in str(info.value)


def test_security_level_3_keeps_ecdsa_p256(certs):
    server_context(*_service(f"cert = {certs.cert_file}\nkey = {certs.key_file}\n"
                             "securityLevel = 3\n"))


def test_certificates_are_grouped_by_the_names_they_serve(certs, rsa2048, tmp_path):
    cert, key = rsa2048
    same = trustme.CA().issue_cert("mail.example.org")  # ECDSA, the same name as the RSA one
    same_cert, same_key = tmp_path / "ec.pem", tmp_path / "ec.key"
    same.cert_chain_pems[0].write_to_path(str(same_cert))
    same.private_key_pem.write_to_path(str(same_key))
    groups = server_contexts(*_service(
        f"cert = {certs.cert_file}\nkey = {certs.key_file}\ncert = {cert}\nkey = {key}\n"
        f"cert = {same_cert}\nkey = {same_key}\n"))
    assert [names for names, _ in groups] == [("localhost",), ("mail.example.org",)]


def test_a_second_certificate_s_problem_is_at_its_own_line(certs, tmp_path):
    with pytest.raises(ConfigError) as info:
        server_contexts(*_service(f"cert = {certs.cert_file}\nkey = {certs.key_file}\n"
                                  f"cert = {tmp_path}/missing.pem\n"))
    assert str(info.value) == (f"s.conf:6: [imaps] cert = {tmp_path}/missing.pem: cannot read: "
                               "No such file or directory")


@pytest.mark.parametrize(("option", "message"), [
    ("CRLfile = {tmp}/ca.pem", "CRLfile = {tmp}/ca.pem: no BEGIN X509 CRL block"),
    ("CApath = {tmp}/nodir", "CApath = {tmp}/nodir: not a directory"),
    ("OCSPstaple = {tmp}/missing.der", "OCSPstaple = {tmp}/missing.der: cannot read: No such "
                                       "file or directory"),
])
def test_verify_files_are_checked_at_start(certs, tmp_path, option, message):
    (tmp_path / "ca.pem").write_bytes(certs.ca_file.read_bytes())
    extra = f"verify = 2\nCAfile = {certs.ca_file}\n" if "OCSP" not in option else ""
    with pytest.raises(ConfigError) as info:
        server_context(*_service(f"cert = {certs.cert_file}\nkey = {certs.key_file}\n{extra}"
                                 + option.format(tmp=tmp_path) + "\n"))
    assert message.format(tmp=tmp_path) in str(info.value)


def _negotiated_group(server_ctx, client_groups: bytes) -> str | None:  # type: ignore[no-untyped-def]
    """The group a pyOpenSSL client offering ``client_groups`` (its first one's key share)
    gets from ``server_ctx``, over a socketpair."""
    import socket
    import threading

    from OpenSSL import SSL

    from tlswrap.opensslffi import context_pointer, lib

    a, b = socket.socketpair()
    with a, b:
        server = SSL.Connection(server_ctx, a)
        server.set_accept_state()
        thread = threading.Thread(target=server.do_handshake)
        thread.start()
        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        assert lib.SSL_CTX_set1_curves_list(context_pointer(ctx), client_groups) == 1
        client = SSL.Connection(ctx, b)
        client.set_connect_state()
        client.do_handshake()
        thread.join(10)
        return client.get_group_name()


def _has_mlkem() -> bool:
    from OpenSSL import SSL

    from tlswrap.opensslffi import context_pointer, lib

    ok = lib.SSL_CTX_set1_curves_list(context_pointer(SSL.Context(SSL.TLS_CLIENT_METHOD)),
                                      b"X25519MLKEM768") == 1
    lib.ERR_clear_error()
    return bool(ok)


@pytest.mark.skipif(not _has_mlkem(), reason="this OpenSSL has no X25519MLKEM768")
@pytest.mark.parametrize("client_groups", [b"X25519:X25519MLKEM768", b"P-256:X25519MLKEM768"])
def test_x25519mlkem768_is_preferred_by_default_even_when_the_client_lists_it_later(
        certs, client_groups):
    ctx = server_context(*_service(f"cert = {certs.cert_file}\nkey = {certs.key_file}\n"))
    assert _negotiated_group(ctx, client_groups) == "X25519MLKEM768"


def test_curves_overrides_the_default_groups(certs):
    ctx = server_context(*_service(f"cert = {certs.cert_file}\nkey = {certs.key_file}\n"
                                   "curves = X25519:P-256\n"))
    assert _negotiated_group(ctx, b"X25519MLKEM768:X25519") == "x25519"


def test_contexts_with_callbacks_are_freed_when_dropped(certs, rsa2048):
    """The SNI, ALPN and verify callbacks are kept as long as their context, and do not keep
    it alive themselves (a reload would otherwise keep every old context)."""
    import gc
    import weakref

    from tlswrap.snapshot import prepare

    cert, key = rsa2048
    cfg = parse_config(f"[imaps]\naccept = 993\nconnect = 143\nlibwrap = no\n"
                       f"cert = {certs.cert_file}\nkey = {certs.key_file}\ncert = {cert}\n"
                       f"key = {key}\nsniStrict = yes\nalpn = imap\nverify = 2\n"
                       f"CAfile = {certs.ca_file}\n", "s.conf")
    snapshot = prepare(cfg)
    rt = snapshot.services["imaps"]
    refs = [weakref.ref(ctx) for _, ctx, _ in rt.sni_routes]
    assert len(refs) == 2
    del snapshot, rt
    gc.collect()
    assert [ref() for ref in refs] == [None, None]
