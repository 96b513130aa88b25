"""tcp_wrappers in the connection path, in-process: options acted on, lookups only when needed."""

from __future__ import annotations

import os

import trio

from tlswrap.access import AccessControl
from tlswrap.tcpwrappers import HostsFiles

PEER = ("192.0.2.7", 40000)
LOCAL = ("127.0.0.1", 993)


def control(tmp_path, allow: str = "", deny: str = "", resolver=None) -> AccessControl:
    (tmp_path / "hosts.allow").write_text(allow)
    (tmp_path / "hosts.deny").write_text(deny)
    hosts = HostsFiles(str(tmp_path / "hosts.allow"), str(tmp_path / "hosts.deny"))
    hosts.load_strict()
    return AccessControl(hosts, resolver) if resolver else AccessControl(hosts)


async def test_hostile_reverse_name_cannot_inject_into_spawn(tmp_path):
    out = tmp_path / "spawned.txt"
    pwned = tmp_path / "pwned"
    hostile = f"x;touch {pwned};`touch {pwned}`$(touch {pwned}).example.org"
    ac = control(tmp_path, allow=f"imapd: KNOWN: spawn echo %h %c %n > {out}\n",
                 resolver=lambda addr: hostile)
    verdict = await ac.check("imapd", PEER, LOCAL)
    assert verdict.decision.granted
    with trio.fail_after(10):
        while not out.exists() or not out.read_text().endswith("\n"):
            await trio.sleep(0.02)
    written = out.read_text().split()
    assert not pwned.exists()
    assert written[0] == written[2]  # %h and %n: the sanitised name
    for ch in ";`$() ":
        assert ch not in written[0]
    assert written[0].startswith("x_touch_")


async def test_no_name_lookup_when_rules_only_use_addresses(tmp_path):
    def resolver(addr):
        raise AssertionError("no rule needs a name")

    ac = control(tmp_path, deny="imapd: 192.0.2.\n", resolver=resolver)
    verdict = await ac.check("imapd", PEER, LOCAL)
    assert not verdict.decision.granted and verdict.decision.line == 1
    assert verdict.client == "192.0.2.7"


async def test_name_pattern_triggers_lookup_in_a_thread(tmp_path):
    ac = control(tmp_path, deny="imapd: .bad.example\n",
                 resolver=lambda addr: "host.bad.example")
    verdict = await ac.check("imapd", PEER, LOCAL)
    assert not verdict.decision.granted
    assert verdict.client == "host.bad.example"


async def test_setenv_umask_nice_and_twist_reach_the_verdict(tmp_path):
    ac = control(tmp_path, allow="imapd: ALL: setenv MAILDIR /var/mail/%d: umask 077: nice 5: "
                                 "twist /bin/echo denied %a\n")
    v = await ac.check("imapd", PEER, LOCAL)
    assert v.env == {"MAILDIR": "/var/mail/imapd"}
    assert v.umask == 0o77 and v.nice == 5
    assert v.twist == "/bin/echo denied 192.0.2.7"


async def test_edit_applies_to_the_next_check(tmp_path):
    ac = control(tmp_path)
    assert (await ac.check("imapd", PEER, LOCAL)).decision.granted
    deny = tmp_path / "hosts.deny"
    deny.write_text("ALL: ALL\n")
    os.utime(deny, ns=(1, 1))  # a different identity even within one timestamp tick
    assert not (await ac.check("imapd", PEER, LOCAL)).decision.granted


async def test_banner_is_expanded(tmp_path):
    banners = tmp_path / "banners"
    banners.mkdir()
    (banners / "imapd").write_text("* BYE %a is not welcome at %d\n")
    ac = control(tmp_path, deny=f"imapd: ALL: banners {banners}\n")
    v = await ac.check("imapd", PEER, LOCAL)
    assert not v.decision.granted
    assert v.banner == b"* BYE 192.0.2.7 is not welcome at imapd\r\n"


async def test_a_resolver_that_hangs_counts_as_a_failed_lookup(tmp_path, monkeypatch):
    import time

    from tlswrap import access

    monkeypatch.setattr(access, "LOOKUP_TIMEOUT", 0.2)
    ac = control(tmp_path, deny="imapd: KNOWN\n", resolver=lambda addr: time.sleep(2) or "x.org")
    with trio.fail_after(5):
        verdict = await ac.check("imapd", PEER, LOCAL)
    assert verdict.decision.granted  # the name stayed unknown, so KNOWN did not match
