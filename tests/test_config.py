"""The stunnel-format parser: pure, exact error messages with file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tlswrap.config import Address, parse_accept, parse_config, parse_connect
from tlswrap.errors import ConfigError

DATA = Path(__file__).parent / "data" / "config"


def _expect(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: ")
    return first[len("# expect: "):]


@pytest.mark.parametrize("path", sorted((DATA / "invalid").glob("*.conf")), ids=lambda p: p.stem)
def test_invalid_corpus_exact_message(path):
    with pytest.raises(ConfigError) as info:
        parse_config(path.read_text(), "svc.conf")
    expected = _expect(path)
    want = f"svc.conf:{expected}" if expected[0].isdigit() else f"svc.conf: {expected}"
    assert str(info.value) == want


def test_classic_stunnel_file_parses():
    cfg = parse_config((DATA / "valid" / "stunnel_classic.conf").read_text(), "s.conf")
    assert [s.name for s in cfg.services] == ["imaps", "pop3s", "smtps"]
    imaps, pop3s, smtps = cfg.services
    assert cfg.globals.pid == "/var/run/stunnel4/stunnel.pid"
    assert cfg.globals.syslog is False and cfg.globals.debug == 5
    # a service option in the global part is every service's default
    assert imaps.cert == pop3s.cert == smtps.cert == "/etc/stunnel/mail.pem"
    assert imaps.timeout_close == 0
    assert imaps.accept == Address("0.0.0.0", 993)
    assert imaps.connect == (Address("localhost", 143),)
    assert pop3s.accept == Address("::", 995)
    assert pop3s.connect == (Address("127.0.0.1", 110), Address("::1", 110))
    assert pop3s.timeout_idle == 600
    assert smtps.connect == (Address("mail.internal", 25),)
    assert smtps.key == "/etc/stunnel/mail.key" and smtps.version_min == "TLSv1.3"
    assert smtps.libwrap is False and imaps.libwrap is True
    assert smtps.line_of("sslVersionMin") == 25
    assert imaps.line_of("cert") == 7  # inherited from the global part, with its line


def test_option_names_are_case_insensitive():
    cfg = parse_config("[a]\nACCEPT = 1\nConnect = 2\nCERT = c\ntimeoutIDLE = 5\n", "x")
    assert cfg.services[0].accept.port == 1 and cfg.services[0].timeout_idle == 5


def test_defaults_are_secure_and_stunnel_like():
    svc = parse_config("[a]\naccept = 1\nconnect = 2\ncert = c\n", "x").services[0]
    assert svc.version_min == "TLSv1.2" and svc.version_max is None
    assert svc.libwrap is True
    assert svc.timeout_close == 60 and svc.timeout_connect == 10
    assert 0 < svc.timeout_busy <= 30  # the handshake deadline


@pytest.mark.parametrize("text,expected", [
    ("993", Address("0.0.0.0", 993)),
    ("127.0.0.1:993", Address("127.0.0.1", 993)),
    (":::993", Address("::", 993)),
    ("[::1]:993", Address("::1", 993)),
    ("imaps", Address("0.0.0.0", "imaps")),
])
def test_accept_forms(text, expected):
    assert parse_accept(text) == expected


@pytest.mark.parametrize("text,expected", [
    ("143", Address("localhost", 143)),
    ("mail.example.org:143", Address("mail.example.org", 143)),
    ("/run/dovecot/imap.sock", Address(path="/run/dovecot/imap.sock")),
])
def test_connect_forms(text, expected):
    assert parse_connect(text) == expected


def test_comments_and_blank_lines():
    text = "; stunnel comment\n# hash comment\n\n   ; indented\n[a]\naccept=1\nconnect=2\ncert=c\n"
    assert parse_config(text, "x").services[0].name == "a"


def test_debug_with_facility():
    cfg = parse_config("debug = mail.info\n[a]\naccept=1\nconnect=2\ncert=c\n", "x")
    assert cfg.globals.debug == 6 and cfg.globals.facility == "mail"


def test_pure_module_imports_no_io_libraries():
    import ast

    src = Path(__file__).parent.parent / "src" / "tlswrap" / "config.py"
    names = set()
    for node in ast.walk(ast.parse(src.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    assert not names & {"trio", "socket", "OpenSSL", "subprocess", "os"}


def test_stunnel_inetd_form_without_a_section():
    text = "cert = /etc/stunnel/mail.pem\nexec = /usr/sbin/imapd\nexecArgs = imapd -s\n"
    (svc,) = parse_config(text, "inetd.conf").services
    assert svc.name == "imapd" and svc.accept is None
    assert svc.exec == "/usr/sbin/imapd" and svc.exec_args == ("imapd", "-s")
    (svc,) = parse_config("cert = c.pem\nconnect = 143\n", "x").services
    assert svc.name == "tlswrap" and svc.connect[0].port == 143


def test_debian_style_stunnel_file_with_compatibility_options():
    cfg = parse_config((DATA / "valid" / "stunnel_debian.conf").read_text(), "s.conf")
    pop3s, imaps = cfg.services
    assert cfg.globals.setuid == "stunnel4" and cfg.globals.debug == 4
    # sslVersion pins both ends, as in stunnel
    assert pop3s.version_min == pop3s.version_max == "TLSv1.2"
    assert pop3s.ssl_options == ("NO_SSLV2", "NO_SSLV3")
    assert pop3s.socket_options == (("l", "TCP_NODELAY", 1), ("r", "TCP_NODELAY", 1))
    assert imaps.session_timeout == 600 and pop3s.session_timeout == 300


from hypothesis import given, settings
from hypothesis import strategies as st

_LINE = st.one_of(
    st.text(max_size=40),
    st.builds(lambda k, v: f"{k} = {v}", st.sampled_from(
        ["accept", "connect", "cert", "key", "debug", "TIMEOUTidle", "sslVersion", "options",
         "socket", "exec", "execArgs", "libwrap", "workers", "foreground", "pid", "bogus"]),
        st.text(max_size=25)),
    st.builds(lambda n: f"[{n}]", st.text(max_size=12)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_LINE, max_size=12))
def test_any_text_gives_a_config_or_a_config_error(lines):
    try:
        parse_config("\n".join(lines), "fuzz.conf")
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.conf")
