"""``PSKsecrets`` (stunnel's TLS-PSK): the file format, and real PSK handshakes through the
daemon with ``openssl s_client -psk`` in TLS 1.2 and TLS 1.3."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from conftest import free_port, wait_for
from tlswrap.errors import ConfigError
from tlswrap.psk import parse_secrets

KEY_HEX = "00112233445566778899aabbccddeeff0f1e2d3c4b5a6978"


def test_hex_keys_are_binary_and_others_are_text():
    keys = parse_secrets(f"alice:{KEY_HEX}\nbob:a passphrase long enough\n\n"
                         "carol:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff\r\n", "s.txt")
    assert keys == {b"alice": bytes.fromhex(KEY_HEX), b"bob": b"a passphrase long enough",
                    b"carol": bytes.fromhex("00112233445566778899aabbccddeeff")}


@pytest.mark.parametrize(("text", "where", "message"), [
    ("alice\n", 1, "not in IDENTITY:KEY form"),
    (f"alice:{KEY_HEX}\nbob:short\n", 2, "key shorter than 16 bytes"),
    (f"alice:{KEY_HEX}\nbob:0011223344556677\n", 2, "key shorter than 16 bytes"),
    ("x" * 300 + f":{KEY_HEX}\n", 1, "identity longer than 255 characters"),
    ("", None, "no IDENTITY:KEY line"),
])
def test_mistakes_name_the_secrets_file_and_line(text, where, message):
    with pytest.raises(ConfigError) as info:
        parse_secrets(text, "s.txt")
    assert (info.value.filename, info.value.lineno) == ("s.txt", where)
    assert info.value.msg.startswith(message)


def _s_client(port: int, identity: str, key: str, version: str) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", version,
                           "-psk_identity", identity, "-psk", key, "-quiet",
                           "-ign_eof"], input=b"", capture_output=True, timeout=30)


@pytest.mark.skipif(not shutil.which("openssl"), reason="openssl not installed")
@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_psk_clients_are_served_and_others_refused(thread_server, tlswrap, tmp_path, version):
    """A PSK-only service (no certificate, as stunnel allows): the right key gets the
    backend's greeting; a wrong key or an unknown identity gets no further than the handshake."""
    backend = thread_server(lambda conn: conn.sendall(b"* OK psk backend\r\n"))
    secrets = tmp_path / "secrets.txt"
    secrets.write_text(f"alice:{KEY_HEX}\n")
    os.chmod(secrets, 0o600)
    port = free_port()
    proc = tlswrap(f"foreground = yes\n[psk]\naccept = 127.0.0.1:{port}\n"
                   f"connect = 127.0.0.1:{backend.port}\nPSKsecrets = {secrets}\n", [port])
    good = _s_client(port, "alice", KEY_HEX, version)
    assert b"* OK psk backend" in good.stdout, good.stderr
    for identity, key in (("alice", "ff" * 24), ("mallory", KEY_HEX)):
        bad = _s_client(port, identity, key, version)
        assert b"psk backend" not in bad.stdout
    wait_for(lambda: proc.log().count("TLS handshake failed") >= 2, 10, "two failed handshakes")


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_a_psk_client_reaches_a_psk_server(thread_server, tlswrap, tmp_path, version):
    """client = yes with PSKsecrets (stunnel's redis and docker tunnels): it sends PSKidentity's
    key, or the file's first; a server that knows only another identity refuses it."""
    import socket

    backend = thread_server(lambda conn: conn.sendall(b"* OK psk backend\r\n"))
    server_keys, client_keys = tmp_path / "server.txt", tmp_path / "client.txt"
    server_keys.write_text(f"bob:{KEY_HEX}\n")
    client_keys.write_text(f"alice:{'ab' * 24}\nbob:{KEY_HEX}\n")
    for path in (server_keys, client_keys):
        os.chmod(path, 0o600)
    server, chosen, first = free_port(), free_port(), free_port()
    tlswrap(f"foreground = yes\n[in]\naccept = 127.0.0.1:{server}\n"
            f"connect = 127.0.0.1:{backend.port}\nPSKsecrets = {server_keys}\n"
            f"[out]\nclient = yes\naccept = 127.0.0.1:{chosen}\nconnect = 127.0.0.1:{server}\n"
            f"PSKsecrets = {client_keys}\nPSKidentity = bob\nsslVersion = {version}\n"
            f"[first]\nclient = yes\naccept = 127.0.0.1:{first}\n"
            f"connect = 127.0.0.1:{server}\nPSKsecrets = {client_keys}\n"
            f"sslVersion = {version}\n", [server, chosen, first])
    for port, greeting in ((chosen, b"* OK psk backend\r\n"), (first, b"")):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as plain:
            assert plain.recv(100) == greeting


def test_psk_identity_must_be_in_the_client_secrets(tmp_path):
    from tlswrap.config import config_notes, parse_config
    from tlswrap.snapshot import prepare

    secrets = tmp_path / "secrets.txt"
    secrets.write_text(f"alice:{KEY_HEX}\n")
    config = parse_config(f"[c]\nclient = yes\naccept = 127.0.0.1:1\nconnect = 2\n"
                          f"PSKsecrets = {secrets}\nPSKidentity = bob\nlibwrap = no\n", "p.conf")
    assert not config_notes(config)  # in a client section it has an effect
    with pytest.raises(ConfigError) as info:
        prepare(config)
    assert str(info.value) == f"p.conf:6: [c] PSKidentity = bob: no such identity in {secrets}"


def test_psk_secrets_mistakes_stop_the_start_with_file_and_line(tmp_path):
    from tlswrap.config import parse_config
    from tlswrap.snapshot import prepare

    secrets = tmp_path / "secrets.txt"
    secrets.write_text(f"alice:{KEY_HEX}\nbob:short\n")
    config = parse_config(f"[psk]\naccept = 127.0.0.1:1\nconnect = 2\nPSKsecrets = {secrets}\n"
                          "libwrap = no\n", "p.conf")
    with pytest.raises(ConfigError) as info:
        prepare(config)
    assert str(info.value).startswith(f"{secrets}:2: key shorter than 16 bytes")
