"""The stunnel-format parser: pure, exact error messages with file and line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fifo_guard import call_unless_blocked
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

_ANY_CHAR = st.characters(blacklist_categories=())  # surrogates and controls included
_VALUE = st.one_of(
    st.text(max_size=25), st.text(_ANY_CHAR, max_size=10),
    st.integers(-2**70, 2**70).map(str),
    st.sampled_from(["1e19", "²", "٣", "nan", "a" * 64, "/run/x.sock", "/" + "d" * 120,
                     "l:SO_SNDBUF=99999999999", "a:TCP_KEEPCNT=0", "x..y:25", "bücher☠.example:25",
                     "[::1]:993", "mail.example.org.:25", "4294967295", "\0"]),
)
_LINE = st.one_of(
    st.text(max_size=40),
    st.text(_ANY_CHAR, max_size=20),
    st.builds(lambda k, v: f"{k} = {v}", st.sampled_from(
        ["accept", "connect", "cert", "key", "debug", "TIMEOUTidle", "sslVersion", "options",
         "socket", "exec", "execArgs", "libwrap", "workers", "foreground", "pid", "bogus",
         "setuid", "setgid", "sessionCacheTimeout", "CAfile", "output"]), _VALUE),
    st.builds(lambda n: f"[{n}]", st.one_of(st.text(max_size=12), st.text(_ANY_CHAR,
                                                                            max_size=6))),
)


@settings(max_examples=300, deadline=None, derandomize=bool(os.environ.get("CI")))
@given(st.booleans(), st.lists(_LINE, max_size=12))
def test_any_text_gives_a_config_or_a_config_error(bom, lines):
    text = ("\ufeff" if bom else "") + "\n".join(lines)
    try:
        parse_config(text, "fuzz.conf")
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.conf")
        for each in exc.all():
            assert each.lineno is None or 1 <= each.lineno <= len(text.splitlines())


# --- TLS versions: 1.2 and 1.3 only --------------------------------------------------------

_SVC = "[imaps]\naccept = 994\nconnect = 143\ncert = c.pem\n"


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
        "s.conf:4: [b] no 'cert': a TLS server needs a certificate (or PSKsecrets)",
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


# --- what real-world stunnel files carry (issue 17, items 17-19) ----------------------------

def test_load_config_accepts_a_utf8_byte_order_mark(tmp_path):
    path = tmp_path / "bom.conf"
    path.write_bytes(b"\xef\xbb\xbf; saved by Notepad\n" + _SVC.encode())
    cfg = load_config(str(path))
    assert cfg.services[0].name == "imaps"
    assert cfg.services[0].line_of("cert") == 5  # line numbers as in the file
    path.write_bytes(b"\xef\xbb\xbfbogus = 1\n" + _SVC.encode())
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert str(info.value) == f"{path}:1: unknown option 'bogus'"


@pytest.mark.parametrize("name", ["my service", "imap (legacy)", "a,b", "a:b", "x@y", "s[1]"])
def test_a_service_name_may_hold_spaces_and_punctuation_as_in_stunnel(name):
    cfg = parse_config(f"[{name}]\naccept = 993\nconnect = 143\ncert = c.pem\n", "s.conf")
    assert cfg.services[0].name == name
    assert cfg.services[0].line == 1


def test_an_empty_service_name_is_still_refused():
    with pytest.raises(ConfigError) as info:
        parse_config("[  ]\naccept = 993\nconnect = 143\ncert = c.pem\n", "s.conf")
    assert str(info.value) == "s.conf:1: bad service name ''"


def test_a_unix_socket_accept():
    cfg = parse_config("[imaps]\naccept = /run/tlswrap/imaps.sock\nconnect = 143\ncert = c\n",
                       "s.conf")
    accept = cfg.services[0].accept
    assert accept == Address(path="/run/tlswrap/imaps.sock")
    assert accept.is_unix and accept.host is None and str(accept) == "/run/tlswrap/imaps.sock"
    assert parse_accept("/run/x.sock") == Address(host=None, port=0, path="/run/x.sock")


def test_a_unix_socket_path_that_does_not_fit_sun_path():
    path = "/" + "d" * 108
    with pytest.raises(ConfigError) as info:
        parse_config(f"[imaps]\naccept = {path}\nconnect = 143\ncert = c\n", "s.conf")
    assert str(info.value) == (f"s.conf:2: [imaps] accept = {path}: a unix socket path is at "
                               "most 107 bytes, this one has 109")


def test_tcp_socket_options_on_a_unix_listener_are_refused():
    with pytest.raises(ConfigError) as info:
        parse_config("[imaps]\naccept = /run/i.sock\nconnect = 143\ncert = c\n"
                     "socket = l:TCP_NODELAY=1\n", "s.conf")
    assert str(info.value) == ("s.conf:5: [imaps] socket = l:TCP_NODELAY=1: a unix socket "
                               "(accept = /run/i.sock) has no TCP or IP options")


# --- values that would escape as Python exceptions later (issue 17, items 2 and 14) ----------

@pytest.mark.parametrize("value,message", [
    ("l:SO_SNDBUF=99999999999", "SO_SNDBUF must be 0 to 2147483647, got 99999999999"),
    ("a:SO_RCVBUF=-1", "SO_RCVBUF must be 0 to 2147483647, got -1"),
    ("a:TCP_KEEPCNT=0", "TCP_KEEPCNT must be 1 to 127, got 0"),
    ("r:TCP_KEEPIDLE=40000", "TCP_KEEPIDLE must be 1 to 32767, got 40000"),
    ("l:TCP_NODELAY=-2147483649", "TCP_NODELAY is yes or no (or 1 or 0), got '-2147483649'"),
    ("l:TCP_NODELAY=²", "TCP_NODELAY is yes or no (or 1 or 0), got '²'"),
    ("l:SO_SNDBUF=²", "SO_SNDBUF needs a whole number, got '²'"),
])
def test_socket_option_values_must_fit(value, message):
    with pytest.raises(ConfigError) as info:
        parse_config(f"{_SVC}socket = {value}\n", "s.conf")
    assert str(info.value) == f"s.conf:5: [imaps] socket = {value}: {message}"


@pytest.mark.parametrize("option,host,message", [
    ("accept", "a" * 64, "the host name has a label longer than 63 characters"),
    ("connect", ("a" * 60 + ".") * 5, "the host name is longer than 253 characters"),
    ("accept", "mail..example.org", "the host name has an empty label"),
    ("connect", ".example.org", "the host name has an empty label"),
    ("connect", "mail example.org", "not a valid host name"),
    ("connect", "b\u00fccher\u2620.example", "not a valid host name"),
])
def test_host_names_must_be_resolvable_names(option, host, message):
    text = _SVC.replace(f"{option} = ", f"{option} = {host}:")
    with pytest.raises(ConfigError) as info:
        parse_config(text, "s.conf")
    line = 2 if option == "accept" else 3
    port = "994" if option == "accept" else "143"
    assert str(info.value).startswith(f"s.conf:{line}: [imaps] {option} = {host}:{port}: "
                                      f"{message}")


def test_a_host_name_with_a_trailing_dot_is_fine():
    cfg = parse_config(_SVC.replace("connect = ", "connect = mail.example.org.:"), "s.conf")
    assert cfg.services[0].connect == (Address("mail.example.org.", 143),)


@pytest.mark.parametrize("option,value,message", [
    ("setgid", "99999999999", "a group id is 0 to 4294967294, got 99999999999"),
    ("setuid", "4294967295", "a user id is 0 to 4294967294, got 4294967295"),
    ("setuid", "²", "a user id is 0 to 4294967294, got '²'"),
])
def test_numeric_user_and_group_ids_must_fit(option, value, message):
    with pytest.raises(ConfigError) as info:
        parse_config(f"{option} = {value}\n{_SVC}", "s.conf")
    assert str(info.value) == f"s.conf:1: {option} = {value}: {message}"


@pytest.mark.parametrize("value", ["1e19", "99999999999", "2147483648"])
def test_session_cache_timeout_must_fit(value):
    with pytest.raises(ConfigError) as info:
        parse_config(f"{_SVC}sessionCacheTimeout = {value}\n", "s.conf")
    assert str(info.value) == (f"s.conf:5: [imaps] sessionCacheTimeout = {value}: at most "
                               "2147483647 seconds")


@pytest.mark.parametrize("written,option,attr,value,parsed", [
    ("curve", "curves", "curves", "prime256v1", "prime256v1"),
    ("Session", "sessionCacheTimeout", "session_timeout", "600", 600),
])
def test_stunnels_older_spellings_set_the_same_option(written, option, attr, value, parsed):
    """stunnel's options.c still takes curve for curves and session for sessionCacheTimeout."""
    (svc,) = parse_config(f"{_SVC}{written} = {value}\n", "s.conf").services
    assert getattr(svc, attr) == parsed
    assert svc.line_of(option) == 5


@pytest.mark.parametrize("extra,warned", [
    ("", True), ("CAfile = ca.pem\n", False), ("verifyChain = yes\n", False),
])
def test_client_mode_with_no_verify_line_warns_of_stunnels_other_default(extra, warned):
    cfg = parse_config(f"client = yes\n[a]\naccept = 1\nconnect = 2\n{extra}[b]\n"
                       f"accept = 3\nconnect = 4\n{extra}", "c.conf")
    found = [str(w) for w in config_warnings(cfg) if "no verify line" in str(w)]
    assert found == (["c.conf:1: client = yes with no verify line: stunnel checks nothing, "
                      "tlswrap verifies the server's certificate against the system's CAs and "
                      "its name, so a server with a self-signed or private-CA certificate is "
                      "refused: name its CA in CAfile, or write verifyChain = no for stunnel's "
                      "way"] if warned else [])


@pytest.mark.parametrize("text,line", [
    ("cert = /etc/ssl/a\x00b.pem\n", 5),
    ("[ima\x00ps]\n", 5),
    ("pid = /run/\x00\n", 5),
])
def test_a_nul_character_is_refused_at_its_line(text, line):
    with pytest.raises(ConfigError) as info:
        parse_config(_SVC + text, "s.conf")
    assert str(info.value).startswith(f"s.conf:{line}:")
    assert str(info.value).endswith("a NUL character (\\x00) is not allowed in a config file")


def test_text_that_is_not_utf8_encodable_is_refused():
    with pytest.raises(ConfigError) as info:
        parse_config(_SVC + "cert = /etc/\udcff.pem\n", "s.conf")
    assert str(info.value) == ("s.conf:5: [imaps] cannot be written as UTF-8: "
                               "'cert = /etc/\\udcff.pem'")


@pytest.mark.parametrize("option,value", [("accept", "٣"), ("workers", "²"), ("debug", "٣")])
def test_digits_are_ascii_digits(option, value):
    text = f"{option} = {value}\n{_SVC}" if option != "accept" else _SVC.replace("994", value)
    with pytest.raises(ConfigError) as info:
        parse_config(text, "s.conf")
    assert "invalid literal" not in str(info.value)
    if option == "accept":
        assert str(info.value) == f"s.conf:2: [imaps] accept = {value}: bad port: {value!r}"


# --- load_config: a regular file, read with a bound (issue 17, item 10) -----------------------

def test_load_config_refuses_a_fifo_without_blocking(tmp_path):
    fifo = tmp_path / "config.fifo"
    os.mkfifo(fifo)
    assert call_unless_blocked(lambda: _load_error(str(fifo)), fifo) == (
        f"{fifo}: cannot read config: not a regular file (a FIFO)")


def test_load_config_refuses_a_device(tmp_path):
    assert _load_error("/dev/zero") == "/dev/zero: cannot read config: not a regular file " \
                                       "(a character device)"


def test_load_config_has_a_size_bound(tmp_path):
    from tlswrap.config import CONFIG_MAX_BYTES

    path = tmp_path / "big.conf"
    path.write_text(_SVC + ";" * CONFIG_MAX_BYTES + "\n")
    assert _load_error(str(path)) == f"{path}: cannot read config: larger than 1 MiB"


def _load_error(path: str) -> str:
    try:
        load_config(path)
    except ConfigError as exc:
        return str(exc)
    return "no error"


def test_timeout_drain_is_a_global_option():
    """TIMEOUTdrain: tlswrap's own (stunnel has none), seconds after SIGTERM, default 10."""
    assert parse_config(_SVC, "s.conf").globals.timeout_drain == 10.0
    assert parse_config(f"TIMEOUTdrain = 2.5\n{_SVC}", "s.conf").globals.timeout_drain == 2.5
    with pytest.raises(ConfigError) as info:
        parse_config(f"TIMEOUTdrain = -1\n{_SVC}", "s.conf")
    assert str(info.value).startswith("s.conf:1: TIMEOUTdrain = -1: expected a number of seconds")


@pytest.mark.parametrize(("line", "result"), [
    ("protocol = proxy", "v1"),
    ("proxyProtocol = v1", "v1"),
    ("proxyProtocol = V2", "v2"),
    ("protocol = imap", None),
    ("protocol = connect", "t.conf:5: [a] protocol = connect: connect is not a mail protocol; "
                           "tlswrap speaks imap, pop3, smtp (STARTTLS) and proxy"),
    ("protocol = gopher", "t.conf:5: [a] protocol = gopher: unknown protocol: tlswrap speaks "
                          "imap, pop3, smtp (STARTTLS) and proxy"),
    ("proxyProtocol = v3", "t.conf:5: [a] proxyProtocol = v3: expected v1 or v2"),
])
def test_proxy_protocol_options(line, result):
    text = f"[a]\naccept = 993\ncert = /c.pem\nconnect = 143\n{line}\n"
    try:
        got = parse_config(text, "t.conf").services[0].proxy_protocol
    except ConfigError as exc:
        got = str(exc)
    assert got == result


@pytest.mark.parametrize(("lines", "result"), [
    ("protocol = IMAP", ("imap", "required", None)),
    ("protocol = pop3\nstarttls = required", ("pop3", "required", None)),
    ("protocol = smtp\nstarttls = Optional", ("smtp", "optional", None)),
    ("protocol = smtp\nproxyProtocol = v2", ("smtp", "required", "v2")),
    ("protocol = proxy", (None, "required", "v1")),
    ("protocol = proxy\nproxyProtocol = v2", (None, "required", "v2")),
    ("starttls = optional", "t.conf:5: [a] starttls: say which protocol speaks it (protocol = "
                            "imap, pop3 or smtp)"),
    ("protocol = smtp\nstarttls = maybe",
     "t.conf:6: [a] starttls = maybe: expected required or optional"),
])
def test_starttls_options(lines, result):
    text = f"[a]\naccept = 993\ncert = /c.pem\nconnect = 143\n{lines}\n"
    try:
        svc = parse_config(text, "t.conf").services[0]
        got: object = (svc.protocol, svc.starttls, svc.proxy_protocol)
    except ConfigError as exc:
        got = str(exc)
    assert got == result


@pytest.mark.parametrize(("lines", "warned"), [
    ("accept = 25\nprotocol = smtp", True),
    ("accept = 0.0.0.0:smtp\nprotocol = smtp\nstarttls = required", True),
    ("accept = 25\nprotocol = smtp\nstarttls = optional", False),
    ("accept = 587\nprotocol = smtp", False),
    ("accept = 25\nprotocol = imap", False),
])
def test_required_starttls_on_port_25_is_a_warning(lines, warned):
    cfg = parse_config(f"[mx]\ncert = /c.pem\nconnect = 2525\n{lines}\n", "t.conf")
    found = [str(w) for w in config_warnings(cfg)]
    line = 6 if "starttls" in lines else 5
    assert found == ([f"t.conf:{line}: [mx] protocol = smtp on port 25 with starttls = required: "
                      "RFC 3207 section 4 forbids a public MX to require TLS, senders without it "
                      "could not deliver; write starttls = optional (required is for submission, "
                      "port 587)"] if warned else [])


def test_starttls_default_from_the_global_part():
    text = "protocol = smtp\nstarttls = optional\n[a]\naccept = 25\ncert = /c.pem\nconnect = 2525\n"
    svc = parse_config(text, "t.conf").services[0]
    assert (svc.protocol, svc.starttls) == ("smtp", "optional")


@pytest.mark.parametrize(("lines", "result"), [
    ("acceptProxy = V2\nproxyTrusted = 10.0.0.0/8, 2001:db8::/32 192.0.2.7",
     ("v2", ("10.0.0.0/8", "2001:db8::/32", "192.0.2.7"))),
    ("acceptProxy = any", "t.conf:5: [a] acceptProxy: say which balancers may send the header "
                          "(proxyTrusted = NETWORKS); a header from anyone would let any client "
                          "choose its address"),
    ("proxyTrusted = 10.0.0.0/8", "t.conf:5: [a] proxyTrusted without acceptProxy"),
    ("acceptProxy = v3", "t.conf:5: [a] acceptProxy = v3: expected v1, v2 or any"),
    ("acceptProxy = v1\nproxyTrusted = 10.0.0.0/33",
     "t.conf:6: [a] proxyTrusted = 10.0.0.0/33: '10.0.0.0/33' is not an address or network"),
])
def test_accept_proxy_options(lines, result):
    text = f"[a]\naccept = 993\ncert = /c.pem\nconnect = 143\n{lines}\n"
    try:
        svc = parse_config(text, "t.conf").services[0]
        got: object = (svc.accept_proxy, svc.proxy_trusted)
    except ConfigError as exc:
        got = str(exc)
    assert got == result


# --- stunnel options without effect here: accepted, and noted (issue 11) -------------------

def test_options_without_effect_are_accepted_and_noted_where_they_are():
    from tlswrap.config import config_notes

    text = ("RNDfile = /dev/urandom\nEGD = /run/egd\ntaskbar = no\nRNDoverwrite = yes\n"
            "options = NO_SSLv2\n"
            "[imaps]\naccept = 993\nconnect = 143\ncert = c\noptions = SINGLE_ECDH_USE\n"
            "options = NO_TICKET\noptions = -NO_TLSv1\ndebug = 7\nstack = 65536\n"
            "sessionCacheSize = 0\nsessiond = 127.0.0.1:54321\n")
    config = parse_config(text, "n.conf")
    assert config.services[0].ssl_options == ("NO_SSLV2", "SINGLE_ECDH_USE", "NO_TICKET",
                                              "-NO_TLSV1")  # a section adds, as stunnel
    notes = sorted(str(n) for n in config_notes(config))
    assert sorted(int(n.split(":")[1]) for n in notes) == [1, 2, 3, 4, 5, 10, 12, 13, 14, 15,
                                                          16]
    assert "n.conf:10: [imaps] options = SINGLE_ECDH_USE: no effect: always on since " \
           "OpenSSL 1.1" in notes
    assert "n.conf:5: options = NO_SSLV2: no effect: SSLv2 is gone from OpenSSL; tlswrap " \
           "serves TLS 1.2 and 1.3 only" not in notes  # global-part options: per service
    assert any(n.startswith("n.conf:5: [imaps] options = NO_SSLV2: no effect") for n in notes)


@pytest.mark.parametrize(("line", "message"), [
    ("compression = deflate", "compression = deflate: compression leaks what it compresses"),
    ("compression = none", "compression = none: compression leaks what it compresses"),
    ("engine = pkcs11", "engine = pkcs11: hardware engines and providers are not supported"),
    ("engineCtrl = SO_PATH:/x.so", "engineCtrl = SO_PATH:/x.so: hardware engines"),
    ("setEnv = =x", "setEnv = =x: expected NAME=VALUE"),
    ("chroot = var/lib/stunnel4", "chroot = var/lib/stunnel4: needs an absolute path"),
    ("log = rotate", "log = rotate: expected append or overwrite"),
])
def test_options_tlswrap_cannot_honour_are_errors(line, message):
    with pytest.raises(ConfigError) as info:
        parse_config(f"{line}\n[a]\naccept = 1\nconnect = 2\ncert = c\n", "e.conf")
    assert str(info.value).startswith(f"e.conf:1: {message}")


def test_repeated_options_in_a_section_add_to_the_global_ones():
    config = parse_config("connect = 127.0.0.1:1\nsocket = l:TCP_NODELAY=yes\n[a]\naccept = 9\n"
                          "connect = 127.0.0.1:2\nsocket = r:TCP_NODELAY=yes\ncert = c\n")
    svc = config.services[0]
    assert [str(a) for a in svc.connect] == ["127.0.0.1:1", "127.0.0.1:2"]
    assert [str(o) for o in svc.socket_options] == ["l:TCP_NODELAY=1", "r:TCP_NODELAY=1"]


# --- include = DIR (stunnel's conf.d) --------------------------------------------------------

def _conf_d(tmp_path, files: dict[str, str], main: str):
    d = tmp_path / "conf.d"
    d.mkdir()
    for name, text in files.items():
        (d / name).write_text(text)
    (d / "subdir").mkdir()  # skipped, as stunnel skips what is not a regular file
    path = tmp_path / "stunnel.conf"
    path.write_text(main.format(d=d))
    return path, d


def test_include_reads_a_directory_in_name_order_continuing_sections(tmp_path):
    path, _ = _conf_d(tmp_path, {
        "02-pop3s.conf": "[pop3s]\naccept = 995\nconnect = 110\n",
        "00-global.conf": "debug = 6\ncert = /c.pem\n",
        "01-imaps.conf": "[imaps]\naccept = 993\nconnect = 143\n",
    }, "pid =\ninclude = {d}\nkey = /k.pem\n")
    config = load_config(str(path))
    assert config.globals.debug == 6
    assert [s.name for s in config.services] == ["imaps", "pop3s"]
    assert [s.key for s in config.services] == [None, "/k.pem"]  # the last section goes on


def test_a_mistake_in_an_included_file_names_that_file_and_line(tmp_path):
    path, d = _conf_d(tmp_path, {"01-imaps.conf": "[imaps]\naccept = 993\nconect = 143\n",
                                 "02-pop3s.conf": "[pop3s]\naccept = 995\nconnect = x:y:z\n"},
                      "setuid = nobody\ninclude = {d}\nbogus = 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert [str(e) for e in info.value.all()] == [
        f"{d}/01-imaps.conf:3: [imaps] unknown option 'conect'",
        f"{d}/02-pop3s.conf:3: [pop3s] connect = x:y:z: bad IPv6 address 'x:y' in 'x:y:z'",
        f"{path}:3: [pop3s] unknown option 'bogus'",  # the included file's section goes on
    ]


def test_include_mistakes_are_located_at_the_include_line(tmp_path):
    with pytest.raises(ConfigError) as info:
        parse_config("include = /etc\n[a]\naccept = 1\nconnect = 2\ncert = c\n", "p.conf")
    assert str(info.value) == ("p.conf:1: include = /etc: include needs the files of a "
                               "directory: give the config as a file")
    loop = tmp_path / "loop"
    loop.mkdir()
    (loop / "self.conf").write_text(f"include = {loop}\n")
    main = tmp_path / "main.conf"
    main.write_text(f"include = {loop}\n[a]\naccept = 1\nconnect = 2\ncert = c\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(main))
    assert "includes nested more than 8 deep" in str(info.value)
    main.write_text(f"include = {tmp_path}/missing\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(main))
    assert str(info.value) == (f"{main}:1: include = {tmp_path}/missing: cannot read the "
                               "directory: No such file or directory")


def test_include_never_waits_on_a_fifo(tmp_path):
    """A FIFO among the included files is skipped (as stunnel skips what is not a regular
    file); ``include`` naming a FIFO is an error at its line; neither waits on it."""
    path, d = _conf_d(tmp_path, {"01-imaps.conf": "[imaps]\naccept = 993\nconnect = 143\n"
                                                  "cert = /c.pem\n"}, "include = {d}\n")
    fifo = d / "00-fifo.conf"
    os.mkfifo(fifo)
    config = call_unless_blocked(lambda: load_config(str(path)), fifo)
    assert [s.name for s in config.services] == ["imaps"]
    path.write_text(f"include = {fifo}\n")
    with pytest.raises(ConfigError) as info:
        call_unless_blocked(lambda: load_config(str(path)), fifo)
    assert str(info.value) == (f"{path}:1: include = {fifo}: cannot read the directory: "
                               "Not a directory")


def test_workers_auto_is_one_per_usable_cpu(tmp_path):
    text = "workers = auto\n[imaps]\naccept = 993\nconnect = 143\ncert = /c.pem\n"
    assert parse_config(text, "t.conf").globals.workers == 0  # resolved when loaded
    path = tmp_path / "t.conf"
    path.write_text(text)
    assert load_config(str(path)).globals.workers == len(os.sched_getaffinity(0))
    with pytest.raises(ConfigError, match="positive whole number or auto"):
        parse_config(text.replace("auto", "none"), "t.conf")


@pytest.mark.parametrize(("value", "address"), [
    ("/run/syslog.sock", "/run/syslog.sock"),
    ("loghost.example.org:514", ("loghost.example.org", 514)),
    ("192.0.2.1:514", ("192.0.2.1", 514)),
    ("[2001:db8::1]:1514", ("2001:db8::1", 1514)),
])
def test_syslog_address_is_a_unix_socket_or_a_udp_server(value, address):
    cfg = parse_config(f"syslogAddress = {value}\n" + _SVC, "s.conf")
    assert cfg.globals.syslog_address == address


@pytest.mark.parametrize("value", ["514", "host:syslog", "[::1:514", "host:99999"])
def test_a_bad_syslog_address_is_an_error_at_its_line(value):
    with pytest.raises(ConfigError) as info:
        parse_config(f"syslogAddress = {value}\n" + _SVC, "s.conf")
    assert str(info.value).startswith("s.conf:1: syslogAddress")
