"""fast.spec against config: whatever the fast path reads, config reads to the same values.

The fast reader may say "not mine" (Unsupported) to anything; what it accepts, config must
accept too, with the same service, every field equal. Files from the corpus, hand-picked
cases and generated ones (hypothesis) all go through both.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlswrap import cli
from tlswrap.config import CONFIG_MAX_BYTES, Config, parse_config
from tlswrap.errors import TlswrapError
from tlswrap.fast import spec as fast

CORPUS = Path(__file__).parent / "data" / "config"
SERVICE_FIELDS = ("name", "exec", "exec_args", "cert", "key", "ciphers", "ciphersuites",
                  "curves", "version_min", "version_max", "timeout_busy", "timeout_close",
                  "timeout_connect", "timeout_idle", "libwrap", "ssl_options",
                  "session_timeout")
GLOBAL_FIELDS = ("foreground", "output", "syslog", "debug", "facility", "hosts_allow",
                 "hosts_deny")


def same(spec: fast.Spec, config: Config) -> None:
    assert len(config.services) == 1
    svc = config.services[0]
    assert svc.accept is None
    for field in SERVICE_FIELDS:
        assert getattr(spec, field) == getattr(svc, field), field
    for field in GLOBAL_FIELDS:
        assert getattr(spec, field) == getattr(config.globals, field), field
    assert spec.connect == tuple((a.host, a.port, a.path) for a in svc.connect)
    assert [fast.address_text(a) for a in spec.connect] == [str(a) for a in svc.connect]
    assert spec.tls_range == svc.tls_range


def check_text(text: str) -> bool:
    """True when the fast reader took it (and config agrees)."""
    try:
        spec = fast.from_config_text(text)
    except fast.Unsupported:
        return False
    same(spec, parse_config(text, "t.conf"))
    return True


def test_constants_are_configs():
    assert fast.CONFIG_MAX_BYTES == CONFIG_MAX_BYTES


@pytest.mark.parametrize("name", fast.SSL_OPTIONS)
def test_every_option_name_it_reads_config_reads_alike(name):
    assert check_text(f"cert = /c.pem\nconnect = 143\noptions = {name.lower()}\n")


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*/*.conf")), ids=lambda p: p.name)
def test_the_corpus(path):
    check_text(path.read_text())


TAKEN = [
    "cert = /c.pem\nconnect = 143\n",
    "cert = /c.pem\nkey = /k.pem\nexec = /usr/sbin/imapd\nexecArgs = imapd -x\n",
    "; stunnel's inetd form\ndebug = mail.info\noutput = /var/log/t.log\npid =\n"
    "cert = /c.pem\nconnect = [::1]:143\nconnect = /run/imap.sock\nconnect = mail.example:1\n",
    "foreground = yes\nsyslog = no\n[imaps]\ncert = /c.pem\nconnect = 127.0.0.1:143\n"
    "TIMEOUTbusy = 1.5\nTIMEOUTidle = 60\nTIMEOUTclose = 0\nTIMEOUTconnect = .5\n",
    "cert = /c.pem\n[ x ]\nconnect = 143\nsslVersion = TLSv1.3\noptions = NO_TICKET\n"
    "options = cipher_server_preference\nciphers = HIGH\nciphersuites = TLS_AES_128_GCM_SHA256"
    "\ncurves = X25519\nsessionCacheTimeout = 60\nlibwrap = no\nclient = no\n",
    "hostsAllow = /a\nhostsDeny = /d\nfips = no\ncert = /c.pem\nconnect = 143\n"
    "sslVersionMin = all\nsslVersionMax = TLSv1.2\nrenegotiation = no\ndelay = no\n",
]
NOT_TAKEN = [
    "cert = /c.pem\nconnect = 143\naccept = 993\n",  # a daemon
    "cert = /c.pem\n[a]\nconnect = 1\n[b]\nconnect = 2\n",  # two services
    "cert = /c.pem\nconnect = 143\nexec = /bin/cat\n",  # a mistake: the full path says it
    "connect = 143\n",  # no cert
    "cert = /c.pem\nconnect = imap\n",  # a port by name
    "cert = /c.pem\nconnect = 143\nsetuid = mail\n",  # not implemented here
    "cert = /c.pem\nconnect = 143\nprotocol = proxy\n",
    "cert = /c.pem\nconnect = 143\nsslVersionMin = TLSv1\n",  # config warns
    "cert = /c.pem\nconnect = 143\noptions = NO_TLSv1_2\n",
    "cert = /c.pem\nexec = imapd\n",  # a PATH search
    "cert = /c.pem\nconnect = 143\nTIMEOUTidle = 1e3\n",
    "cert = /c.pem\nconnect = mail_host:143\n",
    "cert = /c.pem\nconnect = [fe80::1%eth0]:143\n",
    "cert = /c.pem\nconnect = 143\nverify = 0\n",  # asks for a client certificate
    "cert = /a.pem\ncert = /b.pem\nkey = /k.pem\nconnect = 143\n",  # chosen by server name
]


@pytest.mark.parametrize("text", TAKEN)
def test_what_the_fast_path_reads(text):
    assert check_text(text)


@pytest.mark.parametrize("text", NOT_TAKEN)
def test_what_it_leaves_to_the_full_path(text):
    assert not check_text(text)


LINES = st.sampled_from([
    "cert = /c.pem", "key = /k.pem", "connect = 143", "connect = 127.0.0.1:1",
    "connect = [::1]:2", "connect = /s", "connect = host.example:3", "connect = :4",
    "connect = 0", "connect = 70000", "exec = /bin/cat", "exec = cat", "execArgs = a b",
    "accept = 993", "[svc]", "[ ]", "[other]", "debug = 7", "debug = user.notice",
    "debug = bogus", "foreground = quiet", "foreground = yes", "syslog = maybe", "pid =",
    "output = /l", "output =", "TIMEOUTbusy = 3", "TIMEOUTidle = -1", "TIMEOUTclose = inf",
    "sslVersion = TLSv1.2", "sslVersionMin = TLSv1.3", "sslVersionMax = TLSv1.2",
    "options = NO_TICKET", "options = -NO_TICKET", "ciphers =", "curves = P-256",
    "libwrap = off", "sessionCacheTimeout = 99999999999", "verify = 2", "client = yes",
    "# comment", "; comment", "", "nonsense", "hostsAllow = /h", "setgid = 0",
    "Cert = /c.pem", "CONNECT = 5",
])


@settings(max_examples=400, deadline=None)
@given(st.lists(LINES, max_size=12))
def test_generated_configs_read_alike(lines):
    check_text("\n".join(lines) + "\n")


def check_args(args: list[str]) -> bool:
    try:
        spec = fast.from_args(*cli.split_one_service_args(args))
    except (fast.Unsupported, TlswrapError):
        return False
    same(spec, cli.one_service_config(args))
    return True


@pytest.mark.parametrize("args", [
    ["-p", "/c.pem", "--key", "/k.pem", "-r", "127.0.0.1:143", "-N", "imapd"],
    ["-p", "/c.pem", "-l", "/usr/sbin/imapd", "--", "imapd", "-x"],
    ["--cert=/c.pem", "-l", "/bin/cat", "--"],
    ["-p", "/c.pem", "-r", "143", "-f", "-D", "info", "-o", "/l"],
])
def test_command_lines_read_alike(args):
    assert check_args(args)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["-p", "/c.pem", "--key", "-r", "143", "[::1]:9", "-l",
                                 "/bin/cat", "cat", "-N", "x y", "-f", "-D", "info", "9",
                                 "-o", "/l", "--", "-d", "993", "--cert=/c.pem", "--bogus"]),
                max_size=10))
def test_generated_command_lines_read_alike(args):
    check_args(args)
