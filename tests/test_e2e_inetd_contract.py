"""One relay contract, two inetd paths: every test runs on the fast path and the full one.

The connection is handed over as inetd ``nowait`` does it (the accepted socket on fd 0 and 1,
a fresh process per connection), by a small loopback spawner here so that each scenario
controls its client and backend exactly; ``test_e2e_inetd.py`` runs the same entry scripts
under the real openbsd-inetd and systemd-socket-activate.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest
from OpenSSL import SSL

from conftest import (
    INETD_FAST_MARK,
    download_of,
    free_port,
    greet_echo,
    make_inetd_entry,
    served_by,
    wait_for,
)
from test_e2e_inetd import assert_noise_escaped
from test_e2e_relay import pyopenssl_client, read_to_close_notify

STDIO_IMAPD = str(Path(__file__).parent / "data" / "stdio_imapd.py")


class OneShot:
    """Listens on loopback; each accepted connection runs ``argv`` with it as fd 0 and 1."""

    def __init__(self, argv: list[str], log: Path):
        self.argv = argv
        self.log = log
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.procs: list[subprocess.Popen[bytes]] = []
        self._stderr = open(log.with_suffix(".stderr"), "ab")  # noqa: SIM115 - close()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self.procs.append(subprocess.Popen(
                    self.argv, stdin=conn.fileno(), stdout=conn.fileno(), stderr=self._stderr,
                    start_new_session=True))

    def wait_done(self, count: int = 1, timeout: float = 20) -> None:
        wait_for(lambda: len(self.procs) >= count
                 and all(p.poll() is not None for p in self.procs), timeout,
                 "the inetd processes to exit")

    def text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept
        except OSError:
            pass
        self._thread.join(5)
        self.sock.close()
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)
        self._stderr.close()


@pytest.fixture
def one_shot(inetd_entry, tmp_path, certs):
    entry, kind = inetd_entry
    started: list[OneShot] = []

    def start(extra: str, service: str = "imaps") -> OneShot:
        log = tmp_path / f"{service}-{len(started)}.log"
        cfg = tmp_path / f"{service}-{len(started)}.conf"
        cfg.write_text(f"debug = debug\noutput = {log}\nsyslog = no\nhostsAllow = "
                       f"{tmp_path / 'none.allow'}\nhostsDeny = {tmp_path / 'none.deny'}\n"
                       f"[{service}]\ncert = {certs.cert_file}\nkey = {certs.key_file}\n"
                       f"{extra}\n")
        s = OneShot([entry, str(cfg)], log)
        started.append(s)
        return s

    start.kind = kind  # type: ignore[attr-defined]
    yield start
    for s in started:
        s.close()


def tls(certs, port: int) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=20)
    return certs.client_context().wrap_socket(raw, server_hostname="localhost")


def closing_line(text: str) -> str:
    return next(line for line in text.splitlines() if " closed: " in line)


def test_greeting_and_echo_through_the_path_under_test(certs, thread_server, one_shot):
    srv = thread_server(greet_echo)
    s = one_shot(f"connect = 127.0.0.1:{srv.port}")
    with tls(certs, s.port) as c:
        assert c.recv(100) == b"* OK echo ready\r\n"
        c.sendall(b"ping\r\n")
        assert c.recv(100) == b"ping\r\n"
    s.wait_done()
    assert served_by(s.text(), one_shot.kind)


def test_client_close_notify_then_backend_reply(certs, thread_server, one_shot):
    def backend(conn: socket.socket) -> None:
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
        conn.sendall(b"saw %d bytes then EOF: %s\r\n" % (len(data), data.strip()))

    srv = thread_server(backend)
    s = one_shot(f"connect = 127.0.0.1:{srv.port}")
    conn, sock = pyopenssl_client(certs, s.port)
    try:
        conn.sendall(b"a1 HELLO\r\n")
        conn.shutdown()  # close_notify: our write side is done, the read side stays open
        reply = read_to_close_notify(conn)
    finally:
        sock.close()
    assert reply == b"saw 10 bytes then EOF: a1 HELLO\r\n"
    s.wait_done()
    assert closing_line(s.text()).endswith(", closed")


def test_backend_fin_becomes_close_notify_after_the_data(certs, thread_server, one_shot):
    payload = os.urandom(3_000_000)

    def backend(conn: socket.socket) -> None:
        conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)
        conn.recv(1)

    srv = thread_server(backend)
    s = one_shot(f"connect = 127.0.0.1:{srv.port}")
    conn, sock = pyopenssl_client(certs, s.port)
    try:
        assert read_to_close_notify(conn) == payload  # ends in ZeroReturnError: a clean close
        conn.shutdown()
    finally:
        sock.close()
    s.wait_done()
    line = closing_line(s.text())
    assert f"0 bytes to backend, {len(payload)} bytes to client" in line
    assert line.endswith(", backend closed")


def duplex(c: ssl.SSLSocket, up: bytes, size: int, seconds: float = 60) -> bytes:
    """Send ``up`` and read ``size`` bytes at once, from one thread: an SSL object may not be
    used by two threads at a time (OpenSSL's rule; a reader and a writer sharing one SSL*
    see each other's errors, e.g. a spurious EOF)."""
    c.setblocking(False)
    sent, data = 0, b""
    deadline = time.monotonic() + seconds
    with selectors.DefaultSelector() as sel:
        sel.register(c, selectors.EVENT_READ | selectors.EVENT_WRITE)
        while (sent < len(up) or len(data) < size) and time.monotonic() < deadline:
            sel.modify(c, selectors.EVENT_READ | (selectors.EVENT_WRITE if sent < len(up)
                                                  else 0))
            sel.select(max(0.0, deadline - time.monotonic()))
            try:
                while len(data) < size:
                    chunk = c.recv(1 << 20)
                    if not chunk:
                        return data
                    data += chunk
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                pass
            try:
                while sent < len(up):
                    sent += c.send(up[sent:sent + (1 << 16)])
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                pass
    return data


def test_both_ways_at_once_arrive_intact(certs, thread_server, one_shot):
    size = 8_000_000
    up = os.urandom(size)
    down = os.urandom(size)
    got: dict[str, bytes] = {}

    def backend(conn: socket.socket) -> None:
        def send() -> None:
            conn.sendall(down)
        t = threading.Thread(target=send)
        t.start()
        data = b""
        while len(data) < size and (chunk := conn.recv(1 << 20)):
            data += chunk
        got["backend"] = data
        t.join()

    srv = thread_server(backend)
    s = one_shot(f"connect = 127.0.0.1:{srv.port}")
    with tls(certs, s.port) as c:
        data = duplex(c, up, size)
    assert data == down
    wait_for(lambda: "backend" in got, 20, "the backend to have it all")
    assert got["backend"] == up


def test_timeouts_longer_than_poll_can_say(certs, thread_server, one_shot):
    """40 days does not fit poll()'s milliseconds: the waits are sliced, nothing fails."""
    srv = thread_server(greet_echo)
    days40 = 40 * 86400
    s = one_shot(f"connect = 127.0.0.1:{srv.port}\nTIMEOUTidle = {days40}\n"
                 f"TIMEOUTbusy = {days40}\nTIMEOUTconnect = {days40}\nTIMEOUTclose = {days40}")
    with tls(certs, s.port) as c:
        assert c.recv(100) == b"* OK echo ready\r\n"
        c.sendall(b"ping\r\n")
        assert c.recv(100) == b"ping\r\n"
    s.wait_done()
    assert "internal error" not in s.text()


def test_handshake_under_timeout_busy(certs, one_shot):
    s = one_shot("connect = 127.0.0.1:9\nTIMEOUTbusy = 1")
    with socket.create_connection(("127.0.0.1", s.port), timeout=20) as c:
        assert c.recv(100) == b""  # closed by tlswrap, no byte sent
    s.wait_done()
    assert closing_line(s.text()).endswith("TLS handshake timed out after 1s")


def test_idle_timeout_ends_a_quiet_connection(certs, thread_server, one_shot):
    srv = thread_server(greet_echo)
    s = one_shot(f"connect = 127.0.0.1:{srv.port}\nTIMEOUTidle = 1")
    with tls(certs, s.port) as c:
        assert c.recv(100) == b"* OK echo ready\r\n"
        try:
            assert c.recv(100) == b""
        except (ssl.SSLError, ConnectionResetError):
            pass
    s.wait_done()
    assert closing_line(s.text()).endswith(", idle timeout")


def test_timeout_close_after_the_backend_finished(certs, thread_server, one_shot):
    def backend(conn: socket.socket) -> None:
        conn.sendall(b"* BYE\r\n")  # and the backend is done; the client never closes

    srv = thread_server(backend)
    s = one_shot(f"connect = 127.0.0.1:{srv.port}\nTIMEOUTclose = 1")
    conn, sock = pyopenssl_client(certs, s.port)
    try:
        assert read_to_close_notify(conn) == b"* BYE\r\n"
        s.wait_done()  # without our close_notify: TIMEOUTclose ended it
    finally:
        sock.close()
    assert closing_line(s.text()).endswith(", backend closed")


def test_backend_unavailable_is_logged_and_the_client_closed(certs, one_shot):
    dead = free_port()
    s = one_shot(f"connect = 127.0.0.1:{dead}")
    with tls(certs, s.port) as c:
        try:
            assert c.recv(100) == b""
        except ssl.SSLEOFError:  # pragma: no cover - depends on timing
            pass
    s.wait_done()
    assert (f"backend unavailable: 127.0.0.1:{dead}: Connection refused"
            in closing_line(s.text()))


def test_failover_to_the_second_connect_and_unix_sockets(certs, tmp_path, one_shot):
    path = str(tmp_path / "imapd.sock")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(4)

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            greet_echo(conn)
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        s = one_shot(f"connect = 127.0.0.1:{free_port()}\nconnect = {path}")
        with tls(certs, s.port) as c:
            assert c.recv(100) == b"* OK echo ready\r\n"
    finally:
        srv.close()
        t.join(5)


def test_client_reset_resets_the_backend(certs, thread_server, one_shot):
    seen: dict[str, str] = {}

    def backend(conn: socket.socket) -> None:
        conn.sendall(b"* OK\r\n")
        try:
            while conn.recv(65536):
                pass
            seen["end"] = "eof"
        except ConnectionResetError:
            seen["end"] = "reset"

    srv = thread_server(backend)
    s = one_shot(f"connect = 127.0.0.1:{srv.port}")
    c = tls(certs, s.port)
    assert c.recv(100) == b"* OK\r\n"
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    c.close()
    wait_for(lambda: "end" in seen, 20, "the backend to see the end")
    assert seen["end"] == "reset"
    s.wait_done()
    assert "client: peer reset or vanished" in closing_line(s.text())


def test_exec_program_early_exit_stderr_and_status(certs, one_shot):
    s = one_shot(f"exec = {STDIO_IMAPD}\nexecArgs = imapd")
    with tls(certs, s.port) as c:
        assert c.recv(100).startswith(b"* OK stdio imapd ready")
        c.sendall(b"a0 STDERR\r\n")
        assert c.recv(100) == b"a0 OK done\r\n"
        c.sendall(b"a1 EXIT\r\n")
        assert c.recv(100) == b""  # a clean close_notify, not a hang
    s.wait_done()
    text = s.text()
    assert re.search(r"\[imaps\] imapd pid \d+: a line on stderr", text)
    assert re.search(r"\[imaps\] imapd pid \d+ exited with status 3", text)


def test_exec_stderr_control_characters_are_escaped(certs, one_shot):
    s = one_shot(f"exec = {STDIO_IMAPD}\nexecArgs = imapd")
    with tls(certs, s.port) as c:
        assert c.recv(100).startswith(b"* OK stdio imapd ready")
        c.sendall(b"a0 NOISE\r\n")
        assert c.recv(100) == b"a0 OK done\r\n"
        c.sendall(b"a1 LOGOUT\r\n")
        assert c.recv(100) == b"a1 OK done\r\n"
    s.wait_done()
    assert_noise_escaped(s.log.read_bytes())
    assert served_by(s.text(), one_shot.kind)


def test_plaintext_client_fails_the_handshake_alike(certs, one_shot):
    s = one_shot("connect = 127.0.0.1:9")
    with socket.create_connection(("127.0.0.1", s.port), timeout=20) as c:
        c.sendall(b"GET / HTTP/1.0\r\n\r\n" * 4)
        try:
            c.recv(100)
        except ConnectionResetError:
            pass
    s.wait_done()
    assert "TLS handshake failed: TLS error: " in closing_line(s.text())


def normalised(text: str) -> list[str]:
    """The log lines without what differs between two runs: time, ports, pids, durations,
    and the fast path's own debug line."""
    lines = []
    for line in text.splitlines():
        line = re.sub(r"^\S+ \S+ ", "", line)  # the timestamp
        line = re.sub(r"(127\.0\.0\.\d+):\d+", r"\1:PORT", line)
        line = re.sub(r"pid \d+", "pid N", line)
        line = re.sub(r"\d+\.\d+s,", "Ns,", line)
        if "inetd fast path" not in line:
            lines.append(line)
    return lines


def test_log_lines_are_the_same_on_both_paths(certs, thread_server, tmp_path):
    """Word for word, at every level: one scenario through each entry, logs compared."""
    srv = thread_server(greet_echo)
    logs = {}
    for kind in ("fast", "full"):
        log = tmp_path / f"{kind}.log"
        cfg = tmp_path / f"{kind}.conf"
        cfg.write_text(f"debug = debug\noutput = {log}\nsyslog = no\n"
                       f"hostsAllow = {tmp_path / 'none'}\nhostsDeny = {tmp_path / 'none'}\n"
                       f"[imaps]\ncert = {certs.cert_file}\nkey = {certs.key_file}\n"
                       f"connect = 127.0.0.1:{srv.port}\n")
        s = OneShot([make_inetd_entry(tmp_path, kind), str(cfg)], log)
        try:
            conn, sock = pyopenssl_client(certs, s.port)
            try:
                assert conn.recv(100) == b"* OK echo ready\r\n"
                conn.sendall(b"ping\r\n")
                assert conn.recv(100) == b"ping\r\n"
                conn.shutdown()
                assert read_to_close_notify(conn) == b""
            finally:
                sock.close()
            s.wait_done()
        finally:
            s.close()
        logs[kind] = normalised(s.text())
        assert served_by(s.text(), kind)
    assert logs["fast"] == logs["full"]
    assert logs["fast"][0] == "NOTICE [imaps] 127.0.0.1:PORT accepted connection"
    assert "6 bytes to backend, 23 bytes to client" in logs["fast"][1]


def test_features_beyond_the_fast_path_go_the_full_way(certs, thread_server, one_shot):
    """acceptProxy is one: the full path serves it (and says so in no debug line)."""
    srv = thread_server(greet_echo)
    s = one_shot(f"connect = 127.0.0.1:{srv.port}\nacceptProxy = v1\nproxyTrusted = 10.0.0.0/8")
    with socket.create_connection(("127.0.0.1", s.port), timeout=20) as c:
        assert c.recv(100) == b""  # 127.0.0.1 is not a trusted balancer: refused
    s.wait_done()
    assert "PROXY header refused" in s.text()
    assert served_by(s.text(), "full")


def test_a_config_mistake_is_reported_as_today(certs, tmp_path, inetd_entry):
    entry, _kind = inetd_entry
    cfg = tmp_path / "bad.conf"
    cfg.write_text(f"cert = {certs.cert_file}\nconnect = 127.0.0.1:99999\n")
    a, b = socket.socketpair()
    try:
        r = subprocess.run([entry, str(cfg)], stdin=b, capture_output=True,
                           timeout=60)
    finally:
        a.close()
        b.close()
    assert r.returncode == 1
    assert r.stderr.decode() == (f"tlswrap: {cfg}:2: connect = 127.0.0.1:99999: port out of "
                                 "range: '99999'\n")


def tls12_handshake(certs, port: int, ciphers: bytes) -> str:
    """A TLS 1.2 client offering only ``ciphers``: the suite agreed on."""
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.load_verify_locations(str(certs.ca_file))
    ctx.set_verify(SSL.VERIFY_PEER, None)
    ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_cipher_list(ciphers)
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    sock.settimeout(None)  # pyOpenSSL wants a blocking socket; the kernel bounds each wait
    for opt in (socket.SO_RCVTIMEO, socket.SO_SNDTIMEO):
        sock.setsockopt(socket.SOL_SOCKET, opt, struct.pack("ll", 20, 0))
    conn = SSL.Connection(ctx, sock)
    conn.set_tlsext_host_name(b"localhost")
    conn.set_connect_state()
    try:
        conn.do_handshake()
        return str(conn.get_cipher_name())
    finally:
        sock.close()


def test_the_same_tls_settings(certs, thread_server, one_shot):
    """tlscontext's suites on both paths: ECDHE + AEAD served, plain RSA key exchange not."""
    srv = thread_server(greet_echo)
    s = one_shot(f"connect = 127.0.0.1:{srv.port}\nsslVersionMax = TLSv1.2")
    assert tls12_handshake(certs, s.port, b"ECDHE-ECDSA-CHACHA20-POLY1305") == \
        "ECDHE-ECDSA-CHACHA20-POLY1305"
    with pytest.raises(SSL.Error):
        tls12_handshake(certs, s.port, b"AES128-GCM-SHA256")
    s.wait_done(2)
    assert "TLS handshake failed: TLS error: no shared cipher" in s.text()


def test_a_program_that_outlives_its_client_is_stopped(certs, one_shot):
    """The client half-closes and goes; TIMEOUTidle ends the relay, the program gets
    TIMEOUTclose, then SIGTERM; the status is logged."""
    s = one_shot(f"exec = {STDIO_IMAPD}\nexecArgs = imapd\nTIMEOUTclose = 1\nTIMEOUTidle = 1")
    with tls(certs, s.port) as c:
        assert c.recv(100).startswith(b"* OK stdio imapd ready")
        c.sendall(b"a1 SLEEP\r\n")
        assert c.recv(100) == b"a1 OK sleeping\r\n"
    s.wait_done()
    text = s.text()
    assert re.search(r"\[imaps\] imapd pid \d+ still running 1s after its client left; "
                     r"terminating", text)
    assert re.search(r"\[imaps\] imapd pid \d+ killed by signal 15", text)


def test_hosts_files_without_rules_keep_the_fast_path(certs, thread_server, one_shot, tmp_path):
    """Comments and blank lines are no rules: tcpd grants, and the fast path serves."""
    (tmp_path / "none.allow").write_text("# hosts.allow\n\n \t\n#   ALL: LOCAL\n")
    (tmp_path / "none.deny").write_text("# ALL: ALL would be a rule\n")
    srv = thread_server(greet_echo)
    s = one_shot(f"connect = 127.0.0.1:{srv.port}")
    with tls(certs, s.port) as c:
        assert c.recv(100) == b"* OK echo ready\r\n"
    s.wait_done()
    assert served_by(s.text(), one_shot.kind)


@pytest.mark.parametrize("feature", [
    "proxyProtocol = v1", "CAfile = {ca}", "socket = a:TCP_NODELAY=1", "sslVersionMin = TLSv1",
])
def test_each_feature_beyond_the_fast_path_is_served_the_full_way(certs, thread_server,
                                                                  one_shot, feature):
    seen: dict[str, bytes] = {}

    def backend(conn: socket.socket) -> None:
        conn.sendall(b"* OK\r\n")
        seen["first"] = conn.recv(200)

    srv = thread_server(backend)
    s = one_shot(f"connect = 127.0.0.1:{srv.port}\n{feature.format(ca=certs.ca_file)}")
    with tls(certs, s.port) as c:
        assert c.recv(100) == b"* OK\r\n"
        c.sendall(b"a1 LOGOUT\r\n")
        wait_for(lambda: "first" in seen, 20, "the backend to read")
    s.wait_done()
    assert served_by(s.text(), "full")
    if feature.startswith("proxyProtocol"):
        assert seen["first"].startswith(b"PROXY TCP4 127.0.0.1 127.0.0.1 ")
    else:
        assert seen["first"] == b"a1 LOGOUT\r\n"


def tls_from(certs, source: str, port: int) -> ssl.SSLSocket:
    """A TLS client on loopback whose address is ``source`` (any 127.0.0.x is local)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=20, source_address=(source, 0))
    return certs.client_context().wrap_socket(raw, server_hostname="localhost")


def refused_from(source: str, port: int) -> bool:
    """Closed with no byte back (FIN or reset) after a ClientHello from ``source``."""
    from test_e2e_access import client_hello

    with socket.create_connection(("127.0.0.1", port), timeout=20,
                                  source_address=(source, 0)) as c:
        try:
            c.sendall(client_hello())
            return c.recv(4096) == b""
        except ConnectionResetError:
            return True


def test_rules_serve_one_client_and_refuse_another(certs, thread_server, one_shot, tmp_path):
    """``ALL EXCEPT 127.0.0.1`` in hosts.deny: 127.0.0.1 is served, 127.0.0.2 refused before
    any TLS byte; the path under test decides (the fast one no longer hands rules over)."""
    (tmp_path / "none.deny").write_text("imaps: ALL EXCEPT 127.0.0.1\n")
    srv = thread_server(greet_echo)
    s = one_shot(f"connect = 127.0.0.1:{srv.port}")
    with tls_from(certs, "127.0.0.1", s.port) as c:
        assert c.recv(100) == b"* OK echo ready\r\n"
    s.wait_done()
    assert refused_from("127.0.0.2", s.port)
    s.wait_done(2)
    text = s.text()
    assert f"WARNING [imaps] refused connect from 127.0.0.2 ({tmp_path / 'none.deny'} line 1)" \
        in text
    assert "refused connect from 127.0.0.1" not in text
    assert "127.0.0.2:" in closing_line(text.split("refused connect")[1])
    assert served_by(text, one_shot.kind)


# Each client (source address) of one rule set, in order, and whether it is served.
RULE_CLIENTS = [("127.0.0.1", True), ("127.0.0.2", False), ("127.0.0.3", False),
                ("127.0.0.4", False), ("127.0.0.5", True)]
HOSTS_ALLOW = "# comment\nimaps: 127.0.0.3: DENY\nimaps, other: 127.0.0.1\n"
HOSTS_DENY = ("imaps: 127.0.0.5: allow\nimaps: 127.0.0.2: severity mail.err\n"
              "imaps: ALL EXCEPT 127.0.0.1: keepalive: linger 0\n")


def run_clients(certs, s: OneShot, clients: list[tuple[str, bool]]) -> None:
    for n, (source, served) in enumerate(clients, 1):
        if served:
            with tls_from(certs, source, s.port) as c:
                assert c.recv(100) == b"* OK echo ready\r\n"
        else:
            assert refused_from(source, s.port)
        s.wait_done(n)  # one process at a time: the lines stay in order


@pytest.mark.parametrize("rules", [
    pytest.param((HOSTS_ALLOW, HOSTS_DENY, RULE_CLIENTS), id="addresses-and-options"),
    pytest.param(("imaps: LOCAL\n", "imaps: ALL\n", [("127.0.0.1", True),
                                                     ("127.0.0.2", False)]), id="LOCAL"),
    pytest.param(("", "imaps: localhost KNOWN\n", [("127.0.0.1", False),
                                                  ("127.0.0.2", True)]), id="names"),
    pytest.param(("", "imaps: PARANOID\n", [("127.0.0.1", True), ("127.0.0.2", True)]),
                 id="PARANOID"),  # a name that maps back, and none at all: neither is paranoid
])
def test_rules_log_the_same_lines_on_both_paths(certs, thread_server, tmp_path, rules):
    """Verdicts and log lines, word for word, on the fast path and the full one: plain rules,
    ``allow``/``deny`` options, ``severity``, ``keepalive``/``linger``, and patterns that
    look the client's name up (127.0.0.1 is localhost in /etc/hosts, 127.0.0.2 has no name).
    Both paths decide themselves: the fast path hands none of these over."""
    allow_text, deny_text, clients = rules
    srv = thread_server(greet_echo)
    logs = {}
    for kind in ("fast", "full"):
        allow, deny = tmp_path / f"{kind}.allow", tmp_path / f"{kind}.deny"
        allow.write_text(allow_text)
        deny.write_text(deny_text)
        log = tmp_path / f"{kind}.log"
        cfg = tmp_path / f"{kind}.conf"
        cfg.write_text(f"debug = debug\noutput = {log}\nsyslog = no\n"
                       f"hostsAllow = {allow}\nhostsDeny = {deny}\n"
                       f"[imaps]\ncert = {certs.cert_file}\nkey = {certs.key_file}\n"
                       f"connect = 127.0.0.1:{srv.port}\n")
        s = OneShot([make_inetd_entry(tmp_path, kind), str(cfg)], log)
        try:
            run_clients(certs, s, clients)
        finally:
            s.close()
        text = s.text()
        assert text.count("inetd fast path") == (len(clients) if kind == "fast" else 0)
        logs[kind] = [line.replace(str(tmp_path / kind), "DIR/hosts")
                      for line in normalised(text)]
    assert logs["fast"] == logs["full"]
    refusals = [line for line in logs["fast"] if "refused connect" in line]
    assert len(refusals) == sum(not served for _, served in clients)
    if clients is RULE_CLIENTS:
        assert refusals == [
            "ERROR [imaps] refused connect from 127.0.0.2 (DIR/hosts.deny line 2)",
            "WARNING [imaps] refused connect from 127.0.0.3 (DIR/hosts.allow line 2)",
            "WARNING [imaps] refused connect from 127.0.0.4 (DIR/hosts.deny line 3)"]
    if deny_text.startswith("imaps: localhost"):
        assert refusals == ["WARNING [imaps] refused connect from localhost "
                            "(DIR/hosts.deny line 1)"]


@pytest.mark.parametrize("option", [
    "setenv FOO bar", "spawn /bin/true", "umask 022", "nice 1", "rfc931", "user root",
    "banners {dir}",
])
def test_rules_with_options_the_fast_path_leaves_are_served_the_full_way(
        certs, thread_server, one_shot, tmp_path, option):
    """Decided per connection: the deciding rule carries an option only the full path
    carries out, so the fast path hands the connection over untouched (nothing read, nothing
    logged) and the full path serves it from the start."""
    (tmp_path / "banners").mkdir()
    (tmp_path / "none.allow").write_text(
        f"imaps: 127.0.0.2\nimaps: 127.0.0.1: {option.format(dir=tmp_path / 'banners')}\n")
    (tmp_path / "none.deny").write_text("imaps: ALL\n")
    srv = thread_server(greet_echo)
    s = one_shot(f"connect = 127.0.0.1:{srv.port}")
    with tls_from(certs, "127.0.0.1", s.port) as c:
        assert c.recv(100) == b"* OK echo ready\r\n"
        c.sendall(b"ping\r\n")
        assert c.recv(100) == b"ping\r\n"
    s.wait_done()
    with tls_from(certs, "127.0.0.2", s.port) as c:  # the same files, a plain rule: fast
        assert c.recv(100) == b"* OK echo ready\r\n"
    s.wait_done(2)
    first, second = s.text().split(" closed: ", 1)
    assert "inetd fast path" not in first
    assert ("inetd fast path" in second) == (one_shot.kind == "fast")
    assert "refused" not in s.text()


def test_a_rule_wanting_the_user_is_served_the_full_way(certs, thread_server, one_shot,
                                                       tmp_path):
    """``ALL@127.0.0.1`` asks the client's ident server (RFC 931) when reached: the fast path
    hands the connection over; no server answers on 127.0.0.1:113, so the user is
    unknown, which ALL matches."""
    (tmp_path / "none.allow").write_text("imaps: ALL@127.0.0.1\n")
    (tmp_path / "none.deny").write_text("imaps: ALL\n")
    srv = thread_server(greet_echo)
    s = one_shot(f"connect = 127.0.0.1:{srv.port}")
    with tls_from(certs, "127.0.0.1", s.port) as c:
        assert c.recv(100) == b"* OK echo ready\r\n"
    s.wait_done()
    assert "inetd fast path" not in s.text() and "refused" not in s.text()


def test_a_hosts_file_the_full_path_refuses_is_left_to_it(certs, thread_server, one_shot,
                                                          tmp_path):
    """A syntax error: the full path reports it at its line and serves no one; the fast path
    hands over rather than deciding on a file the full path would not start with."""
    (tmp_path / "none.allow").write_text("imaps 127.0.0.1\n")
    srv = thread_server(greet_echo)
    s = one_shot(f"connect = 127.0.0.1:{srv.port}")
    with socket.create_connection(("127.0.0.1", s.port), timeout=20) as c:
        assert c.recv(100) == b""
    s.wait_done()
    assert "inetd fast path" not in s.text()


def test_keyupdates_during_a_download_keep_the_connection(certs, thread_server, one_shot,
                                                          keyupdate_client):
    """As test_e2e_tls's test for the daemon: a client asks for a KeyUpdate every 64 KiB of a
    download it reads slowly, so the server's writes wait for room. OpenSSL keeps its answer
    until the pending write is done, but a second request read meanwhile makes SSL_read
    write that answer at once: the connection fails with "bad length" unless nothing is
    read while a write waits for its retry."""
    size = 6 * 1024 * 1024
    runs = 8
    srv = thread_server(download_of(size))
    s = one_shot(f"connect = 127.0.0.1:{srv.port}")
    for n in range(1, runs + 1):
        out = subprocess.run([keyupdate_client, str(s.port), str(size), str(64 * 1024)],
                             capture_output=True, text=True, timeout=120)
        s.wait_done(n)
        assert out.stdout.strip() == f"ok {size}", (n, out.stdout, s.text()[-2000:])
    text = s.text()
    assert "TLS error" not in text
    assert text.count(" closed: ") == runs
    assert text.count(INETD_FAST_MARK) == (runs if one_shot.kind == "fast" else 0)
