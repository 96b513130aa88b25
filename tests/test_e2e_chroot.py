"""The realistic Debian mail config, unchanged: chroot, setuid, pid inside the jail, options,
ciphers, socket options and three services, started as root (issue 11, acceptance 2)."""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import free_port, port_open, stop_process, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chroot and setuid need root")

DEBIAN_MAIL = """\
; /etc/stunnel/mail.conf as a Debian mail host writes it (stunnel4's sample, uncommented)
chroot = {jail}
setuid = nobody
setgid = nogroup
pid = /stunnel4.pid
output = {log}
debug = notice
foreground = yes
options = NO_SSLv2
options = NO_SSLv3
options = -NO_SSLv3
options = SINGLE_ECDH_USE
options = SINGLE_DH_USE
ciphers = ECDHE+AESGCM:ECDHE+CHACHA20
socket = l:TCP_NODELAY=1
socket = r:TCP_NODELAY=1
cert = {cert}
key = {key}
libwrap = no

[pop3s]
accept  = 127.0.0.1:{pop3s}
connect = 127.0.0.1:{pop3}

[imaps]
accept  = 127.0.0.1:{imaps}
connect = 127.0.0.1:{imap}

[ssmtp]
accept  = 127.0.0.1:{ssmtps}
connect = 127.0.0.1:{smtp}
"""


def _greets(name: bytes):
    def handler(conn: socket.socket) -> None:
        conn.sendall(name + b" ready\r\n")
        conn.recv(100)
    return handler


def _first_line(certs, port: int) -> bytes:
    ctx = certs.client_context()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        return tls.recv(100)


def test_debian_mail_config_runs_chrooted_and_dropped(certs, thread_server, tmp_path):
    jail = tmp_path / "var-lib-stunnel4"
    jail.mkdir()
    backends = {name: thread_server(_greets(name.encode())) for name in ("pop3", "imap", "smtp")}
    ports = {"pop3s": free_port(), "imaps": free_port(), "ssmtps": free_port()}
    conf = tmp_path / "mail.conf"
    log = jail / "stunnel.log"  # output, like pid, is a path inside the jail (as in stunnel)
    conf.write_text(DEBIAN_MAIL.format(
        jail=jail, log="/stunnel.log", cert=certs.cert_file, key=certs.key_file,
        **ports, **{name: b.port for name, b in backends.items()}))
    check = subprocess.run([sys.executable, "-m", "tlswrap", "check", str(conf)],
                           capture_output=True, text=True, timeout=60)
    assert "0 errors" in check.stdout, check.stdout
    proc = subprocess.Popen([sys.executable, "-m", "tlswrap", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for port in ports.values():
            wait_for(lambda port=port: port_open(port) or proc.poll() is not None, 20,
                     "listening")
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert _first_line(certs, ports["pop3s"]) == b"pop3 ready\r\n"
        assert _first_line(certs, ports["imaps"]) == b"imap ready\r\n"
        assert _first_line(certs, ports["ssmtps"]) == b"smtp ready\r\n"
        assert os.readlink(f"/proc/{proc.pid}/root") == str(jail)
        status = Path(f"/proc/{proc.pid}/status").read_text()
        nobody = pwd.getpwnam("nobody").pw_uid
        assert f"Uid:\t{nobody}\t{nobody}\t{nobody}\t{nobody}" in status
        assert (jail / "stunnel4.pid").read_text().strip() == str(proc.pid)
        # SIGHUP in a jail reads the config from inside it (stunnel's rule): absent there,
        # the reload fails, says so, and the old configuration goes on serving
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload failed" in log.read_text(), 15, "a reload line")
        assert f"chrooted to {jail}" in log.read_text()
        assert _first_line(certs, ports["imaps"]) == b"imap ready\r\n"
        # SIGUSR1 (logrotate) opens the output file again at its path inside the jail
        log.rename(jail / "stunnel.log.1")
        jail.chmod(0o777)  # nobody may create the new file
        proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: log.exists() and "log file reopened" in log.read_text(), 15,
                 "the log file reopened inside the jail")
    finally:
        stop_process(proc, 20)
        if proc.stderr:
            proc.stderr.close()
