"""tcp_wrappers through the daemon: refused before any TLS byte, edits apply at once, options."""

from __future__ import annotations

import imaplib
import os
import re
import socket
import ssl
from pathlib import Path

import pytest

from conftest import free_port, service_config, wait_for
from test_e2e_hostile import client_hello

STDIO_IMAPD = str(Path(__file__).parent / "data" / "stdio_imapd.py")


@pytest.fixture
def hosts(tmp_path):
    allow, deny = tmp_path / "hosts.allow", tmp_path / "hosts.deny"
    allow.write_text("")
    deny.write_text("")
    return allow, deny


def wrapped(certs, port, backend_port, hosts, name="imaps", extra=""):
    allow, deny = hosts
    return service_config(certs, port, f"127.0.0.1:{backend_port}", name=name, extra=extra,
                          global_extra=f"hostsAllow = {allow}\nhostsDeny = {deny}")


def login(certs, port) -> bool:
    with imaplib.IMAP4_SSL("localhost", port, ssl_context=certs.client_context(),
                           timeout=10) as m:
        ok = m.login("demo", "x")[0] == "OK"
        m.logout()
    return ok


def refused_before_tls(port: int) -> bool:
    """Send a ClientHello; a refused client gets the connection closed with no byte back."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        try:
            s.sendall(client_hello())
            return s.recv(4096) == b""
        except ConnectionResetError:
            return True


def test_denied_client_is_closed_before_any_tls_byte(certs, demo_mailserver, tlswrap, hosts):
    imap_port, _ = demo_mailserver
    hosts[1].write_text("imaps: 127.0.0.1\n")
    port = free_port()
    proc = tlswrap(wrapped(certs, port, imap_port, hosts), [port])
    assert refused_before_tls(port)
    wait_for(lambda: "refused connect from 127.0.0.1" in proc.log(), 5, "the refusal line")
    line = next(line for line in proc.log().splitlines() if "refused connect" in line)
    assert "[imaps]" in line and f"{hosts[1]} line 1" in line


def test_hosts_deny_edit_applies_to_the_next_connection(certs, demo_mailserver, tlswrap,
                                                         hosts):
    imap_port, _ = demo_mailserver
    port = free_port()
    proc = tlswrap(wrapped(certs, port, imap_port, hosts), [port])
    assert login(certs, port)
    hosts[1].write_text("ALL: ALL\n")  # no signal, no reload
    assert refused_before_tls(port)
    hosts[0].write_text("imaps: 127.0.0.1\n")  # allow wins over deny
    assert login(certs, port)
    hosts[0].write_text("imaps: LOCAL EXCEPT localhost\n")  # an address never matches LOCAL
    assert refused_before_tls(port)
    assert proc.proc.poll() is None


def test_other_services_are_not_affected(certs, demo_mailserver, tlswrap, hosts):
    imap_port, _ = demo_mailserver
    hosts[1].write_text("pop3s: ALL\n")
    port = free_port()
    tlswrap(wrapped(certs, port, imap_port, hosts), [port])
    assert login(certs, port)


def test_libwrap_no_skips_the_rules(certs, demo_mailserver, tlswrap, hosts):
    imap_port, _ = demo_mailserver
    hosts[1].write_text("ALL: ALL\n")
    port = free_port()
    tlswrap(wrapped(certs, port, imap_port, hosts, extra="libwrap = no"), [port])
    assert login(certs, port)


def test_twist_talks_to_the_client_inside_tls(certs, demo_mailserver, tlswrap, hosts):
    imap_port, _ = demo_mailserver
    hosts[1].write_text('imaps: ALL: twist /bin/echo "* BYE %d is closed to %a"\n')
    port = free_port()
    tlswrap(wrapped(certs, port, imap_port, hosts), [port])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with certs.client_context().wrap_socket(raw, server_hostname="localhost") as s:
            data = b""
            while chunk := s.recv(1000):
                data += chunk
    assert data == b"* BYE imaps is closed to 127.0.0.1\n"


def test_setenv_reaches_the_exec_program(certs, tlswrap, hosts):
    allow, deny = hosts
    allow.write_text("imapd: ALL: setenv GREETING_VAR hello_%d\n")
    port = free_port()
    tlswrap(f"foreground = yes\ndebug = info\nhostsAllow = {allow}\nhostsDeny = {deny}\n"
            f"[imapd]\naccept = 127.0.0.1:{port}\nexec = {STDIO_IMAPD}\n"
            f"cert = {certs.cert_file}\nkey = {certs.key_file}\n", [port])
    with imaplib.IMAP4_SSL("localhost", port, ssl_context=certs.client_context(),
                           timeout=10) as m:
        m.xatom("ENV")
        env = dict(line.decode().split("=", 1) for line in m.untagged_responses.pop("ENV", []))
        m.logout()
    assert env["GREETING_VAR"] == "hello_imapd"


def test_spawn_runs_with_expanded_arguments(certs, demo_mailserver, tlswrap, hosts, tmp_path):
    imap_port, _ = demo_mailserver
    out = tmp_path / "spawned"
    hosts[1].write_text(f"imaps: ALL: spawn /bin/echo %d %a %p > {out}\n")
    port = free_port()
    proc = tlswrap(wrapped(certs, port, imap_port, hosts), [port])
    assert refused_before_tls(port)
    wait_for(lambda: out.exists() and out.read_text().endswith("\n"), 10, "spawn to run")
    daemon, addr, pid = out.read_text().split()
    assert (daemon, addr, int(pid)) == ("imaps", "127.0.0.1", proc.proc.pid)


def test_banner_for_refused_client_inside_tls(certs, demo_mailserver, tlswrap, hosts, tmp_path):
    imap_port, _ = demo_mailserver
    banners = tmp_path / "banners"
    banners.mkdir()
    (banners / "imaps").write_text("* BYE access from %a denied\n")
    hosts[1].write_text(f"imaps: ALL: banners {banners}\n")
    port = free_port()
    tlswrap(wrapped(certs, port, imap_port, hosts), [port])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with certs.client_context().wrap_socket(raw, server_hostname="localhost") as s:
            data = b""
            try:
                while chunk := s.recv(1000):
                    data += chunk
            except ssl.SSLError:
                pass
    assert data == b"* BYE access from 127.0.0.1 denied\r\n"


def test_a_fifo_as_the_banner_is_not_waited_on(certs, demo_mailserver, tlswrap, hosts,
                                              tmp_path):
    """tcpd would wait on it forever: each refused client is closed at once without a banner,
    the daemon goes on serving, and the log says why."""
    imap_port, _ = demo_mailserver
    banners = tmp_path / "banners"
    banners.mkdir()
    os.mkfifo(banners / "imaps")
    hosts[1].write_text(f"imaps: ALL: banners {banners}\n")
    port = free_port()
    proc = tlswrap(wrapped(certs, port, imap_port, hosts), [port])
    assert refused_before_tls(port)
    assert refused_before_tls(port)
    wait_for(lambda: proc.log().count("refused by tcp_wrappers") >= 2, 5, "the closing lines")
    log = proc.log()  # the fixture's port probe is refused too
    assert log.count(f"[imaps] banners: {banners / 'imaps'}: not a regular file (a FIFO): "
                     "no banner sent") == log.count("refused by tcp_wrappers"), log


def test_syntax_error_in_hosts_file_stops_the_start(certs, tmp_path, hosts):
    import subprocess
    import sys

    hosts[0].write_text("imaps: ALL: bogus_option\n")
    port = free_port()
    cfg = tmp_path / "c.conf"
    cfg.write_text(wrapped(certs, port, 1, hosts))
    out = subprocess.run([sys.executable, "-m", "tlswrap", str(cfg)], capture_output=True,
                         text=True, timeout=20)
    assert out.returncode == 1
    assert out.stderr.startswith(f"tlswrap: {hosts[0]}:1: ")


def test_ipv4_client_on_a_dual_stack_listener_matches_ipv4_rules(certs, demo_mailserver,
                                                                 tlswrap, hosts):
    """On ``accept = :::PORT`` an IPv4 client arrives as ::ffff:a.b.c.d; rules see a.b.c.d."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    imap_port, _ = demo_mailserver
    hosts[1].write_text("imaps: 127.0.0.1\n")
    port = free_port("::")
    cfg = wrapped(certs, port, imap_port, hosts).replace(f"accept = 127.0.0.1:{port}",
                                                         f"accept = :::{port}")
    proc = tlswrap(cfg, [port])
    assert refused_before_tls(port)
    wait_for(lambda: "refused connect from 127.0.0.1" in proc.log(), 5, "the refusal line")
    assert "::ffff:" not in proc.log()


@pytest.mark.parametrize("status", [1, 0])
def test_aclexec_exit_status_decides_for_a_real_client(certs, demo_mailserver, tlswrap, hosts,
                                                       tmp_path, status):
    """hosts.allow ``aclexec`` + ``ALL: ALL`` in hosts.deny: exit 1 refuses, exit 0 grants."""
    imap_port, _ = demo_mailserver
    ran = tmp_path / "ran"
    hosts[0].write_text(f"imaps: ALL: aclexec /bin/sh -c 'echo %d %a > {ran}; exit {status}'\n")
    hosts[1].write_text("ALL: ALL\n")
    port = free_port()
    proc = tlswrap(wrapped(certs, port, imap_port, hosts), [port])
    if status:
        assert refused_before_tls(port)
        wait_for(lambda: "refused connect from 127.0.0.1" in proc.log(), 5, "the refusal line")
        assert f"{hosts[1]} line 1" in proc.log()
    else:
        assert login(certs, port)
    assert ran.read_text() == "imaps 127.0.0.1\n"


def test_spawn_flood_is_bounded_and_a_real_client_is_served(certs, demo_mailserver, tlswrap,
                                                            hosts, tmp_path):
    """The classic ``spawn (...) &``: a connect flood runs at most the bound at once (the
    backgrounded subshell counts until it ends), the excess is dropped and counted in one log
    line, and a legitimate client in the middle is served."""
    from concurrent.futures import ThreadPoolExecutor

    from tlswrap.access import SPAWN_LIMIT

    imap_port, _ = demo_mailserver
    trace = tmp_path / "trace"
    hosts[0].write_text(f"imaps: ALL: spawn (echo s >> {trace}; sleep 2; echo e >> {trace}) &\n")
    port = free_port()
    proc = tlswrap(wrapped(certs, port, imap_port, hosts), [port])
    flood = 300

    def knock(_):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10):
                pass
        except OSError:
            pass

    with ThreadPoolExecutor(16) as pool:
        first = pool.map(knock, range(flood // 2))
        assert login(certs, port)  # in the middle of the flood
        list(first)
        list(pool.map(knock, range(flood - flood // 2)))
    dropped = re.compile(r"spawn: (\d+) commands dropped in the last \d+s \((\d+) running\)")
    wait_for(lambda: dropped.search(proc.log()), 30, "the dropped-spawns line")
    wait_for(lambda: trace.exists() and trace.read_text().count("s") ==
             trace.read_text().count("e"), 30, "the spawned commands to end")
    running = peak = 0
    for mark in trace.read_text().split():
        running += 1 if mark == "s" else -1
        peak = max(peak, running)
    started = trace.read_text().count("s")
    assert 0 < peak <= SPAWN_LIMIT
    total_dropped = sum(int(m.group(1)) for m in dropped.finditer(proc.log()))
    assert started + total_dropped == flood + 2  # + the fixture's port probe and the login
    assert proc.proc.poll() is None
