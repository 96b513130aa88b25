"""stunnel options a migrated config carries, each doing what stunnel does with it (or, when
it means nothing here, accepted and noted by ``tlswrap check``)."""

from __future__ import annotations

import re
import shutil
import socket
import ssl
import struct
import subprocess
import sys

import pytest

from conftest import free_port, service_config, wait_for
from test_e2e_inetd import STDIO_IMAPD, imap_env


def test_set_env_reaches_programs_run_by_exec(certs, tlswrap, monkeypatch):
    port = free_port()
    monkeypatch.setenv("GREETING_VAR", "inherited")  # the daemon's own, which setEnv removes
    tlswrap(f"foreground = yes\nsetEnv = SETENV_VAR=from config\nsetEnv = GREETING_VAR\n"
            f"[imapd]\n"
            f"accept = 127.0.0.1:{port}\nexec = {STDIO_IMAPD}\nexecArgs = imapd\n"
            f"cert = {certs.cert_file}\nkey = {certs.key_file}\n", [port])
    env = imap_env(certs, port)
    assert env["SETENV_VAR"] == "from config"
    assert "GREETING_VAR" not in env


def test_log_overwrite_empties_the_output_file_and_append_keeps_it(certs, thread_server,
                                                                     tlswrap, tmp_path):
    backend = thread_server(lambda conn: conn.sendall(b"* OK\r\n"))
    for mode, kept in (("overwrite", False), ("append", True)):
        out = tmp_path / f"{mode}.log"
        out.write_text("an old line\n")
        port = free_port()
        proc = tlswrap(service_config(certs, port, f"127.0.0.1:{backend.port}",
                                      global_extra=f"output = {out}\nlog = {mode}"), [port])
        wait_for(lambda out=out, p=proc: "listening" in out.read_text() or p.proc.poll(),
                 10, "a log line")
        assert ("an old line" in out.read_text()) is kept


def test_log_id_numbers_every_line_of_a_connection(certs, thread_server, tlswrap):
    backend = thread_server(lambda conn: conn.sendall(b"* OK\r\n"))
    port = free_port()
    proc = tlswrap(service_config(certs, port, f"127.0.0.1:{backend.port}",
                                  extra="logId = sequential", debug="notice"), [port])
    ctx = certs.client_context()
    for _ in range(2):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.recv(10) == b"* OK\r\n"
    wait_for(lambda: proc.log().count(" closed: TLS") == 2, 10, "two closing lines")
    log = proc.log()
    accepted = {peer: conn_id for conn_id, peer in
                re.findall(r"\[imaps\] #(\d+) (127\.0\.0\.1:\d+) accepted", log)}
    closed = re.findall(r"\[imaps\] #(\d+) (127\.0\.0\.1:\d+) closed: TLS", log)
    assert len(closed) == 2 and closed[0][0] != closed[1][0]
    for conn_id, peer in closed:  # each connection's lines carry one id
        assert accepted[peer] == conn_id


def test_session_resume_no_makes_every_handshake_full(certs, thread_server, tlswrap, tmp_path):
    if not shutil.which("openssl"):
        pytest.skip("openssl not installed")
    backend = thread_server(lambda conn: conn.sendall(b"* OK\r\n"))
    results = {}
    for resume in ("yes", "no"):
        port = free_port()
        tlswrap(service_config(certs, port, f"127.0.0.1:{backend.port}",
                               extra=f"sessionResume = {resume}"), [port])
        sess = tmp_path / f"{resume}.sess"
        reused = []
        for flag in ("-sess_out", "-sess_in"):
            out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                                  "-tls1_2", flag, str(sess), "-CAfile", str(certs.ca_file)],
                                 input=b"", capture_output=True, timeout=20).stdout
            reused.append(b"Reused," in out)
        results[resume] = reused
    assert results == {"yes": [False, True], "no": [False, False]}


def _backend_that_resets(conn: socket.socket) -> None:
    conn.sendall(b"* OK\r\n")
    conn.recv(100)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class MemoryTLS:
    """A TLS client over a socket the test reads itself, so that a TCP RST (ConnectionResetError
    from recv) is told apart from a FIN (b"") and from a close_notify."""

    def __init__(self, ctx: ssl.SSLContext, sock: socket.socket):
        self.sock, self.incoming, self.outgoing = sock, ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")
        self._call(self.tls.do_handshake)

    def _flush(self) -> None:
        if data := self.outgoing.read():
            self.sock.sendall(data)

    def _call(self, fn, *args):
        while True:
            try:
                result = fn(*args)
                self._flush()
                return result
            except ssl.SSLWantReadError:
                self._flush()
                data = self.sock.recv(65536)  # ConnectionResetError on a RST
                if not data:
                    return "FIN"
                self.incoming.write(data)

    def recv(self) -> bytes | str:
        try:
            data = self._call(self.tls.read, 100)
        except ssl.SSLZeroReturnError:
            return "close_notify"
        return data or "close_notify"  # the ssl module reads a close_notify as b""

    def send(self, data: bytes) -> None:
        self._call(self.tls.write, data)


@pytest.mark.parametrize(("reset", "expected"), [("yes", "RST"), ("no", "close_notify")])
def test_reset_says_how_a_backend_reset_reaches_the_client(certs, thread_server, tlswrap,
                                                          reset, expected):
    backend = thread_server(_backend_that_resets)
    port = free_port()
    tlswrap(service_config(certs, port, f"127.0.0.1:{backend.port}", extra=f"reset = {reset}"),
            [port])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        client = MemoryTLS(certs.client_context(), raw)
        assert client.recv() == b"* OK\r\n"
        client.send(b"a1 LOGOUT\r\n")
        try:
            got = client.recv()
        except ConnectionResetError:
            got = "RST"
    assert got == expected


def test_service_names_the_sectionless_inetd_service_for_hosts_deny(certs, tmp_path):
    """``service = NAME`` is the daemon name tcp_wrappers rules see in stunnel's inetd form."""
    deny = tmp_path / "hosts.deny"
    deny.write_text("imapd: ALL\n")
    allow = tmp_path / "hosts.allow"
    allow.write_text("")
    cfg = tmp_path / "inetd.conf"
    cfg.write_text(f"service = imapd\nhostsAllow = {allow}\nhostsDeny = {deny}\n"
                   f"cert = {certs.cert_file}\nkey = {certs.key_file}\n"
                   f"exec = {STDIO_IMAPD}\nexecArgs = stdio\n")
    listener = socket.create_server(("127.0.0.1", 0))
    with listener:
        client = socket.create_connection(listener.getsockname(), timeout=10)
        conn, _ = listener.accept()
    with client, conn:
        proc = subprocess.run([sys.executable, "-m", "tlswrap", str(cfg)], stdin=conn,
                              capture_output=True, timeout=30)
        assert proc.returncode == 0
        conn.close()  # the test's copy: the wrapper's was its only other holder
        assert client.recv(10) == b""  # refused before any TLS byte


@pytest.mark.parametrize(("pty", "expected"), [("yes", b"terminal /dev/pts/"),
                                               ("no", b"no terminal")])
def test_pty_gives_the_program_a_terminal(certs, tlswrap, tmp_path, pty, expected):
    """``pty = yes`` (stunnel's, for pppd and shells): stdin and stdout are a pseudo-terminal."""
    program = tmp_path / "tty.sh"
    program.write_text('#!/bin/sh\nif [ -t 0 ]; then echo "terminal $(tty)"; '
                       'else echo "no terminal"; fi\n')
    program.chmod(0o755)
    port = free_port()
    tlswrap(f"foreground = yes\n[vpn]\naccept = 127.0.0.1:{port}\nexec = {program}\n"
            f"pty = {pty}\ncert = {certs.cert_file}\nkey = {certs.key_file}\n", [port])
    ctx = certs.client_context()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        got = b""
        while not got.endswith(b"\n") and (data := tls.recv(100)):
            got += data
    assert got.startswith(expected)


@pytest.mark.parametrize(("retry", "connections"), [("100", 3), ("no", 1)])
def test_connect_exec_service_connects_out_and_retry_reconnects(certs, tlswrap, retry,
                                                                connections):
    """stunnel's connect+exec service: no listener; tlswrap connects out, serves TLS on that
    connection with the program behind it, and (``retry = DELAY`` in ms) does it again when
    the connection ends. Without retry it connects once."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(10)
        proc = tlswrap(f"foreground = yes\n[reverse]\nconnect = 127.0.0.1:"
                       f"{listener.getsockname()[1]}\nexec = {STDIO_IMAPD}\nexecArgs = imapd\n"
                       f"retry = {retry}\ncert = {certs.cert_file}\nkey = {certs.key_file}\n")
        ctx = certs.client_context()
        for _ in range(connections):
            conn, _ = listener.accept()  # tlswrap connected out
            with ctx.wrap_socket(conn, server_hostname="localhost") as tls:  # TLS client here
                assert tls.recv(100).startswith(b"* OK stdio imapd ready")
                tls.sendall(b"a1 LOGOUT\r\n")
        if retry == "no":
            wait_for(lambda: "[reverse] done (no retry)" in proc.log(), 10, "the end")
            listener.settimeout(0.5)
            with pytest.raises(TimeoutError):
                listener.accept()


def test_retry_outside_a_connect_exec_service_is_noted():
    """stunnel takes retry in any section (and as a default for all) and uses it only in a
    connect+exec one: so does tlswrap, with a note."""
    from tlswrap.config import config_notes, parse_config
    from tlswrap.errors import ConfigError

    cfg = parse_config("retry = yes\n[a]\naccept = 1\nconnect = 2\ncert = c\n"
                       "[b]\nconnect = 3\nexec = /bin/cat\ncert = c\n", "r.conf")
    assert [str(n) for n in config_notes(cfg)] == [
        "r.conf:1: [a] retry: no effect: only a connect+exec service (connect and exec, no "
        "accept) reconnects, as in stunnel"]
    with pytest.raises(ConfigError, match="workers = 2: a connect\\+exec service"):
        parse_config("workers = 2\n[a]\nconnect = 2\nexec = /bin/cat\ncert = c\n", "r.conf")
