"""The one place that reaches below pyOpenSSL's public API.

The fast path calls OpenSSL directly (SSL_read, SSL_write, SSL_do_handshake, SSL_get_error)
through the cffi binding that pyOpenSSL itself uses, and needs the raw ``SSL *`` and
``SSL_CTX *`` behind pyOpenSSL's objects. Those are private to pyOpenSSL, so they are named here
and nowhere else; ``tests/test_opensslffi.py`` fails loudly if a pyOpenSSL release moves them.
pyproject pins pyOpenSSL to the releases this was tested with.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from OpenSSL import SSL, _util, crypto

if TYPE_CHECKING:
    from cryptography import x509

lib: Any = _util.lib
ffi: Any = _util.ffi

# What the rest of tlswrap uses from ``lib``: checked by the shim's test.
REQUIRED = ("SSL_read", "SSL_write", "SSL_do_handshake", "SSL_get_error", "SSL_get_shutdown",
            "SSL_set_info_callback", "SSL_CTX_set1_curves_list", "ERR_clear_error",
            "SSL_set_bio", "BIO_new", "BIO_s_mem", "BIO_read", "BIO_write",
            "BIO_set_mem_eof_return",
            "SSL_ERROR_WANT_READ", "SSL_ERROR_WANT_WRITE", "SSL_ERROR_ZERO_RETURN",
            "SSL_ERROR_SYSCALL", "SSL_CB_READ_ALERT", "SSL_RECEIVED_SHUTDOWN",
            # tlshooks: ALPN, SNI, certificate checks, OCSP stapling, client-side names
            "SSL_CTX_set_alpn_select_cb", "SSL_CTX_set_tlsext_servername_callback",
            "SSL_get_servername", "SSL_set_SSL_CTX", "SSL_CTX_set_verify", "SSL_set_verify",
            "X509_STORE_CTX_get_error_depth", "X509_STORE_CTX_set_error",
            "X509_STORE_CTX_get_current_cert", "X509_up_ref", "SSL_get_verify_result",
            "X509_verify_cert_error_string", "SSL_CTX_set_tlsext_status_cb",
            "SSL_set_tlsext_status_ocsp_resp", "OPENSSL_malloc", "SSL_get0_param",
            "SSL_set_tlsext_status_type", "SSL_get_tlsext_status_ocsp_resp",
            "TLSEXT_STATUSTYPE_ocsp",
            "X509_VERIFY_PARAM_set1_host", "X509_VERIFY_PARAM_set1_ip",
            "X509_VERIFY_PARAM_set_hostflags", "SSL_set_tlsext_host_name",
            "SSL_TLSEXT_ERR_OK", "SSL_TLSEXT_ERR_NOACK", "SSL_TLSEXT_ERR_ALERT_FATAL",
            "SSL_VERIFY_PEER", "SSL_VERIFY_FAIL_IF_NO_PEER_CERT", "SSL_VERIFY_NONE",
            "SSL_session_reused")


def ssl_pointer(conn: SSL.Connection) -> Any:
    """The ``SSL *`` of a pyOpenSSL connection."""
    return conn._ssl


def take_memory_bios(conn: SSL.Connection) -> tuple[Any, Any]:
    """The read and write memory BIOs of a connection made without a socket, taken over by
    the caller: pyOpenSSL forgets them (its ``bio_read``/``bio_write`` then refuse), so that
    the caller may replace them (``SSL_set_bio``) without leaving pyOpenSSL a freed pointer.
    The ``SSL *`` still owns whichever BIOs it holds and frees them with itself."""
    bios = conn._into_ssl, conn._from_ssl
    conn._into_ssl = conn._from_ssl = None
    return bios


def context_pointer(ctx: SSL.Context) -> Any:
    """The ``SSL_CTX *`` of a pyOpenSSL context."""
    return ctx._context


def raise_ssl_error(conn: SSL.Connection, result: int) -> None:
    """Turn a failed OpenSSL call's result into pyOpenSSL's exception (reads the error queue)."""
    conn._raise_ssl_error(conn._ssl, result)


def pointer_key(ssl: Any) -> int:
    """An ``SSL *`` as an int, to key per-connection state seen from a C callback."""
    return int(ffi.cast("uintptr_t", ssl))


# each context's PSK callback, kept alive exactly as long as the context that calls it
_PSK_CALLBACKS: weakref.WeakKeyDictionary[SSL.Context, Any] = weakref.WeakKeyDictionary()


def set_psk_server_callback(ctx: SSL.Context, lookup: Callable[[bytes], bytes | None]) -> None:
    """SSL_CTX_set_psk_server_callback (pyOpenSSL 26 has no wrapper for it): ``lookup`` maps a
    client's PSK identity to its key, or None to refuse. OpenSSL uses the same callback for TLS
    1.2 PSK suites and for TLS 1.3 external PSKs (with a SHA-256 suite)."""
    def on_psk(ssl: Any, identity: Any, psk: Any, max_len: int) -> int:
        try:
            key = lookup(ffi.string(identity)) if identity != ffi.NULL else None
        except Exception:  # noqa: BLE001 - an exception must not cross into C: refuse
            return 0
        if not key or len(key) > max_len:
            return 0
        ffi.memmove(psk, key, len(key))
        return len(key)

    callback = ffi.callback("unsigned int(SSL *, const char *, unsigned char *, unsigned int)",
                            on_psk)
    _PSK_CALLBACKS[ctx] = callback
    lib.SSL_CTX_set_psk_server_callback(context_pointer(ctx), callback)


def set_psk_client_callback(ctx: SSL.Context, identity: bytes, key: bytes) -> None:
    """SSL_CTX_set_psk_client_callback: a client context sends ``identity`` and uses ``key``,
    in TLS 1.2 PSK suites and as a TLS 1.3 external PSK (the server side's counterpart)."""
    def on_psk(ssl: Any, hint: Any, out_identity: Any, max_identity: int, psk: Any,
               max_len: int) -> int:
        if len(identity) + 1 > max_identity or len(key) > max_len:
            return 0
        ffi.memmove(out_identity, identity + b"\0", len(identity) + 1)
        ffi.memmove(psk, key, len(key))
        return len(key)

    callback = ffi.callback("unsigned int(SSL *, const char *, char *, unsigned int, "
                            "unsigned char *, unsigned int)", on_psk)
    _PSK_CALLBACKS[ctx] = callback
    lib.SSL_CTX_set_psk_client_callback(context_pointer(ctx), callback)
def store_certificate(store_ctx: Any) -> x509.Certificate | None:
    """The certificate a verify callback is looking at (``X509_STORE_CTX *``), or None."""
    cert = lib.X509_STORE_CTX_get_current_cert(store_ctx)
    if cert == ffi.NULL:
        return None
    lib.X509_up_ref(cert)  # the X509 object below frees its reference
    return crypto.X509._from_raw_x509_ptr(cert).to_cryptography()
