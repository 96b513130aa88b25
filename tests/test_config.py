"""The stunnel-format parser: pure, exact error messages with file and line."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlswrap.config import (
    Address,
    config_warnings,
    load_config,
    parse_accept,
    parse_config,
    parse_connect,
)
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


# --- TLS versions: 1.2 and 1.3 only --------------------------------------------------------

_SVC = "[imaps]\naccept = 993\nconnect = 143\ncert = c.pem\n"


@pytest.mark.parametrize("minimum", ["SSLv3", "TLSv1", "tlsv1.1"])
def test_old_minimum_is_read_as_tls12_with_a_warning(minimum):
    cfg = parse_config(f"{_SVC}sslVersionMin = {minimum}\n", "s.conf")
    (svc,) = cfg.services
    assert svc.tls_range == ("TLSv1.2", "TLSv1.3")
    spelled = svc.version_min
    assert [str(w) for w in config_warnings(cfg)] == [
        f"s.conf:5: [imaps] sslVersionMin = {spelled}: tlswrap serves TLS 1.2 and 1.3 only "
        "(RFC 8996 deprecates the older versions), so the lowest version served is TLSv1.2: "
        "write sslVersionMin = TLSv1.2 to say so"]


def test_old_minimum_in_the_global_part_warns_once():
    cfg = parse_config("sslVersionMin = TLSv1\n" + _SVC + _SVC.replace("imaps", "pop3s"),
                       "s.conf")
    assert [str(w) for w in config_warnings(cfg)] == [
        "s.conf:1: sslVersionMin = TLSv1: tlswrap serves TLS 1.2 and 1.3 only (RFC 8996 "
        "deprecates the older versions), so the lowest version served is TLSv1.2: "
        "write sslVersionMin = TLSv1.2 to say so"]


def test_current_versions_give_no_warning():
    for extra in ("", "sslVersion = TLSv1.3\n", "sslVersionMin = TLSv1.2\n", "sslVersion = all\n"):
        assert config_warnings(parse_config(_SVC + extra, "s.conf")) == []


def test_later_option_decides_and_is_blamed():
    # sslVersion pins both ends; a later sslVersionMax widens the top again
    cfg = parse_config(f"{_SVC}sslVersion = TLSv1\nsslVersionMax = TLSv1.3\n", "s.conf")
    assert cfg.services[0].tls_range == ("TLSv1.2", "TLSv1.3")
    assert str(config_warnings(cfg)[0]).startswith("s.conf:5: [imaps] sslVersion = TLSv1: ")
    with pytest.raises(ConfigError) as info:
        parse_config(f"{_SVC}sslVersionMax = TLSv1.3\nsslVersion = TLSv1.1\n", "s.conf")
    assert str(info.value).startswith("s.conf:6: [imaps] sslVersion = TLSv1.1: tlswrap serves")


def test_maximum_alone_below_tls12_names_the_maximum():
    with pytest.raises(ConfigError) as info:
        parse_config(f"{_SVC}sslVersionMax = TLSv1.1\n", "s.conf")
    assert str(info.value) == (
        "s.conf:5: [imaps] sslVersionMax = TLSv1.1: tlswrap serves TLS 1.2 and 1.3 only "
        "(RFC 8996 deprecates the older versions): write sslVersionMax = TLSv1.2 or TLSv1.3, "
        "or remove the line to allow both")


# --- every mistake in one pass ---------------------------------------------------------------

def test_every_mistake_of_a_file_is_reported():
    text = ("debug = loud\n"             # 1
            "[imaps]\n"                  # 2
            "accept = 993\n"             # 3
            "bogus = 1\n"                # 4
            "TIMEOUTidle = soon\n"       # 5
            "[pop3s]\n"                  # 6
            "accept = 995\n"             # 7
            "cert = c.pem\n"             # 8
            "[imaps]\n"                  # 9
            "connect = x:y:z\n")         # 10
    with pytest.raises(ConfigError) as info:
        parse_config(text, "s.conf")
    assert [str(e) for e in info.value.all()] == [
        "s.conf:1: debug = loud: unknown debug level 'loud': use 0-7 or emerg..debug",
        "s.conf:4: [imaps] unknown option 'bogus'",
        "s.conf:5: [imaps] TIMEOUTidle = soon: expected a number of seconds, got 'soon'",
        "s.conf:9: service [imaps] is defined twice",
        "s.conf:10: connect = x:y:z: bad IPv6 address 'x:y' in 'x:y:z'",
    ]
    assert str(info.value) == "s.conf:1: debug = loud: unknown debug level 'loud': use 0-7 or " \
                              "emerg..debug"


def test_each_broken_service_is_reported():
    text = "[a]\naccept = 1\ncert = c\n[b]\naccept = 2\nconnect = 3\n[c]\nconnect = 4\ncert = c\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, "s.conf")
    assert [str(e) for e in info.value.all()] == [
        "s.conf:1: [a] no 'connect' (or 'exec'): where should the plaintext go?",
        "s.conf:4: [b] no 'cert': a TLS server needs a certificate",
    ]


def test_a_wrong_line_brings_no_made_up_follow_on_error():
    # the bad connect line is the only mistake: no "no 'connect'" for [a] as well
    with pytest.raises(ConfigError) as info:
        parse_config("[a]\naccept = 1\nconnect = [::1\ncert = c\n", "s.conf")
    assert [str(e) for e in info.value.all()] == [
        "s.conf:3: [a] connect = [::1: bad address '[::1': expected [IPV6]:PORT"]


# --- load_config: reads, then parse_config ---------------------------------------------------

def test_load_config_reads_and_parses(tmp_path):
    path = tmp_path / "t.conf"
    path.write_text(_SVC)
    assert load_config(str(path)).services[0].name == "imaps"
    assert load_config(str(path)).filename == str(path)


def test_load_config_missing_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path / "none.conf"))
    assert str(info.value) == (f"{tmp_path / 'none.conf'}: cannot read config: "
                               "No such file or directory")


def test_load_config_not_utf8(tmp_path):
    path = tmp_path / "latin1.conf"
    path.write_bytes(b"; caf\xe9\n" + _SVC.encode())
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert str(info.value) == f"{path}: not UTF-8 text: invalid continuation byte"
