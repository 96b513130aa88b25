"""The TLS settings every server context gets: one source of truth for both context builders.

``tlscontext`` builds pyOpenSSL contexts for the daemon; ``opensslraw`` builds the same context
through cryptography's cffi binding for the inetd fast path. Both take these values; the
reasons for each are in ``tlscontext``'s docstring. Pure: names and numbers only, OpenSSL's
spellings without the ``SSL_OP_``/``SSL_MODE_`` prefix, so each builder looks them up itself.
"""

from __future__ import annotations

# TLS 1.2 suites: ECDHE + AEAD only. TLS 1.3 suites are OpenSSL's defaults (all AEAD).
DEFAULT_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)
BASE_OPTIONS = ("NO_COMPRESSION", "NO_RENEGOTIATION", "IGNORE_UNEXPECTED_EOF")
BASE_MODES = ("RELEASE_BUFFERS",)
SESSION_ID_CONTEXT_MAX = 32
PEM_MAX_BYTES = 16 << 20  # a certificate, key or CA file larger than 16 MiB is a mistake
MIN_KEY_BITS = 2048  # RSA and DSA keys below this are refused (use RSA 2048+ or EC P-256)


def session_id_context(service_name: str) -> bytes:
    """The session id context: the service's name, cut to OpenSSL's 32 bytes."""
    return service_name.encode()[:SESSION_ID_CONTEXT_MAX] or b"tlswrap"
