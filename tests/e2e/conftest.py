"""Fixtures for the real-server suite: the servers (servers.py), tlswrap in front of them in
each mode, and the rule that a missing server fails the suite under CI instead of skipping it
(tests/run installs them there)."""

from __future__ import annotations

import os
import pwd
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import EXAMPLES, REPO, Certs, Tlswrap, free_port, port_open, wait_for

from .servers import PASSWORD, Cyrus, Dovecot, Postfix, adapt, cyrus_imapd, make_scratch

TLSWRAP = str(Path(sys.executable).parent / "tlswrap")

# How tlswrap fronts a plaintext server: implicit TLS from the daemon and from inetd, and
# STARTTLS (the daemon with protocol = imap | pop3 | smtp, from the examples' *-starttls and
# submission files). The tests parametrised over MODES run each client in each of them.
MODES = ["daemon", "inetd", "starttls"]

# A STARTTLS service's name in the examples -> the implicit-TLS one's.
IMPLICIT = {"imap": "imaps", "pop3": "pop3s", "submission": "submissions"}


def need(*programs: str) -> None:
    """Skip when a program is missing, except under CI, where tests/run installs them all and
    a missing one is a failure, not a silent skip."""
    missing = [p for p in programs
               if not (shutil.which(p) or os.path.exists(f"/usr/sbin/{p}"))]
    if os.geteuid() != 0:
        missing.append("root (the servers drop privileges to their own users)")
    if missing:
        why = f"needs {', '.join(missing)} (bash tests/run installs them)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)


# The users the servers' own processes run as (Dovecot's login and internal processes,
# Postfix's daemons, Cyrus): none may outlive the test that started them.
SERVER_USERS = ("dovecot", "dovenull", "postfix", "cyrus")


def server_processes() -> set[int]:
    uids = set()
    for name in SERVER_USERS:
        try:
            uids.add(pwd.getpwnam(name).pw_uid)
        except KeyError:
            pass
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                status = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue
            uid = int(status.split("\nUid:")[1].split()[0])
            if uid in uids and "\nState:\tZ" not in status:
                found.add(int(entry))
    return found


@pytest.fixture(autouse=True)
def leaves_no_server_process():
    """Set up before, and so torn down after, the servers: every process they started is
    gone when the test ends."""
    before = server_processes()
    yield
    try:
        wait_for(lambda: not server_processes() - before, 15, "the servers' processes to end")
    except AssertionError:
        left = sorted(server_processes() - before)
        names = [Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                 for pid in left if Path(f"/proc/{pid}").exists()]
        raise AssertionError(f"left running: {names}") from None


@pytest.fixture(scope="session")
def certs(tmp_path_factory) -> Certs:
    """The test CA and a server certificate with CN=localhost as well as the SANs: fetchmail
    6.4 refuses a server certificate without a common name ("Server name not specified in
    certificate!") before it looks at the SANs."""
    return Certs(tmp_path_factory.mktemp("mailcerts"), common_name="localhost")


@pytest.fixture
def scratch() -> Iterator[Path]:
    root = make_scratch()
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def dovecot(scratch) -> Iterator[Dovecot]:
    need("dovecot")
    server = Dovecot(scratch)
    yield server
    server.stop()


@pytest.fixture
def postfix(scratch) -> Iterator[Postfix]:
    """Postfix delivering alice@example.test into the maildir a ``dovecot`` fixture (same
    scratch root) reads."""
    need("postfix")
    server = Postfix(scratch)
    yield server
    server.stop()


@pytest.fixture
def cyrus(scratch) -> Iterator[Cyrus]:
    need("cyrmaster", "saslpasswd2")
    if cyrus_imapd() is None:
        need("cyrus imapd (tests/run unpacks it)")
    server = Cyrus(scratch, {"alice": PASSWORD})
    yield server
    server.stop()


class Front:
    """tlswrap in front of a server, started from an examples/ file: ``ports`` maps each of
    the example's service names to the loopback port a client connects to."""

    def __init__(self, ports: dict[str, int], log, process: Tlswrap | None,
                 starttls: bool = False):
        self.ports = ports
        self.log = log
        self.process = process  # the daemon, for descriptor counts (None in inetd mode)
        self.starttls = starttls  # the client must send STARTTLS (STLS) first

    def port(self, service: str) -> int:
        """The port of ``service`` ("imap", "pop3" or "submission"), or of its implicit-TLS
        twin ("imaps", ...) when this front is implicit TLS."""
        return self.ports[service if self.starttls else IMPLICIT[service]]


def daemon_config(example: str, backends: dict[int, int], certs,
                  subs: list[tuple[str, str]]) -> tuple[str, dict[str, int]]:
    """examples/EXAMPLE with each ``accept`` on a free loopback port, each ``connect =
    127.0.0.1:N`` on backends[N], the test certificate, in the foreground; setuid and the pid
    file dropped (the tests run it as the user they are); ``subs`` edited in first. A
    section whose backend is not in ``backends`` is left out."""
    out = ["foreground = yes", "debug = info"]
    sections: list[list[str]] = [out]
    ports: dict[str, int] = {}
    seen_connects = set()
    skip: set[int] = set()  # sections whose server this test does not run
    for line in adapt(EXAMPLES / example, subs).splitlines():
        key, _, value = (part.strip() for part in line.partition("="))
        if line.startswith("["):
            sections.append([line])
            continue
        if key in ("setuid", "setgid", "pid", "foreground", "debug"):
            continue
        if key == "accept":
            line = "accept = 127.0.0.1:{port}"
        elif key == "connect":
            port = int(value.rpartition(":")[2])
            seen_connects.add(port)
            if port not in backends:
                skip.add(len(sections) - 1)
                continue
            line = f"connect = 127.0.0.1:{backends[port]}"
        elif key == "cert":
            line = f"cert = {certs.cert_file}\nkey = {certs.key_file}"
        sections[-1].append(line)
    assert seen_connects & set(backends), f"{example} connects to {seen_connects}"
    for i, section in enumerate(sections[1:], 1):
        if i in skip:
            continue
        name = section[0].strip("[] ")
        ports[name] = free_port()
        out += [line.format(port=ports[name]) if line.startswith("accept =") else line
                for line in section]
    return "\n".join(out) + "\n", ports


def inetd_lines(services: list[str], backends: dict[int, int], certs) -> tuple[list[str],
                                                                               dict[str, int]]:
    """The lines of inetd/inetd.conf for ``services``, on free loopback ports, with the test
    certificate and the installed tlswrap."""
    lines, ports = [], {}
    for row in (REPO / "inetd" / "inetd.conf").read_text().splitlines():
        fields = row.split()
        if not fields or fields[0] not in services:
            continue
        service = fields[0]
        ports[service] = free_port()
        fields[0] = f"127.0.0.1:{ports[service]}"
        fields[5] = TLSWRAP
        text = " ".join(fields)
        text = text.replace("-p /etc/tlswrap/mail.pem",
                            f"-p {certs.cert_file} --key {certs.key_file}")
        target = int(text.split("-r 127.0.0.1:")[1].split()[0])
        if target not in backends:  # a server this test does not run
            del ports[service]
            continue
        text = text.replace(f"-r 127.0.0.1:{target}", f"-r 127.0.0.1:{backends[target]}")
        lines.append(text)
    assert ports, f"inetd/inetd.conf has no line for {services} with a backend in {backends}"
    return lines, ports


@pytest.fixture
def front(certs, tmp_path) -> Iterator:
    """``front(mode, example, backends)`` starts tlswrap in MODE from examples/EXAMPLE (daemon,
    and starttls, whose examples set ``protocol``) or the matching inetd/inetd.conf lines
    (inetd), with the example's backend ports mapped to the real server's: backends = {143:
    dovecot_imap_port, ...}."""
    from test_e2e_inetd import INETD, Inetd

    stop = []

    def start(mode: str, example: str, backends: dict[int, int],
              subs: list[tuple[str, str]] | None = None) -> Front:
        if mode in ("daemon", "starttls"):
            text, ports = daemon_config(example, backends, certs, subs or [])
            proc = Tlswrap(tmp_path, text, None, name=f"tlswrap{len(stop)}.conf")
            stop.append(proc.stop)
            for port in ports.values():
                wait_for(lambda port=port: port_open(port) or proc.proc.poll() is not None,
                         15, f"tlswrap listening on {port}")
            assert proc.proc.poll() is None, f"tlswrap exited:\n{proc.log()}"
            return Front(ports, proc.log, proc, starttls="\nprotocol = " in text)
        if mode == "inetd":
            need(INETD)
            sections = [line.strip("[] \n") for line in (EXAMPLES / example).read_text()
                        .splitlines() if line.startswith("[")]
            lines, ports = inetd_lines(sections, backends, certs)
            daemon = Inetd(tmp_path, lines)
            stop.append(daemon.stop)
            for port in ports.values():
                wait_for(lambda port=port: port_open(port) or daemon.proc.poll() is not None,
                         10, "inetd")
            assert daemon.proc.poll() is None, (tmp_path / "inetd.log").read_text()
            return Front(ports, lambda: (tmp_path / "inetd.log").read_text(), None)
        raise AssertionError(f"unknown mode {mode}")

    yield start
    for s in reversed(stop):
        s()
