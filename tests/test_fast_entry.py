"""fast.entry's "no rules" reading of hosts files: only what tcpd (and the full path's rule
engine) skips without a word; the rest goes to that engine."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlswrap.fast.entry import HOSTS_MAX_BYTES, no_rules
from tlswrap.tcpwrappers.files import HOSTS_MAX_BYTES as FILES_MAX
from tlswrap.tcpwrappers.rules import parse_hosts


def test_the_size_bound_is_the_engines():
    assert HOSTS_MAX_BYTES == FILES_MAX


@pytest.mark.parametrize("text,empty", [
    ("", True),
    ("# Debian's hosts.allow\n#\n\n# ALL: LOCAL\n", True),
    (" \t\r\n\n", True),
    ("ALL: ALL\n", False),
    ("   # indented: a rule to tcpd\n", False),
    ("# no final newline", False),
    ("# a continued \\\nALL: ALL\n", False),
    ("#" * 3000 + "\n", False),
])
def test_cases(tmp_path, text, empty):
    path = tmp_path / "hosts"
    path.write_text(text)
    assert no_rules(str(path)) is empty


def test_a_missing_file_has_no_rules_and_an_unreadable_one_is_the_engines(tmp_path):
    assert no_rules(str(tmp_path / "missing"))
    assert not no_rules(str(tmp_path))  # a directory


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(["", "#", "# c", " ", "\t", "\r", " #", "a: b", "\\", "\0",
                                 "#\\", "ALL", "x" * 40]), max_size=8),
       st.booleans())
def test_no_rules_means_the_engine_sees_nothing(tmp_path_factory, lines, newline):
    text = "\n".join(lines) + ("\n" if newline and lines else "")
    path = tmp_path_factory.mktemp("h") / "hosts"
    path.write_text(text)
    if no_rules(str(path)):
        rules = parse_hosts(text, "hosts")
        assert rules.entries == () and rules.problems == ()
