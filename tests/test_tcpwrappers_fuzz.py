"""Any hosts file text gives rules (with its syntax errors listed), and any rules give a
decision: the rule engine never raises, whatever an admin or an attacker-controlled name
brings. Bounded for CI (derandomized there)."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from tlswrap.tcpwrappers import Request, decide, expand_percent, parse_hosts

CI = bool(os.environ.get("CI"))
# the vocabulary of hosts_access(5) and hosts_options(5), glued together at random
WORDS = ["ALL", "EXCEPT", "LOCAL", "KNOWN", "UNKNOWN", "PARANOID", "imaps", "pop3s", "@",
         "127.0.0.1", "10.", ".example.org", "[::1]", "[2001:db8::]/32", "10.0.0.0/255.0.0.0",
         "10.0.0.0/8", "*", "?", "allow", "deny", "severity", "auth.info", "setenv", "umask",
         "022", "twist", "spawn", "banners", "keepalive", "linger", "nice", "rfc931", "user",
         "%a", "%h", "%d", "%%", "%", ":", ",", " ", "\t", "\\\n", "\n", "#", "=", "/"]
rule_text = st.lists(st.one_of(st.sampled_from(WORDS), st.text(max_size=8)),
                     max_size=40).map("".join)
names = st.one_of(st.none(), st.sampled_from(["mail.example.org", "paranoid", "unknown"]),
                  st.text(max_size=20))


@settings(max_examples=400, deadline=None, derandomize=CI)
@given(rule_text)
def test_any_text_parses_to_rules(text):
    rules = parse_hosts(text, "hosts.allow")
    for filename, lineno, msg in rules.problems:
        assert filename == "hosts.allow" and lineno >= 0 and msg


@settings(max_examples=400, deadline=None, derandomize=CI)
@given(rule_text, rule_text, names, st.sampled_from(["10.0.0.1", "2001:db8::1", None]))
def test_any_rules_give_a_decision(allow_text, deny_text, client_name, client_addr):
    allow, deny = parse_hosts(allow_text, "hosts.allow"), parse_hosts(deny_text, "hosts.deny")
    request = Request("imaps", client_addr=client_addr, client_name=client_name,
                      server_addr="127.0.0.1", server_name="localhost", user=None,
                      client_port=51234, server_port=993, pid=1)
    decision = decide(allow, deny, request, read_patterns=lambda path: [],
                      on_option=lambda option, warn: None)
    assert decision.granted in (True, False)


OK_CHARS = set("1234567890!@%-_=+:,./abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


@settings(max_examples=400, deadline=None, derandomize=CI)
@given(st.sampled_from(["%n", "%h", "%c", "%a %n %d"]), names)
def test_percent_expansion_passes_no_shell_character_from_a_name(pattern, client_name):
    """tcpd's percent_x(): every expanded character outside its safe set becomes '_', so a
    DNS name cannot smuggle '; rm -rf /' into a spawn or twist command."""
    request = Request("imaps", client_addr="10.0.0.1", client_name=client_name)
    out = expand_percent(pattern, request)
    assert set(out) - {" "} <= OK_CHARS, out
