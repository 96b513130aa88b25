#!/usr/bin/env python3
"""Run the quickstart: the demo plaintext mail server plus tlswrap in front of it.

Makes the example certificate under certs/ at first run (with wrapcert, printing its
fingerprint), starts examples/demo_mailserver.py, then runs tlswrap on examples/quickstart.conf
in the foreground. Ctrl-C stops both. Run it from the repository's top folder.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = BIN / name
    return str(path) if path.exists() else name


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def listening(demo: subprocess.Popen[bytes], ports: list[int], timeout: float = 10) -> bool:
    """Whether the demo server is up on every port before it exits or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and demo.poll() is None:
        if all(port_open(p) for p in ports):
            return True
        time.sleep(0.05)
    return False


def main() -> int:
    os.chdir(ROOT)
    cert = Path("certs/quickstart.pem")
    if not cert.exists():
        cert.parent.mkdir(exist_ok=True)
        subprocess.run([tool("wrapcert"), "new", "--key-type", "ec:P-256", "--days", "365",
                        "--subject", "/O=tlswrap quickstart/CN=localhost",
                        "--san", "DNS:localhost,IP:127.0.0.1,IP:::1", "--out", str(cert)],
                       check=True)
    else:
        print(f"using existing {cert}:", flush=True)
        subprocess.run([tool("wrapcert"), "show", "--sha256", str(cert)], check=False)
    demo = subprocess.Popen([sys.executable, "examples/demo_mailserver.py",
                             "--imap", "127.0.0.1:10143", "--pop3", "127.0.0.1:10110"])
    if not listening(demo, [10143, 10110]):
        return demo.wait(5) or 1  # it said why (a busy port) in one line
    print("\nTry:  curl -k -u demo:demo imaps://127.0.0.1:10993/\n"
          "      openssl s_client -connect 127.0.0.1:10995 -quiet\n"
          "Ctrl-C stops.\n", flush=True)
    proxy = subprocess.Popen([tool("tlswrap"), "examples/quickstart.conf"])
    try:
        return proxy.wait()
    except KeyboardInterrupt:
        proxy.send_signal(signal.SIGINT)
        return proxy.wait(15)
    finally:
        demo.terminate()
        demo.wait(5)


if __name__ == "__main__":
    sys.exit(main())
