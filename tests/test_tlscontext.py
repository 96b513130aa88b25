"""tlscontext: contexts from a service, real OpenSSL; every problem is a located ConfigError."""

from __future__ import annotations

import dataclasses
import socket
import ssl
import threading

import pytest
from OpenSSL import SSL

from fifo_guard import call_unless_blocked
from tlswrap.config import parse_config
from tlswrap.errors import ConfigError
from tlswrap.tlscontext import server_context


def _config(certs, extra: str = ""):
    text = (f"[imaps]\naccept = 993\nconnect = 143\ncert = {certs.cert_file}\n"
            f"key = {certs.key_file}\n{extra}")
    cfg = parse_config(text, "s.conf")
    return cfg, cfg.services[0]


def _handshake(ctx: SSL.Context, certs, *, lowest=None, highest=None) -> str:
    """The version a stdlib client negotiates with ``ctx``, or the client's error text."""
    server_sock, client_sock = socket.socketpair()
    server = SSL.Connection(ctx, server_sock)
    server.set_accept_state()

    def serve() -> None:
        try:
            server.do_handshake()
        except SSL.Error:
            pass

    thread = threading.Thread(target=serve)
    thread.start()
    client_ctx = certs.client_context()
    if lowest:
        client_ctx.minimum_version = lowest
    if highest:
        client_ctx.maximum_version = highest
    try:
        with client_ctx.wrap_socket(client_sock, server_hostname="localhost") as tls:
            return tls.version() or ""
    except ssl.SSLError as exc:
        return exc.reason or str(exc)
    finally:
        client_sock.close()
        thread.join(10)
        server_sock.close()


@pytest.mark.parametrize("extra", ["sslVersionMin = SSLv3\n", "sslVersionMin = TLSv1\n",
                                   "sslVersion = TLSv1\nsslVersionMax = TLSv1.3\n", ""])
def test_a_minimum_below_tls12_serves_tls12_and_tls13(certs, extra):
    ctx = server_context(*_config(certs, extra))
    assert _handshake(ctx, certs) == "TLSv1.3"
    assert _handshake(ctx, certs, highest=ssl.TLSVersion.TLSv1_2) == "TLSv1.2"


def test_tls12_only(certs):
    ctx = server_context(*_config(certs, "sslVersion = TLSv1.2\n"))
    assert _handshake(ctx, certs) == "TLSv1.2"
    assert _handshake(ctx, certs, lowest=ssl.TLSVersion.TLSv1_3) == "TLSV1_ALERT_PROTOCOL_VERSION"


@pytest.mark.parametrize("version", ["SSLv3", "TLSv1", "TLSv1.1"])
def test_old_versions_on_a_service_made_elsewhere_are_a_config_error(certs, version):
    # the parser refuses these; a Service built in code gets the same message, no SSL.Error
    cfg, svc = _config(certs)
    svc = dataclasses.replace(svc, version_min=version, version_max=version,
                              lines={**svc.lines, "sslversion": 6})
    with pytest.raises(ConfigError) as info:
        server_context(cfg, svc)
    assert str(info.value) == (
        f"s.conf:6: [imaps] sslVersion = {version}: tlswrap serves TLS 1.2 and 1.3 only "
        "(RFC 8996 deprecates the older versions): write sslVersion = TLSv1.2 or TLSv1.3, "
        "or remove the line to allow both")


def test_an_openssl_error_in_any_step_becomes_a_config_error(certs, monkeypatch):
    def refuse(self, timeout):
        raise SSL.Error([("SSL routines", "", "bad value")])

    monkeypatch.setattr(SSL.Context, "set_timeout", refuse)
    cfg, svc = _config(certs, "sessionCacheTimeout = 600\n")
    with pytest.raises(ConfigError) as info:
        server_context(cfg, svc)
    assert str(info.value) == ("s.conf:6: [imaps] sessionCacheTimeout = 600: OpenSSL refuses "
                               "the session settings (bad value)")


def test_every_problem_of_a_service_is_reported(certs, tmp_path):
    missing = tmp_path / "none.pem"
    cfg, svc = _config(certs, f"ciphers = NOPE\ncurves = NOPE\nCAfile = {missing}\n")
    with pytest.raises(ConfigError) as info:
        server_context(cfg, svc)
    assert [str(e) for e in info.value.all()] == [
        "s.conf:6: [imaps] ciphers = NOPE: OpenSSL accepts none of these",
        "s.conf:7: [imaps] curves = NOPE: OpenSSL does not know these groups",
        f"s.conf:8: [imaps] CAfile = {missing}: cannot read: No such file or directory",
    ]


def test_problems_come_in_line_order(certs, tmp_path):
    missing = tmp_path / "none.key"
    cfg = parse_config(f"[imaps]\naccept = 993\nconnect = 143\ncert = {certs.cert_file}\n"
                       f"key = {missing}\nciphers = NOPE\n", "s.conf")
    with pytest.raises(ConfigError) as info:
        server_context(cfg, cfg.services[0])
    assert [str(e) for e in info.value.all()] == [
        f"s.conf:5: [imaps] key = {missing}: cannot read: No such file or directory",
        "s.conf:6: [imaps] ciphers = NOPE: OpenSSL accepts none of these",
    ]


# --- files: regular, bounded; values that OpenSSL or the OS would refuse (issue 17) ----------

@pytest.mark.parametrize("option", ["cert", "key", "CAfile", "CRLfile", "PSKsecrets",
                                    "OCSPstaple"])
def test_a_fifo_is_refused_without_blocking(certs, tmp_path, option):
    import os

    fifo = tmp_path / "fifo.pem"
    os.mkfifo(fifo)
    text = (f"[imaps]\naccept = 993\nconnect = 143\ncert = {certs.cert_file}\n"
            f"key = {certs.key_file}\n")
    if option in ("cert", "key"):
        text = text.replace(str(certs.cert_file if option == "cert" else certs.key_file),
                            str(fifo))
    elif option == "CRLfile":  # checked with the chain it applies to
        text += f"CAfile = {certs.ca_file}\nverifyChain = yes\nCRLfile = {fifo}\n"
    else:
        text += f"{option} = {fifo}\n"
    cfg = parse_config(text, "s.conf")
    line = {"cert": 4, "key": 5, "CRLfile": 8}.get(option, 6)
    with pytest.raises(ConfigError) as info:
        call_unless_blocked(lambda: server_context(cfg, cfg.services[0]), fifo)
    assert str(info.value) == (
        f"s.conf:{line}: [imaps] {option} = {fifo}: cannot read: not a regular file (a FIFO)")


def test_a_device_is_refused(certs):
    cfg, svc = _config(certs, "CAfile = /dev/zero\n")
    with pytest.raises(ConfigError) as info:
        server_context(cfg, svc)
    assert str(info.value) == ("s.conf:6: [imaps] CAfile = /dev/zero: cannot read: not a "
                               "regular file (a character device)")


def test_a_certificate_file_has_a_size_bound(certs, tmp_path):
    from tlswrap.tlscontext import PEM_MAX_BYTES

    big = tmp_path / "big.pem"
    big.write_bytes(certs.cert_file.read_bytes() + b"\n" * PEM_MAX_BYTES)
    cfg, svc = _config(certs)
    with pytest.raises(ConfigError) as info:
        server_context(cfg, dataclasses.replace(svc, cert=str(big)))
    assert str(info.value) == f"s.conf:4: [imaps] cert = {big}: cannot read: larger than 16 MiB"


def test_the_chain_is_served_from_what_was_read(certs, tmp_path):
    # the chain and the CA file are given to OpenSSL as the bytes read (no second open)
    ca = tmp_path / "ca.pem"
    ca.write_bytes(certs.ca_file.read_bytes())
    cfg, svc = _config(certs, f"CAfile = {ca}\n")
    ctx = server_context(cfg, svc)
    assert _handshake(ctx, certs) == "TLSv1.3"


def test_a_combined_pem_still_loads(certs, tmp_path):
    combined = tmp_path / "combined.pem"
    combined.write_bytes(certs.key_file.read_bytes() + certs.cert_file.read_bytes())
    cfg, svc = _config(certs)
    ctx = server_context(cfg, dataclasses.replace(svc, cert=str(combined), key=None))
    assert _handshake(ctx, certs) == "TLSv1.3"


@pytest.mark.parametrize("field,value,message", [
    ("session_timeout", 1e19, "sessionCacheTimeout = 1e+19: OpenSSL refuses the session "
                              "settings (int too big to convert)"),
    ("cert", "/tmp/a\x00b.pem", "cert = /tmp/a\x00b.pem: cannot read: embedded null byte"),
    ("key", "/tmp/a\x00b.pem", "key = /tmp/a\x00b.pem: cannot read: embedded null byte"),
])
def test_a_service_made_elsewhere_gets_config_errors_not_exceptions(certs, field, value,
                                                                    message):
    cfg, svc = _config(certs, "sessionCacheTimeout = 600\n")
    with pytest.raises(ConfigError) as info:
        server_context(cfg, dataclasses.replace(svc, **{field: value}))
    assert str(info.value).endswith(message)


def test_an_x25519_key_is_a_config_error(certs, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import x25519

    key = tmp_path / "x25519.key"
    key.write_bytes(x25519.X25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    cfg, svc = _config(certs)
    with pytest.raises(ConfigError) as info:
        server_context(cfg, dataclasses.replace(svc, key=str(key)))
    assert str(info.value) == (f"s.conf:5: [imaps] key = {key}: a X25519PrivateKey cannot "
                               "sign a TLS handshake: use RSA or EC P-256")
