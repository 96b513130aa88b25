"""A TLS server context and connection on cryptography's cffi binding alone, for inetd mode.

The sibling of ``opensslffi``, and like it the one place that reaches below a public API:
pyOpenSSL's ``OpenSSL.SSL`` imports ``cryptography.x509`` and costs ~60 ms to import, more
than a whole stunnel connection, so the inetd fast path (``tlswrap.fast``) calls the OpenSSL
functions in cryptography's binding (``cryptography.hazmat.bindings._rust._openssl``: the same
library and the same functions pyOpenSSL calls, ~5 ms to load) directly.
``tests/test_opensslraw.py`` fails loudly if a cryptography release moves them.

``server_context`` applies exactly what ``tlscontext.server_context`` applies (the values come
from ``tlssettings``); it raises RawTLSError on anything it does not handle the same way, and
the caller then falls back to the full path, which reports the problem at its config line.

General theory of the connection: OpenSSL reads and writes the non-blocking socket itself.
Each call returns a count, or ``None`` with ``wants`` set to ``READ`` or ``WRITE`` (what to
poll for before calling again with the same arguments), or ``b""`` at EOF; errors raise
TLSFailure with OpenSSL's reason. A write that had to wait owns the connection until it is
retried through: nothing is read meanwhile (SSL_read may write a TLS 1.3 KeyUpdate answer
then, and OpenSSL fails a write retried after another write: "bad length"). As in
``tlsstream``: SSL_OP_IGNORE_UNEXPECTED_EOF makes a bare FIN look like close_notify, so an
info callback notes a close_notify actually read and ``truncated`` tells the two apart; every
call starts with a clean error queue.
"""

from __future__ import annotations

import os
from errno import errorcode

from cryptography.hazmat.bindings._rust import _openssl

from .errors import broken_reason
from .regularfile import read_regular
from .tlssettings import (
    BASE_MODES,
    BASE_OPTIONS,
    DEFAULT_CIPHERS,
    MIN_KEY_BITS,
    PEM_MAX_BYTES,
    session_id_context,
)

TYPE_CHECKING = False  # typing costs ~5 ms to import; annotations are strings here
if TYPE_CHECKING:
    from typing import Any

lib: Any = _openssl.lib
ffi: Any = _openssl.ffi

# What this module uses from ``lib``: checked by its test.
REQUIRED = (
    "TLS_server_method", "SSL_CTX_new", "SSL_CTX_free", "SSL_CTX_set_min_proto_version",
    "SSL_CTX_set_max_proto_version", "SSL_CTX_set_options", "SSL_CTX_set_mode",
    "SSL_CTX_set_cipher_list", "SSL_CTX_set_ciphersuites", "SSL_CTX_set1_curves_list",
    "SSL_CTX_use_certificate", "SSL_CTX_add_extra_chain_cert", "SSL_CTX_use_PrivateKey",
    "SSL_CTX_check_private_key", "SSL_CTX_set_session_id_context",
    "SSL_CTX_set_session_cache_mode", "SSL_CTX_set_timeout", "BIO_new_mem_buf", "BIO_free",
    "PEM_read_bio_X509", "PEM_read_bio_PrivateKey", "X509_free", "EVP_PKEY_free",
    "EVP_PKEY_id", "EVP_PKEY_bits", "SSL_new", "SSL_free", "SSL_set_fd", "SSL_set_mode",
    "SSL_set_accept_state", "SSL_do_handshake", "SSL_read", "SSL_write", "SSL_shutdown",
    "SSL_get_error", "SSL_get_version", "SSL_get_current_cipher", "SSL_CIPHER_get_name",
    "SSL_get_session", "SSL_get0_group_name", "SSL_set_info_callback", "ERR_get_error",
    "ERR_peek_error", "SSL_get_servername", "TLSEXT_NAMETYPE_host_name",
    "ERR_reason_error_string", "ERR_clear_error", "SSL_ERROR_WANT_READ",
    "SSL_ERROR_WANT_WRITE", "SSL_ERROR_ZERO_RETURN", "SSL_ERROR_SYSCALL", "SSL_CB_READ_ALERT",
    "TLS1_2_VERSION", "TLS1_3_VERSION", "SSL_SESS_CACHE_SERVER", "EVP_PKEY_RSA",
    "EVP_PKEY_EC", "EVP_PKEY_DSA",
)
_VERSIONS = {"TLSv1.2": "TLS1_2_VERSION", "TLSv1.3": "TLS1_3_VERSION"}
# Key types tlscontext serves: RSA, EC, DSA, Ed25519, Ed448 (EVP_PKEY ids are NIDs).
_NID_ED25519, _NID_ED448 = 1087, 1088
_WEAK_IF_SHORT = ("EVP_PKEY_RSA", "EVP_PKEY_DSA")
_KEY_TYPES = ("EVP_PKEY_RSA", "EVP_PKEY_EC", "EVP_PKEY_DSA")
# What pyOpenSSL itself sets on every context and connection it makes (SSL.Context.__init__,
# SSL.Connection.__init__): the daemon's contexts have them, so these do too.
PYOPENSSL_CONTEXT_MODES = ("ENABLE_PARTIAL_WRITE", "ACCEPT_MOVING_WRITE_BUFFER")
PYOPENSSL_CONNECTION_MODES = ("AUTO_RETRY",)
RECORD = 16384  # one TLS record's plaintext at most
READ, WRITE = "read", "write"


class RawTLSError(Exception):
    """This context cannot be built here exactly as tlscontext would: use the full path."""


class TLSFailure(Exception):
    """A connection failed: a protocol error, a reset, or a bare close during the handshake."""


def reason() -> str:
    """OpenSSL's reason strings from the error queue (emptied), e.g. 'unsupported protocol'."""
    parts = []
    while code := lib.ERR_get_error():
        text = lib.ERR_reason_error_string(code)
        parts.append(ffi.string(text).decode(errors="replace") if text != ffi.NULL
                     else f"error {code:#x}")
    return ", ".join(parts)


def _check(ok: bool, what: str) -> None:
    if not ok:
        why = reason()
        raise RawTLSError(f"{what}: {why}" if why else what)


def _pem_objects(data: bytes, read: Any) -> list[Any]:
    """Every object ``read`` (PEM_read_bio_X509 or _PrivateKey) finds in ``data``, in order."""
    found: list[Any] = []
    buf = ffi.from_buffer(data)
    bio = lib.BIO_new_mem_buf(buf, len(data))
    _check(bio != ffi.NULL, "BIO_new_mem_buf")
    try:
        while True:
            obj = read(bio, ffi.NULL, ffi.NULL, ffi.NULL)
            if obj == ffi.NULL:
                lib.ERR_clear_error()  # the end of the data (or a block it cannot read)
                return found
            found.append(obj)
    finally:
        lib.BIO_free(bio)


def server_context(*, name: str, cert: str, key: str | None, ciphers: str | None,
                   ciphersuites: str | None, curves: str | None, version_low: str,
                   version_high: str, ssl_options: tuple[str, ...],
                   session_timeout: float) -> Any:
    """An ``SSL_CTX *`` with tlscontext's settings for this service (freed at exit)."""
    lib.ERR_clear_error()
    ctx = lib.SSL_CTX_new(lib.TLS_server_method())
    _check(ctx != ffi.NULL, "SSL_CTX_new")
    ctx = ffi.gc(ctx, lib.SSL_CTX_free)
    _check(lib.SSL_CTX_set_min_proto_version(ctx, getattr(lib, _VERSIONS[version_low])) == 1,
           "versions")
    _check(lib.SSL_CTX_set_max_proto_version(ctx, getattr(lib, _VERSIONS[version_high])) == 1,
           "versions")
    for option in (*BASE_OPTIONS, *ssl_options):
        lib.SSL_CTX_set_options(ctx, getattr(lib, f"SSL_OP_{option}"))
    for mode in (*PYOPENSSL_CONTEXT_MODES, *BASE_MODES):
        lib.SSL_CTX_set_mode(ctx, getattr(lib, f"SSL_MODE_{mode}"))
    _check(lib.SSL_CTX_set_cipher_list(ctx, (ciphers or DEFAULT_CIPHERS).encode()) == 1,
           "ciphers")
    if ciphersuites:
        _check(lib.SSL_CTX_set_ciphersuites(ctx, ciphersuites.encode()) == 1, "ciphersuites")
    if curves:
        _check(lib.SSL_CTX_set1_curves_list(ctx, curves.encode()) == 1, "curves")
    _use_cert_and_key(ctx, cert, key)
    sid = session_id_context(name)
    _check(lib.SSL_CTX_set_session_id_context(ctx, sid, len(sid)) == 1, "session id")
    lib.SSL_CTX_set_session_cache_mode(ctx, lib.SSL_SESS_CACHE_SERVER)
    lib.SSL_CTX_set_timeout(ctx, int(session_timeout))
    return ctx


def _read(path: str) -> bytes:
    try:
        return read_regular(path, PEM_MAX_BYTES)
    except (OSError, ValueError) as exc:
        raise RawTLSError(f"{path}: {exc}") from None


def _use_cert_and_key(ctx: Any, cert: str, key: str | None) -> None:
    certs = _pem_objects(_read(cert), lib.PEM_read_bio_X509)
    if not certs:
        raise RawTLSError(f"{cert}: no certificate")
    leaf, *chain = certs
    try:
        _check(lib.SSL_CTX_use_certificate(ctx, leaf) == 1, "certificate")
        while chain:  # the context owns each chain certificate once added
            _check(lib.SSL_CTX_add_extra_chain_cert(ctx, chain[0]) == 1, "chain")
            chain.pop(0)
    finally:
        lib.X509_free(leaf)
        for each in chain:
            lib.X509_free(each)
    key_pem = _read(key or cert)
    if b"ENCRYPTED" in key_pem:  # never let OpenSSL ask a terminal for a pass phrase
        raise RawTLSError("an encrypted key")
    keys = _pem_objects(key_pem, lib.PEM_read_bio_PrivateKey)
    if not keys:
        raise RawTLSError(f"{key or cert}: no private key")
    pkey = keys[0]
    try:
        for other in keys[1:]:
            lib.EVP_PKEY_free(other)
        kind = lib.EVP_PKEY_id(pkey)
        known = {getattr(lib, name) for name in _KEY_TYPES} | {_NID_ED25519, _NID_ED448}
        if kind not in known:
            raise RawTLSError("a key type tlscontext refuses")
        weak = {getattr(lib, name) for name in _WEAK_IF_SHORT}
        if kind in weak and lib.EVP_PKEY_bits(pkey) < MIN_KEY_BITS:
            raise RawTLSError("a weak key")
        _check(lib.SSL_CTX_use_PrivateKey(ctx, pkey) == 1, "key")
        _check(lib.SSL_CTX_check_private_key(ctx) == 1, "key does not match")
    finally:
        lib.EVP_PKEY_free(pkey)


_close_notify_read: set[int] = set()


def _on_info(ssl: Any, where: int, value: int) -> None:
    if where & lib.SSL_CB_READ_ALERT and value & 0xFF == 0:
        _close_notify_read.add(int(ffi.cast("uintptr_t", ssl)))


_INFO_CALLBACK = ffi.callback(ffi.typeof(lib.SSL_set_info_callback).args[1], _on_info)


class Connection:
    """The server side of TLS on the connected non-blocking socket ``fd``."""

    __slots__ = ("_buf", "_key", "_write_waits", "eof_sent", "handshake_done", "ssl",
                 "truncated", "wants")

    def __init__(self, ctx: Any, fd: int) -> None:
        ssl = lib.SSL_new(ctx)
        _check(ssl != ffi.NULL, "SSL_new")
        self.ssl = ffi.gc(ssl, lib.SSL_free)
        _check(lib.SSL_set_fd(self.ssl, fd) == 1, "SSL_set_fd")
        for mode in PYOPENSSL_CONNECTION_MODES:
            lib.SSL_set_mode(self.ssl, getattr(lib, f"SSL_MODE_{mode}"))
        lib.SSL_set_accept_state(self.ssl)
        self._buf = ffi.new("char[]", RECORD)
        self._key = int(ffi.cast("uintptr_t", self.ssl))
        self.handshake_done = False
        self.eof_sent = False
        self.truncated = False  # the peer closed TCP without close_notify
        self.wants = READ
        self._write_waits = False  # SSL_write had to wait: it is retried before any read

    def _failed(self, n: int, errno: int, reading: bool) -> bytes | None:
        err = lib.SSL_get_error(self.ssl, n)
        if err == lib.SSL_ERROR_WANT_READ:
            self.wants = READ
            return None
        if err == lib.SSL_ERROR_WANT_WRITE:
            self.wants = WRITE
            return None
        if err == lib.SSL_ERROR_ZERO_RETURN and reading:
            if self._key not in _close_notify_read:
                self.truncated = True
            return b""
        if err == lib.SSL_ERROR_SYSCALL:
            self.truncated = True
            lib.ERR_clear_error()
            if errno:
                raise TLSFailure(broken_reason(OSError(errno, os.strerror(errno))))
            raise TLSFailure("peer closed the connection without close_notify")
        why = reason()
        raise TLSFailure(f"TLS error: {why}" if why else "TLS protocol error")

    def handshake(self) -> bool:
        """One step: True when done, False when ``wants`` says what to wait for."""
        lib.ERR_clear_error()
        n = lib.SSL_do_handshake(self.ssl)
        if n == 1:
            self.handshake_done = True
            _close_notify_read.discard(self._key)
            lib.SSL_set_info_callback(self.ssl, _INFO_CALLBACK)
            return True
        errno = ffi.errno
        err = lib.SSL_get_error(self.ssl, n)
        if err == lib.SSL_ERROR_WANT_READ or err == lib.SSL_ERROR_WANT_WRITE:  # noqa: PLR1714
            self.wants = READ if err == lib.SSL_ERROR_WANT_READ else WRITE
            return False
        raise TLSFailure(f"TLS handshake failed: {self._handshake_error(err, errno)}")

    @staticmethod
    def _handshake_error(err: int, errno: int) -> str:
        """What ``TLSStream.do_handshake`` says, from pyOpenSSL's exception for it."""
        if err == lib.SSL_ERROR_ZERO_RETURN:
            return "peer closed the connection without close_notify"
        if err == lib.SSL_ERROR_SYSCALL and (lib.ERR_peek_error() == 0 or errno):
            lib.ERR_clear_error()
            if errno:  # pyOpenSSL's SysCallError(errno, errorcode[errno])
                return f"peer reset or vanished: {errorcode.get(errno)}"
            return "peer closed the connection without close_notify"
        why = reason()
        return f"TLS error: {why}" if why else "TLS protocol error"

    def recv(self) -> bytes | None:
        """One record's plaintext, ``b""`` at EOF, None: wait for ``wants`` (while a write
        waits for its retry, None at once: what the write waits for)."""
        if self._write_waits:
            return None
        lib.ERR_clear_error()
        n = lib.SSL_read(self.ssl, self._buf, RECORD)
        if n > 0:
            data: bytes = ffi.buffer(self._buf, n)[:]
            return data
        return self._failed(n, ffi.errno, True)

    def send(self, data: bytes) -> int | None:
        """Bytes written (all of a record's worth), or None: wait for ``wants`` and call
        again with the same data (OpenSSL's rule for a write that had to wait)."""
        lib.ERR_clear_error()
        with ffi.from_buffer(data) as buf:
            n: int = lib.SSL_write(self.ssl, buf, len(buf))
        if n > 0:
            self._write_waits = False
            return n
        self._failed(n, ffi.errno, False)  # raises unless the write waits for ``wants``
        self._write_waits = True
        return None

    def send_close_notify(self) -> bool:
        """Half-close: send close_notify (reading goes on); False when it must wait for the
        socket to be writable and be called again."""
        self.eof_sent = True
        lib.ERR_clear_error()
        n = lib.SSL_shutdown(self.ssl)
        if n < 0 and lib.SSL_get_error(self.ssl, n) == lib.SSL_ERROR_WANT_WRITE:
            return False
        lib.ERR_clear_error()
        return True

    def close(self) -> None:
        """As ``TLSStream.close``: one non-blocking close_notify if none was sent and the
        peer did not just drop the connection; the caller closes the socket."""
        if self.handshake_done and not self.eof_sent and not self.truncated:
            self.send_close_notify()
            lib.ERR_clear_error()
        _close_notify_read.discard(self._key)

    def describe(self) -> str:
        """Protocol, cipher and key-exchange group, as ``TLSStream.describe`` says them."""
        if not self.handshake_done:
            return "no TLS"
        ssl = self.ssl
        version = ffi.string(lib.SSL_get_version(ssl)).decode()
        cipher = lib.SSL_get_current_cipher(ssl)
        name = ffi.string(lib.SSL_CIPHER_get_name(cipher)).decode() if cipher != ffi.NULL \
            else None
        group = None
        if lib.SSL_get_session(ssl) != ffi.NULL:  # SSL_get0_group_name needs a session
            raw = lib.SSL_get0_group_name(ssl)
            group = ffi.string(raw).decode() if raw != ffi.NULL else None
        raw_name = lib.SSL_get_servername(ssl, lib.TLSEXT_NAMETYPE_host_name)
        sni = ffi.string(raw_name).decode("ascii", "backslashreplace") \
            if raw_name != ffi.NULL else ""
        return f"{version} {name} {group or '-'}" + (f" sni {sni}" if sni else "")
