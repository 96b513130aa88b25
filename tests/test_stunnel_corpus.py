"""Real-world stunnel configs, run under stunnel (the oracle) and under tlswrap.

Each file of tests/data/stunnel is rewritten into a scratch world, line for line (so a
``FILE:LINE`` still points at the same line): ports become free loopback ports, certificates
the test's, programs the test's stdio imapd, pid and log files temporary ones. Then:

- stunnel serves it -> tlswrap serves it: a TLS handshake and the backend's greeting through
  every server-mode service, for both;
- stunnel refuses it -> tlswrap refuses it with ``FILE:LINE:`` messages (``tlswrap check``
  lists them; the daemon exits non-zero before serving);
- ``; tlswrap refuses: TEXT``: a deliberate difference, refused with a message holding TEXT;
- ``; needs: FEATURE``: skipped while tlswrap refuses that feature (another issue builds it).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import free_port, port_open, wait_for
from test_e2e_inetd import STDIO_IMAPD

CORPUS = Path(__file__).parent / "data" / "stunnel"
FILES = sorted(CORPUS.glob("*.conf"))
STUNNEL = shutil.which("stunnel4") or shutil.which("stunnel")
OPTION = re.compile(r"^(\s*)([A-Za-z][A-Za-z0-9_]*)(\s*=\s*)(.*?)\s*$")


@dataclass
class World:
    """Where a rewritten config points: the test's files and loopback services."""

    tmp: Path
    certs: object
    backend: int
    tls_backend: int = 0  # a TLS server for client-mode services to connect to
    clients: set[str | None] = field(default_factory=set)  # sections with client = yes
    keyless: bool = False  # no key line anywhere: cert names a PEM with the key in it
    services: dict[str | None, dict[str, str]] = field(default_factory=dict)


def rewrite(text: str, world: World, *, main: bool = True) -> str:
    """``text`` pointed at ``world``, keeping every line where it was."""
    lines = text.split("\n")
    if main:  # the first two lines are comments by the corpus's rule: our global settings
        start = 1 if lines[0].startswith("\ufeff") else 0
        lines[0] = ("\ufeff" if start else "") + "foreground = yes"
        lines[1] = "syslog = no"
    section: str | None = None
    for line in lines:  # which sections are client mode: their connect is a TLS server
        stripped = line.strip().lstrip("\ufeff")
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped[1:-1].strip()
        m = OPTION.match(line.lstrip("\ufeff"))
        if m and m.group(2).lower() == "client" and m.group(4).lower() == "yes":
            world.clients.add(section)
    world.keyless = not any((m := OPTION.match(line.lstrip("\ufeff"))) and
                            m.group(2).lower() == "key" for line in lines)
    section = None
    out = []
    for number, line in enumerate(lines):
        stripped = line.strip().lstrip("\ufeff")
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped[1:-1].strip()
            world.services.setdefault(section, {})
        m = OPTION.match(line.lstrip("\ufeff"))
        if m is None or (main and number < 2):
            out.append(line)
            continue
        lead, key, eq, value = m.groups()
        new = _rewrite_value(key.lower(), value, world, section)
        if new is None:
            out.append(f"; {line}")  # the option cannot apply in the scratch world
            continue
        world.services.setdefault(section, {})[key.lower()] = new
        out.append(f"{lead}{key}{eq}{new}")
    return "\n".join(out)


def _rewrite_value(key: str, value: str, world: World, section: str | None) -> str | None:
    tmp, certs = world.tmp, world.certs
    name = re.sub(r"\W", "_", section or "global")
    if key == "accept":
        return str(tmp / f"{name}.sock") if value.startswith("/") else \
            f"127.0.0.1:{free_port()}"
    if key == "connect":
        return f"127.0.0.1:{world.tls_backend if section in world.clients else world.backend}"
    if key == "exec":
        return STDIO_IMAPD
    if key == "execargs":
        return "imapd"
    if key == "cert" and world.keyless:  # stunnel's default: the key is in the cert file
        return _combined_pem(world)
    if key in ("cert", "key"):
        return str(certs.cert_file if key == "cert" else certs.key_file)
    if key == "cafile":
        return str(certs.ca_file)
    if key == "capath":
        return _hashed_ca_dir(world)
    if key == "pid":
        return str(tmp / f"{name}.pid")
    if key == "output":
        return str(tmp / "out.log")
    if key == "checkhost":
        return "localhost"
    if key == "include":
        target = tmp / "include"
        if not target.exists():
            target.mkdir()
            for part in sorted((CORPUS / value).iterdir()):
                (target / part.name).write_text(rewrite(part.read_text(), world, main=False))
        return str(target)
    if key in ("setuid", "setgid"):
        # the scratch world lives in pytest's private (0700) directory, out of a dropped
        # user's reach; dropping privileges is tested by test_e2e_chroot
        return None
    return value


def _combined_pem(world: World) -> str:
    """The test's certificate and key in one PEM, mode 0600 (stunnel.pem's usual form)."""
    target = world.tmp / "stunnel.pem"
    if not target.exists():
        target.write_bytes(Path(world.certs.cert_file).read_bytes()
                           + Path(world.certs.key_file).read_bytes())
        target.chmod(0o600)
    return str(target)


def _hashed_ca_dir(world: World) -> str:
    """A CApath directory holding the test CA under its subject hash, as c_rehash makes it."""
    target = world.tmp / "capath"
    if not target.exists():
        target.mkdir()
        digest = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in",
                                 str(world.certs.ca_file)], capture_output=True, text=True,
                                timeout=30).stdout.strip()
        shutil.copy(world.certs.ca_file, target / f"{digest}.0")
    return str(target)


def _tls_backend(certs, thread_server):
    """A TLS server greeting each client, for client-mode services to connect to."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certs.cert_file, certs.key_file)

    def handler(conn: socket.socket) -> None:
        with ctx.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(b"* OK corpus tls backend\r\n")
            tls.recv(100)
    return thread_server(handler)


def _greeting(certs, world: World, name: str | None, accept: str) -> bytes:
    """The first line through one service: over TLS, or plain for a client-mode one."""
    if name not in world.clients:
        return _greeting_over_tls(certs, accept)
    with socket.create_connection(("127.0.0.1", int(accept.rsplit(":", 1)[1])),
                                  timeout=10) as raw:
        return raw.recv(100)


def _annotation(text: str, label: str) -> str | None:
    m = re.search(rf"^; {label}: (.+)$", text, re.M)
    return m.group(1).strip() if m else None


def _greeting_over_tls(certs, accept: str) -> bytes:
    ctx = certs.client_context()
    if accept.startswith("/"):
        raw = socket.socket(socket.AF_UNIX)
        raw.settimeout(10)
        raw.connect(accept)
    else:
        raw = socket.create_connection(("127.0.0.1", int(accept.rsplit(":", 1)[1])), timeout=10)
    with raw, ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        return tls.recv(100)


def _inetd_greeting(certs, argv: list[str]) -> bytes:
    """Run a wrapper the inetd way (the connection on its stdin) and read the greeting."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=10)
        conn, _ = listener.accept()
    with client:
        proc = subprocess.Popen(argv, stdin=conn, stdout=conn,  # as inetd hands it over
                                stderr=subprocess.DEVNULL, start_new_session=True)
        conn.close()
        try:
            with certs.client_context().wrap_socket(client, server_hostname="localhost",
                                                    do_handshake_on_connect=True) as tls:
                return tls.recv(100)
        finally:
            _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, 15)
        except ProcessLookupError:
            pass
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(5)


def _accepts(world: World) -> list[tuple[str | None, str]]:
    return [(name, opts["accept"]) for name, opts in world.services.items()
            if name is not None and "accept" in opts]


def _listening(accept: str) -> bool:
    if accept.startswith("/"):
        if not os.path.exists(accept):
            return False
        with socket.socket(socket.AF_UNIX) as s:
            return s.connect_ex(accept) == 0
    return port_open(int(accept.rsplit(":", 1)[1]))


def _serve(argv: list[str], world: World, log: Path) -> tuple[subprocess.Popen, bool]:
    """Start a daemon; (process, True) once every accept listens, (process, False) if it
    exited first."""
    out = open(log, "wb")  # noqa: SIM115 - the child's stdout for its whole life
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    out.close()
    accepts = _accepts(world)
    wait_for(lambda: proc.poll() is not None or all(_listening(a) for _, a in accepts), 20,
             f"{argv[0]} listening or exiting")
    return proc, proc.poll() is None


def test_every_corpus_file_names_its_source_in_two_leading_comments():
    for path in FILES:
        lines = path.read_text().lstrip("\ufeff").split("\n")
        assert lines[0].startswith("; ") and lines[1].startswith(";"), path.name


@pytest.mark.skipif(STUNNEL is None, reason="stunnel4 not installed (the oracle)")
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_tlswrap_does_what_stunnel_does(path, certs, thread_server, tmp_path):
    text = path.read_text()
    needs = _annotation(text, "needs")
    refuses = _annotation(text, "tlswrap refuses")
    backend = thread_server(lambda conn: (conn.sendall(b"* OK corpus backend\r\n"),
                                          conn.recv(100)))
    world = World(tmp_path, certs, backend.port, _tls_backend(certs, thread_server).port)
    conf = tmp_path / path.name
    conf.write_text(rewrite(text, world))
    inetd = not any(name is not None for name in world.services)

    tlswrap = [sys.executable, "-m", "tlswrap"]
    check = subprocess.run([*tlswrap, "check", str(conf)], capture_output=True, text=True,
                           timeout=60)
    assert "Traceback" not in check.stdout + check.stderr, check.stdout + check.stderr
    if needs is not None and check.returncode != 0:
        pytest.skip(f"needs {needs}")

    if inetd:
        try:
            stunnel_serves = _inetd_greeting(certs, [STUNNEL, str(conf)]).startswith(
                b"* OK stdio imapd ready")
        except (OSError, ssl.SSLError):
            stunnel_serves = False
        if not stunnel_serves:
            _assert_refused(check, conf, tmp_path, "stunnel.log")
            return
        assert check.returncode == 0, check.stdout
        assert _inetd_greeting(certs, [*tlswrap, str(conf)]).startswith(
            b"* OK stdio imapd ready")
        return

    proc, stunnel_serves = _serve([STUNNEL, str(conf)], world, tmp_path / "stunnel.log")
    try:
        greetings = [_greeting(certs, world, n, a) for n, a in _accepts(world)] \
            if stunnel_serves and refuses is None else []
    finally:
        _stop(proc)
    for _, accept in _accepts(world):  # the ports are free again for tlswrap
        if accept.startswith("/") and os.path.exists(accept):
            os.unlink(accept)
    if refuses is not None:
        assert check.returncode != 0
        assert refuses in check.stdout, check.stdout
        return
    if not stunnel_serves:
        _assert_refused(check, conf, tmp_path, "stunnel.log")
        run = subprocess.run([*tlswrap, str(conf)], capture_output=True, text=True, timeout=60)
        assert run.returncode != 0 and "Traceback" not in run.stderr, run.stderr
        return
    assert all(g in (b"* OK corpus backend\r\n", b"* OK corpus tls backend\r\n")
               or g.startswith(b"* OK stdio imapd ready") for g in greetings), greetings
    assert check.returncode == 0, check.stdout
    proc, tlswrap_serves = _serve([*tlswrap, str(conf)], world, tmp_path / "tlswrap.log")
    try:
        assert tlswrap_serves, (tmp_path / "tlswrap.log").read_text(errors="replace")
        assert [_greeting(certs, world, n, a) for n, a in _accepts(world)] == greetings
    finally:
        _stop(proc)


def _assert_refused(check: subprocess.CompletedProcess, conf: Path, tmp: Path,
                    oracle_log: str) -> None:
    """stunnel refused the file: tlswrap check must too, with located errors."""
    said = (tmp / oracle_log).read_text(errors="replace") if (tmp / oracle_log).exists() else ""
    assert check.returncode != 0, (
        f"stunnel refuses {conf.name} but tlswrap check finds nothing:\n{check.stdout}\n"
        f"stunnel said:\n{said}")
    assert re.search(r"^\S+:\d+: error: ", check.stdout, re.M), check.stdout
