"""Strings as tcpd's C code reads them."""

from __future__ import annotations

import pytest

from tlswrap.tcpwrappers.cstring import atoi, equal, fold, scan_int, split_at


def test_fold_is_ascii_only():
    assert fold("ImapD") == "imapd"
    assert fold("İÉ") == "İÉ"  # strcasecmp in the C locale leaves non-ASCII alone
    assert equal("EXCEPT", "except") and not equal("É", "é")


@pytest.mark.parametrize("text,atoi_value,scanned", [
    ("42", 42, 42), (" -7", -7, -7), ("+3", 3, 3), ("12x", 12, None), ("x", 0, None),
    ("", 0, None), ("5 ", 5, None),
])
def test_numbers(text, atoi_value, scanned):
    assert atoi(text) == atoi_value
    assert scan_int(text) == scanned


def test_split_at_skips_brackets():
    assert split_at("ALL: [::1]: spawn x", ":") == ("ALL", " [::1]: spawn x")
    assert split_at("[::1]:x", ":") == ("[::1]", "x")
    assert split_at("[a:b", ":") == ("[a:b", None)
    assert split_at("a]:b", ":") == ("a]:b", None)  # depth went below zero: never cut
