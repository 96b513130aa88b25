"""hosts_options(5): option syntax errors, values, and their place in the verdict."""

from __future__ import annotations

import pytest

from test_tcpwrappers_decide import addr, allow_text
from tlswrap.tcpwrappers import Severity, parse_hosts, parse_options

# --- MUST 7: options -------------------------------------------------------------------------

@pytest.mark.parametrize("opts,error", [
    ("bogus", 'bad option name: "bogus"'),
    ("allow : spawn x", 'option "allow" must be at end'),
    ("twist x : deny", 'option "twist" must be at end'),
    ("allow yes", 'option "allow" requires no value'),
    ("spawn", 'option "spawn" requires value'),
    ("", "missing option name"),
    ("/bin/cmd", 'bad option name: "/bin/cmd"'),
    ("umask 1000", 'bad umask value: "1000"'),
    ("nice x", 'bad nice value: "x"'),
    ("linger -1", 'bad linger value: "-1"'),
    ("rfc931 0", 'bad rfc931 timeout: "0"'),
    ("severity mail.bogus", 'bad syslog facility or severity: "bogus"'),
])
def test_option_errors_deny_even_in_allow(opts, error):
    d = allow_text(f"ALL: ALL: {opts}\n", addr("10.0.0.1"))
    assert (d.granted, d.error, d.line) == (False, error, 1)
    assert parse_hosts(f"ALL: ALL: {opts}\n", "f").problems[-1] == ("f", 1, error)


def test_rule_ending_in_colon_denies():
    assert not allow_text("ALL: ALL:\n", addr("10.0.0.1")).granted
    assert not allow_text("ALL: ALL: allow :\n", addr("10.0.0.1")).granted


def test_option_values_are_structured():
    text = ("ALL: ALL: spawn (echo %h) & : severity mail.info : setenv  FOO   bar baz  : nice"
            " : umask 027 : banners /etc/banners : keepalive : linger 5 : rfc931 : user nobody.kmem"
            " : group mail : aclexec check %a : Twist = /bin/echo 421 %d\\: go away\n")
    d = allow_text(text, addr("10.0.0.1"))
    args = {o.name: o.arg for o in d.options}
    assert args == {
        "spawn": "(echo 10.0.0.1) &", "severity": Severity("mail", "info", 2 << 3 | 6),
        "setenv": ("FOO", "bar baz"), "nice": 10, "umask": 0o27, "banners": "/etc/banners",
        "keepalive": None, "linger": 5, "rfc931": None, "user": ("nobody", "kmem"),
        "group": "mail", "aclexec": "check 10.0.0.1", "twist": "/bin/echo 421 imapd: go away"}
    assert d.delegated and d.access == "delegated" and d.granted
    assert d.option("twist").keyword == "Twist"
    assert "option:   setenv FOO   bar baz" in d.log


def test_parse_options_stops_at_the_first_error():
    specs, error = parse_options(" nice 5 : umask 999 : spawn x\n")
    assert [(s.name, s.value, s.error) for s in specs] == [
        ("nice", "5", None), ("umask", "999", 'bad umask value: "999"')]
    assert error is None  # a value error rides on its option
    specs, error = parse_options("keepalive : Bogus=1\n")
    assert [s.name for s in specs] == ["keepalive"] and error == 'bad option name: "Bogus"'
