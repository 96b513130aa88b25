"""The I/O shell: reading hosts files, reloading on change, keeping the last good rules."""

from __future__ import annotations

import logging
import os

import pytest

from fifo_guard import call_unless_blocked
from tlswrap.errors import ConfigError
from tlswrap.tcpwrappers import PARANOID, Option, Request, decide
from tlswrap.tcpwrappers.files import (
    HostsFiles,
    banner_path_error,
    check_option,
    find_inet_addr,
    hostname_for,
    read_hosts,
)


def write(path, text: str, bump: int = 0) -> None:
    path.write_text(text)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump))


def verdict(files: HostsFiles, client: str = "10.0.0.1") -> bool:
    allow, deny = files.rules()
    return decide(allow, deny, Request("imapd", client)).granted


def test_missing_files_are_empty(tmp_path):
    files = HostsFiles(str(tmp_path / "a"), str(tmp_path / "d"))
    allow, deny = files.load_strict()
    assert allow.rules == () and deny.rules == ()
    assert verdict(files)


def test_reload_on_change(tmp_path):
    allow, deny = tmp_path / "hosts.allow", tmp_path / "hosts.deny"
    write(deny, "ALL: ALL\n")
    files = HostsFiles(str(allow), str(deny))
    files.load_strict()
    assert not verdict(files)
    first = files.rules()
    assert files.rules()[1] is first[1]  # unchanged: not re-read
    write(allow, "imapd: 10.0.0.1\n")
    assert verdict(files)
    write(allow, "imapd: 10.0.0.2\n", bump=1_000_000)  # same size, new mtime
    assert not verdict(files)


def test_invalid_at_runtime_keeps_last_good(tmp_path, caplog):
    allow, deny = tmp_path / "hosts.allow", tmp_path / "hosts.deny"
    write(deny, "ALL: ALL\n")
    files = HostsFiles(str(allow), str(deny))
    files.load_strict()
    write(deny, "ALL: ALL: bogus\nsyntax error here\n", bump=1_000_000)
    with caplog.at_level(logging.ERROR, logger="tlswrap.tcpwrappers.files"):
        assert not verdict(files, "10.0.0.9")
    assert any(f"{deny}:1: bad option name" in r.getMessage() for r in caplog.records)
    write(deny, "ALL: 10.0.0.1\n", bump=2_000_000)
    assert verdict(files, "10.0.0.9")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_at_runtime_keeps_last_good(tmp_path, caplog):
    deny = tmp_path / "hosts.deny"
    write(deny, "ALL: ALL\n")
    files = HostsFiles(str(tmp_path / "a"), str(deny))
    files.load_strict()
    deny.chmod(0)
    write(deny, "ALL: 10.0.0.2\n", bump=1_000_000)
    with caplog.at_level(logging.ERROR, logger="tlswrap.tcpwrappers.files"):
        assert not verdict(files)
    assert caplog.records


def test_unreadable_without_earlier_rules_denies(tmp_path):
    (tmp_path / "hosts.deny").mkdir()  # reading a directory fails
    files = HostsFiles(str(tmp_path / "a"), str(tmp_path / "hosts.deny"))
    assert not verdict(files)


def test_strict_load_errors_name_file_and_line(tmp_path):
    allow = tmp_path / "hosts.allow"
    write(allow, "ALL: 10.0.0.1\nimapd: ALL: spawn echo : umask 999\n")
    with pytest.raises(ConfigError) as info:
        HostsFiles(str(allow), str(tmp_path / "d")).load_strict()
    assert str(info.value) == f'{allow}:2: bad umask value: "999"'
    write(allow, "imapd ALL\n", bump=1)
    with pytest.raises(ConfigError, match=r":1: missing \":\" separator"):
        HostsFiles(str(allow), str(tmp_path / "d")).load_strict()


def test_read_hosts_reports_given_name(tmp_path):
    p = tmp_path / "x"
    p.write_text("ALL: ALL\n")
    assert read_hosts(str(p), "hosts.allow").rules[0].filename == "hosts.allow"


def test_resolver_uses_c_library():
    assert hostname_for("127.0.0.1") == "localhost"
    assert hostname_for("::ffff:127.0.0.1") == "localhost"
    assert find_inet_addr("localhost")[0][1] == "127.0.0.1"
    assert find_inet_addr("10.0.0.1") == [(2, "10.0.0.1")]
    warnings = []
    assert find_inet_addr("no-such-host.invalid", warnings.append) is None
    assert warnings == ["no-such-host.invalid: host not found"]
    assert PARANOID == "paranoid"


def test_check_option():
    assert check_option(Option("user", "user", "root", ("root", None))) is None
    assert check_option(Option("user", "user", "nosuchuser")) == 'unknown user: "nosuchuser"'
    assert check_option(Option("user", "user", "root.nosuchgroup")) == (
        'unknown group: "nosuchgroup"')
    assert check_option(Option("group", "group", "nosuchgroup")) == 'unknown group: "nosuchgroup"'


def test_banner_path_error(tmp_path):
    assert banner_path_error(str(tmp_path)) is None
    assert banner_path_error(str(tmp_path / "none")) == (
        f"{tmp_path / 'none'}: No such file or directory")


@pytest.mark.parametrize("which", ["allow", "deny", "pattern list"])
def test_a_fifo_in_place_of_a_hosts_file_is_refused_not_waited_on(tmp_path, which):
    """tcpd would block on a FIFO forever; tlswrap refuses it (the file is unreadable)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    allow, deny = tmp_path / "hosts.allow", tmp_path / "hosts.deny"
    write(allow, f"ALL: {fifo}\n" if which == "pattern list" else "")
    write(deny, "ALL: ALL\n")
    paths = {"allow": (fifo, deny), "deny": (allow, fifo), "pattern list": (allow, deny)}[which]
    files = HostsFiles(str(paths[0]), str(paths[1]))
    assert call_unless_blocked(lambda: verdict(files), fifo) is False
    if which != "pattern list":
        rules = call_unless_blocked(lambda: read_hosts(str(fifo)), fifo)
        assert "not a regular file (a FIFO)" in str(rules.open_error)


def test_tlswrap_match_and_check_do_not_hang_on_a_fifo(tmp_path, capsys):
    from tlswrap.check import main as check_main
    from tlswrap.tcpwrappers.matchcli import main as match_main

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    call_unless_blocked(lambda: match_main(["--allow", str(fifo), "--deny", str(fifo),
                                            "imaps", "10.0.0.1"]), fifo)
    call_unless_blocked(lambda: check_main(["-a", str(fifo), "-D", str(fifo)]), fifo)
    assert "not a regular file (a FIFO)" in capsys.readouterr().out


def test_a_fifo_as_a_banner_is_an_error_at_its_rule_not_a_hang(tmp_path, capsys):
    """``banners DIR`` sends DIR/DAEMON: tcpd would wait on a FIFO there forever. check
    reports it at the rule's line (a regular banner beside it is fine); match says why it
    shows no banner; neither waits on it."""
    from tlswrap.check import main as check_main
    from tlswrap.tcpwrappers.matchcli import main as match_main

    banners = tmp_path / "banners"
    banners.mkdir()
    fifo = banners / "imaps"
    os.mkfifo(fifo)
    (banners / "pop3s").write_text("* BYE not here\n")
    allow, deny = tmp_path / "hosts.allow", tmp_path / "hosts.deny"
    write(allow, f"# banners for refused clients\nimaps pop3s: ALL: banners {banners}: DENY\n")
    write(deny, "")
    rc = call_unless_blocked(lambda: check_main(["-a", str(allow), "-D", str(deny)]), fifo)
    out = capsys.readouterr().out.splitlines()
    assert rc == 1
    assert [line for line in out if ": error: " in line] == [
        f"{allow}:2: error: {fifo}: not a regular file (a FIFO): no banner "
        "is sent from it (tcpd would wait on it forever)"]
    call_unless_blocked(lambda: match_main(["--allow", str(allow), "--deny", str(deny),
                                            "imaps", "10.0.0.1"]), fifo)
    out = capsys.readouterr().out
    assert f"warning: {allow}, line 2: {fifo}: not a regular file (a FIFO)" in out, out
    assert "access:   denied" in out
