"""stunnel's ``options = [-]NAME``: every OpenSSL option name stunnel 5.75 knows, and what
tlswrap does with each. Pure: names and bits in, names and bits out.

General theory of operation: stunnel collects two masks per service, options to set and
options to clear (``-NAME``), and hands them to OpenSSL. tlswrap builds every context from
scratch, so it needs no "clear": a service's options are the names it sets, minus the names
it clears, on top of tlswrap's own base options. Each name falls in one class:

- ``SET``: a real OpenSSL option, passed on (bit values from OpenSSL 3's ``ssl.h``; stable
  across 3.x and 4.x, which is what cryptography's wheel ships);
- ``VERSION``: turns a protocol version off; honoured through the version range;
- ``OBSOLETE``: defined as 0 since OpenSSL 1.1 (or 3.0): accepted, has no effect, a note;
- ``DTLS``: applies to DTLS only: accepted, no effect on TLS over TCP, a note;
- ``REFUSED``: would make TLS weaker than tlswrap allows: an error that says why.

Clearing an option tlswrap sets itself for safety (``-NO_COMPRESSION``, ``-NO_RENEGOTIATION``)
is refused; clearing one nothing sets (``-NO_SSLv3``: SSLv3 is never served) is a note.
"""

from __future__ import annotations

import difflib
import enum
from dataclasses import dataclass


class Kind(enum.Enum):
    SET = "set"
    VERSION = "version"
    OBSOLETE = "obsolete"
    DTLS = "dtls"
    REFUSED = "refused"


def _bit(n: int) -> int:
    return 1 << n


@dataclass(frozen=True, slots=True)
class Known:
    kind: Kind
    bits: int = 0
    why: str = ""  # for REFUSED: the reason; for others: what the note says


_OBSOLETE = "defined as 0 since OpenSSL 1.1 (the bug it worked around is long gone)"
_DTLS = "applies to DTLS only, not to TLS over TCP"
_RENEG = "tlswrap never allows renegotiation (a client-driven CPU drain, and the old kind is " \
         "the CVE-2009-3555 injection)"

# stunnel 5.75's ssl_opts[] table (src/options.c), every name it can know.
OPTIONS: dict[str, Known] = {
    "ALL": Known(Kind.SET, _bit(4) | _bit(6) | _bit(11) | _bit(31)),  # SSL_OP_ALL in 3.x
    "ALLOW_CLIENT_RENEGOTIATION": Known(Kind.REFUSED, why=_RENEG),
    "ALLOW_NO_DHE_KEX": Known(Kind.SET, _bit(10)),
    "ALLOW_UNSAFE_LEGACY_RENEGOTIATION": Known(Kind.REFUSED, why=_RENEG),
    "CIPHER_SERVER_PREFERENCE": Known(Kind.SET, _bit(22)),
    "CISCO_ANYCONNECT": Known(Kind.DTLS, why=_DTLS),
    "CLEANSE_PLAINTEXT": Known(Kind.SET, _bit(1)),
    "COOKIE_EXCHANGE": Known(Kind.DTLS, why=_DTLS),
    "CRYPTOPRO_TLSEXT_BUG": Known(Kind.SET, _bit(31)),
    "DISABLE_TLSEXT_CA_NAMES": Known(Kind.SET, _bit(9)),
    "DONT_INSERT_EMPTY_FRAGMENTS": Known(Kind.SET, _bit(11)),
    "ENABLE_KTLS": Known(Kind.REFUSED, why="kernel TLS is not used: tlswrap's engine reads "
                                           "and writes the socket itself"),
    "ENABLE_MIDDLEBOX_COMPAT": Known(Kind.SET, _bit(20)),
    "EPHEMERAL_RSA": Known(Kind.OBSOLETE, why=_OBSOLETE),
    "IGNORE_UNEXPECTED_EOF": Known(Kind.SET, _bit(7)),
    "LEGACY_SERVER_CONNECT": Known(Kind.SET, _bit(2)),
    "MICROSOFT_BIG_SSLV3_BUFFER": Known(Kind.OBSOLETE, why=_OBSOLETE),
    "MICROSOFT_SESS_ID_BUG": Known(Kind.OBSOLETE, why=_OBSOLETE),
    "MSIE_SSLV2_RSA_PADDING": Known(Kind.OBSOLETE, why=_OBSOLETE),
    "NETSCAPE_CA_DN_BUG": Known(Kind.OBSOLETE, why=_OBSOLETE),
    "NETSCAPE_CHALLENGE_BUG": Known(Kind.OBSOLETE, why=_OBSOLETE),
    "NETSCAPE_DEMO_CIPHER_CHANGE_BUG": Known(Kind.OBSOLETE, why=_OBSOLETE),
    "NETSCAPE_REUSE_CIPHER_CHANGE_BUG": Known(Kind.OBSOLETE, why=_OBSOLETE),
    "NO_ANTI_REPLAY": Known(Kind.SET, _bit(24)),
    "NO_COMPRESSION": Known(Kind.SET, _bit(17)),
    "NO_DTLS_MASK": Known(Kind.DTLS, why=_DTLS),
    "NO_DTLSV1": Known(Kind.DTLS, why=_DTLS),
    "NO_DTLSV1_2": Known(Kind.DTLS, why=_DTLS),
    "NO_ENCRYPT_THEN_MAC": Known(Kind.REFUSED, why="encrypt-then-MAC protects CBC suites "
                                                   "(Lucky 13); tlswrap keeps it on"),
    "NO_EXTENDED_MASTER_SECRET": Known(Kind.REFUSED, why="the extended master secret "
                                       "(RFC 7627) stops the triple handshake attack; tlswrap "
                                       "keeps it on"),
    "NO_QUERY_MTU": Known(Kind.DTLS, why=_DTLS),
    "NO_RENEGOTIATION": Known(Kind.SET, _bit(30)),
    "NO_SESSION_RESUMPTION_ON_RENEGOTIATION": Known(Kind.SET, _bit(16)),
    "NO_SSL_MASK": Known(Kind.VERSION),
    "NO_SSLV2": Known(Kind.OBSOLETE, why="SSLv2 is gone from OpenSSL; tlswrap serves TLS 1.2 "
                                         "and 1.3 only"),
    "NO_SSLV3": Known(Kind.VERSION),
    "NO_TICKET": Known(Kind.SET, _bit(14)),
    "NO_TLSV1": Known(Kind.VERSION),
    "NO_TLSV1_1": Known(Kind.VERSION),
    "NO_TLSV1_2": Known(Kind.VERSION),
    "NO_TLSV1_3": Known(Kind.VERSION),
    "PKCS1_CHECK_1": Known(Kind.OBSOLETE, why=_OBSOLETE),
    "PKCS1_CHECK_2": Known(Kind.OBSOLETE, why=_OBSOLETE),
    "PRIORITIZE_CHACHA": Known(Kind.SET, _bit(21)),
    "SAFARI_ECDHE_ECDSA_BUG": Known(Kind.SET, _bit(6)),
    "SINGLE_DH_USE": Known(Kind.OBSOLETE, why="always on since OpenSSL 1.1"),
    "SINGLE_ECDH_USE": Known(Kind.OBSOLETE, why="always on since OpenSSL 1.1"),
    "SSLEAY_080_CLIENT_DH_BUG": Known(Kind.OBSOLETE, why=_OBSOLETE),
    "SSLREF2_REUSE_CERT_TYPE_BUG": Known(Kind.OBSOLETE, why=_OBSOLETE),
    "TLS_BLOCK_PADDING_BUG": Known(Kind.OBSOLETE, why=_OBSOLETE),
    "TLS_D5_BUG": Known(Kind.OBSOLETE, why=_OBSOLETE),
    "TLSEXT_PADDING": Known(Kind.SET, _bit(4)),
    "TLS_ROLLBACK_BUG": Known(Kind.REFUSED, why="it turns off the RSA key exchange's "
                                                "version rollback check"),
}

# what tlswrap sets on every context, and why a config may not clear it
BASE = {
    "NO_COMPRESSION": "compression leaks secrets (CRIME); tlswrap keeps it off",
    "NO_RENEGOTIATION": _RENEG,
    "IGNORE_UNEXPECTED_EOF": "tlswrap relies on it to tell a client's bare FIN from a "
                             "truncation, and relays the half-close either way",
}
# the versions each VERSION name turns off (stunnel's spellings, upper case)
VERSION_OFF = {
    "NO_SSLV3": ("SSLv3",), "NO_TLSV1": ("TLSv1",), "NO_TLSV1_1": ("TLSv1.1",),
    "NO_TLSV1_2": ("TLSv1.2",), "NO_TLSV1_3": ("TLSv1.3",),
    "NO_SSL_MASK": ("SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"),
}


def parse(value: str) -> str:
    """One ``options =`` value: the name in upper case, with a leading ``-`` when it clears.

    Names are matched without regard to case (stunnel uses strcasecmp). ValueError says why a
    name is unknown or refused.
    """
    text = value.strip()
    clear = text.startswith("-")
    name = text[1:].strip().upper() if clear else text.upper()
    known = OPTIONS.get(name)
    if known is None:
        close = difflib.get_close_matches(name, OPTIONS, n=3)
        hint = f"did you mean {' or '.join(close)}?" if close else \
            "the README's options reference lists the names stunnel 5.75 knows"
        raise ValueError(f"unknown OpenSSL option {name!r}: {hint}")
    if clear and name in BASE:
        raise ValueError(f"cannot clear {name}: {BASE[name]}")
    if not clear and known.kind is Kind.REFUSED:
        raise ValueError(f"{name} is refused: {known.why}")
    return f"-{name}" if clear else name


def note(option: str) -> str | None:
    """What ``tlswrap check`` says about an accepted ``option`` (from ``parse``) that has no
    effect, or None when it is honoured."""
    clear = option.startswith("-")
    name = option.lstrip("-")
    known = OPTIONS[name]
    if known.kind in (Kind.OBSOLETE, Kind.DTLS):
        return f"options = {option}: no effect: {known.why}"
    if clear and known.kind is Kind.VERSION and name not in ("NO_TLSV1_2", "NO_TLSV1_3"):
        return (f"options = {option}: no effect: tlswrap never serves versions below TLS 1.2 "
                "(RFC 8996)")
    if clear and known.kind is Kind.REFUSED:
        return f"options = {option}: no effect: tlswrap never sets {name}"
    return None


def effective(options: tuple[str, ...]) -> tuple[str, ...]:
    """The names a service sets: each set name unless a later or earlier ``-NAME`` clears it
    (stunnel applies the clear mask after the set mask, so a clear always wins)."""
    cleared = {o[1:] for o in options if o.startswith("-")}
    return tuple(o for o in options if not o.startswith("-") and o not in cleared)


def bits(options: tuple[str, ...]) -> int:
    """The OpenSSL option bits to set for ``options`` (VERSION names go to the version range)."""
    mask = 0
    for name in effective(options):
        known = OPTIONS[name]
        if known.kind is Kind.SET:
            mask |= known.bits
    return mask


def versions_off(options: tuple[str, ...]) -> set[str]:
    """The TLS versions (stunnel's spellings) that ``options`` turn off."""
    return {v for name in effective(options) for v in VERSION_OFF.get(name, ())}
