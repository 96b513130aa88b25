"""stunnel's ``options =`` names: what each does in tlswrap."""

from __future__ import annotations

import pytest
from cryptography.hazmat.bindings.openssl.binding import Binding

from tlswrap import ssloptions
from tlswrap.ssloptions import Kind, bits, effective, note, parse, versions_off


def test_the_bits_are_the_openssl_ones():
    """Where the OpenSSL binding names an option, the table's bit is the same value."""
    lib = Binding.lib
    for name, known in ssloptions.OPTIONS.items():
        ours = {"NO_SSLV3": "NO_SSLv3", "NO_TLSV1": "NO_TLSv1", "NO_TLSV1_1": "NO_TLSv1_1",
                "NO_TLSV1_2": "NO_TLSv1_2", "NO_TLSV1_3": "NO_TLSv1_3"}.get(name, name)
        value = getattr(lib, f"SSL_OP_{ours}", None)
        if value is None:
            continue
        if known.kind is Kind.SET:
            assert known.bits == value, name
        elif known.kind is Kind.OBSOLETE:
            assert value == 0, name


@pytest.mark.parametrize(("value", "parsed"), [
    ("NO_SSLv3", "NO_SSLV3"), ("-NO_SSLv3", "-NO_SSLV3"), ("cipher_server_preference",
                                                           "CIPHER_SERVER_PREFERENCE"),
    ("DONT_INSERT_EMPTY_FRAGMENTS", "DONT_INSERT_EMPTY_FRAGMENTS"), ("- NO_TICKET", "-NO_TICKET"),
])
def test_names_parse_without_regard_to_case(value, parsed):
    assert parse(value) == parsed


@pytest.mark.parametrize(("value", "message"), [
    ("NO_MAGIC", "unknown OpenSSL option 'NO_MAGIC'"),
    ("NO_TIKET", "unknown OpenSSL option 'NO_TIKET': did you mean NO_TICKET"),
    ("-NO_COMPRESSION", "cannot clear NO_COMPRESSION: compression leaks secrets (CRIME)"),
    ("-NO_RENEGOTIATION", "cannot clear NO_RENEGOTIATION: tlswrap never allows"),
    ("ALLOW_UNSAFE_LEGACY_RENEGOTIATION", "ALLOW_UNSAFE_LEGACY_RENEGOTIATION is refused"),
    ("NO_EXTENDED_MASTER_SECRET", "NO_EXTENDED_MASTER_SECRET is refused: the extended master"),
])
def test_refusals_say_why(value, message):
    with pytest.raises(ValueError) as info:
        parse(value)
    assert str(info.value).startswith(message)


def test_notes_for_options_without_effect():
    assert note("NO_SSLV2").startswith("options = NO_SSLV2: no effect: SSLv2 is gone")
    assert note("SINGLE_DH_USE") == "options = SINGLE_DH_USE: no effect: always on since " \
                                    "OpenSSL 1.1"
    assert note("-NO_SSLV3").startswith("options = -NO_SSLV3: no effect: tlswrap never serves")
    assert note("NO_QUERY_MTU").endswith("applies to DTLS only, not to TLS over TCP")
    assert note("NO_TICKET") is None and note("-NO_TLSV1_3") is None and note("ALL") is None


def test_a_clear_wins_over_a_set_in_either_order():
    options = ("NO_TICKET", "-NO_TICKET", "-CIPHER_SERVER_PREFERENCE", "CIPHER_SERVER_PREFERENCE",
               "NO_TLSV1_3", "SINGLE_DH_USE")
    assert effective(options) == ("NO_TLSV1_3", "SINGLE_DH_USE")
    assert bits(options) == 0
    assert versions_off(options) == {"TLSv1.3"}
    assert bits(("NO_TICKET", "PRIORITIZE_CHACHA")) == Binding.lib.SSL_OP_NO_TICKET | (1 << 21)
