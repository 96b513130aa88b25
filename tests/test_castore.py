"""``CAstore`` (stunnel's OSSL_STORE URI), as far as tlswrap honours it: a path or a ``file:``
URI naming a PEM file or a hashed directory, verified against in a real handshake; any other
store scheme refused at its line with what to use instead."""

from __future__ import annotations

import shutil
import socket
import ssl
import threading
from pathlib import Path

import pytest
import trustme
from OpenSSL import SSL, crypto

from tlswrap.config import parse_config
from tlswrap.errors import ConfigError
from tlswrap.tlscontext import client_context, server_context

CLIENT = "[out]\nclient = yes\naccept = 127.0.0.1:1143\nconnect = 127.0.0.1:143\n"  # 1-4


def _store(value: str) -> str | None:
    return parse_config(CLIENT + f"CAstore = {value}\n", "s.conf").services[0].ca_store


@pytest.mark.parametrize(("value", "path"), [
    ("/etc/ssl/ca.pem", "/etc/ssl/ca.pem"),
    ("certs/ca.pem", "certs/ca.pem"),
    ("file:/etc/ssl/ca.pem", "/etc/ssl/ca.pem"),
    ("file:///etc/ssl/certs", "/etc/ssl/certs"),
    ("FILE://localhost/etc/ssl/my%20cas", "/etc/ssl/my cas"),
    ("file:ca.pem", "ca.pem"),
])
def test_paths_and_file_uris(value, path):
    assert _store(value) == path


@pytest.mark.parametrize(("value", "why"), [
    ("org.openssl.winstore://", "the org.openssl.winstore: store is not supported: tlswrap "
     "reads a PEM file or a hashed directory (a path or a file: URI); use CAfile or CApath "
     "(client = yes trusts the system's CAs when none is given)"),
    ("pkcs11:token=ca;object=root", "the pkcs11: store is not supported: tlswrap reads a PEM "
     "file or a hashed directory (a path or a file: URI); use CAfile or CApath (client = yes "
     "trusts the system's CAs when none is given)"),
    ("file://ca.example/etc/ca.pem", "a file: URI names a file on this machine, not on "
     "'ca.example'"),
    ("file://", "a file: URI without a path"),
    ("file:/etc/%00x", "a NUL (%00) in the path"),
    ("file:/etc/%ff", "its %-escapes are not UTF-8"),
])
def test_what_cannot_be_honoured_is_an_error_at_its_line(value, why):
    with pytest.raises(ConfigError) as info:
        _store(value)
    assert str(info.value) == f"s.conf:5: [out] CAstore = {value}: {why}"


def _hashed_dir(tmp: Path, ca_pem: Path) -> Path:
    """A hashed directory as c_rehash (openssl rehash) makes it: the CA under its subject
    hash."""
    directory = tmp / "cas"
    directory.mkdir()
    cert = crypto.load_certificate(crypto.FILETYPE_PEM, ca_pem.read_bytes())
    shutil.copy(ca_pem, directory / f"{cert.subject_name_hash():08x}.0")
    return directory


def _pyopenssl_side(ctx: SSL.Context, peer: ssl.SSLContext, *, server: bool) -> str | None:
    """One handshake over a socketpair: ``ctx`` (pyOpenSSL, the server or the client) against
    Python ssl's ``peer`` in a thread; None when it completed, else OpenSSL's reason on the
    ``ctx`` side."""
    a, b = socket.socketpair()
    with a, b:
        def other_side() -> None:
            try:
                with (peer.wrap_socket(b, server_hostname="localhost") if server
                      else peer.wrap_socket(a, server_side=True)) as tls:
                    if not server:
                        tls.recv(1)
            except (ssl.SSLError, OSError):
                pass

        thread = threading.Thread(target=other_side)
        thread.start()
        ours = SSL.Connection(ctx, a if server else b)
        (ours.set_accept_state if server else ours.set_connect_state)()
        try:
            ours.do_handshake()
            if not server:
                ours.shutdown()
            reason = None
        except SSL.Error as exc:
            reason = str(exc)
        finally:
            (a if server else b).shutdown(socket.SHUT_RDWR)
            thread.join(10)
        return reason


def _handshake(certs, ca_store: str) -> str | None:
    """A client context from ``CAstore = ca_store`` against a TLS server with the test's
    certificate, over a socketpair: None when the chain verified, else OpenSSL's reason."""
    cfg = parse_config(CLIENT + f"CAstore = {ca_store}\n", "s.conf")
    ctx = client_context(cfg, cfg.services[0])
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(certs.cert_file, certs.key_file)
    return _pyopenssl_side(ctx, server_ctx, server=False)


@pytest.mark.parametrize("form", ["path", "file:", "file:///"])
def test_a_pem_file_is_trusted(certs, tmp_path, form):
    uri = {"path": "{}", "file:": "file:{}", "file:///": "file://{}"}[form]
    assert _handshake(certs, uri.format(certs.ca_file)) is None


@pytest.mark.parametrize("form", ["path", "file:"])
def test_a_hashed_directory_is_trusted(certs, tmp_path, form):
    directory = _hashed_dir(tmp_path, Path(certs.ca_file))
    assert _handshake(certs, f"{'file:' if form == 'file:' else ''}{directory}") is None


def test_another_ca_is_not_trusted(certs, tmp_path):
    """The same store, holding a CA that did not issue the server's certificate: the handshake
    fails, so the store is what verification used (not the system's CAs, not nothing)."""
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    assert "certificate verify failed" in (_handshake(certs, str(other)) or "")
    directory = _hashed_dir(tmp_path, other)
    assert "certificate verify failed" in (_handshake(certs, f"file:{directory}") or "")


def test_a_missing_store_is_an_error_at_its_line(tmp_path):
    cfg = parse_config(CLIENT + f"CAstore = file:{tmp_path}/none.pem\n", "s.conf")
    with pytest.raises(ConfigError) as info:
        client_context(cfg, cfg.services[0])
    assert str(info.value) == (f"s.conf:5: [out] CAstore = {tmp_path}/none.pem: no such file "
                               "or directory")


def test_a_file_without_certificates_is_an_error_at_its_line(tmp_path):
    empty = tmp_path / "empty.pem"
    empty.write_text("not a certificate\n")
    cfg = parse_config(CLIENT + f"CAstore = {empty}\n", "s.conf")
    with pytest.raises(ConfigError) as info:
        client_context(cfg, cfg.services[0])
    assert str(info.value).startswith(f"s.conf:5: [out] CAstore = {empty}: no PEM certificate")


@pytest.mark.parametrize("form", ["file", "directory"])
def test_a_server_verifies_client_certificates_against_castore(certs, tmp_path, form):
    """verify = 2 needs CAs to trust: CAstore gives them, as CAfile or CApath would; a client
    certificate from that CA is taken, one from another CA refused."""
    store = str(certs.ca_file) if form == "file" else str(_hashed_dir(tmp_path,
                                                                      Path(certs.ca_file)))
    cfg = parse_config(f"[in]\naccept = 993\nconnect = 143\ncert = {certs.cert_file}\n"
                       f"key = {certs.key_file}\nverify = 2\nCAstore = file:{store}\n",
                       "s.conf")
    ctx = server_context(cfg, cfg.services[0])
    good = _client_cert(tmp_path / "good", certs.ca)
    bad = _client_cert(tmp_path / "bad", trustme.CA())
    assert _client_handshake(ctx, certs, good) is None
    assert "certificate verify failed" in (_client_handshake(ctx, certs, bad) or "")


def _client_cert(directory: Path, ca: trustme.CA) -> tuple[str, str]:
    directory.mkdir()
    issued = ca.issue_cert("client@example.org")
    cert, key = directory / "client.pem", directory / "client.key"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    return str(cert), str(key)


def _client_handshake(ctx: SSL.Context, certs, client: tuple[str, str]) -> str | None:
    """A Python ssl client with ``client``'s certificate against server context ``ctx``:
    None when the server took it, else the server's reason."""
    client_ctx = ssl.create_default_context(cafile=str(certs.ca_file))
    client_ctx.load_cert_chain(*client)
    client_ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # the verdict within the handshake
    return _pyopenssl_side(ctx, client_ctx, server=True)
