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


async def wait_for_file(path, timeout: float = 10.0) -> str:
    with trio.fail_after(timeout):
        while not path.exists() or not path.read_text().endswith("\n"):
            await trio.sleep(0.02)
    return path.read_text()


async def test_aclexec_exit_status_decides(tmp_path):
    ac = control(tmp_path, allow="imapd: ALL: aclexec exit 1\n", deny="ALL: ALL\n")
    assert not (await ac.check("imapd", PEER, LOCAL)).decision.granted
    ac = control(tmp_path, allow="imapd: ALL: aclexec test %a = 192.0.2.7 -a %d = imapd\n",
                 deny="ALL: ALL\n")
    assert (await ac.check("imapd", PEER, LOCAL)).decision.granted


async def test_aclexec_sees_earlier_setenv_and_umask_and_stdio_on_dev_null(tmp_path):
    made = tmp_path / "made"
    ac = control(tmp_path, allow=(
        f'imapd: ALL: setenv FOO bar: umask 077: aclexec test "$FOO" = bar && touch {made}'
        ' && test "$(readlink /proc/$$/fd/0)$(readlink /proc/$$/fd/1)$(readlink /proc/$$/fd/2)"'
        ' = /dev/null/dev/null/dev/null\n'), deny="ALL: ALL\n")
    assert (await ac.check("imapd", PEER, LOCAL)).decision.granted
    assert made.stat().st_mode & 0o777 == 0o600


async def test_aclexec_that_hangs_is_killed_and_refuses(tmp_path, monkeypatch):
    from tlswrap import access

    monkeypatch.setattr(access, "ACLEXEC_TIMEOUT", 0.3)
    pidfile = tmp_path / "pid"
    ac = control(tmp_path, allow=f"imapd: ALL: aclexec echo $$ > {pidfile}; exec sleep 30\n",
                 deny="ALL: ALL\n")
    with trio.fail_after(10):
        verdict = await ac.check("imapd", PEER, LOCAL)
    assert not verdict.decision.granted
    pid = int(pidfile.read_text())
    with trio.fail_after(5):
        while os.path.exists(f"/proc/{pid}") and "Z" not in _proc_state(pid):
            await trio.sleep(0.02)


def _proc_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


async def test_aclexec_runs_off_the_event_loop(tmp_path):
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await trio.sleep(0.01)
            ticks += 1

    ac = control(tmp_path, allow="imapd: ALL: aclexec sleep 0.5\n", deny="ALL: ALL\n")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        verdict = await ac.check("imapd", PEER, LOCAL)
        nursery.cancel_scope.cancel()
    assert verdict.decision.granted
    assert ticks >= 5  # the loop kept running while the command did


async def test_spawn_sees_earlier_umask_and_setenv(tmp_path):
    touched, echoed = tmp_path / "touched", tmp_path / "echoed"
    ac = control(tmp_path, allow=f"imapd: ALL: umask 077: setenv FOO bar: "
                                 f"spawn touch {touched}; echo $FOO > {echoed}\n")
    assert (await ac.check("imapd", PEER, LOCAL)).decision.granted
    assert await wait_for_file(echoed) == "bar\n"
    assert touched.stat().st_mode & 0o777 == 0o600


async def test_setenv_after_spawn_does_not_reach_it(tmp_path):
    echoed = tmp_path / "echoed"
    ac = control(tmp_path, allow=f"imapd: ALL: spawn echo x$FOO > {echoed}: setenv FOO bar\n")
    assert (await ac.check("imapd", PEER, LOCAL)).decision.granted
    assert await wait_for_file(echoed) == "x\n"


def ident_control(tmp_path, allow: str, deny: str, answers: dict) -> tuple[AccessControl, list]:
    """AccessControl whose ident server (RFC 931) names ``answers[peer address]``."""
    (tmp_path / "hosts.allow").write_text(allow)
    (tmp_path / "hosts.deny").write_text(deny)
    hosts = HostsFiles(str(tmp_path / "hosts.allow"), str(tmp_path / "hosts.deny"))
    hosts.load_strict()
    asked: list = []

    def ident(peer, local, seconds):
        asked.append((peer, local, seconds))
        return answers.get(peer[0])

    return AccessControl(hosts, ident=ident), asked


async def test_a_user_at_host_pattern_asks_the_ident_server_as_tcpd(tmp_path):
    ac, asked = ident_control(tmp_path, "imapd: alice@192.0.2.\n", "ALL: ALL\n",
                              {"192.0.2.7": "alice", "192.0.2.8": "mallory"})
    verdict = await ac.check("imapd", PEER, LOCAL)
    assert verdict.decision.granted and verdict.client == "alice@192.0.2.7"
    assert asked == [(PEER, LOCAL, 10.0)]  # tcpd's RFC931_TIMEOUT
    refused = await ac.check("imapd", ("192.0.2.8", 40001), LOCAL)
    assert not refused.decision.granted and refused.client == "mallory@192.0.2.8"
    silent = await ac.check("imapd", ("192.0.2.9", 40002), LOCAL)  # no answer: "unknown"
    assert not silent.decision.granted and silent.client == "192.0.2.9"
    other = await ac.check("imapd", ("198.51.100.1", 40003), LOCAL)
    assert not other.decision.granted and len(asked) == 3  # host did not match: not asked


async def test_rfc931_looks_the_user_up_with_its_timeout_for_percent_u(tmp_path):
    ac, asked = ident_control(tmp_path, "imapd: ALL: rfc931 3: setenv WHO %u\n", "",
                              {"192.0.2.7": "alice"})
    verdict = await ac.check("imapd", PEER, LOCAL)
    assert verdict.env == {"WHO": "alice"} and verdict.client == "alice@192.0.2.7"
    assert len(asked) == 1 and 0 < asked[0][2] <= 3


async def test_rules_without_users_never_ask_an_ident_server(tmp_path):
    ac, asked = ident_control(tmp_path, "imapd: 192.0.2.7: setenv WHO %a\n", "ALL: ALL\n",
                              {"192.0.2.7": "alice"})
    verdict = await ac.check("imapd", PEER, LOCAL)
    assert verdict.decision.granted and verdict.client == "192.0.2.7" and asked == []
