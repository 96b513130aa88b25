"""Import hygiene: pure modules do no I/O; the proxy never loads wrapcert (inetd pays imports)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "tlswrap"
TCPWRAPPERS = SRC / "tcpwrappers"
# the rule engine: everything but the file and resolver shell and the CLI
PURE_TCPWRAPPERS = ["cstring.py", "decide.py", "expand.py", "lint.py", "options.py", "patterns.py",
                    "record.py", "request.py", "rules.py"]
STARTTLS = SRC / "starttls"
CONFIG = SRC / "config"
PURE = ["errors.py", "addresses.py", "outcome.py", "proxyproto.py", "sockopts.py",
        "ssloptions.py", "psk.py", "tlsoptions.py", "limits.py", "metrics.py",
        *(f"tcpwrappers/{name}" for name in PURE_TCPWRAPPERS),
        *(f"starttls/{path.name}" for path in sorted(STARTTLS.glob("*.py"))),
        *(f"config/{path.name}" for path in sorted(CONFIG.glob("*.py")))]
IO_MODULES = {"trio", "socket", "OpenSSL", "cryptography", "subprocess", "os", "io"}


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level:  # from . import x, from .x import y
            names |= {a.name.split(".")[0] for a in node.names} | {node.module or ""}
    return names


def pure_tcpwrappers_module_names() -> set[str]:
    return {f"tlswrap.tcpwrappers.{name.removesuffix('.py')}" for name in PURE_TCPWRAPPERS}


@pytest.mark.parametrize("name", PURE)
def test_pure_modules_import_no_io(name):
    assert not imported(SRC / name) & IO_MODULES


@pytest.mark.parametrize("name", PURE_TCPWRAPPERS)
def test_pure_tcpwrappers_modules_open_no_files(name):
    """The rule engine gets text and callbacks; only files.py and the CLI read files."""
    calls = {node.func.id for node in ast.walk(ast.parse((TCPWRAPPERS / name).read_text()))
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert not calls & {"open", "__import__"}


def test_pure_tcpwrappers_modules_import_only_pure_ones():
    """The engine never reaches the file and resolver shell, even through a sibling."""
    for name in PURE_TCPWRAPPERS:
        tree = ast.parse((TCPWRAPPERS / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tlswrap."):
                assert node.module in pure_tcpwrappers_module_names() | {"tlswrap.errors"}, (
                    name, node.module)


def test_every_tcpwrappers_module_is_classified():
    present = {p.name for p in TCPWRAPPERS.glob("*.py")}
    assert present == {*PURE_TCPWRAPPERS, "__init__.py", "files.py", "matchcli.py"}


def test_no_private_tcpwrappers_name_is_imported():
    """Inside the package and from outside it: a helper two modules need is public in one."""
    for path in sorted(SRC.rglob("*.py")):
        inside = path.parent == TCPWRAPPERS
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (inside
                                                     or "tcpwrappers" in (node.module or "")):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, (str(path.relative_to(SRC)), node.module, private)


def test_proxy_path_never_imports_wrapcert():
    code = ("import sys, tlswrap.cli, tlswrap.daemon, tlswrap.pipeline, tlswrap.inetd, "
            "tlswrap.access, tlswrap.execbackend, tlswrap.systemd, tlswrap.workers; "
            "print(sorted(m for m in sys.modules if m.startswith('tlswrap.wrapcert')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "[]"


# What the inetd fast path may import beyond the interpreter's own start (python -IS): its
# modules, cryptography's binding (no x509), C modules. Never trio, pyOpenSSL, logging,
# typing, re, dataclasses, socket, subprocess, enum: each costs milliseconds per connection.
FAST_PATH_ALLOWED = {
    "tlswrap", "tlswrap.cli", "tlswrap.errors", "tlswrap.fast", "tlswrap.fast.entry",
    "tlswrap.fast.spec", "tlswrap.fast.backend", "tlswrap.fast.log", "tlswrap.fast.relay",
    "tlswrap.fast.waits",
    "tlswrap.addresses", "tlswrap.execenv", "tlswrap.logtext", "tlswrap.opensslraw",
    "tlswrap.regularfile", "tlswrap.tlssettings", "tlswrap.outcome",
    "cryptography", "cryptography.__about__", "cryptography.hazmat",
    "cryptography.hazmat.bindings", "cryptography.hazmat.bindings._rust", "_cffi_backend",
    "__future__", "errno", "_socket", "select", "_signal", "stat", "_stat", "time", "os",
    "posixpath", "genericpath", "_collections_abc", "encodings.utf_8_sig", "types",
}
# A service with hosts.allow/hosts.deny rules adds the rule engine (1.4 ms under python -IS)
# and the fast path's shell around it; never the resolver shell (tcpwrappers.files: logging,
# socket, ipaddress) nor threading, which only a rule that needs a host name loads.
FAST_PATH_RULES = {
    "tlswrap.fast.access", "tlswrap.tcpwrappers", "tlswrap.tcpwrappers.cstring",
    "tlswrap.tcpwrappers.decide", "tlswrap.tcpwrappers.expand", "tlswrap.tcpwrappers.options",
    "tlswrap.tcpwrappers.patterns", "tlswrap.tcpwrappers.record", "tlswrap.tcpwrappers.request",
    "tlswrap.tcpwrappers.rules",
}
FAST_PATH_FORBIDDEN = {"trio", "OpenSSL", "cryptography.x509", "logging", "typing", "re",
                       "dataclasses", "socket", "subprocess", "enum", "inspect", "selectors",
                       "ipaddress", "collections", "tlswrap.config", "tlswrap.pipeline",
                       "tlswrap.access", "tlswrap.tcpwrappers.files", "tlswrap.tcpwrappers.lint",
                       "threading", "string"}


def imported_at_start(argv: list[str], **kwargs) -> set[str]:  # type: ignore[no-untyped-def]
    """The modules a ``python -X importtime`` run imported, from its stderr."""
    out = subprocess.run([sys.executable, "-IS", "-X", "importtime", *argv], capture_output=True,
                         text=True, timeout=60, **kwargs)
    return {line.split("|")[2].strip() for line in out.stderr.splitlines()
            if line.startswith("import time:") and "|" in line and "cumulative" not in line}


@pytest.mark.parametrize("rules", [
    pytest.param(None, id="no-rules"),
    pytest.param(("imaps: 127.0.0.1 EXCEPT 127.0.0.2: severity info\n", "ALL: ALL: DENY\n",
                  "127.0.0.1"), id="granted-by-a-rule"),
    pytest.param(("", "imaps: 10.0.0.0/255.0.0.0, ALL EXCEPT 127.0.0.1: severity auth.err\n",
                  "127.0.0.2"), id="refused-by-a-rule"),
])
def test_inetd_fast_path_imports_only_the_allowed_set(certs, thread_server, tmp_path, rules):
    """One real connection through the entry script: what it imported, all of it allowed;
    with rules, a connection decided by address rules adds the engine and nothing else."""
    from conftest import greet_echo, make_inetd_entry, served_by
    from test_e2e_inetd_contract import OneShot, refused_from, tls_from

    srv = thread_server(greet_echo)
    entry = make_inetd_entry(tmp_path, "fast")
    log = tmp_path / "fast.log"
    cfg = tmp_path / "fast.conf"
    allow = deny = tmp_path / "none"
    source = "127.0.0.1"
    if rules is not None:
        allow, deny = tmp_path / "hosts.allow", tmp_path / "hosts.deny"
        allow.write_text(rules[0])
        deny.write_text(rules[1])
        source = rules[2]
    cfg.write_text(f"debug = debug\noutput = {log}\nsyslog = no\n"
                   f"hostsAllow = {allow}\nhostsDeny = {deny}\n"
                   f"[imaps]\ncert = {certs.cert_file}\nkey = {certs.key_file}\n"
                   f"connect = 127.0.0.1:{srv.port}\n")
    s = OneShot([sys.executable, "-IS", "-X", "importtime", entry, str(cfg)], log)
    try:
        if source == "127.0.0.1":
            with tls_from(certs, source, s.port) as c:
                assert c.recv(100) == b"* OK echo ready\r\n"
        else:
            assert refused_from(source, s.port)
        s.wait_done()
    finally:
        s.close()
    assert served_by(log.read_text(), "fast")
    assert ("refused connect from 127.0.0.2" in log.read_text()) == (source == "127.0.0.2")
    stderr = log.with_suffix(".stderr").read_text()
    loaded = {line.split("|")[2].strip() for line in stderr.splitlines()
              if line.startswith("import time:") and "cumulative" not in line}
    floor = imported_at_start(["-c", "pass"])
    extra = loaded - floor
    if source == "127.0.0.1":
        assert "tlswrap.fast.relay" in extra  # it did serve, through the fast path's modules
    assert not extra & FAST_PATH_FORBIDDEN, sorted(extra & FAST_PATH_FORBIDDEN)
    allowed = FAST_PATH_ALLOWED if rules is None else FAST_PATH_ALLOWED | FAST_PATH_RULES
    assert extra <= allowed, sorted(extra - allowed)
    assert (rules is not None) == (extra >= FAST_PATH_RULES)  # the engine decided, or none
