"""``tlswrap check``: each class of finding on the sample files in tests/data/check/.

``hosts/``: hosts.allow and hosts.deny alone (tcpdchk mode), one block per class of problem.
``config/``: a config whose certificates and keys are made here at run time, with the hosts
files it names. ``expected.txt`` in each holds the exact report.
"""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fifo_guard import call_unless_blocked
from tlswrap import cli

DATA = Path(__file__).resolve().parent / "data" / "check"
UTC = datetime.UTC


def check(capsys, *args: str) -> tuple[int, str, str]:
    rc = cli.main(["check", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def expected(sample: str, **subst: str) -> str:
    text = (DATA / sample / "expected.txt").read_text()
    for key, value in subst.items():
        text = text.replace("{" + key + "}", value)
    return text


# --- hosts files alone, as tcpdchk -d ------------------------------------------------------

def test_hosts_sample(capsys, monkeypatch):
    monkeypatch.chdir(DATA / "hosts")
    rc, out, err = check(capsys, "-d")
    assert (rc, err) == (1, "")
    assert out == expected("hosts")


@pytest.mark.parametrize("line, finding", [
    # syntax errors, tcpd's wording
    ("imaps 10.0.0.1", 'error: missing ":" separator'),
    ("imaps: 10.0.0.2 : bogus", 'error: bad option name: "bogus"'),
    ("imaps: ALL : twist", 'error: option "twist" requires value'),
    ("imaps: ALL : keepalive 1", 'error: option "keepalive" requires no value'),
    ("imaps: ALL : severity bogus", 'error: bad syslog facility or severity: "bogus"'),
    ("imaps: ALL : group nosuchgroup-tlswrap", 'error: unknown group: "nosuchgroup-tlswrap"'),
    # patterns that can never match
    ("imaps: 192.168.1.1/16", "warning: 192.168.1.1/16: never matches: the net has bits "
     "outside the mask (tcpd does not mask it; write 192.168.0.0/16)"),
    ("imaps: 10.0.0.0/255.0.0.255", None),  # odd, but tcpd matches with it
    ("imaps: 10.0.0.0/0", "warning: 10.0.0.0/0: bad net/mask pattern: never matches"),
    ("imaps: [fe80::1]/64", None),
    ("imaps: [fe80::1]/64x", None),  # atoi(): 64
    ("imaps: [fe80::zz]/64", "warning: [fe80::zz]/64: bad net/mask pattern: never matches"),
    ("imaps: [fe80::zz]", "warning: [fe80::zz]: never matches: not an IPv6 address"),
    ("imaps: ::1", "warning: ::1: never matches: an IPv6 address is cut at its first ':' "
     "(write [::1])"),
    ("imaps: 10.0.0.1, fe80::/10", "warning: fe80::/10: never matches: an IPv6 address is "
     "cut at its first ':' (write [fe80::]/10)"),
    ("imaps: 10.0.0.",  None),
    ("imaps: 10.0.0.0.", "warning: 10.0.0.0.: never matches: no IPv4 address begins with it"),
    ("imaps: 010.", "warning: 010.: never matches: no IPv4 address begins with it"),
    ("imaps: 1.2.3.04", "warning: 1.2.3.04: never matches: not an IPv4 address as tcpd "
     "compares it (four numbers 0-255, no leading zeros)"),
    ("imaps: .10.1", "warning: .10.1: network number begins with dot"),
    ("imaps: mail.", "warning: mail.: domain or host name ends in dot (matches only host "
     "names that begin with it)"),
    ("imaps: ALL@10.0.0.1", "note: ALL@10.0.0.1: asks the client's ident server (RFC 931) "
     "for each connection when the host matches"),
    ("imaps: KNOWN@10.0.0.1", "note: KNOWN@10.0.0.1: asks the client's ident server (RFC "
     "931) for each connection when the host matches"),
    ("imaps: ALL EXCEPT", "warning: client list is empty or ends in EXCEPT"),
    # DNS at connection time; %h falls back to the address, %n does not
    ("imaps: LOCAL", "note: LOCAL: needs a DNS lookup per connection"),
    ("imaps: UNKNOWN", "note: UNKNOWN: needs a DNS lookup per connection"),
    ("imaps: 10.0.0.*", "note: 10.0.0.*: needs a DNS lookup per connection"),
    ("imaps: ALL : spawn echo %h %a %c", None),
    ("imaps: ALL : aclexec /usr/local/bin/dnsbl %a", "note: aclexec: the command runs for "
     "every connection this rule matches, before any TLS, and decides: exit 0 and the rule "
     "applies; any other status, a signal or a time-out and the rule does not match (in "
     "hosts.deny that grants access)"),
    ("imaps: ALL : twist echo %N", "note: twist %N: needs a DNS lookup per connection"),
    ("imaps: [::1]/128", None),
    ("imaps: ALL : rfc931", "note: rfc931: asks the client's ident server (RFC 931) for "
     "each connection this rule decides"),
    # daemon names (tcpdchk's checks)
    ("imaps.: ALL", "warning: imaps.: daemon name ends in dot"),
    ("@imaps: ALL", 'warning: @imaps: daemon name begins with "@"'),
    ("LOCAL: ALL", "warning: LOCAL: daemon name may be reserved word"),
    ("FAIL: ALL", "warning: FAIL is no longer recognized (use EXCEPT or DENY instead)"),
])
def test_one_rule(tmp_path, capsys, line, finding):
    allow, deny = tmp_path / "allow", tmp_path / "deny"
    allow.write_text(line + "\n")
    deny.write_text("")
    rc, out, _ = check(capsys, "-a", str(allow), "-D", str(deny))
    lines = out.splitlines()
    if finding is None:
        assert lines == [f"checked {allow}, {deny}: 0 errors, 0 warnings, 0 notes"]
        assert rc == 0
    else:
        assert f"{allow}:1: {finding}" in lines, lines
        assert rc == (1 if any(": error: " in x for x in lines) else 0)


def test_pattern_file(tmp_path, capsys):
    """A /path list: each pattern in it is checked; a missing file never matches."""
    listed = tmp_path / "clients"
    listed.write_text("10.0.0.1 10.0.0.7/24\n.example.com\n")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    allow = tmp_path / "allow"
    allow.write_text(f"imaps: {listed}\npop3s: {empty}\n")
    rc, out, _ = check(capsys, "--allow", str(allow), f"--deny={tmp_path / 'none'}")
    assert rc == 0
    assert out.splitlines() == [
        f"{allow}:1: warning: in {listed}: 10.0.0.7/24: never matches: the net has bits "
        "outside the mask (tcpd does not mask it; write 10.0.0.0/24)",
        f"{allow}:1: note: in {listed}: .example.com: needs a DNS lookup per connection",
        f"{allow}:2: warning: {empty}: never matches: the file holds no patterns",
        f"{tmp_path / 'none'}: note: no such file: tcpd treats it as empty",
        f"checked {allow}, {tmp_path / 'none'}: 0 errors, 2 warnings, 2 notes",
    ]


def test_shadowing_only_when_provable(tmp_path, capsys):
    allow = tmp_path / "allow"
    allow.write_text("imaps: 10.0.0.0/8\n"
                     "imaps: 10.0.0.1\n"          # inside 10/8, but not provably: no warning
                     "imaps pop3s: ALL EXCEPT 10.0.0.2\n"
                     "imaps: 10.0.0.3\n"          # the earlier EXCEPT: no warning
                     "ALL: .example.com\n"
                     "pop3s: .example.com\n"      # shadowed
                     "ALL: ALL : spawn echo %a : deny\n"
                     "imaps: 1.2.3.4 EXCEPT 1.2.3.4\n")  # shadowed: ALL
    _, out, _ = check(capsys, "-a", str(allow), "-D", str(tmp_path / "none"))
    shadowed = [line for line in out.splitlines() if "shadowed" in line]
    assert shadowed == [
        f"{allow}:6: warning: shadowed by line 5 (ALL : .example.com): every request this rule "
        "matches is decided there first",
        f"{allow}:8: warning: shadowed by line 7 (ALL : ALL): every request this rule matches "
        "is decided there first",
    ]


def test_unreadable_and_unterminated(tmp_path, capsys):
    allow = tmp_path / "allow"
    allow.write_text("ALL: 10.0.0.1\nimaps: ALL")  # no newline: tcpd stops reading here
    deny = tmp_path / "deny"
    deny.mkdir()
    rc, out, _ = check(capsys, "-a", str(allow), "-D", str(deny))
    assert rc == 1
    assert out.splitlines() == [
        f"{allow}:2: error: missing newline or line too long",
        f"{deny}: error: cannot open {deny}: Is a directory",
        f"checked {allow}, {deny}: 2 errors, 0 warnings, 0 notes",
    ]


def test_verbose_lists_rules_like_tcpdchk(tmp_path, capsys, monkeypatch):
    allow = tmp_path / "hosts.allow"
    allow.write_text("imaps, pop3s: 10.0.0.0/8 EXCEPT 10.1.0.0/16\n"
                     "imaps: ALL : spawn echo %a : deny\n"
                     "pop3s: ALL : umask 999\n")
    (tmp_path / "hosts.deny").write_text("ALL: ALL : allow\n")
    monkeypatch.chdir(tmp_path)
    _, out, _ = check(capsys, "-v", "-d")
    assert out == """\
>>> Rule hosts.allow line 1:
daemons:  imaps pop3s
clients:  10.0.0.0/8 EXCEPT 10.1.0.0/16
access:   granted

>>> Rule hosts.allow line 2:
daemons:  imaps
clients:  ALL
access:   denied

>>> Rule hosts.allow line 3:
daemons:  pop3s
clients:  ALL
access:   denied

>>> Rule hosts.deny line 1:
daemons:  ALL
clients:  ALL
access:   granted

hosts.allow:3: error: bad umask value: "999"
checked hosts.allow, hosts.deny: 1 error, 0 warnings, 0 notes
"""


@pytest.mark.parametrize("args", [["-x"], ["a.conf", "b.conf"], ["-a"], ["--deny"]])
def test_usage_errors(capsys, args):
    rc, out, err = check(capsys, *args)
    assert rc == 2 and out == ""
    assert err.startswith("usage: tlswrap check")


def test_help(capsys):
    rc, out, err = check(capsys, "--help")
    assert rc == 0 and out.startswith("usage: tlswrap check") and err == ""


# --- with a config -------------------------------------------------------------------------

def _write_leaf(leaf, directory: Path, name: str, key_mode: int = 0o600) -> None:
    leaf.cert_chain_pems[0].write_to_path(str(directory / f"{name}.pem"))
    leaf.private_key_pem.write_to_path(str(directory / f"{name}.key"))
    os.chmod(directory / f"{name}.key", key_mode)


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    """The config sample with its certificates, in a scratch directory that is the cwd."""
    import trustme

    for f in (DATA / "config").iterdir():
        shutil.copy(f, tmp_path / f.name)
    ca = trustme.CA()
    now = datetime.datetime.now(UTC)
    _write_leaf(ca.issue_cert("imap.example.com"), tmp_path, "imaps", key_mode=0o644)
    _write_leaf(ca.issue_cert("pop.example.com",
                              not_before=datetime.datetime(2020, 1, 1, tzinfo=UTC),
                              not_after=datetime.datetime(2021, 1, 1, tzinfo=UTC)),
                tmp_path, "expired")
    _write_leaf(ca.issue_cert("smtp.example.com",
                              not_after=now + datetime.timedelta(days=10, hours=12)),
                tmp_path, "soon")
    _write_leaf(ca.issue_cert("other.example.com"), tmp_path, "other")
    sieve = ca.issue_cert("sieve.example.com")
    sieve.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "combined.pem"))
    os.chmod(tmp_path / "combined.pem", 0o600)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _soon_date(directory: Path) -> str:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate((directory / "soon.pem").read_bytes())
    return f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S}"


def test_config_sample(config_dir, capsys):
    rc, out, err = check(capsys, "tlswrap.conf")
    assert (rc, err) == (1, "")
    assert out == expected("config", soon=_soon_date(config_dir))


def test_config_options_override_hosts_files(config_dir, capsys):
    (config_dir / "alt.allow").write_text("imap: ALL\n")
    _, out, _ = check(capsys, "-a", "alt.allow", "tlswrap.conf")
    assert "alt.allow:1: warning: imap: no such service in tlswrap.conf" in out.splitlines()
    assert "hosts.allow" not in out and out.splitlines()[-1].startswith(
        "checked tlswrap.conf, alt.allow, hosts.deny: ")


def test_config_parse_error_stops_there(tmp_path, capsys):
    conf = tmp_path / "bad.conf"
    conf.write_text("[imaps]\naccept = 9993\nbogus = 1\n")
    rc, out, _ = check(capsys, str(conf))
    assert rc == 1
    assert out.splitlines() == [f"{conf}:3: error: [imaps] unknown option 'bogus'",
                                f"checked {conf}: 1 error, 0 warnings, 0 notes"]


def test_config_missing(tmp_path, capsys):
    rc, out, _ = check(capsys, str(tmp_path / "none.conf"))
    assert rc == 1
    assert out.splitlines()[0] == (f"{tmp_path / 'none.conf'}: error: cannot read config: "
                                   "No such file or directory")


def test_clean_config_exits_zero(config_dir, capsys):
    (config_dir / "clean.conf").write_text(
        "hostsAllow = clean.allow\nhostsDeny = clean.deny\n"
        "[imaps]\naccept = 127.0.0.1:9993\nconnect = 127.0.0.1:143\ncert = other.pem\n"
        "key = other.key\n")
    (config_dir / "clean.allow").write_text("imaps: 10.0.0.0/8 [2001:db8::]/32\n")
    (config_dir / "clean.deny").write_text("ALL: ALL\n")
    rc, out, _ = check(capsys, "clean.conf")
    assert (rc, out) == (0, "checked clean.conf, clean.allow, clean.deny: "
                            "0 errors, 0 warnings, 0 notes\n")


def test_no_libwrap_skips_hosts_files(config_dir, capsys):
    (config_dir / "nowrap.conf").write_text(
        "[imaps]\naccept = 9993\nconnect = 143\ncert = other.pem\nkey = other.key\n"
        "libwrap = no\n")
    rc, out, _ = check(capsys, "nowrap.conf")
    assert (rc, out) == (0, "nowrap.conf: note: every service has libwrap = no: the hosts "
                            "files are not consulted\n"
                            "checked nowrap.conf: 0 errors, 0 warnings, 1 note\n")


def _nowrap(config_dir: Path, text: str, name: str = "t.conf") -> str:
    """A config of one libwrap = no service with the ``other`` certificate, plus ``text``."""
    (config_dir / name).write_text(
        f"{text}[imaps]\naccept = 9993\nconnect = 143\ncert = other.pem\nkey = other.key\n"
        "libwrap = no\n")
    return name


_NOTE = "t.conf: note: every service has libwrap = no: the hosts files are not consulted"
_TLS_POLICY = "tlswrap serves TLS 1.2 and 1.3 only (RFC 8996 deprecates the older versions)"


def test_every_mistake_of_a_config_is_listed(tmp_path, capsys):
    conf = tmp_path / "bad.conf"
    conf.write_text("[imaps]\naccept = 9993\nbogus = 1\nsslVersion = SSLv3\n[pop3s]\n"
                    "accept = 995\nconnect = 110\n")
    rc, out, _ = check(capsys, str(conf))
    assert rc == 1
    assert out.splitlines() == [
        f"{conf}:3: error: [imaps] unknown option 'bogus'",
        f"{conf}:5: error: [pop3s] no 'cert': a TLS server needs a certificate (or PSKsecrets)",
        f"checked {conf}: 2 errors, 0 warnings, 0 notes"]


def test_every_tls_problem_of_one_section_is_listed(tmp_path, capsys):
    conf = tmp_path / "tls.conf"
    conf.write_text("[imaps]\naccept = 9993\nconnect = 143\ncert = c.pem\nverify = 2\n"
                    "sni = nonsense\n[pop3s]\nclient = yes\naccept = 995\nconnect = 110\n"
                    "sniStrict = yes\nrequireCert = yes\n")
    rc, out, _ = check(capsys, str(conf))
    assert rc == 1
    lines = out.splitlines()
    assert [line.split(": error: ")[0] for line in lines[:-1]] == [
        f"{conf}:{n}" for n in (2, 5, 6, 11, 12)]
    assert lines[-1] == f"checked {conf}: 5 errors, 0 warnings, 0 notes"


@pytest.mark.parametrize("line", ["sslVersion = SSLv3", "sslVersion = TLSv1",
                                  "sslVersionMax = TLSv1.1"])
def test_an_old_tls_version_is_an_error_at_its_line(config_dir, capsys, line):
    option = line.partition(" = ")[0]
    rc, out, _ = check(capsys, _nowrap(config_dir, f"{line}\n"))
    assert (rc, out.splitlines()) == (1, [
        f"t.conf:1: error: [imaps] {line}: {_TLS_POLICY}: write {option} = TLSv1.2 or "
        "TLSv1.3, or remove the line to allow both",
        "checked t.conf: 1 error, 0 warnings, 0 notes"])


@pytest.mark.parametrize("version", ["SSLv3", "TLSv1"])
def test_an_old_tls_minimum_is_a_warning(config_dir, capsys, version):
    rc, out, _ = check(capsys, _nowrap(config_dir, f"sslVersionMin = {version}\n"))
    assert (rc, out.splitlines()) == (0, [
        _NOTE,
        f"t.conf:1: warning: [imaps] sslVersionMin = {version}: {_TLS_POLICY}, so the lowest "
        "version served is TLSv1.2: write sslVersionMin = TLSv1.2 to say so",
        "checked t.conf: 0 errors, 1 warning, 1 note"])


def test_every_problem_of_a_service_is_listed(config_dir, capsys):
    (config_dir / "t.conf").write_text(
        "[imaps]\naccept = 9993\nconnect = 143\ncert = other.pem\nkey = imaps.key\n"
        "ciphers = NOPE\ncurves = NOPE\nlibwrap = no\n")
    rc, out, _ = check(capsys, "t.conf")
    assert (rc, out.splitlines()) == (1, [
        _NOTE,
        "t.conf:5: error: [imaps] key = imaps.key: the private key does not match the "
        "certificate in other.pem",
        "t.conf:5: warning: [imaps] key = imaps.key: private key is readable by group/others "
        "(mode 644); use 0600",
        "t.conf:6: error: [imaps] ciphers = NOPE: OpenSSL accepts none of these",
        "t.conf:7: error: [imaps] curves = NOPE: OpenSSL does not know these groups",
        "checked t.conf: 3 errors, 1 warning, 1 note"])


def test_log_and_pid_files_that_cannot_be_written(config_dir, capsys):
    (config_dir / "logs").mkdir()
    rc, out, _ = check(capsys, _nowrap(config_dir, "output = nodir/tlswrap.log\n"
                                                   "pid = run/tlswrap.pid\n"
                                                   "setuid = no-such-user-tlswrap\n"
                                                   "setgid = no-such-group-tlswrap\n"))
    assert (rc, out.splitlines()) == (1, [
        _NOTE,
        "t.conf:1: error: output = nodir/tlswrap.log: cannot open log file: No such file or "
        "directory",
        "t.conf:2: error: pid = run/tlswrap.pid: cannot write the pid file: No such file or "
        "directory",
        "t.conf:3: error: setuid = no-such-user-tlswrap: no such user",
        "t.conf:4: error: setgid = no-such-group-tlswrap: no such group",
        "checked t.conf: 4 errors, 0 warnings, 1 note"])
    rc, out, _ = check(capsys, _nowrap(config_dir, "output = logs\npid = logs/tlswrap.pid\n"))
    assert (rc, out.splitlines()[1]) == (1, "t.conf:1: error: output = logs: cannot open log "
                                            "file: Is a directory")
    assert not (config_dir / "logs" / "tlswrap.pid").exists()


def test_log_and_pid_files_that_can_be_written_are_not_created(config_dir, capsys):
    rc, out, _ = check(capsys, _nowrap(config_dir, "output = tlswrap.log\npid = tlswrap.pid\n"))
    assert (rc, out.splitlines()) == (0, [_NOTE, "checked t.conf: 0 errors, 0 warnings, 1 note"])
    assert not (config_dir / "tlswrap.log").exists()
    assert not (config_dir / "tlswrap.pid").exists()


def test_pid_file_that_tlswrap_would_refuse(config_dir, capsys):
    (config_dir / "victim").write_text("precious\n")
    (config_dir / "link.pid").symlink_to(config_dir / "victim")
    rc, out, _ = check(capsys, _nowrap(config_dir, "pid = link.pid\n"))
    assert (rc, out.splitlines()[1]) == (1, "t.conf:1: error: pid = link.pid: cannot write "
                                            "the pid file: it is a symbolic link")
    rc, out, _ = check(capsys, _nowrap(config_dir, "pid = victim\n"))
    assert (rc, out.splitlines()[1]) == (1, "t.conf:1: error: pid = victim: cannot write the "
                                            "pid file: it exists and does not hold a process id")
    assert (config_dir / "victim").read_text() == "precious\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (files of another owner)")
def test_files_the_setuid_user_could_not_reread_on_reload(capsys, monkeypatch):
    """setuid = nobody: a root-only key cannot be re-read by a SIGHUP reload; the advised fix
    (group-readable by the dropped group, 640) silences both that and the key-mode warning."""
    import grp
    import pwd
    import tempfile

    import trustme

    nogroup = grp.getgrgid(pwd.getpwnam("nobody").pw_gid).gr_name
    with tempfile.TemporaryDirectory(dir="/tmp") as scratch:
        here = Path(scratch)
        os.chmod(here, 0o755)
        _write_leaf(trustme.CA().issue_cert("imap.example.com"), here, "imaps")
        os.chmod(here / "imaps.pem", 0o644)
        conf = here / "t.conf"
        conf.write_text("setuid = nobody\n[imaps]\naccept = 9993\nconnect = 143\n"
                        f"cert = {here}/imaps.pem\nkey = {here}/imaps.key\nlibwrap = no\n")
        key = f"{here}/imaps.key"
        rc, out, _ = check(capsys, str(conf))
        assert (rc, out.splitlines()[:2]) == (0, [
            f"{conf}: note: every service has libwrap = no: the hosts files are not consulted",
            f"{conf}:6: warning: [imaps] key = {key}: user nobody cannot read it, so a SIGHUP "
            f"reload will not be able to re-read it: make it readable by group {nogroup} "
            f"(chgrp {nogroup} {key}; chmod 640 {key})"])
        assert out.splitlines()[2] == f"checked {conf}: 0 errors, 1 warning, 1 note"
        os.chown(here / "imaps.key", 0, grp.getgrnam(nogroup).gr_gid)
        os.chmod(here / "imaps.key", 0o640)
        rc, out, _ = check(capsys, str(conf))
        assert (rc, out.splitlines()[-1]) == (0, f"checked {conf}: 0 errors, 0 warnings, 1 note")


# --- end to end ----------------------------------------------------------------------------

def test_subprocess_end_to_end(config_dir):
    proc = subprocess.run([sys.executable, "-m", "tlswrap", "check", "tlswrap.conf"],
                          capture_output=True, text=True, timeout=60, cwd=config_dir)
    assert proc.returncode == 1 and proc.stderr == ""
    assert proc.stdout == expected("config", soon=_soon_date(config_dir))


def test_hosts_only_imports_nothing_heavy():
    code = ("import sys; from tlswrap import cli; rc = cli.main(['check', '-d']);"
            "print(rc, sorted(m for m in ('trio', 'OpenSSL', 'cryptography') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=DATA / "hosts")
    assert proc.stdout.splitlines()[-1] == "1 []", proc.stdout + proc.stderr


def test_bytes_that_are_not_utf8(tmp_path, capsys):
    allow = tmp_path / "allow"
    allow.write_bytes(b"imaps: caf\xe9.example.\n")
    rc, out, _ = check(capsys, "-v", "-a", str(allow), "-D", str(allow))
    assert rc == 0
    assert "clients:  caf\\xe9.example.\n" in out
    assert f"{allow}:1: note: caf\\xe9.example.: needs a DNS lookup per connection\n" in out


# --- issue 17: no traceback, no hang, names hosts.allow cannot spell -------------------------

def _one_service(config_dir: Path, text: str = "", section: str = "imaps",
                 service_text: str = "", name: str = "t.conf") -> str:
    (config_dir / name).write_text(
        f"{text}[{section}]\naccept = 9993\nconnect = 143\ncert = other.pem\n"
        f"key = other.key\nlibwrap = no\n{service_text}")
    return name


def _check_in_thread(capsys, *args: str, fifo: Path) -> tuple[int, str]:
    """``check ARGS``, failing (not hanging) when it blocks on ``fifo``."""
    rc = call_unless_blocked(lambda: cli.main(["check", *args]), fifo, 20)
    return rc, capsys.readouterr().out


def test_a_fifo_as_the_config_is_an_error_not_a_hang(tmp_path, capsys):
    fifo = tmp_path / "tlswrap.conf"
    os.mkfifo(fifo)
    rc, out = _check_in_thread(capsys, str(fifo), fifo=fifo)
    assert (rc, out.splitlines()[0]) == (
        1, f"{fifo}: error: cannot read config: not a regular file (a FIFO)")


def test_a_fifo_as_the_cert_is_an_error_not_a_hang(config_dir, capsys):
    os.mkfifo(config_dir / "fifo.pem")
    name = _one_service(config_dir)
    (config_dir / name).write_text((config_dir / name).read_text()
                                   .replace("cert = other.pem", "cert = fifo.pem"))
    rc, out = _check_in_thread(capsys, name, fifo=config_dir / "fifo.pem")
    assert rc == 1
    assert "t.conf:4: error: [imaps] cert = fifo.pem: cannot read: not a regular file " \
           "(a FIFO)" in out.splitlines()


@pytest.mark.parametrize("text,service_text,finding", [
    ("", "sessionCacheTimeout = 1e19\n",
     "t.conf:7: error: [imaps] sessionCacheTimeout = 1e19: at most 2147483647 seconds"),
    ("", "socket = l:SO_SNDBUF=99999999999\n",
     "t.conf:7: error: [imaps] socket = l:SO_SNDBUF=99999999999: SO_SNDBUF must be 0 to "
     "2147483647, got 99999999999"),
    ("setgid = 99999999999\n", "",
     "t.conf:1: error: setgid = 99999999999: a group id is 0 to 4294967294, got 99999999999"),
    ("", "key = oth\x00er.key\n",
     "t.conf:7: error: [imaps] a NUL character (\\x00) is not allowed in a config file"),
])
def test_values_that_would_escape_are_errors_at_their_line(config_dir, capsys, text,
                                                           service_text, finding):
    rc, out, err = check(capsys, _one_service(config_dir, text, service_text=service_text))
    assert (rc, err) == (1, "")
    assert finding in out.splitlines()


def test_a_long_accept_host_is_an_error_at_its_line(config_dir, capsys):
    name = _one_service(config_dir)
    host = "a" * 64
    (config_dir / name).write_text((config_dir / name).read_text()
                                   .replace("accept = 9993", f"accept = {host}:9993"))
    rc, out, _ = check(capsys, name)
    assert rc == 1
    assert (f"t.conf:2: error: [imaps] accept = {host}:9993: the host name has a label longer "
            "than 63 characters") in out.splitlines()


@pytest.mark.parametrize("section", ["my service", "a,b", "imap:993", "x@y"])
def test_a_service_name_hosts_allow_cannot_spell_is_a_warning(config_dir, capsys, section):
    name = _one_service(config_dir, section=section)
    (config_dir / name).write_text((config_dir / name).read_text().replace("libwrap = no\n", ""))
    (config_dir / "hosts.allow").write_text("ALL: 127.0.0.1\n")
    (config_dir / "hosts.deny").write_text("ALL: ALL\n")
    rc, out, _ = check(capsys, "-d", name)
    assert rc == 0
    assert out.splitlines()[0] == (
        f"t.conf:1: warning: [{section}] the service name cannot be written in a hosts.allow "
        "daemon list (it holds a space, ',', ':' or '@'): only ALL matches this service")


def test_a_unix_socket_accept_is_checked(config_dir, capsys):
    name = _one_service(config_dir)
    (config_dir / name).write_text((config_dir / name).read_text()
                                   .replace("accept = 9993", "accept = /run/tlswrap/imaps.sock"))
    rc, out, err = check(capsys, name)
    assert (rc, err) == (0, "")
    assert out.splitlines()[-1] == "checked t.conf: 0 errors, 0 warnings, 1 note"


# --- what the rules decide for each service (issue 11: migration) --------------------------

def _locked(config_dir: Path, allow: str, libwrap: str = "") -> str:
    (config_dir / "m.conf").write_text(
        "hostsAllow = m.allow\nhostsDeny = m.deny\n[imaps]\naccept = 993\nconnect = 143\n"
        f"cert = other.pem\nkey = other.key\n{libwrap}")
    (config_dir / "m.allow").write_text(allow)
    (config_dir / "m.deny").write_text("# lock everything down\nALL: ALL\n")
    return "m.conf"


def test_rules_refusing_every_client_of_a_migrated_service_are_a_warning(config_dir, capsys):
    rc, out, _ = check(capsys, _locked(config_dir, "sshd: 10.0.0.0/8\n"))
    assert rc == 0
    assert ("m.conf:3: warning: [imaps] every client is refused: m.deny line 2 refuses, and no "
            "rule of m.allow names the service; this file has no libwrap line: stunnel 5 "
            "applies no rules unless told, tlswrap does: grant the clients in m.allow, or "
            "write libwrap = no to keep stunnel's way") in out.splitlines()


def test_an_explicit_libwrap_line_makes_it_a_note(config_dir, capsys):
    _, out, _ = check(capsys, _locked(config_dir, "", "libwrap = yes\n"))
    assert ("m.conf:8: note: [imaps] every client is refused: m.deny line 2 refuses, and no "
            "rule of m.allow names the service") in out.splitlines()


@pytest.mark.parametrize("allow", ["imaps: 10.0.0.0/8\n", "ALL EXCEPT sshd: .example.org\n",
                                   "imaps pop3s: LOCAL\n"])
def test_deny_all_allow_some_is_not_flagged(config_dir, capsys, allow):
    rc, out, _ = check(capsys, _locked(config_dir, allow))
    assert "every client is refused" not in out and rc == 0


def test_settings_no_client_can_handshake_with_are_found(config_dir, capsys):
    """An ECDSA certificate with RSA-only TLS 1.2 ciphers: TLS 1.3 clients still connect (a
    warning); pinned to TLS 1.2, nobody can (an error). Found by a real handshake in memory."""
    def conf(extra: str) -> str:
        (config_dir / "h.conf").write_text(
            "[imaps]\naccept = 993\nconnect = 143\ncert = other.pem\nkey = other.key\n"
            f"libwrap = no\nciphers = ECDHE-RSA-AES128-GCM-SHA256\n{extra}")
        return "h.conf"

    rc, out, _ = check(capsys, conf(""))
    assert rc == 0
    assert ("h.conf:7: warning: [imaps] TLSv1.2 clients cannot complete a handshake with these "
            "settings (TLSv1.2: no shared cipher)") in out.splitlines()
    rc, out, _ = check(capsys, conf("sslVersion = TLSv1.2\n"))
    assert rc == 1
    assert ("h.conf:7: error: [imaps] no client can complete a TLS handshake with these "
            "settings (TLSv1.2: no shared cipher)") in out.splitlines()
    rc, out, _ = check(capsys, conf("ciphers = ECDHE-ECDSA-AES128-GCM-SHA256\n"))
    assert "handshake" not in out


@pytest.mark.parametrize("extra", [
    "verify = 2\nCAfile = imaps.pem\n",  # a client certificate required: the probe has none
    "client = yes\nverifyChain = no\n",  # cert is what the client shows a server that asks
])
def test_the_handshake_probe_does_not_fail_a_working_service(config_dir, capsys, extra):
    (config_dir / "p.conf").write_text("[imaps]\naccept = 993\nconnect = 143\ncert = other.pem\n"
                                       f"key = other.key\nlibwrap = no\n{extra}")
    rc, out, _ = check(capsys, "p.conf")
    assert "handshake" not in out and rc == 0, out


def test_output_is_checked_inside_the_chroot_jail(config_dir, capsys):
    """stunnel opens the output file after entering the jail: /logs/x.log is DIR/logs/x.log."""
    (config_dir / "jail").mkdir()
    (config_dir / "logs").mkdir()
    (config_dir / "j.conf").write_text(
        f"chroot = {config_dir}/jail\noutput = {config_dir}/logs/x.log\n[imaps]\n"
        "accept = 993\nconnect = 143\ncert = other.pem\nkey = other.key\nlibwrap = no\n")
    rc, out, _ = check(capsys, "j.conf")
    assert rc == 1
    assert (f"j.conf:2: error: output = {config_dir}/jail{config_dir}/logs/x.log: cannot open "
            "log file: ") in out, out


def test_five_different_problems_are_all_reported_in_one_run(config_dir, capsys):
    """A migrated file with five kinds of mistake: each is listed with its line, in one run."""
    (config_dir / "five.conf").write_text(
        "setuid = no-such-user-here\n"            # 1: unknown user
        "socket = l:SO_LINGER=1:99999\n"          # 2: a value out of range
        "[imaps]\naccept = 993\nconect = 143\n"   # 5: a misspelt option
        "[pop3s]\naccept = 995\nconnect = 110\ncert = missing.pem\n"  # 9: a missing file
        "[smtps]\naccept = 465\nconnect = 25\ncert = other.pem\nkey = other.key\n"
        "options = ALLOW_UNSAFE_LEGACY_RENEGOTIATION\n")  # 15: refused as unsafe
    rc, out, _ = check(capsys, "five.conf")
    errors = [line for line in out.splitlines() if ": error: " in line]
    assert rc == 1
    assert [line.split(":")[1] for line in errors] == ["1", "2", "5", "9", "15"], out
