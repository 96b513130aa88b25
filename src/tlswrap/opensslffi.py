"""The one place that reaches below pyOpenSSL's public API.

The fast path calls OpenSSL directly (SSL_read, SSL_write, SSL_do_handshake, SSL_get_error)
through the cffi binding that pyOpenSSL itself uses, and needs the raw ``SSL *`` and
``SSL_CTX *`` behind pyOpenSSL's objects. Those are private to pyOpenSSL, so they are named here
and nowhere else; ``tests/test_opensslffi.py`` fails loudly if a pyOpenSSL release moves them.
pyproject pins pyOpenSSL to the releases this was tested with.
"""

from __future__ import annotations

from typing import Any

from OpenSSL import SSL, _util

lib: Any = _util.lib
ffi: Any = _util.ffi

# What the rest of tlswrap uses from ``lib``: checked by the shim's test.
REQUIRED = ("SSL_read", "SSL_write", "SSL_do_handshake", "SSL_get_error", "SSL_get_shutdown",
            "SSL_set_info_callback", "SSL_CTX_set1_curves_list", "ERR_clear_error",
            "SSL_set_bio", "BIO_new", "BIO_s_mem", "BIO_read", "BIO_write",
            "BIO_set_mem_eof_return",
            "SSL_ERROR_WANT_READ", "SSL_ERROR_WANT_WRITE", "SSL_ERROR_ZERO_RETURN",
            "SSL_ERROR_SYSCALL", "SSL_CB_READ_ALERT", "SSL_RECEIVED_SHUTDOWN")


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
