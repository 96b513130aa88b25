"""The one place that builds OpenSSL contexts, from a configured service.

Secure defaults (each a reason):
- TLS 1.2 and 1.3 only: older versions have no AEAD ciphers and are deprecated (RFC 8996);
  the OpenSSL in cryptography's wheel will not negotiate them at its security level anyway.
  A configured minimum below TLS 1.2 is raised to it (``Service.tls_range``).
- No compression (CRIME), no renegotiation (a client-driven CPU drain with no use for mail).
- ECDHE + AEAD only, forward secrecy always. Every suite offered is strong, so the client's
  order wins (current guidance): a client without AES instructions picks ChaCha20.
  ``options = CIPHER_SERVER_PREFERENCE`` restores the server's order.
- Key exchange groups: OpenSSL's default list, which includes the hybrid post-quantum
  X25519MLKEM768 where the OpenSSL has it; ``curves`` in the config overrides.
- Session resumption on (cache + tickets): a mail client reconnects often, and a resumed
  handshake costs a fraction of a full one.
- SSL_MODE_RELEASE_BUFFERS: an idle connection (IMAP IDLE is the normal state) holds no
  16 KB read/write buffers.

Certificates, keys and CA files are read here, once, as regular files of at most
``PEM_MAX_BYTES`` (a FIFO would block a reload forever, a device never end), and OpenSSL is
given the bytes read, never the path, so what was checked is what is used.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from cryptography import x509
from OpenSSL import SSL, crypto

from .config import Config, Service, version_problem
from .errors import ConfigError
from .regularfile import read_regular
from .tlssettings import (
    BASE_MODES,
    BASE_OPTIONS,
    DEFAULT_CIPHERS,
    MIN_KEY_BITS,
    PEM_MAX_BYTES,
    session_id_context,
)

_VERSIONS = {"TLSv1.2": SSL.TLS1_2_VERSION, "TLSv1.3": SSL.TLS1_3_VERSION}  # config.TLS_SERVED


class _Steps:
    """The problems found while building one context, each a ConfigError at its option's line.

    Each ``step`` is one independent part of the context; a problem in it is recorded and the
    next step still runs, so one start (or ``tlswrap check``) reports every problem of a service.
    No exception leaves a step: an OpenSSL error becomes ``msg`` with OpenSSL's reason, and a
    value Python cannot hand to OpenSSL (ValueError, OverflowError, TypeError: the parser
    prevents these, a Service made elsewhere may not) becomes ``msg`` with Python's.
    """

    def __init__(self, config: Config, service: Service) -> None:
        self.config = config
        self.service = service
        self.errors: list[ConfigError] = []

    @contextmanager
    def step(self, option: str | None, msg: str, reason: bool = True) -> Iterator[None]:
        try:
            yield
        except ConfigError as exc:
            self.errors.append(exc)
        except SSL.Error as exc:
            why = f" ({ssl_reason(exc)})" if reason else ""
            self.errors.append(self.fail(option, msg + why))
        except (ValueError, OverflowError, TypeError) as exc:
            self.errors.append(self.fail(option, f"{msg} ({exc})"))

    def fail(self, option: str | None, msg: str) -> ConfigError:
        return self.config.error(msg, option, self.service)


def server_context(config: Config, service: Service) -> SSL.Context:
    """A server context for ``service``.

    ConfigError (at the option's line) on any problem; it carries every problem found in the
    service (``ConfigError.all()``), not only the first.
    """
    steps = _Steps(config, service)
    step, fail = steps.step, steps.fail
    with step(None, "OpenSSL cannot make a TLS server context"):
        ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    if steps.errors:
        raise steps.errors[0]
    problem = version_problem(service)  # the parser said so already; a Service made elsewhere
    if problem:
        steps.errors.append(fail(problem[1], problem[0]))
    else:
        low, high = service.tls_range
        option = service.option_for("version_max") or service.option_for("version_min")
        said = f"{option} = {service.version_max or service.version_min}: " if option else ""
        with step(option, f"{said}OpenSSL refuses TLS versions {low} to {high}"):
            ctx.set_min_proto_version(_VERSIONS[low])
            ctx.set_max_proto_version(_VERSIONS[high])
    with step(None, "OpenSSL refuses tlswrap's base settings"):
        # IGNORE_UNEXPECTED_EOF: a client that half-closes TCP without close_notify (common in
        # mail clients) would otherwise make OpenSSL 3+ fail the whole connection, losing the
        # reply still on its way; the relay tells the two kinds of EOF apart for the log.
        for name in BASE_OPTIONS:  # NO_COMPRESSION, NO_RENEGOTIATION, IGNORE_UNEXPECTED_EOF
            ctx.set_options(getattr(SSL, f"OP_{name}"))
        for name in BASE_MODES:  # RELEASE_BUFFERS
            ctx.set_mode(getattr(SSL, f"MODE_{name}"))
    ops = {name[3:].upper(): getattr(SSL, name) for name in dir(SSL) if name.startswith("OP_")}
    with step("options", f"options = {', '.join(service.ssl_options)}: OpenSSL refuses them"):
        for name in service.ssl_options:  # names were checked by the parser
            ctx.set_options(ops[name])
    with step("ciphers", f"ciphers = {service.ciphers}: OpenSSL accepts none of these",
              reason=False):
        ctx.set_cipher_list((service.ciphers or DEFAULT_CIPHERS).encode())
    if service.ciphersuites:
        with step("ciphersuites", f"ciphersuites = {service.ciphersuites}: "
                                  "OpenSSL accepts none of these", reason=False):
            ctx.set_tls13_ciphersuites(service.ciphersuites.encode())
    if service.curves:
        with step("curves", f"curves = {service.curves}: OpenSSL refuses them"):
            _set_groups(steps, ctx, service.curves)
    with step("cert", f"cert = {service.cert}: OpenSSL refuses it"):
        _use_cert_and_key(steps, ctx)
    if service.ca_file:
        with step("CAfile", f"CAfile = {service.ca_file}: no certificates could be loaded",
                  reason=False):
            _load_ca_file(steps, ctx, service.ca_file)
    with step("sessionCacheTimeout", f"sessionCacheTimeout = {service.session_timeout:g}: "
                                     "OpenSSL refuses the session settings"):
        ctx.set_session_id(session_id_context(service.name))
        ctx.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
        ctx.set_timeout(int(service.session_timeout))
    first = ConfigError.of(sorted(steps.errors, key=lambda e: e.lineno or 0))
    if first is not None:
        raise first
    return ctx


def read_pem_file(path: str, limit: int = PEM_MAX_BYTES) -> bytes:
    """A certificate, key or CA file: ``regularfile.read_regular`` with the PEM size bound."""
    return read_regular(path, limit)


def _check_readable(steps: _Steps, option: str, path: str) -> bytes:
    """The contents of ``path``; ConfigError ``OPTION = PATH: cannot read: REASON``."""
    try:
        return read_pem_file(path)
    except OSError as exc:
        reason = exc.strerror or str(exc)
    except ValueError as exc:
        reason = str(exc)
    raise steps.fail(option, f"{option} = {path}: cannot read: {reason}")


def _load_certificates(steps: _Steps, option: str, path: str) -> list[x509.Certificate]:
    """The PEM certificates in ``path`` (other PEM blocks skipped); ConfigError if none."""
    data = _check_readable(steps, option, path)
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        why = "no BEGIN CERTIFICATE block" if "Unable to load PEM" in str(exc) else str(exc)
        raise steps.fail(option, f"{option} = {path}: no PEM certificate could be loaded from "
                                 f"it ({why})") from None


def _load_ca_file(steps: _Steps, ctx: SSL.Context, path: str) -> None:
    store = ctx.get_cert_store()
    if store is None:
        raise steps.fail("CAfile", f"CAfile = {path}: OpenSSL has no certificate store")
    for cert in _load_certificates(steps, "CAfile", path):
        store.add_cert(crypto.X509.from_cryptography(cert))


def _use_cert_and_key(steps: _Steps, ctx: SSL.Context) -> None:
    """Load the certificate chain and its key (from ``key``, else from the ``cert`` file)."""
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    service = steps.service
    cert = service.cert
    if cert is None:  # parse_config guarantees one; a Service made elsewhere may not
        raise steps.fail(None, "no 'cert': a TLS server needs a certificate")
    key, key_option = (service.key, "key") if service.key else (cert, "cert")
    leaf, *chain = _load_certificates(steps, "cert", cert)
    try:
        ctx.use_certificate(leaf)
        for each in chain:
            ctx.add_extra_chain_cert(each)
    except SSL.Error as exc:
        raise steps.fail("cert", f"cert = {cert}: OpenSSL refuses the certificate "
                                 f"({ssl_reason(exc)})") from None
    key_pem = _check_readable(steps, key_option, key)
    try:
        pkey = load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise steps.fail(key_option, f"{key_option} = {key}: no usable PEM private key in it "
                                     "(encrypted keys are not supported)") from None
    if not isinstance(pkey, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, dsa.DSAPrivateKey,
                             ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        raise steps.fail(key_option, f"{key_option} = {key}: a {type(pkey).__name__} cannot "
                                     "sign a TLS handshake: use RSA or EC P-256")
    weak = _weakness(pkey)
    if weak:
        raise steps.fail(key_option, f"{key_option} = {key}: {weak}")
    try:
        ctx.use_privatekey(pkey)
        ctx.check_privatekey()
    except SSL.Error:
        raise steps.fail(key_option, f"{key_option} = {key}: the private key does not match "
                                     f"the certificate in {cert}") from None


def _weakness(pkey: object) -> str | None:
    """Why a key is too weak to serve with, or None."""
    from cryptography.hazmat.primitives.asymmetric import dsa, rsa

    if isinstance(pkey, (rsa.RSAPrivateKey, dsa.DSAPrivateKey)) and pkey.key_size < MIN_KEY_BITS:
        return f"a {pkey.key_size}-bit key is too weak: use RSA 2048 or more, or EC P-256"
    return None


def _set_groups(steps: _Steps, ctx: SSL.Context, groups: str) -> None:
    # pyOpenSSL exposes no groups setter; SSL_CTX_set1_curves_list is the same call in OpenSSL.
    from .opensslffi import context_pointer, lib

    if lib.SSL_CTX_set1_curves_list(context_pointer(ctx), groups.encode()) != 1:
        lib.ERR_clear_error()
        raise steps.fail("curves", f"curves = {groups}: OpenSSL does not know these groups")


def ssl_reason(exc: SSL.Error) -> str:
    """The OpenSSL reason strings of an error, e.g. 'unsupported protocol'."""
    items = exc.args[0] if exc.args and isinstance(exc.args[0], list) else []
    parts = [str(item[-1]) for item in items if isinstance(item, tuple) and item]
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
