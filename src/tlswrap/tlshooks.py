"""OpenSSL callbacks for ALPN, SNI, certificate checks and OCSP stapling, on a context.

General theory of operation: pyOpenSSL's own callback wrappers keep a Python exception raised
in a callback on the *context* and re-raise it from a later call of any connection of that
context, and its ALPN and SNI wrappers cannot send the alerts RFC 7301 and RFC 6066 ask for. So
these are plain cffi callbacks on the ``SSL_CTX *`` (through ``opensslffi``), returning
OpenSSL's own codes: an ALPN mismatch is the no_application_protocol alert, an unknown server
name under ``sniStrict`` the unrecognized_name alert, a refused certificate the alert OpenSSL
picks for its verify error. Each callback is a closure over immutable values; it is kept alive
as long as its context (``_KEEP``), and an exception in one is a refusal, never a crash.

A connection switched to another context by the SNI callback (``SSL_set_SSL_CTX``) takes that
context's certificates; OpenSSL leaves the verify mode that the first context gave it, so the
switch applies the new context's (``_VERIFY``). Session tickets stay those of the first
context (OpenSSL keys them on the context the connection was made from).
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from OpenSSL import SSL

from .opensslffi import context_pointer, ffi, lib, ssl_pointer, store_certificate
from .tlsoptions import VerifyLevel, alpn_select

if TYPE_CHECKING:
    from .certnames import PeerIdentity

AD_UNRECOGNIZED_NAME = 112  # RFC 6066 alert
TLSEXT_NAMETYPE_HOST_NAME = 0
X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS = 0x4
X509_V_OK = 0

_KEEP: weakref.WeakKeyDictionary[SSL.Context, list[Any]] = weakref.WeakKeyDictionary()
# each context's source of OCSP staples, for the metrics (``staple_source``)
_STAPLES: weakref.WeakKeyDictionary[SSL.Context, Callable[[], bytes | None]] = \
    weakref.WeakKeyDictionary()
# the verify mode and callback a context gives connections switched to it by SNI
_VERIFY: weakref.WeakKeyDictionary[SSL.Context, tuple[int, Any]] = weakref.WeakKeyDictionary()


def _keep(ctx: SSL.Context, callback: Any) -> Any:
    _KEEP.setdefault(ctx, []).append(callback)
    return callback


def set_alpn(ctx: SSL.Context, protocols: Sequence[str]) -> None:
    """Serve ``protocols`` (server's preference); refuse a client offering none of them."""
    wanted = tuple(p.encode() for p in protocols)
    ok, fatal = lib.SSL_TLSEXT_ERR_OK, lib.SSL_TLSEXT_ERR_ALERT_FATAL

    def select(ssl: Any, out: Any, outlen: Any, offered: Any, length: int, arg: Any) -> int:
        wire = ffi.buffer(offered, length)[:]
        at = alpn_select(wanted, wire)
        if at is None:
            return int(fatal)  # OpenSSL sends no_application_protocol
        out[0] = offered + at + 1
        outlen[0] = wire[at]
        return int(ok)

    cb = _keep(ctx, ffi.callback(ffi.typeof(lib.SSL_CTX_set_alpn_select_cb).args[1], select,
                                 onerror=lambda *exc: int(fatal)))
    lib.SSL_CTX_set_alpn_select_cb(context_pointer(ctx), cb, ffi.NULL)


def set_server_names(ctx: SSL.Context, routes: Sequence[tuple[Sequence[str], SSL.Context]],
                     strict: bool) -> None:
    """Pick the context (certificates) for the client's server name: the first of ``routes``
    whose names hold it (``certnames.choose``), else ``ctx`` itself -- or, when ``strict`` and
    the client named a server, the unrecognized_name alert.

    The callback holds no reference to ``ctx`` (``ctx`` is a route too, and is replaced by a
    marker): ``_KEEP`` would otherwise keep every context of every reload alive."""
    from .certnames import choose

    ok, fatal = lib.SSL_TLSEXT_ERR_OK, lib.SSL_TLSEXT_ERR_ALERT_FATAL
    itself = object()
    table = [(names, itself if target is ctx else target) for names, target in routes]

    def servername(ssl: Any, alert: Any, arg: Any) -> int:
        raw = lib.SSL_get_servername(ssl, TLSEXT_NAMETYPE_HOST_NAME)
        name = ffi.string(raw).decode("ascii", "replace") if raw != ffi.NULL else None
        target = choose(table, name)
        if target is None:
            if strict and name:
                alert[0] = AD_UNRECOGNIZED_NAME
                return int(fatal)
            return int(ok)
        if isinstance(target, SSL.Context):
            lib.SSL_set_SSL_CTX(ssl, context_pointer(target))
            mode, verify = _VERIFY.get(target, (lib.SSL_VERIFY_NONE, ffi.NULL))
            lib.SSL_set_verify(ssl, mode, verify)
        return int(ok)

    def refuse(*exc: object) -> int:
        return int(fatal)

    cb = _keep(ctx, ffi.callback(
        ffi.typeof(lib.SSL_CTX_set_tlsext_servername_callback).args[1], servername,
        onerror=refuse))
    lib.SSL_CTX_set_tlsext_servername_callback(context_pointer(ctx), cb)


def set_verify(ctx: SSL.Context, policy: VerifyLevel, pinned: frozenset[bytes],
               check: Callable[[x509.Certificate], int | None], lenient: bool) -> None:
    """Ask for the peer's certificate and judge it as ``policy`` says (stunnel's meanings):
    ``chain``: OpenSSL's chain verification (CAfile, CApath, CRLs); ``peer``: the certificate
    itself must be one of ``pinned`` (SHA-256 of the DER); ``check(cert)`` returns an X509_V_ERR
    code for a certificate that is not the one wanted (checkHost, checkEmail, checkIP).
    ``lenient`` (``redirect``, or ``verify = 0``): every certificate is let through and the
    verdict is only recorded (``verify_error``)."""
    mode = lib.SSL_VERIFY_PEER | (lib.SSL_VERIFY_FAIL_IF_NO_PEER_CERT if policy.require
                                  and not lenient else 0)
    untrusted = lib.X509_V_ERR_CERT_UNTRUSTED

    def verify(ok: int, store: Any) -> int:
        if not (policy.chain or policy.peer):
            return 1  # verify = 0: asked for, not judged
        depth = lib.X509_STORE_CTX_get_error_depth(store)
        if not policy.chain:  # verifyPeer alone: the chain does not matter, only the peer
            ok = 1
            lib.X509_STORE_CTX_set_error(store, X509_V_OK)
        if depth == 0 and ok:
            cert = store_certificate(store)
            error = None
            if cert is None or (policy.peer and cert.fingerprint(hashes.SHA256()) not in pinned):
                error = untrusted
            else:
                error = check(cert)
            if error is not None:
                lib.X509_STORE_CTX_set_error(store, error)
                ok = 0
        return 1 if lenient else ok

    cb = _keep(ctx, ffi.callback(ffi.typeof(lib.SSL_CTX_set_verify).args[2], verify,
                                 onerror=lambda *exc: 0))
    lib.SSL_CTX_set_verify(context_pointer(ctx), mode, cb)
    _VERIFY[ctx] = (mode, cb)


def verify_error(conn: SSL.Connection) -> str | None:
    """Why the peer's certificate failed verification (OpenSSL's words), or None."""
    code = lib.SSL_get_verify_result(ssl_pointer(conn))
    if code == X509_V_OK:
        return None
    return str(ffi.string(lib.X509_verify_cert_error_string(code)).decode(errors="replace"))


def set_ocsp_staple(ctx: SSL.Context, response: Callable[[], bytes | None]) -> None:
    """Staple ``response()`` (a DER OCSP response, or None: nothing) for clients asking."""
    ok, noack = lib.SSL_TLSEXT_ERR_OK, lib.SSL_TLSEXT_ERR_NOACK

    def status(ssl: Any, arg: Any) -> int:
        der = response()
        if not der:
            return int(noack)
        buf = lib.OPENSSL_malloc(len(der))  # OpenSSL owns and frees it
        if buf == ffi.NULL:
            return int(noack)
        ffi.memmove(buf, der, len(der))
        lib.SSL_set_tlsext_status_ocsp_resp(ssl, ffi.cast("unsigned char *", buf), len(der))
        return int(ok)

    cb = _keep(ctx, ffi.callback(ffi.typeof(lib.SSL_CTX_set_tlsext_status_cb).args[1], status,
                                 onerror=lambda *exc: int(noack)))
    lib.SSL_CTX_set_tlsext_status_cb(context_pointer(ctx), cb)
    _STAPLES[ctx] = response


def staple_source(ctx: SSL.Context) -> Callable[[], bytes | None] | None:
    """What ``ctx`` staples (see ``set_ocsp_staple``), or None if it staples nothing."""
    return _STAPLES.get(ctx)


def expect_server(conn: SSL.Connection, sni: str | None, host: str | None,
                  ip: str | None) -> None:
    """A client connection: send ``sni``; the server's certificate must name ``host`` (DNS,
    no partial wildcards) or ``ip``; OpenSSL checks it during chain verification."""
    ssl = ssl_pointer(conn)
    if sni:
        lib.SSL_set_tlsext_host_name(ssl, sni.encode("idna"))
    param = lib.SSL_get0_param(ssl)
    if host:
        lib.X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS)
        name = host.encode("idna")
        if lib.X509_VERIFY_PARAM_set1_host(param, name, len(name)) != 1:
            raise ValueError(f"OpenSSL refuses the host name {host!r}")
    if ip:
        import ipaddress

        packed = ipaddress.ip_address(ip).packed
        if lib.X509_VERIFY_PARAM_set1_ip(param, packed, len(packed)) != 1:
            raise ValueError(f"OpenSSL refuses the address {ip!r}")


def file_reader(path: str, limit: int) -> Callable[[], bytes | None]:
    """The bytes of ``path``, re-read when its mtime or size changes; None while unreadable."""
    from .regularfile import read_regular

    state: dict[str, Any] = {"key": None, "data": None}

    def read() -> bytes | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        if key != state["key"]:
            try:
                state["data"] = read_regular(path, limit)
            except (OSError, ValueError):
                state["data"] = None
            state["key"] = key
        data: bytes | None = state["data"]
        return data

    return read


def ask_for_staple(conn: SSL.Connection) -> None:
    """Client side: ask the server to staple its OCSP response (status_request)."""
    lib.SSL_set_tlsext_status_type(ssl_pointer(conn), lib.TLSEXT_STATUSTYPE_ocsp)


def stapled_response(conn: SSL.Connection) -> bytes | None:
    """Client side, after the handshake: the OCSP response the server stapled, or None."""
    out = ffi.new("unsigned char **")
    size = lib.SSL_get_tlsext_status_ocsp_resp(ssl_pointer(conn), out)
    if size <= 0 or out[0] == ffi.NULL:
        return None
    return bytes(ffi.buffer(out[0], size))


def verified_chain(conn: SSL.Connection) -> list[x509.Certificate]:
    """The peer's chain as OpenSSL verified it (the peer's certificate first, the trust anchor
    last); [] when it was not verified."""
    if verify_error(conn) is not None:
        return []
    return conn.get_verified_chain(as_cryptography=True) or []


def peer_identity(conn: SSL.Connection) -> PeerIdentity | None:
    """The peer's certificate with OpenSSL's verdict on it, or None if it sent none."""
    from .certnames import PeerIdentity

    cert = conn.get_peer_certificate(as_cryptography=True)
    if cert is None:
        return None
    error = verify_error(conn)
    return PeerIdentity.of(cert, "SUCCESS" if error is None else f"FAILED:{error}")


def session_reused(conn: SSL.Connection) -> bool:
    """Whether the handshake resumed an earlier session."""
    return bool(lib.SSL_session_reused(ssl_pointer(conn)))
