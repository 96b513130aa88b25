"""Reading hosts files: logical lines, comments, continuation, and what stops a file."""

from __future__ import annotations

from test_tcpwrappers_decide import EMPTY, addr, allow_text, granted_by
from tlswrap.tcpwrappers import Rules, decide, parse_hosts
from tlswrap.tcpwrappers.rules import BUFLEN, Note

# --- MUST 2: comments and continuation -------------------------------------------------------

def test_comment_only_in_column_one():
    assert granted_by("   # imapd: ALL", addr("10.0.0.1"))  # a live rule
    assert granted_by("ALL: 10.0.0.2 # 10.0.0.1", addr("10.0.0.1"))
    assert not granted_by("#ALL: ALL", addr("10.0.0.1"))


def test_backslash_newline_joins_without_blank_and_comment_swallows():
    d = allow_text("ALL: 10.0.\\\n0.1\n", addr("10.0.0.1"), "ALL: ALL\n")
    assert (d.granted, d.file, d.line) == (True, "hosts.allow", 2)
    d = allow_text("# x \\\nALL: ALL\nALL: 10.0.0.1\n", addr("10.0.0.1"))
    assert d.line == 3


def test_missing_newline_stops_the_file():
    d = allow_text("", addr("10.0.0.1"), "ALL: 10.0.0.2\nALL: 10.0.0.9")
    assert not d.granted and d.error == "missing newline or line too long"
    assert parse_hosts("ALL: ALL", "f").problems == (("f", 1, "missing newline or line too long"),)
    assert allow_text("ALL: ALL", addr("10.0.0.1")).granted  # ERR in hosts.allow: go on
    long = "ALL: " + "x" * 3000 + "\n"
    assert parse_hosts(long, "f").problems[0][2] == "missing newline or line too long"


def test_line_buffer_is_tcpds():
    fits = "ALL: " + "x" * (BUFLEN - 7) + "\n"  # BUFLEN - 1 characters, newline included
    assert parse_hosts(fits, "f").problems == ()
    over = "ALL: " + "x" * (BUFLEN - 6) + "\n"
    rules = parse_hosts(over, "f")
    assert rules.problems and isinstance(rules.entries[-1], Note) and rules.entries[-1].fatal


def test_missing_separator_is_skipped_with_a_problem():
    rules = parse_hosts("ALL ALL\nALL: ALL\n", "f")
    assert rules.problems == (("f", 1, 'missing ":" separator'),)
    d = decide(rules, EMPTY, addr("1.2.3.4"))
    assert d.line == 2 and 'warning: f, line 1: missing ":" separator' in d.log


def test_rules_are_split_into_lists():
    (rule,) = parse_hosts("imapd, pop3d\tsmtpd : [::1]/128, 10.0.0.1 : spawn a\\:b\n", "f").rules
    assert (rule.filename, rule.lineno) == ("f", 1)
    assert rule.daemons == ("imapd", "pop3d", "smtpd")
    assert rule.clients == ("[::1]/128", "10.0.0.1")  # the ":" inside [...] does not cut
    assert [(o.name, o.value) for o in rule.options] == [("spawn", "a:b")]


def test_missing_and_unreadable_files():
    assert Rules.empty("hosts.allow").rules == ()
    bad = Rules.unreadable("hosts.deny", "Permission denied")
    assert bad.problems == (("hosts.deny", 0, "cannot open hosts.deny: Permission denied"),)
