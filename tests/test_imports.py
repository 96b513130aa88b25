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
                    "request.py", "rules.py"]
STARTTLS = SRC / "starttls"
PURE = ["config.py", "errors.py", "addresses.py", "outcome.py", "proxyproto.py", "sockopts.py",
        "ssloptions.py", "psk.py", "tlsoptions.py", "limits.py", "metrics.py",
        *(f"tcpwrappers/{name}" for name in PURE_TCPWRAPPERS),
        *(f"starttls/{path.name}" for path in sorted(STARTTLS.glob("*.py")))]
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
