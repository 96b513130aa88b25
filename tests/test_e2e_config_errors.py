"""Config mistakes at start-up: ``FILE:LINE: message`` on stderr, non-zero exit, no port left."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from conftest import free_port, port_open


def run_tlswrap(config_path, timeout=20) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tlswrap", str(config_path)],
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def two_services(certs, p1, p2, second_extra: str) -> str:
    return (f"foreground = yes\n"
            f"[first]\naccept = 127.0.0.1:{p1}\nconnect = 127.0.0.1:1\n"
            f"cert = {certs.cert_file}\nkey = {certs.key_file}\n"
            f"[second]\naccept = 127.0.0.1:{p2}\nconnect = 127.0.0.1:1\n{second_extra}")


def check_fails(tmp_path, text: str, expected: str, ports=()) -> None:
    cfg = tmp_path / "bad.conf"
    cfg.write_text(text)
    out = run_tlswrap(cfg)
    assert out.returncode != 0
    assert out.stderr.strip().startswith(f"tlswrap: {cfg}:"), out.stderr
    assert expected in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    for port in ports:
        assert not port_open(port), f"port {port} left listening"


def test_unknown_option(tmp_path, certs):
    p1, p2 = free_port(), free_port()
    check_fails(tmp_path, two_services(certs, p1, p2, f"cert = {certs.cert_file}\nfoo = 1\n"),
                ":11: [second] unknown option 'foo'", [p1, p2])


def test_bad_value(tmp_path, certs):
    p1, p2 = free_port(), free_port()
    check_fails(tmp_path, two_services(certs, p1, p2, f"cert = {certs.cert_file}\n"
                                                       "TIMEOUTbusy = -3\n"),
                ":11: [second] TIMEOUTbusy = -3: expected a number of seconds", [p1, p2])


def test_missing_cert(tmp_path, certs):
    p1, p2 = free_port(), free_port()
    missing = tmp_path / "nope.pem"
    check_fails(tmp_path, two_services(certs, p1, p2, f"cert = {missing}\n"),
                f":10: [second] cert = {missing}: cannot read: No such file or directory", [p1, p2])


def test_unreadable_key(tmp_path, certs):
    key = tmp_path / "keydir"
    key.mkdir()  # unreadable as a file, even for root
    p1, p2 = free_port(), free_port()
    check_fails(tmp_path, two_services(certs, p1, p2,
                                       f"cert = {certs.cert_file}\nkey = {key}\n"),
                f":11: [second] key = {key}: cannot read: Is a directory", [p1, p2])


def test_cert_file_without_a_certificate(tmp_path, certs):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    p1, p2 = free_port(), free_port()
    check_fails(tmp_path, two_services(certs, p1, p2, f"cert = {junk}\n"),
                f":10: [second] cert = {junk}: no PEM certificate could be loaded", [p1, p2])


def test_key_does_not_match_cert(tmp_path, certs):
    import trustme

    other = trustme.CA().issue_cert("localhost")
    other_key = tmp_path / "other.key"
    other.private_key_pem.write_to_path(str(other_key))
    p1, p2 = free_port(), free_port()
    check_fails(tmp_path, two_services(certs, p1, p2,
                                       f"cert = {certs.cert_file}\nkey = {other_key}\n"),
                f":11: [second] key = {other_key}: the private key does not match the "
                f"certificate in {certs.cert_file}", [p1, p2])


def test_key_missing_from_cert_file(tmp_path, certs):
    p1, p2 = free_port(), free_port()
    check_fails(tmp_path, two_services(certs, p1, p2, f"cert = {certs.cert_file}\n"),
                f":10: [second] cert = {certs.cert_file}: no usable PEM private key", [p1, p2])


def test_bad_cipher_list(tmp_path, certs):
    p1, p2 = free_port(), free_port()
    check_fails(tmp_path, two_services(certs, p1, p2, f"cert = {certs.cert_file}\n"
                                       f"key = {certs.key_file}\nciphers = NOPE-CIPHER\n"),
                ":12: [second] ciphers = NOPE-CIPHER: OpenSSL accepts none of these", [p1, p2])


def test_sslv3_is_a_config_error_not_a_traceback(tmp_path, certs):
    p1, p2 = free_port(), free_port()
    check_fails(tmp_path, two_services(certs, p1, p2, f"cert = {certs.cert_file}\n"
                                       f"key = {certs.key_file}\nsslVersion = SSLv3\n"),
                ":12: [second] sslVersion = SSLv3: tlswrap serves TLS 1.2 and 1.3 only (RFC "
                "8996 deprecates the older versions): write sslVersion = TLSv1.2 or TLSv1.3, "
                "or remove the line to allow both", [p1, p2])


def test_sslv3_minimum_serves_tls12(tmp_path, certs, tlswrap, thread_server):
    import ssl

    from conftest import greet_echo, service_config

    srv = thread_server(greet_echo)
    port = free_port()
    tlswrap(service_config(certs, port, f"127.0.0.1:{srv.port}",
                           extra="sslVersionMin = SSLv3\n"), [port])
    ctx = certs.client_context()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        assert tls.version() == "TLSv1.2"
        assert tls.recv(100) == b"* OK echo ready\r\n"


def test_unwritable_log_file(tmp_path, certs):
    p1, p2 = free_port(), free_port()
    log = tmp_path / "nonexistent" / "tlswrap.log"
    cfg = tmp_path / "bad.conf"
    cfg.write_text(f"output = {log}\n" + two_services(certs, p1, p2, f"cert = {certs.cert_file}\n"
                                                      f"key = {certs.key_file}\n"))
    out = run_tlswrap(cfg)
    assert out.returncode == 1
    assert f"output = {log}: cannot open log file: No such file or directory\n" in out.stderr
    assert out.stderr.startswith("tlswrap: ") and "Traceback" not in out.stderr
    assert not port_open(p1) and not port_open(p2)


def test_address_in_use_leaves_no_port_listening(tmp_path, certs):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    p1, p2 = free_port(), busy.getsockname()[1]
    try:
        check_fails(tmp_path, two_services(certs, p1, p2, f"cert = {certs.cert_file}\n"
                                           f"key = {certs.key_file}\n"),
                    f":8: [second] accept = 127.0.0.1:{p2}: cannot listen: Address already in use",
                    [p1])
    finally:
        busy.close()


def test_missing_config_file(tmp_path):
    out = run_tlswrap(tmp_path / "absent.conf")
    assert out.returncode == 1
    assert out.stderr == f"tlswrap: {tmp_path / 'absent.conf'}: cannot read config: " \
                         "No such file or directory\n"


def test_sigterm_drains_and_exits_zero(tmp_path, certs, tlswrap, thread_server):
    from conftest import greet_echo, service_config

    srv = thread_server(greet_echo)
    port = free_port()
    proc = tlswrap(service_config(certs, port, f"127.0.0.1:{srv.port}"), [port])
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    s = certs.client_context().wrap_socket(raw, server_hostname="localhost")
    assert s.recv(100) == b"* OK echo ready\r\n"
    proc.proc.terminate()
    # the live connection keeps working while new ones are refused
    from conftest import wait_for
    wait_for(lambda: not port_open(port), 10, "the listener to close")
    s.sendall(b"still here\r\n")
    assert s.recv(100) == b"still here\r\n"
    s.close()
    assert proc.proc.wait(15) == 0


def test_inetd_mode_without_a_connection_says_so(certs):
    out = subprocess.run([sys.executable, "-m", "tlswrap", "-p", str(certs.cert_file),
                          "--key", str(certs.key_file), "-r", "127.0.0.1:143"],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20)
    assert out.returncode == 1
    assert out.stderr.startswith("tlswrap: descriptor 0 is not a connection:")
    assert "Traceback" not in out.stderr


# --- issue 17: a bad value is FILE:LINE at start and on SIGHUP, never a crash or a hang ------

def _x25519_key(directory) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import x25519

    path = directory / "x25519.key"
    path.write_bytes(x25519.X25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return str(path)


def _fifo(directory) -> str:
    import os

    path = directory / "cert.fifo"
    if not path.exists():
        os.mkfifo(path)
    return str(path)


# name -> (how the config text is spoiled, the bad line's text, what the error says)
_SPOILERS = {
    "session-timeout-overflow": (
        lambda text, certs, d: text + "sessionCacheTimeout = 1e19\n",
        "sessionCacheTimeout = 1e19", "at most 2147483647 seconds"),
    "x25519-key": (
        lambda text, certs, d: text.replace(str(certs.key_file), _x25519_key(d)),
        "key = ", "X25519PrivateKey cannot sign a TLS handshake"),
    "nul-in-a-path": (
        lambda text, certs, d: text.replace(str(certs.key_file), str(certs.key_file) + "\0"),
        "key = ", "a NUL character (\\x00) is not allowed in a config file"),
    "cert-is-a-fifo": (
        lambda text, certs, d: text.replace(str(certs.cert_file), _fifo(d)),
        "cert = ", "cannot read: not a regular file (a FIFO)"),
    "socket-option-overflow": (
        lambda text, certs, d: text + "socket = a:SO_SNDBUF=99999999999\n",
        "socket = ", "SO_SNDBUF must be 0 to 2147483647, got 99999999999"),
    "setgid-overflow": (
        lambda text, certs, d: "setgid = 99999999999\n" + text,
        "setgid = ", "a group id is 0 to 4294967294, got 99999999999"),
    "accept-label-too-long": (
        lambda text, certs, d: text.replace("accept = 127.0.0.1:", "accept = " + "a" * 64 + ":"),
        "accept = ", "the host name has a label longer than 63 characters"),
}


def _bad_line(text: str, starts: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith(starts))


def _served(certs, port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            certs.client_context().wrap_socket(raw, server_hostname="localhost") as tls:
        return tls.recv(100)


@pytest.mark.parametrize("spoil", sorted(_SPOILERS))
def test_sighup_with_a_bad_value_keeps_serving_and_logs_file_line(certs, tlswrap, thread_server,
                                                                  tmp_path, spoil):
    import signal

    from conftest import greet_echo, service_config, wait_for

    change, starts, message = _SPOILERS[spoil]
    srv = thread_server(greet_echo)
    port = free_port()
    proc = tlswrap(service_config(certs, port, f"127.0.0.1:{srv.port}"), [port])
    assert _served(certs, port) == b"* OK echo ready\r\n"

    bad = change(proc.config.read_text(), certs, tmp_path)
    proc.config.write_text(bad)
    proc.proc.send_signal(signal.SIGHUP)
    try:
        wait_for(lambda: "reload failed" in proc.log() or proc.proc.poll() is not None, 10,
                 "the failed reload")
    finally:
        if spoil == "cert-is-a-fifo":  # let a reader blocked on the FIFO go, whatever happened
            import os

            try:
                os.close(os.open(_fifo(tmp_path), os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
    log = proc.log()
    assert proc.proc.poll() is None, log
    assert f"reload failed, keeping the running configuration: {proc.config}:" \
           f"{_bad_line(bad, starts)}:" in log, log
    assert message in log, log
    assert "Traceback" not in log, log
    assert _served(certs, port) == b"* OK echo ready\r\n"  # the old configuration serves on


@pytest.mark.parametrize("spoil", sorted(_SPOILERS))
def test_start_with_a_bad_value_is_file_line_and_exit_1(certs, tmp_path, thread_server, spoil):
    from conftest import greet_echo, service_config

    change, starts, message = _SPOILERS[spoil]
    srv = thread_server(greet_echo)
    port = free_port()
    bad = change(service_config(certs, port, f"127.0.0.1:{srv.port}"), certs, tmp_path)
    cfg = tmp_path / "bad.conf"
    cfg.write_text(bad)
    out = run_tlswrap(cfg)
    assert out.returncode == 1, out.stderr
    assert out.stderr.startswith(f"tlswrap: {cfg}:{_bad_line(bad, starts)}:"), out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert not port_open(port)
