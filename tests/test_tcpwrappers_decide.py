"""The verdict: allow file, then deny file, then grant; only the deciding rule's options run.

No files, no sockets. The helpers here (``allow_text``, ``granted_by``, ``addr``, ``named``)
are shared by the pattern, rule and option tests, which go through :func:`decide` as tcpd does.
"""

from __future__ import annotations

from tlswrap.tcpwrappers import ACLEXEC_FAILED, Decision, Request, Rules, decide, parse_hosts

EMPTY = Rules.empty("hosts.deny")


def allow_text(text: str, req: Request, deny: str = "", **kw) -> Decision:
    return decide(parse_hosts(text, "hosts.allow"), parse_hosts(deny, "hosts.deny"), req, **kw)


def addr(a: str, daemon: str = "imapd", **kw) -> Request:
    """tcpdmatch with an address as CLIENT: the name lookup failed."""
    return Request(daemon, client_addr=a, **kw)


def named(a: str, name: str, daemon: str = "imapd", **kw) -> Request:
    return Request(daemon, client_addr=a, client_name=name, **kw)


def granted_by(rule: str, req: Request) -> bool:
    """Does ``rule`` in hosts.allow match, with ``ALL: ALL`` in hosts.deny?"""
    return allow_text(rule + "\n", req, "ALL: ALL\n").granted


def test_allow_and_deny_override_the_file():
    assert not allow_text("ALL: ALL: DENY\n", addr("10.0.0.1")).granted
    d = allow_text("", addr("10.0.0.1"), "ALL: 10.0.0.1: allow\nALL: ALL\n")
    assert (d.granted, d.file, d.line) == (True, "hosts.deny", 1)


def test_only_deciding_rule_options_are_evaluated():
    d = allow_text("ALL: 10.0.0.2: bogus\nALL: 10.0.0.1: spawn echo %a\n", addr("10.0.0.1"))
    assert d.granted and d.options[0].arg == "echo 10.0.0.1"


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


def test_log_callback_sees_the_verbose_lines_as_they_come():
    lines: list[str] = []
    d = allow_text("ALL: 10.0.0.1: spawn echo %a\n", addr("10.0.0.1"), log=lines.append)
    assert tuple(lines) == d.log == ("matched:  hosts.allow line 1",
                                     "option:   spawn echo 10.0.0.1")


def _aclexec(status: dict[str, bool]):
    """An on_option hook that answers aclexec from ``status`` (command -> exited 0)."""
    def hook(option, warn):
        if option.name == "aclexec":
            return None if status[option.arg] else ACLEXEC_FAILED
        return None
    return hook


def test_aclexec_failure_in_hosts_allow_goes_on_to_hosts_deny():
    """libwrap's hosts_access(): the failed rule ends the allow file's search (a later allow
    rule is not consulted), the deny file decides."""
    hook = _aclexec({"ok": True, "bad": False})
    assert allow_text("imapd: ALL: aclexec ok\n", addr("10.0.0.1"), "ALL: ALL\n",
                      on_option=hook).granted
    d = allow_text("imapd: ALL: aclexec bad\nimapd: ALL\n", addr("10.0.0.1"), "ALL: ALL\n",
                   on_option=hook)
    assert (d.granted, d.file, d.line) == (False, "hosts.deny", 1)
    assert "aclexec returned 1" in d.log


def test_aclexec_failure_in_hosts_deny_grants():
    hook = _aclexec({"ok": True, "bad": False})
    assert allow_text("", addr("10.0.0.1"), "ALL: ALL: aclexec bad\n", on_option=hook).granted
    assert not allow_text("", addr("10.0.0.1"), "ALL: ALL: aclexec ok\n", on_option=hook).granted


def test_aclexec_status_is_the_last_one_and_outlives_the_rule():
    """tcpd keeps the status in a global that only a later aclexec resets; it is checked after
    every rule with options, so a failed allow rule makes a deny rule *with options* not match."""
    hook = _aclexec({"ok": True, "bad": False})
    failed = "imapd: ALL: aclexec bad\n"
    assert allow_text(failed, addr("10.0.0.1"), "ALL: ALL: severity info\n",
                      on_option=hook).granted
    assert not allow_text(failed, addr("10.0.0.1"), "ALL: ALL\n", on_option=hook).granted
    assert not allow_text(failed, addr("10.0.0.1"), "ALL: ALL: aclexec ok\n",
                          on_option=hook).granted
    assert allow_text("imapd: ALL: aclexec bad: aclexec ok\n", addr("10.0.0.1"), "ALL: ALL\n",
                      on_option=hook).granted
    assert not allow_text("imapd: ALL: aclexec ok: aclexec bad\n", addr("10.0.0.1"),
                          "ALL: ALL\n", on_option=hook).granted


def test_allow_deny_and_twist_end_the_rule_before_the_aclexec_status_counts():
    hook = _aclexec({"bad": False})
    assert allow_text("imapd: ALL: aclexec bad: allow\n", addr("10.0.0.1"), "ALL: ALL\n",
                      on_option=hook).granted
    d = allow_text("imapd: ALL: aclexec bad: twist echo hi\n", addr("10.0.0.1"), "ALL: ALL\n",
                   on_option=hook)
    assert d.delegated and d.option("twist") is not None


def test_options_of_a_rule_whose_aclexec_failed_were_carried_out():
    """tcpd ran them (setenv, spawn, umask...) before the status was known: they stay."""
    hook = _aclexec({"bad": False})
    d = allow_text("imapd: ALL: setenv A b: aclexec bad\n", addr("10.0.0.1"),
                   "ALL: ALL: spawn echo %a\n", on_option=hook)
    assert d.granted  # the failed status outlives its rule (above)
    assert [o.name for o in d.options] == ["setenv", "aclexec", "spawn"]
