"""opensslraw: the inetd fast path's context is tlscontext's, setting for setting."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tlswrap import opensslffi, opensslraw
from tlswrap.config import parse_config
from tlswrap.fast.spec import from_config_text
from tlswrap.tlscontext import server_context

lib, ffi = opensslraw.lib, opensslraw.ffi


def test_the_binding_has_every_function_and_constant_used():
    missing = [name for name in opensslraw.REQUIRED if not hasattr(lib, name)]
    assert not missing, f"cryptography's binding no longer exposes {missing}"


def test_it_is_the_library_pyopenssl_calls():
    assert lib.OpenSSL_version_num() == opensslffi.lib.OpenSSL_version_num()
    assert ffi is opensslffi.ffi


def _raw(text: str):
    spec = from_config_text(text)
    low, high = spec.tls_range
    return opensslraw.server_context(
        name=spec.name, cert=spec.cert or "", key=spec.key, ciphers=spec.ciphers,
        ciphersuites=spec.ciphersuites, curves=spec.curves, version_low=low, version_high=high,
        ssl_options=spec.ssl_options, session_timeout=spec.session_timeout)


def _settings(ctx_ptr) -> dict[str, object]:
    """What a context holds that a client would notice: options, modes, session settings,
    the suites on offer (TLS 1.2 and 1.3) and the certificate's key check."""
    ssl = ffi.gc(lib.SSL_new(ctx_ptr), lib.SSL_free)
    suites = []
    i = 0
    while (name := lib.SSL_get_cipher_list(ssl, i)) != ffi.NULL:
        suites.append(ffi.string(name).decode())
        i += 1
    return {
        "options": lib.SSL_CTX_get_options(ctx_ptr),
        "mode": lib.SSL_CTX_set_mode(ctx_ptr, 0),  # adds nothing, returns the mode
        "timeout": lib.SSL_CTX_get_timeout(ctx_ptr),
        "cache": lib.SSL_CTX_get_session_cache_mode(ctx_ptr),
        "verify": lib.SSL_CTX_get_verify_mode(ctx_ptr),
        "suites": suites,
        "key matches": lib.SSL_CTX_check_private_key(ctx_ptr),
    }


@pytest.mark.parametrize("extra", [
    "",
    "options = CIPHER_SERVER_PREFERENCE\noptions = NO_TICKET",
    "ciphers = ECDHE-ECDSA-AES256-GCM-SHA384\nciphersuites = TLS_CHACHA20_POLY1305_SHA256",
    "sslVersion = TLSv1.3\nsessionCacheTimeout = 60",
    "sslVersionMax = TLSv1.2\noptions = ALL",
    "curves = P-256:X25519",
])
def test_the_same_settings_as_tlscontext(certs, extra):
    text = (f"[imaps]\nconnect = 143\ncert = {certs.cert_file}\nkey = {certs.key_file}\n"
            f"{extra}\n")
    cfg = parse_config(text, "s.conf")
    full = opensslffi.context_pointer(server_context(cfg, cfg.services[0]))
    assert _settings(_raw(text)) == _settings(full)


def _key_file(tmp_path, key) -> str:
    path = tmp_path / "key.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return str(path)


def test_what_tlscontext_refuses_it_refuses_too(certs, tmp_path):
    """A weak key, a key that does not match, an encrypted key, no certificate: RawTLSError
    (the caller then lets the full path say why, at its config line)."""
    base = f"[imaps]\nconnect = 143\ncert = {certs.cert_file}\n"
    weak = _key_file(tmp_path, rsa.generate_private_key(65537, 1024))
    other = tmp_path / "other.pem"
    other.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    for key in (weak, str(other), str(empty)):
        with pytest.raises(opensslraw.RawTLSError):
            _raw(base + f"key = {key}\n")
    mismatch = _key_file(tmp_path, ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(opensslraw.RawTLSError):
        _raw(base + f"key = {mismatch}\n")
    with pytest.raises(opensslraw.RawTLSError):
        _raw(f"[imaps]\nconnect = 143\ncert = {empty}\nkey = {certs.key_file}\n")
    assert lib.ERR_peek_error() == 0  # nothing left behind for the connection
