"""SMTP AUTH towards a remote server (stunnel's protocolAuthentication, protocolUsername,
protocolPassword) and the connect-only protocolDomain/protocolHeader: what the parser takes,
the exact errors at their lines, and a password that no message shows."""

from __future__ import annotations

import os

import pytest

from tlswrap import cli
from tlswrap.config import parse_config
from tlswrap.errors import ConfigError

CLIENT = ("[relay]\nclient = yes\naccept = 127.0.0.1:2525\nconnect = smarthost.example:587\n"
          "protocol = smtp\n")  # lines 1-5
PASSWORD = "pa55-w0rd!"


def _errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "t.conf")
    return [str(e) for e in info.value.all()]


def test_plain_is_the_default_and_login_is_taken():
    svc = parse_config(CLIENT + f"protocolUsername = me@example.org\n"
                                f"protocolPassword = {PASSWORD}\n", "t.conf").services[0]
    assert svc.protocol_authentication is None  # plain, as stunnel's default
    assert svc.protocol_username == "me@example.org"
    assert svc.protocol_password is not None and svc.protocol_password.reveal() == PASSWORD
    svc = parse_config(CLIENT + "protocolAuthentication = LOGIN\nprotocolUsername = me\n"
                                "protocolPassword = a b\n", "t.conf").services[0]
    assert svc.protocol_authentication == "login"
    assert svc.protocol_password is not None and svc.protocol_password.reveal() == "a b"


def test_the_password_is_never_shown_by_the_model():
    svc = parse_config(CLIENT + f"protocolUsername = me\nprotocolPassword = {PASSWORD}\n",
                       "t.conf").services[0]
    assert PASSWORD not in repr(svc) and PASSWORD not in str(svc.protocol_password)
    assert PASSWORD not in f"{svc.protocol_password}"


def test_the_global_part_gives_every_service_the_credentials():
    svc = parse_config(f"protocolUsername = me\nprotocolPassword = {PASSWORD}\n" + CLIENT,
                       "t.conf").services[0]
    assert svc.protocol_username == "me" and svc.line_of("protocolPassword") == 2


@pytest.mark.parametrize(("extra", "errors"), [
    ("protocolAuthentication = cram-md5\n",
     ["t.conf:6: [relay] protocolAuthentication = cram-md5: expected plain or login (SMTP AUTH "
      "with protocol = smtp)"]),
    ("protocolAuthentication = ntlm\n",
     ["t.conf:6: [relay] protocolAuthentication = ntlm: ntlm is for protocol = connect, which "
      "tlswrap does not speak; protocol = smtp takes plain or login"]),
    ("protocolAuthentication = basic\n",
     ["t.conf:6: [relay] protocolAuthentication = basic: basic is for protocol = connect, which "
      "tlswrap does not speak; protocol = smtp takes plain or login"]),
    ("protocolUsername = me\n",
     ["t.conf:6: [relay] protocolUsername without protocolPassword: SMTP AUTH needs both "
      "protocolUsername and protocolPassword (stunnel would skip authentication in silence)"]),
    (f"protocolPassword = {PASSWORD}\n",
     ["t.conf:6: [relay] protocolPassword without protocolUsername: SMTP AUTH needs both "
      "protocolUsername and protocolPassword (stunnel would skip authentication in silence)"]),
    ("protocolAuthentication = login\n",
     ["t.conf:6: [relay] protocolAuthentication without protocolUsername and protocolPassword: "
      "SMTP AUTH needs both protocolUsername and protocolPassword (stunnel would skip "
      "authentication in silence)"]),
    ("protocolUsername =\n", ["t.conf:6: [relay] protocolUsername = : empty value"]),
    ("protocolPassword =\n", ["t.conf:6: [relay] protocolPassword = (not shown): empty value"]),
    ("protocolDomain = CORP\n",
     ["t.conf:6: [relay] protocolDomain = CORP: belongs to protocol = connect (through an HTTP "
      "proxy), which tlswrap does not speak; it is a mail STARTTLS proxy (protocol = imap, pop3 "
      "or smtp)"]),
    ("protocolHeader = Proxy-Authorization: Basic c2VjcmV0\n",
     ["t.conf:6: [relay] protocolHeader = (not shown): belongs to protocol = connect (through "
      "an HTTP proxy), which tlswrap does not speak; it is a mail STARTTLS proxy (protocol = "
      "imap, pop3 or smtp)"]),
])
def test_mistakes_at_their_line(extra, errors):
    assert _errors(CLIENT + extra) == errors


@pytest.mark.parametrize(("service", "message"), [
    ("client = yes\nprotocol = imap\n",
     "protocolUsername: stunnel supports it only for protocol = smtp and connect, not imap: "
     "the mail client logs in itself, inside TLS"),
    ("client = yes\nprotocol = pop3\n",
     "protocolUsername: stunnel supports it only for protocol = smtp and connect, not pop3: "
     "the mail client logs in itself, inside TLS"),
    ("client = yes\nprotocol = proxy\n",
     "protocolUsername: SMTP AUTH to a remote server: it needs client = yes and protocol = "
     "smtp"),
    ("client = yes\n",
     "protocolUsername: SMTP AUTH to a remote server: it needs client = yes and protocol = "
     "smtp"),
    ("cert = x.pem\nprotocol = smtp\n",
     "protocolUsername: SMTP AUTH to a remote server: it needs client = yes and protocol = "
     "smtp"),
])
def test_only_client_side_smtp_takes_them(service, message):
    text = (f"[s]\naccept = 2525\nconnect = 127.0.0.1:25\n{service}"
            f"protocolUsername = me\nprotocolPassword = {PASSWORD}\n")
    line = text.count("\n") - 1
    assert _errors(text) == [f"t.conf:{line}: [s] {message}"]


def test_no_message_shows_the_password():
    text = (f"[s]\naccept = 2525\nconnect = 127.0.0.1:25\ncert = x.pem\n"
            f"protocolPassword = {PASSWORD}\n")
    assert not [e for e in _errors(text) if PASSWORD in e]


@pytest.fixture
def relay_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ca.pem").write_text("")
    return tmp_path


@pytest.mark.parametrize(("mode", "warned"), [(0o600, False), (0o640, True), (0o644, True)])
def test_tlswrap_check_warns_of_a_password_others_can_read(relay_dir, capsys, mode, warned):
    import trustme

    trustme.CA().cert_pem.write_to_path(str(relay_dir / "ca.pem"))
    conf = relay_dir / "t.conf"
    conf.write_text(f"{CLIENT}CAfile = ca.pem\nlibwrap = no\nprotocolUsername = me\n"
                    f"protocolPassword = {PASSWORD}\n")
    os.chmod(conf, mode)
    rc = cli.main(["check", "t.conf"])
    out = capsys.readouterr().out
    assert rc == 0, out
    warning = (f"t.conf:9: warning: [relay] protocolPassword: t.conf holds a password and is "
               f"readable by group/others (mode {mode:o}); use chmod 600 t.conf")
    assert (warning in out.splitlines()) == warned, out
    assert PASSWORD not in out
