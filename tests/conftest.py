"""Shared fixtures: certificates made at run time, loopback servers, a tlswrap process."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import settings

# Under CI every property test runs the same examples each time (a failure there replays) and
# none is timed; a test's own @settings still sets its example count.
settings.register_profile("ci", derandomize=True, deadline=None, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it is still there after ``timeout``; always reaped."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


class Certs:
    """A test CA and a server certificate for localhost / 127.0.0.1 / ::1, as files."""

    def __init__(self, tmp: Path, common_name: str | None = None):
        import trustme

        self.ca = trustme.CA()
        self.server = self.ca.issue_cert("localhost", "127.0.0.1", "::1",
                                         common_name=common_name,
                                         key_type=trustme.KeyType.ECDSA)
        self.ca_file = tmp / "ca.pem"
        self.cert_file = tmp / "server.pem"
        self.key_file = tmp / "server.key"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.server.cert_chain_pems[0].write_to_path(str(self.cert_file))
        for pem in self.server.cert_chain_pems[1:]:
            pem.write_to_path(str(self.cert_file), append=True)
        self.server.private_key_pem.write_to_path(str(self.key_file))
        os.chmod(self.key_file, 0o600)

    def client_context(self):  # an ssl.SSLContext trusting the test CA
        import ssl

        return ssl.create_default_context(cafile=str(self.ca_file))


@pytest.fixture(scope="session")
def certs(tmp_path_factory) -> Certs:
    return Certs(tmp_path_factory.mktemp("certs"))


class ThreadServer:
    """A loopback TCP server running ``handler(conn)`` in a thread per connection."""

    def __init__(self, handler: Callable[[socket.socket], None], host: str = "127.0.0.1"):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        self.handler = handler
        self.accepted = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(60)
        try:
            self.handler(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()


@pytest.fixture(scope="session")
def keyupdate_client(tmp_path_factory) -> str:
    """tests/data/keyupdate_client.c (a TLS 1.3 client that asks for KeyUpdates while data
    flows), built against the system OpenSSL."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if not gcc or not Path("/usr/include/openssl/ssl.h").exists():
        pytest.skip("gcc and libssl-dev are needed to build the KeyUpdate client")
    out = tmp_path_factory.mktemp("kuc") / "keyupdate_client"
    source = REPO / "tests" / "data" / "keyupdate_client.c"
    subprocess.run([gcc, "-O2", "-o", str(out), str(source), "-lssl", "-lcrypto"], check=True,
                   capture_output=True, timeout=120)
    return str(out)


def download_of(size: int) -> Callable[[socket.socket], None]:
    """A backend handler that sends ``size`` bytes (a 64 KiB pattern over and over), then EOF,
    and reads until the other side ends: the far end of the KeyUpdate client's download."""
    def download(conn: socket.socket) -> None:
        chunk = bytes(range(256)) * 256
        sent = 0
        while sent < size:
            conn.sendall(chunk)
            sent += len(chunk)
        conn.shutdown(socket.SHUT_WR)
        while conn.recv(65536):
            pass
    return download


@pytest.fixture
def thread_server():
    servers: list[ThreadServer] = []

    def start(handler, host="127.0.0.1") -> ThreadServer:
        s = ThreadServer(handler, host)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()


def greet_echo(conn: socket.socket) -> None:
    """Greeting, then echo until EOF."""
    conn.sendall(b"* OK echo ready\r\n")
    while data := conn.recv(65536):
        conn.sendall(data)


class Tlswrap:
    """``python -m tlswrap CONFIG`` as a subprocess; stopped (SIGTERM, then kill) on close."""

    def __init__(self, tmp: Path, config_text: str, wait_ports: list[int] | None = None,
                 name: str = "tlswrap.conf"):
        self.config = tmp / name
        self.config.write_text(config_text)
        self.log_path = tmp / (name + ".log")
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - the process's life; stop() closes
        self.proc = subprocess.Popen([sys.executable, "-m", "tlswrap", str(self.config)],
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        for port in wait_ports or []:
            wait_for(lambda port=port: port_open(port) or self.proc.poll() is not None, 15,
                     f"tlswrap listening on {port}")
            if self.proc.poll() is not None:
                raise AssertionError(f"tlswrap exited {self.proc.returncode}:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def fd_count(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def idle_fd_count(self) -> int:
        """The descriptors of the serving daemon with no connection: counted once the
        fixture's port probe has been served to its closing line. (The port listens before
        the event loop opens its own descriptors: counted at once, under load, the "idle"
        figure could miss them and a later count seem to leak.)"""
        deadline = time.monotonic() + 15
        while " closed: " not in self.log() and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.fd_count()

    def stop(self, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def tlswrap(tmp_path):
    started: list[Tlswrap] = []

    def start(config_text: str, wait_ports: list[int] | None = None) -> Tlswrap:
        t = Tlswrap(tmp_path, config_text, wait_ports, name=f"tlswrap{len(started)}.conf")
        started.append(t)
        return t

    yield start
    for t in started:
        t.stop()


def service_config(certs: Certs, accept_port: int, connect: list[str] | str, *,
                   name: str = "imaps", extra: str = "", debug: str = "info",
                   global_extra: str = "") -> str:
    connects = [connect] if isinstance(connect, str) else connect
    lines = ["foreground = yes", f"debug = {debug}", global_extra, f"[{name}]",
             f"accept = 127.0.0.1:{accept_port}"]
    lines += [f"connect = {c}" for c in connects]
    lines += [f"cert = {certs.cert_file}", f"key = {certs.key_file}", extra]
    return "\n".join(lines) + "\n"


@pytest.fixture
def demo_mailserver():
    """The examples/ demo IMAP+POP3 server as a subprocess: yields (imap_port, pop3_port)."""
    imap, pop3 = free_port(), free_port()
    proc = subprocess.Popen([sys.executable, str(EXAMPLES / "demo_mailserver.py"),
                             "--imap", f"127.0.0.1:{imap}", "--pop3", f"127.0.0.1:{pop3}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: port_open(imap) and port_open(pop3), 10, "demo mail server")
        yield imap, pop3
    finally:
        stop_process(proc, 5)


def two_workers(certs, thread_server, tlswrap, global_extra: str = ""):
    """A tlswrap with ``workers = 2`` in front of an echo server, both workers up."""
    from test_e2e_inetd import _children

    srv = thread_server(greet_echo)
    port = free_port()
    proc = tlswrap(service_config(certs, port, f"127.0.0.1:{srv.port}",
                                  global_extra=f"{global_extra}\nworkers = 2"), [port])
    wait_for(lambda: len(_children(proc.proc.pid)) == 2, 10, "two workers")
    wait_for(lambda: all(catches(pid, signal.SIGTERM) for pid in _children(proc.proc.pid)),
             15, "both workers handling SIGTERM")
    return proc, port


def catches(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` (SigCgt in /proc/PID/status):
    a worker is ready for a signal once this is true, not merely once it exists."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next((line.split()[1] for line in status.splitlines()
                   if line.startswith("SigCgt:")), "0")
    return bool(int(caught, 16) >> (signum - 1) & 1)


INETD_FAST_MARK = "inetd fast path: no trio, no pyOpenSSL"  # fast.entry's debug line


def make_inetd_entry(tmp_path: Path, kind: str) -> str:
    """An entry script as ``tlswrap inetd-script`` writes it, for this checkout; ``full`` is
    the same script serving an inetd connection the full (trio) way."""
    sys.path.insert(0, str(REPO / "src"))
    try:
        from tlswrap.entryscript import library_paths, script_text
    finally:
        sys.path.pop(0)
    text = script_text(sys.executable, library_paths())
    if kind == "full":
        fast = "sys.exit(main())"
        assert fast in text
        text = text.replace(fast, "sys.exit(main(inetd_fast=False))")
    path = tmp_path / f"tlswrap-{kind}"
    path.write_text(text)
    path.chmod(0o755)
    return str(path)


@pytest.fixture(params=["fast", "full"])
def inetd_entry(request, tmp_path) -> tuple[str, str]:
    """(path, kind) of an entry script: every test using it runs against both paths."""
    return make_inetd_entry(tmp_path, request.param), request.param


def served_by(log_text: str, kind: str) -> bool:
    """True when a debug-level log shows the connection went the ``kind`` path."""
    return (INETD_FAST_MARK in log_text) == (kind == "fast")
