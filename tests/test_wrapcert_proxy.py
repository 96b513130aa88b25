"""A certificate from ``wrapcert new`` serves in tlswrap: ``openssl s_client`` verifies it with
the certificate itself as the trust anchor and the host name checked."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

from tlswrap.wrapcert.cli import main

OPENSSL = shutil.which("openssl")
GREETING = b"* OK plaintext backend ready\r\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Backend:
    """A plaintext server: greets, echoes one line, closes."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.settimeout(10)
                try:
                    conn.sendall(GREETING)
                    line = b""
                    while not line.endswith(b"\n"):
                        chunk = conn.recv(1024)
                        if not chunk:
                            break
                        line += chunk
                    conn.sendall(b"echo: " + line)
                except OSError:
                    pass

    def close(self) -> None:
        self.stopping = True
        self.thread.join(5)
        self.sock.close()


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"tlswrap exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError("tlswrap did not start listening")


@pytest.mark.skipif(OPENSSL is None, reason="needs the openssl command")
@pytest.mark.parametrize("keytype", ["rsa:2048", "ec:P-256"])
def test_wrapcert_certificate_verifies_through_the_proxy(tmp_path, capsys, keytype):
    pytest.importorskip("tlswrap.daemon")
    cert = tmp_path / "stunnel.pem"
    assert main(["new", "-subj", "/O=Example/CN=mail.example.org", "-newkey", keytype,
                 "-out", str(cert), "-keyout", str(cert)]) == 0  # fmt: skip
    capsys.readouterr()
    backend = Backend()
    port = _free_port()
    config = tmp_path / "tlswrap.conf"
    config.write_text(
        "foreground = yes\n"
        "[svc]\n"
        f"accept = 127.0.0.1:{port}\n"
        f"connect = 127.0.0.1:{backend.port}\n"
        f"cert = {cert}\n"
    )
    with open(tmp_path / "tlswrap.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "tlswrap", str(config)],
                                stdout=log, stderr=log, stdin=subprocess.DEVNULL)  # fmt: skip
        try:
            _wait_port(port, proc)
            run = subprocess.run(
                [OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}",
                 "-servername", "mail.example.org", "-verify_hostname", "mail.example.org",
                 "-CAfile", str(cert), "-verify_return_error", "-ign_eof"],
                input=b"hello\n", capture_output=True, timeout=30,
            )  # fmt: skip
            assert run.returncode == 0, run.stderr.decode(errors="replace")
            assert b"Verify return code: 0 (ok)" in run.stdout
            assert GREETING in run.stdout and b"echo: hello\n" in run.stdout
            # The wrong name fails, so the check above is real.
            wrong = subprocess.run(
                [OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}",
                 "-verify_hostname", "other.example.org", "-CAfile", str(cert),
                 "-verify_return_error"],
                input=b"", capture_output=True, timeout=30,
            )  # fmt: skip
            assert wrong.returncode != 0
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            backend.close()
