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

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from cryptography import x509
from OpenSSL import SSL, crypto

from . import ssloptions
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

log = logging.getLogger("tlswrap.tlscontext")

# with PSKsecrets, TLS 1.2 clients may also use a pre-shared key: with ECDHE (forward secrecy)
# and an AEAD cipher, the one such suite OpenSSL has. TLS 1.3 PSK uses its own suites.
PSK_CIPHERS = "ECDHE-PSK-CHACHA20-POLY1305"

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

    def fail(self, option: str | None, msg: str, line: int | None = None) -> ConfigError:
        """At ``option``'s line, or at ``line`` (a second ``cert``/``key``) when given."""
        if line is not None:
            return ConfigError(self.config.filename, line, msg, self.service.name)
        return self.config.error(msg, option, self.service)


def server_context(config: Config, service: Service) -> SSL.Context:
    """A server context for ``service`` (its first certificate's; see ``server_contexts``)."""
    return server_contexts(config, service)[0][1]


def server_contexts(config: Config, service: Service) -> list[tuple[tuple[str, ...],
                                                                    SSL.Context]]:
    """The server contexts of ``service``, one per set of names its certificates serve
    (``cert`` lines whose certificates name the same hosts -- an RSA and an ECDSA one -- share
    a context, and OpenSSL picks by what the client supports), each with those names; the first
    is the default, made from the first ``cert``.

    ConfigError (at the option's line) on any problem; it carries every problem found in the
    service (``ConfigError.all()``), not only the first.
    """
    from .certnames import cert_names

    steps = _Steps(config, service)
    default = _base_context(steps, SSL.TLS_SERVER_METHOD)
    if default is None:
        _raise_first(steps)
        raise steps.fail(None, "OpenSSL cannot make a TLS server context")
    groups: list[tuple[tuple[str, ...], SSL.Context]] = []
    pairs = [(service.cert, service.key, None), *service.more_certs]
    if service.psk_secrets and not service.cert:  # PSK only: no certificate at all
        groups, pairs = [((), default)], []
    for cert, key, line in pairs:
        leaf = None
        chain: list[x509.Certificate] = []
        with steps.step("cert", f"cert = {cert}: OpenSSL refuses it"):
            if cert is None:  # parse_config guarantees one; a Service made elsewhere may not
                raise steps.fail(None, "no 'cert': a TLS server needs a certificate")
            chain = _load_certificates(steps, "cert", cert, line)
            leaf = chain[0]
        names = cert_names(leaf) if leaf is not None else ()
        ctx = next((c for n, c in groups if n == names), None) if groups else default
        if ctx is None:
            ctx = _base_context(steps, SSL.TLS_SERVER_METHOD)
            if ctx is None:
                break
        if not any(c is ctx for _, c in groups):
            groups.append((names, ctx))
        if leaf is None:
            continue
        with steps.step("cert", f"cert = {cert}: OpenSSL refuses it"):
            _use_cert_and_key(steps, ctx, cert, key, line)
        staple_file = service.ocsp_staple_file
        if staple_file and line is None:
            with steps.step("OCSPstaple", f"OCSPstaple = {staple_file}: unusable"):
                _staple_from_file(steps, ctx, staple_file, leaf)
        elif service.ocsp_staple == "auto" and line is None:
            with steps.step("OCSPstaple", "OCSP stapling: unusable"):
                _staple_from_responder(steps, ctx, chain)
    for _, ctx in groups:
        _set_verification(steps, ctx)
        if service.alpn:
            from .tlshooks import set_alpn

            set_alpn(ctx, service.alpn)
        _set_session(steps, ctx)
        if service.psk_secrets:
            with steps.step("PSKsecrets", f"PSKsecrets = {service.psk_secrets}: OpenSSL "
                                          "refuses it"):
                _use_psk_secrets(steps, ctx, service.psk_secrets)
    _raise_first(steps)
    return groups


def client_context(config: Config, service: Service) -> SSL.Context:
    """A client context for ``client = yes``: the server's chain verified against CAfile,
    CApath or the system's store unless ``verifyChain = no``; ``cert``/``key``, if given,
    sent when the server asks. The server's name is set per connection
    (``tlshooks.expect_server``)."""
    steps = _Steps(config, service)
    ctx = _base_context(steps, SSL.TLS_CLIENT_METHOD)
    if ctx is None:
        _raise_first(steps)
        raise steps.fail(None, "OpenSSL cannot make a TLS client context")
    if service.cert:
        with steps.step("cert", f"cert = {service.cert}: OpenSSL refuses it"):
            _use_cert_and_key(steps, ctx, service.cert, service.key, None)
    if service.psk_secrets:
        with steps.step("PSKsecrets", f"PSKsecrets = {service.psk_secrets}: OpenSSL "
                                      "refuses it"):
            _use_psk_identity(steps, ctx, service.psk_secrets, service.psk_identity)
    if (not service.ca_file and not service.ca_path and not service.ca_store
            and service.verification.chain):
        with steps.step("verifyChain", "OpenSSL cannot load the system's CA certificates"):
            ctx.set_default_verify_paths()
    _set_verification(steps, ctx)
    if service.alpn:
        with steps.step("alpn", f"alpn = {', '.join(service.alpn)}: OpenSSL refuses it"):
            ctx.set_alpn_protos([p.encode() for p in service.alpn])
    with steps.step("sessionCacheTimeout", "OpenSSL refuses the session settings"):
        ctx.set_session_cache_mode(SSL.SESS_CACHE_CLIENT)
        ctx.set_timeout(int(service.session_timeout))
    _raise_first(steps)
    return ctx


def _raise_first(steps: _Steps) -> None:
    """The problems found (each once: a context per certificate repeats the shared steps)."""
    unique = {str(e): e for e in steps.errors}.values()
    first = ConfigError.of(sorted(unique, key=lambda e: e.lineno or 0))
    if first is not None:
        raise first


def _set_session(steps: _Steps, ctx: SSL.Context) -> None:
    service = steps.service
    with steps.step("sessionCacheTimeout", f"sessionCacheTimeout = {service.session_timeout:g}: "
                                           "OpenSSL refuses the session settings"):
        ctx.set_session_id(session_id_context(service.name))
        if service.session_resume:
            ctx.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
        else:  # sessionResume = no: no cache, no tickets (TLS 1.2 and 1.3)
            ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
            ctx.set_options(SSL.OP_NO_TICKET)
        ctx.set_timeout(int(service.session_timeout))


def _base_context(steps: _Steps, method: int) -> SSL.Context | None:
    """A context with the service's versions, options, ciphers and groups (no certificate)."""
    service = steps.service
    step, fail = steps.step, steps.fail
    ctx = None
    with step(None, "OpenSSL cannot make a TLS context"):
        ctx = SSL.Context(method)
    if ctx is None:
        return None
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
    if service.ssl_options:
        with step("options", f"options = {', '.join(service.ssl_options)}: OpenSSL refuses "
                             "them"):
            ctx.set_options(ssloptions.bits(service.ssl_options))
    default = DEFAULT_CIPHERS + (":" + PSK_CIPHERS if service.psk_secrets else "")
    ciphers = service.ciphers or default
    if service.security_level is not None:  # OpenSSL reads it from the cipher string
        ciphers += f":@SECLEVEL={service.security_level}"
    option = "ciphers" if service.ciphers else "securityLevel"
    said = " and ".join(([f"ciphers = {service.ciphers}"] if service.ciphers else [])
                        + ([f"securityLevel = {service.security_level}"]
                           if service.security_level is not None else []))
    with step(option, f"{said}: OpenSSL accepts none of these", reason=False):
        ctx.set_cipher_list(ciphers.encode())
    if service.ciphersuites:
        with step("ciphersuites", f"ciphersuites = {service.ciphersuites}: "
                                  "OpenSSL accepts none of these", reason=False):
            ctx.set_tls13_ciphersuites(service.ciphersuites.encode())
    if service.curves:
        with step("curves", f"curves = {service.curves}: OpenSSL refuses them"):
            _set_groups(steps, ctx, service.curves)
    return ctx


def _set_verification(steps: _Steps, ctx: SSL.Context) -> None:
    """The peer-certificate policy (``verify``, ``verifyChain``, ``verifyPeer``, ...): the
    trust anchors and CRLs in the context's store, and the callback that judges."""
    from cryptography.hazmat.primitives import hashes

    from . import certnames
    from .tlshooks import set_verify

    service = steps.service
    policy = service.verification
    anchors: list[x509.Certificate] = []
    if service.ca_file:
        with steps.step("CAfile", f"CAfile = {service.ca_file}: no certificates could be "
                                  "loaded", reason=False):
            anchors = _load_certificates(steps, "CAfile", service.ca_file)
            store = ctx.get_cert_store()
            if store is None:
                raise steps.fail("CAfile", f"CAfile = {service.ca_file}: OpenSSL has no "
                                           "certificate store")
            for cert in anchors:
                store.add_cert(crypto.X509.from_cryptography(cert))
            if not service.client and policy.request:
                for cert in anchors:  # named in the certificate request, for clients to choose
                    ctx.add_client_ca(cert)
    if service.ca_store:
        anchors += _load_ca_store(steps, ctx, service.ca_store, policy.peer)
    for option, path in (("CApath", service.ca_path), ("CRLpath", service.crl_path)):
        if path:
            with steps.step(option, f"{option} = {path}: OpenSSL refuses it"):
                if not os.path.isdir(path):
                    raise steps.fail(option, f"{option} = {path}: not a directory")
                ctx.load_verify_locations(None, path)
                if option == "CApath" and policy.peer:
                    anchors += _directory_certificates(path)
    if service.crl_file:
        with steps.step("CRLfile", f"CRLfile = {service.crl_file}: OpenSSL refuses it"):
            store = ctx.get_cert_store()
            for crl in _load_crls(steps, service.crl_file):
                store.add_crl(crl)  # type: ignore[union-attr]
    if service.crl_file or service.crl_path:
        store = ctx.get_cert_store()
        if store is not None:
            store.set_flags(crypto.X509StoreFlags.CRL_CHECK | crypto.X509StoreFlags.CRL_CHECK_ALL)
    if not policy.request:
        return
    codes = {"host": 62, "email": 63, "ip": 64}  # X509_V_ERR_{HOSTNAME,EMAIL,IP_ADDRESS}_MISMATCH
    hosts, emails, ips = service.check_host, service.check_email, service.check_ip

    def check(cert: x509.Certificate) -> int | None:
        kind = certnames.check_names(cert, hosts, emails, ips)
        return codes[kind] if kind else None

    pinned = frozenset(c.fingerprint(hashes.SHA256()) for c in anchors)
    lenient = bool(service.redirect) or not (policy.chain or policy.peer)
    set_verify(ctx, policy, pinned, check, lenient)


def _load_ca_store(steps: _Steps, ctx: SSL.Context, path: str,
                   peer: bool) -> list[x509.Certificate]:
    """``CAstore``: what stunnel hands OpenSSL's OSSL_STORE, as far as it is a file: a hashed
    directory is loaded as ``CApath`` is, a PEM file's certificates as ``CAfile``'s are (but
    not named in the certificate request: stunnel's CAstore does not name them either). The
    certificates, for ``verifyPeer``."""
    shown = f"CAstore = {path}"
    anchors: list[x509.Certificate] = []
    with steps.step("CAstore", f"{shown}: OpenSSL refuses it"):
        if os.path.isdir(path):
            ctx.load_verify_locations(None, path)
            if peer:
                anchors = _directory_certificates(path)
            return anchors
        if not os.path.exists(path):
            raise steps.fail("CAstore", f"{shown}: no such file or directory")
    with steps.step("CAstore", f"{shown}: no certificates could be loaded", reason=False):
        anchors = _load_certificates(steps, "CAstore", path)
        store = ctx.get_cert_store()
        if store is None:
            raise steps.fail("CAstore", f"{shown}: OpenSSL has no certificate store")
        for cert in anchors:
            store.add_cert(crypto.X509.from_cryptography(cert))
    return anchors


def _directory_certificates(path: str) -> list[x509.Certificate]:
    """The certificates of a hashed directory (``CApath``), for ``verifyPeer``."""
    found: list[x509.Certificate] = []
    for name in sorted(os.listdir(path)):
        try:
            found += x509.load_pem_x509_certificates(read_pem_file(os.path.join(path, name)))
        except (OSError, ValueError):
            continue
    return found


def _load_crls(steps: _Steps, path: str) -> list[x509.CertificateRevocationList]:
    data = _check_readable(steps, "CRLfile", path)
    marker = b"-----BEGIN X509 CRL-----"
    blocks = [marker + part for part in data.split(marker)[1:]]
    try:
        crls = [x509.load_pem_x509_crl(block) for block in blocks]
    except ValueError as exc:
        raise steps.fail("CRLfile", f"CRLfile = {path}: not a PEM CRL ({exc})") from None
    if not crls:
        raise steps.fail("CRLfile", f"CRLfile = {path}: no BEGIN X509 CRL block")
    return crls


def _staple_from_responder(steps: _Steps, ctx: SSL.Context,
                           chain: list[x509.Certificate]) -> None:
    """``OCSPstaple = auto`` (the default, stunnel's way): when the certificate names an http://
    OCSP responder (Authority Information Access), staple what it says, fetched in the
    background (``ocspstaple.Stapler``); the issuer, to check the responses against, comes
    from the cert file's chain or CAfile. Without either there is nothing to staple."""
    from .ocspstaple import Stapler, responder_url
    from .tlshooks import set_ocsp_staple

    service = steps.service
    leaf = chain[0]
    url = responder_url(leaf)
    if url is None:
        return
    candidates = chain[1:]
    if service.ca_file:
        candidates += _load_certificates(steps, "CAfile", service.ca_file)
    issuer = next((c for c in candidates if c.subject == leaf.issuer), None)
    if issuer is None:
        log.info("[%s] no OCSP stapling: the certificate names the responder %s but its "
                 "issuer is neither in the cert file after it nor in CAfile", service.name, url)
        return
    stapler = Stapler(url, leaf, issuer, f"[{service.name}]")
    set_ocsp_staple(ctx, stapler.response)


def _staple_from_file(steps: _Steps, ctx: SSL.Context, path: str,
                      leaf: x509.Certificate) -> None:
    """``OCSPstaple = FILE``: the DER response in FILE, re-read when it changes, stapled while
    it is a good answer for ``leaf`` and not past its nextUpdate."""
    import datetime

    from cryptography.x509 import ocsp

    from .tlshooks import file_reader, set_ocsp_staple

    _check_readable(steps, "OCSPstaple", path)
    read = file_reader(path, PEM_MAX_BYTES)
    parsed: dict[bytes, ocsp.OCSPResponse | None] = {}

    def response() -> bytes | None:
        der = read()
        if der is None:
            return None
        if der not in parsed:
            parsed.clear()
            try:
                resp: ocsp.OCSPResponse | None = ocsp.load_der_ocsp_response(der)
            except ValueError:
                resp = None
            if resp is not None and (resp.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL
                                     or resp.serial_number != leaf.serial_number):
                resp = None
            parsed[der] = resp
        resp = parsed[der]
        if resp is None:
            return None
        now = datetime.datetime.now(datetime.UTC)
        if resp.next_update_utc is not None and resp.next_update_utc < now:
            return None
        return der

    set_ocsp_staple(ctx, response)


def read_pem_file(path: str, limit: int = PEM_MAX_BYTES) -> bytes:
    """A certificate, key or CA file: ``regularfile.read_regular`` with the PEM size bound."""
    return read_regular(path, limit)


def _check_readable(steps: _Steps, option: str, path: str, line: int | None = None) -> bytes:
    """The contents of ``path``; ConfigError ``OPTION = PATH: cannot read: REASON``."""
    try:
        return read_pem_file(path)
    except OSError as exc:
        reason = exc.strerror or str(exc)
    except ValueError as exc:
        reason = str(exc)
    raise steps.fail(option, f"{option} = {path}: cannot read: {reason}", line)


def _load_certificates(steps: _Steps, option: str, path: str,
                       line: int | None = None) -> list[x509.Certificate]:
    """The PEM certificates in ``path`` (other PEM blocks skipped); ConfigError if none."""
    data = _check_readable(steps, option, path, line)
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        why = "no BEGIN CERTIFICATE block" if "Unable to load PEM" in str(exc) else str(exc)
        raise steps.fail(option, f"{option} = {path}: no PEM certificate could be loaded from "
                                 f"it ({why})", line) from None


def _use_cert_and_key(steps: _Steps, ctx: SSL.Context, cert: str | None, key_path: str | None,
                      line: int | None) -> None:
    """Load a certificate chain and its key (from ``key``, else from the ``cert`` file);
    ``line``: where a second ``cert`` was given (None: the service's first)."""
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    if cert is None:  # parse_config guarantees one; a Service made elsewhere may not
        raise steps.fail(None, "no 'cert': a TLS server needs a certificate")
    key, key_option = (key_path, "key") if key_path else (cert, "cert")
    leaf, *chain = _load_certificates(steps, "cert", cert, line)
    try:
        ctx.use_certificate(leaf)
        for each in chain:
            ctx.add_extra_chain_cert(each)
    except SSL.Error as exc:
        raise steps.fail("cert", f"cert = {cert}: OpenSSL refuses the certificate "
                                 f"({ssl_reason(exc)})", line) from None
    key_pem = _check_readable(steps, key_option, key, line)
    try:
        pkey = load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise steps.fail(key_option, f"{key_option} = {key}: no usable PEM private key in it "
                                     "(encrypted keys are not supported)", line) from None
    if not isinstance(pkey, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, dsa.DSAPrivateKey,
                             ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        raise steps.fail(key_option, f"{key_option} = {key}: a {type(pkey).__name__} cannot "
                                     "sign a TLS handshake: use RSA or EC P-256", line)
    weak = _weakness(pkey)
    if weak:
        raise steps.fail(key_option, f"{key_option} = {key}: {weak}", line)
    try:
        ctx.use_privatekey(pkey)
        ctx.check_privatekey()
    except SSL.Error:
        raise steps.fail(key_option, f"{key_option} = {key}: the private key does not match "
                                     f"the certificate in {cert}", line) from None


def _use_psk_secrets(steps: _Steps, ctx: SSL.Context, path: str) -> None:
    """``PSKsecrets``: the identities and keys, read now (a reload re-reads them), and the
    callback that gives OpenSSL the key for the identity a client names."""
    from .opensslffi import set_psk_server_callback

    set_psk_server_callback(ctx, _psk_keys(steps, path).get)


def _psk_keys(steps: _Steps, path: str) -> dict[bytes, bytes]:
    """The identities and keys of the ``PSKsecrets`` file ``path``."""
    from .psk import parse_secrets

    text = _check_readable(steps, "PSKsecrets", path).decode("utf-8", "surrogateescape")
    return parse_secrets(text, path)


def _use_psk_identity(steps: _Steps, ctx: SSL.Context, path: str,
                      identity: str | None) -> None:
    """``PSKsecrets`` in a client: the key of ``PSKidentity``, or of the file's first identity
    (stunnel's default), sent to the server."""
    from .opensslffi import set_psk_client_callback

    keys = _psk_keys(steps, path)
    if not keys:
        raise steps.fail("PSKsecrets", f"PSKsecrets = {path}: no IDENTITY:KEY line")
    name = next(iter(keys)) if identity is None else \
        identity.encode("utf-8", "surrogateescape")
    if name not in keys:
        raise steps.fail("PSKidentity", f"PSKidentity = {identity}: no such identity in {path}")
    set_psk_client_callback(ctx, name, keys[name])


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


HANDSHAKE_ROUNDS = 10  # a TLS 1.2 or 1.3 handshake takes 2 to 4 flights each way


def probe_handshake(ctx: SSL.Context, version: str) -> str | None:
    """Whether a client of TLS ``version`` (with OpenSSL's default offer: every cipher suite and
    group) can complete a handshake with server context ``ctx``: None, or OpenSSL's reason.
    In memory, no socket: what ``tlswrap check`` uses to find settings that leave a version,
    or every version, with nothing to agree on (say, RSA-only ciphers with an ECDSA key)."""
    client_ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    client_ctx.set_min_proto_version(_VERSIONS[version])
    client_ctx.set_max_proto_version(_VERSIONS[version])
    client_ctx.set_verify(SSL.VERIFY_NONE, lambda *_: True)
    server, client = SSL.Connection(ctx, None), SSL.Connection(client_ctx, None)
    # the probe has no client certificate: a service that requires one (verify = 2) is judged
    # on what every client must agree on with it, not on the certificate it will ask for
    server.set_verify(SSL.VERIFY_NONE, lambda *_: True)
    server.set_accept_state()
    client.set_connect_state()
    done = {server: False, client: False}
    for _ in range(HANDSHAKE_ROUNDS):
        for conn, peer in ((client, server), (server, client)):
            if not done[conn]:
                try:
                    conn.do_handshake()
                    done[conn] = True
                except SSL.WantReadError:
                    pass
                except SSL.Error as exc:
                    return ssl_reason(exc) or "the handshake failed"
            try:
                peer.bio_write(conn.bio_read(1 << 16))
            except SSL.WantReadError:
                pass
        if all(done.values()):
            return None
    return "the handshake did not finish"
