"""``tlswrap match``: tcpdmatch's output format and exit codes."""

from __future__ import annotations

import io
import subprocess
import sys

from tlswrap.tcpwrappers import matchcli


def run(tmp_path, allow: str, deny: str, *args: str) -> tuple[int, str]:
    (tmp_path / "hosts.allow").write_text(allow)
    (tmp_path / "hosts.deny").write_text(deny)
    out = io.StringIO()
    rc = matchcli.run(["-d", *args], out, cwd=str(tmp_path))
    return rc, out.getvalue()


def test_address_client(tmp_path):
    rc, out = run(tmp_path, "imapd: 10.0.0.1: spawn echo %a %h\n", "ALL: ALL\n",
                  "imapd", "10.0.0.1")
    assert rc == 0
    assert out == ("client:   address  10.0.0.1\n"
                   "server:   process  imapd\n"
                   "matched:  hosts.allow line 1\n"
                   "option:   spawn echo 10.0.0.1 10.0.0.1\n"
                   "access:   granted\n")


def test_host_name_client_and_server(tmp_path):
    rc, out = run(tmp_path, "", "ALL EXCEPT imapd@localhost: LOCAL\n",
                  "pop3d@127.0.0.1", "bob@localhost")
    assert rc == 0
    assert out == ("client:   hostname localhost\n"
                   "client:   address  127.0.0.1\n"
                   "client:   username bob\n"
                   "server:   hostname localhost\n"
                   "server:   address  127.0.0.1\n"
                   "server:   process  pop3d\n"
                   "matched:  hosts.deny line 1\n"
                   "access:   denied\n")


def test_twist_is_delegated_and_not_run(tmp_path):
    marker = tmp_path / "ran"
    rc, out = run(tmp_path, f"ALL: ALL: spawn touch {marker} : twist touch {marker}\n", "",
                  "imapd", "unknown")
    assert rc == 0 and out.endswith("access:   delegated\n")
    assert not marker.exists()


def test_option_error_denies(tmp_path):
    rc, out = run(tmp_path, "ALL: ALL: user nosuchuser\n", "", "imapd", "::1")
    assert rc == 0
    assert out.splitlines()[-2:] == ['error: hosts.allow, line 1: unknown user: "nosuchuser"',
                                     "access:   denied"]


def test_usage_and_lookup_errors(tmp_path, capsys):
    assert matchcli.main([]) == 1
    assert matchcli.main(["-x", "a", "b"]) == 1
    assert "usage:" in capsys.readouterr().err
    rc, out = run(tmp_path, "", "", "imapd", "no-such-host.invalid")
    assert rc == 1 and out == "warning: no-such-host.invalid: host not found\n"


def test_allow_and_deny_options(tmp_path):
    (tmp_path / "a").write_text("ALL: ALL: deny\n")
    out = io.StringIO()
    rc = matchcli.run(["--allow", str(tmp_path / "a"), f"--deny={tmp_path / 'none'}",
                       "imapd", "10.0.0.1"], out)
    assert rc == 0 and f"matched:  {tmp_path / 'a'} line 1" in out.getvalue()
    assert out.getvalue().endswith("access:   denied\n")


def test_imports_stay_light(tmp_path):
    code = ("import sys, tlswrap.tcpwrappers.matchcli; "
            "bad = {'trio', 'OpenSSL', 'cryptography'} & set(sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
    (tmp_path / "hosts.allow").write_text("ALL: ALL\n")
    r = subprocess.run([sys.executable, "-m", "tlswrap.tcpwrappers.matchcli", "-d", "imapd",
                        "10.0.0.1"], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.endswith("access:   granted\n")
