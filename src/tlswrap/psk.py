"""stunnel's ``PSKsecrets = FILE``: pre-shared keys, one ``IDENTITY:KEY`` per line. Pure.

As stunnel reads it (src/options.c psk_read): empty lines are skipped; the identity is what
comes before the first ``:``; a key written in hexadecimal (pairs of digits, optionally
``:``-separated, as OPENSSL_hexstr2buf takes them) is that binary value, any other key is its
bytes as written; keys shorter than 16 bytes are refused (too little entropy), as are longer
ones than OpenSSL takes.
"""

from __future__ import annotations

import re

from .errors import ConfigError

IDENTITY_MAX = 256  # PSK_MAX_IDENTITY_LEN in OpenSSL 3, the NUL included in stunnel's check
KEY_MIN = 16
KEY_MAX = 512  # PSK_MAX_PSK_LEN in OpenSSL 3
_HEX = re.compile(r"[0-9A-Fa-f]{2}(?::?[0-9A-Fa-f]{2})*")


def parse_secrets(text: str, filename: str) -> dict[bytes, bytes]:
    """Identity -> key for every line of ``text``; ConfigError(FILE, LINE) for a bad line."""
    keys: dict[bytes, bytes] = {}
    for lineno, raw in enumerate(text.split("\n"), 1):
        line = raw.rstrip("\r")
        if not line:
            continue
        identity, colon, key_text = line.partition(":")
        if not colon:
            raise ConfigError(filename, lineno, "not in IDENTITY:KEY form")
        ident = identity.encode("utf-8", "surrogateescape")
        if len(ident) + 1 > IDENTITY_MAX:
            raise ConfigError(filename, lineno,
                              f"identity longer than {IDENTITY_MAX - 1} characters")
        if _HEX.fullmatch(key_text):
            key = bytes.fromhex(key_text.replace(":", ""))
        else:
            key = key_text.encode("utf-8", "surrogateescape")
        if len(key) < KEY_MIN:
            raise ConfigError(filename, lineno, f"key shorter than {KEY_MIN} bytes (as "
                              "hexadecimal: 32 digits); a short key is easy to guess")
        if len(key) > KEY_MAX:
            raise ConfigError(filename, lineno, f"key longer than {KEY_MAX} bytes")
        keys[ident] = key
    if not keys:
        raise ConfigError(filename, None, "no IDENTITY:KEY line")
    return keys
