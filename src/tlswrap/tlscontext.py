"""The one place that builds OpenSSL contexts, from a configured service.

Secure defaults (each a reason):
- TLS 1.2 and 1.3 only: older versions have no AEAD ciphers and are deprecated (RFC 8996).
- No compression (CRIME), no renegotiation (a client-driven CPU drain with no use for mail).
- ECDHE only, forward secrecy always; the server's cipher preference wins.
- Key exchange groups: OpenSSL's default list, which includes the hybrid post-quantum
  X25519MLKEM768 where the OpenSSL has it; ``curves`` in the config overrides.
- Session resumption on (cache + tickets): a mail client reconnects often, and a resumed
  handshake costs a fraction of a full one.
- SSL_MODE_RELEASE_BUFFERS: an idle connection (IMAP IDLE is the normal state) holds no
  16 KB read/write buffers.
"""

from __future__ import annotations

import os

from OpenSSL import SSL

from .config import Config, Service
from .errors import ConfigError

# TLS 1.2 suites: ECDHE + AEAD only. TLS 1.3 suites are OpenSSL's defaults (all AEAD).
DEFAULT_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)
_VERSIONS = {
    "SSLv3": SSL.SSL3_VERSION, "TLSv1": SSL.TLS1_VERSION, "TLSv1.1": SSL.TLS1_1_VERSION,
    "TLSv1.2": SSL.TLS1_2_VERSION, "TLSv1.3": SSL.TLS1_3_VERSION,
}
_SESSION_ID_CONTEXT_MAX = 32


def _fail(config: Config, service: Service, option: str, msg: str) -> ConfigError:
    return config.error(msg, option, service)


def _check_readable(config: Config, service: Service, option: str, path: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise _fail(config, service, option,
                    f"{option} = {path}: cannot read: {exc.strerror}") from None


def server_context(config: Config, service: Service) -> SSL.Context:
    """A server context for ``service``; ConfigError (with the option's line) on any problem."""
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_min_proto_version(_VERSIONS[service.version_min] if service.version_min else 0)
    ctx.set_max_proto_version(_VERSIONS[service.version_max] if service.version_max else 0)
    # IGNORE_UNEXPECTED_EOF: a client that half-closes TCP without close_notify (common in
    # mail clients) would otherwise make OpenSSL 3+ fail the whole connection, losing the
    # reply still on its way; the relay tells the two kinds of EOF apart for the log.
    ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION
                    | SSL.OP_CIPHER_SERVER_PREFERENCE | SSL.OP_IGNORE_UNEXPECTED_EOF)
    ctx.set_mode(SSL.MODE_RELEASE_BUFFERS)
    ops = {name[3:].upper(): getattr(SSL, name) for name in dir(SSL) if name.startswith("OP_")}
    for name in service.ssl_options:  # names were checked by the parser
        ctx.set_options(ops[name])
    try:
        ctx.set_cipher_list((service.ciphers or DEFAULT_CIPHERS).encode())
    except SSL.Error:
        raise _fail(config, service, "ciphers",
                    f"ciphers = {service.ciphers}: OpenSSL accepts none of these") from None
    if service.ciphersuites:
        try:
            ctx.set_tls13_ciphersuites(service.ciphersuites.encode())
        except SSL.Error:
            raise _fail(config, service, "ciphersuites",
                        f"ciphersuites = {service.ciphersuites}: "
                        "OpenSSL accepts none of these") from None
    if service.curves:
        _set_groups(config, service, ctx, service.curves)

    cert = service.cert
    key = service.key or cert
    assert cert is not None  # parse_config guarantees it
    _check_readable(config, service, "cert", cert)
    try:
        ctx.use_certificate_chain_file(cert.encode())
    except SSL.Error as exc:
        raise _fail(config, service, "cert",
                    f"cert = {cert}: no PEM certificate could be loaded from it "
                    f"({ssl_reason(exc)})") from None
    key_option = "key" if service.key else "cert"
    _check_readable(config, service, key_option, key)
    with open(key, "rb") as f:
        key_pem = f.read()
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        pkey = load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise _fail(config, service, key_option,
                    f"{key_option} = {key}: no usable PEM private key in it "
                    "(encrypted keys are not supported)") from None
    weak = _weakness(pkey)
    if weak:
        raise _fail(config, service, key_option, f"{key_option} = {key}: {weak}")
    try:
        ctx.use_privatekey(pkey)
        ctx.check_privatekey()
    except SSL.Error:
        raise _fail(config, service, key_option,
                    f"{key_option} = {key}: the private key does not match the certificate "
                    f"in {cert}") from None
    if service.ca_file:
        _check_readable(config, service, "cafile", service.ca_file)
        try:
            ctx.load_verify_locations(service.ca_file.encode())
        except SSL.Error:
            raise _fail(config, service, "cafile",
                        f"CAfile = {service.ca_file}: no certificates could be loaded") from None

    ctx.set_session_id(service.name.encode()[:_SESSION_ID_CONTEXT_MAX] or b"tlswrap")
    ctx.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
    ctx.set_timeout(int(service.session_timeout))
    return ctx


def _weakness(pkey: object) -> str | None:
    """Why a key is too weak to serve with, or None."""
    from cryptography.hazmat.primitives.asymmetric import dsa, rsa

    if isinstance(pkey, (rsa.RSAPrivateKey, dsa.DSAPrivateKey)) and pkey.key_size < 2048:
        return f"a {pkey.key_size}-bit key is too weak: use RSA 2048 or more, or EC P-256"
    return None


def _set_groups(config: Config, service: Service, ctx: SSL.Context, groups: str) -> None:
    # pyOpenSSL exposes no groups setter; SSL_CTX_set1_curves_list is the same call in OpenSSL.
    from cryptography.hazmat.bindings.openssl.binding import Binding

    ok = Binding.lib.SSL_CTX_set1_curves_list(ctx._context, groups.encode())  # noqa: SLF001
    if ok != 1:
        Binding.lib.ERR_clear_error()
        raise _fail(config, service, "curves",
                    f"curves = {groups}: OpenSSL does not know these groups")


def ssl_reason(exc: SSL.Error) -> str:
    """The OpenSSL reason strings of an error, e.g. 'unsupported protocol'."""
    parts = []
    for item in exc.args[0] if exc.args and isinstance(exc.args[0], list) else []:
        if isinstance(item, tuple) and item:
            parts.append(str(item[-1]))
    return ", ".join(parts) or str(exc) or type(exc).__name__


def key_file_warning(path: str) -> str | None:
    """A warning when a private key file is readable by group or others."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if mode & 0o077:
        return f"{path}: private key is readable by group/others (mode {mode & 0o777:o}); use 0600"
    return None
