"""Unit tests of the pure tcp_wrappers engine: no files, no sockets."""

from __future__ import annotations

import ast
import pathlib

import pytest

from tlswrap import hostsaccess, hostsoptions
from tlswrap.hostsaccess import (ACLEXEC_FAILED, PARANOID, Request, Rules, decide, expand_percent,
                                 parse_hosts)
from tlswrap.hostsoptions import Severity

EMPTY = Rules.empty("hosts.deny")


def allow_text(text: str, req: Request, deny: str = "", **kw):
    return decide(parse_hosts(text, "hosts.allow"), parse_hosts(deny, "hosts.deny"), req, **kw)


def addr(a: str, daemon: str = "imapd", **kw) -> Request:
    """tcpdmatch with an address as CLIENT: the name lookup failed."""
    return Request(daemon, client_addr=a, **kw)


def named(a: str, name: str, daemon: str = "imapd", **kw) -> Request:
    return Request(daemon, client_addr=a, client_name=name, **kw)


def granted_by(rule: str, req: Request) -> bool:
    """Does ``rule`` in hosts.allow match, with ``ALL: ALL`` in hosts.deny?"""
    return allow_text(rule + "\n", req, "ALL: ALL\n").granted


# --- imports ---------------------------------------------------------------------------------

@pytest.mark.parametrize("module", [hostsaccess, hostsoptions])
def test_pure_module_imports_nothing_with_io(module):
    tree = ast.parse(pathlib.Path(module.__file__).read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
             for a in n.names}
    names |= {(n.module or "").split(".")[0] for n in ast.walk(tree)
              if isinstance(n, ast.ImportFrom)}
    assert not names & {"socket", "trio", "OpenSSL", "cryptography", "subprocess", "os", "io"}


# --- MUST 1: unknown names, paranoid ---------------------------------------------------------

@pytest.mark.parametrize("pattern", ["localhost", "LOCAL", "KNOWN", ".localhost", "local*"])
def test_address_client_never_matches_name_patterns(pattern):
    assert not granted_by(f"ALL: {pattern}", addr("127.0.0.1"))


def test_unknown_matches_failed_lookup_and_unknown_server():
    assert granted_by("ALL: UNKNOWN", addr("10.0.0.1"))
    assert granted_by("imapd@UNKNOWN: ALL", addr("10.0.0.1"))
    assert granted_by("imapd: ALL", addr("10.0.0.1"))


def test_names_match_reverse_name():
    req = named("127.0.0.1", "localhost")
    for pat in ("localhost", "LOCAL", "KNOWN", "LOCALHOST", "local*", "127.0.0.1"):
        assert granted_by(f"ALL: {pat}", req), pat
    assert not granted_by("ALL: UNKNOWN", req)


def test_paranoid_name():
    req = named("10.0.0.1", PARANOID)
    assert granted_by("ALL: PARANOID", req)
    assert not granted_by("ALL: KNOWN", req)
    assert not granted_by("ALL: LOCAL", req)
    assert not granted_by("ALL: UNKNOWN", req)


def test_name_lookup_is_lazy_and_once():
    calls = []

    def lookup():
        calls.append(1)
        return "mail.example.com"

    req = Request("imapd", client_addr="192.0.2.1", client_name=lookup)
    assert allow_text("ALL: 192.0.2.1\n", req).granted
    assert calls == []
    assert allow_text("ALL: .example.com\nALL: KNOWN\n", req).granted
    assert calls == [1]


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


def test_missing_separator_is_skipped_with_a_problem():
    rules = parse_hosts("ALL ALL\nALL: ALL\n", "f")
    assert rules.problems == (("f", 1, 'missing ":" separator'),)
    d = decide(rules, EMPTY, addr("1.2.3.4"))
    assert d.line == 2 and 'warning: f, line 1: missing ":" separator' in d.log


# --- MUST 3: lists and EXCEPT ----------------------------------------------------------------

def test_except():
    r = addr("10.0.0.1")
    assert not granted_by("ALL: ALL EXCEPT 10.0.0.2, 10.0.0.1", r)
    assert granted_by("ALL: ALL except 10.0.0.2", r)
    assert granted_by("ALL: ALL EXCEPT 10. EXCEPT 10.0.0.1", r)  # a EXCEPT (b EXCEPT c)
    assert not granted_by("ALL EXCEPT imapd: ALL", r)
    assert granted_by("pop3d,imapd\tsmtpd: 10.0.0.9 , 10.0.0.1", r)
    assert granted_by("IMAPD: all", r)


# --- MUST 4: net/mask ------------------------------------------------------------------------

@pytest.mark.parametrize("pattern,client,expected", [
    ("10.0.0.0/24", "10.0.0.1", True),
    ("10.0.0.7/24", "10.0.0.7", False),
    ("10.0.0.7/255.255.255.0", "10.0.0.7", False),
    ("10.0.0.7/255.255.255.255", "10.0.0.7", False),
    ("10.0.0.7/32", "10.0.0.7", True),
    ("10.0.0.0/255.0.255.0", "10.9.0.9", True),
    ("10.0.0.0/0", "10.0.0.1", False),
    ("0.0.0.0/0.0.0.0", "192.0.2.1", True),
    ("[2001:db8::1]/32", "2001:db8::5", True),
    ("[::]/0", "2001:db8::5", True),
    ("[::]/0", "10.0.0.1", False),
    ("[2001:db8::]/129", "2001:db8::", False),
    ("[2001:db8::1]", "2001:DB8:0::1", True),
    ("2001:db8::1", "2001:db8::1", False),
    ("10.0.0.0/8", "::ffff:10.1.2.3", True),
    ("10.1.2.3", "::ffff:10.1.2.3", True),
    ("10.", "::ffff:10.1.2.3", True),
])
def test_masks(pattern, client, expected):
    assert granted_by(f"ALL: {pattern}", addr(client)) is expected


# --- MUST 5: prefixes, suffixes, wildcards ---------------------------------------------------

def test_prefix_and_wildcards():
    req = named("192.0.2.1", "mail.example.com")
    assert granted_by("ALL: mail.", req)
    assert granted_by("ALL: 192.0.", req)
    assert granted_by("ALL: .example.com", req)
    assert not granted_by("ALL: .mail.example.com", req)
    assert granted_by("ALL: m*l.*.com", req)
    assert granted_by("ALL: 192.0.2.?", req)
    assert not granted_by("ALL: *.example.com.", named("192.0.2.1", "mail.example.com"))
    assert not granted_by("ALL: 192.*/24", req)
    assert granted_by("imap*: ALL", req)
    assert granted_by("imapd*: ALL", req)  # '*' matches the empty string
    assert granted_by("ALL@*: ALL", Request("imapd", "192.0.2.1", server_addr="127.0.0.1"))
    assert granted_by("ALL: b?b@ALL", Request("imapd", "192.0.2.1", user="bob"))


def test_users_and_servers():
    req = Request("imapd", "10.0.0.1", user=None, server_addr="127.0.0.1",
                  server_name="localhost", server_port=993)
    assert granted_by("ALL: UNKNOWN@ALL", req)
    assert not granted_by("ALL: KNOWN@ALL", req)
    assert granted_by("imapd@localhost: ALL", req)
    assert granted_by("imapd@127.0.0.1: ALL", req)
    assert granted_by("993: ALL", req)
    assert not granted_by("995: ALL", req)
    assert not granted_by("ALL: @somegroup", req)
    assert granted_by("ALL: @somegroup", req) is False
    d = allow_text("ALL: @ng\n", req, "ALL: ALL\n", netgroup=lambda g, h: g == "ng")
    assert d.granted


def test_pattern_files_via_callback():
    def read(path):
        if path == "/etc/ok":
            return ["192.0.2.0/24", "10.0.0.1"]
        if path == "/etc/secret":
            raise PermissionError(13, "Permission denied")
        raise FileNotFoundError(path)

    d = allow_text("ALL: /etc/ok\n", addr("10.0.0.1"), "ALL: ALL\n", read_patterns=read)
    assert d.granted
    d = allow_text("ALL: /etc/secret /missing\n", addr("10.0.0.1"), "ALL: ALL\n",
                   read_patterns=read)
    assert not d.granted
    assert "warning: hosts.allow, line 1: open /etc/secret: Permission denied" in d.log


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


def test_allow_and_deny_override_the_file():
    assert not allow_text("ALL: ALL: DENY\n", addr("10.0.0.1")).granted
    d = allow_text("", addr("10.0.0.1"), "ALL: 10.0.0.1: allow\nALL: ALL\n")
    assert (d.granted, d.file, d.line) == (True, "hosts.deny", 1)


def test_only_deciding_rule_options_are_evaluated():
    d = allow_text("ALL: 10.0.0.2: bogus\nALL: 10.0.0.1: spawn echo %a\n", addr("10.0.0.1"))
    assert d.granted and d.options[0].arg == "echo 10.0.0.1"


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


def test_on_option_hook_can_deny_and_aclexec_can_refuse():
    d = allow_text("ALL: ALL: user nosuch : spawn x\n", addr("10.0.0.1"),
                   on_option=lambda o, warn: 'unknown user: "nosuch"' if o.name == "user" else None)
    assert not d.granted and [o.name for o in d.options] == ["user"]
    d = allow_text("ALL: ALL: aclexec false\n", addr("10.0.0.1"), "ALL: 10.0.0.1\n",
                   on_option=lambda o, warn: ACLEXEC_FAILED)
    assert (d.granted, d.file) == (False, "hosts.deny")


def test_no_match_grants():
    d = decide(EMPTY, EMPTY, addr("10.0.0.1"))
    assert (d.granted, d.file, d.line, d.options) == (True, None, None, ())


def test_unreadable_file_denies_in_deny():
    d = decide(EMPTY, Rules.unreadable("hosts.deny", "Permission denied"), addr("10.0.0.1"))
    assert not d.granted and d.error == "cannot open hosts.deny: Permission denied"


# --- %-expansion -----------------------------------------------------------------------------

def test_expand_percent_sanitizes_hostile_names():
    req = Request("imapd", "192.0.2.1", client_name="x;rm -rf /$(id)`.example", user="bob",
                  server_addr="127.0.0.1", server_name="localhost", client_port=4321,
                  server_port=993, pid=77)
    assert expand_percent("%h", req) == "x_rm_-rf_/__id__.example"
    assert expand_percent("%a %A %c %d %H %N %p %r %R %s %u %% %", req) == (
        "192.0.2.1 127.0.0.1 bob@x_rm_-rf_/__id__.example imapd localhost localhost 77 4321"
        " 993 imapd@localhost bob % %")
    warnings = []
    assert expand_percent("a%qb;", req, warnings.append) == "ab;"
    assert warnings == ["unrecognized %q"]


def test_expand_hostinfo_uses_address_until_name_is_looked_up():
    req = Request("imapd", "192.0.2.1", client_name=lambda: "mail.example.com")
    assert expand_percent("%h %c %s", req) == "192.0.2.1 192.0.2.1 imapd"
    assert expand_percent("%n", req) == "mail.example.com"
    assert expand_percent("%h", req) == "mail.example.com"
    assert expand_percent("%n %u", Request("imapd")) == "unknown unknown"
