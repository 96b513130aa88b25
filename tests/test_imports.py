"""Import hygiene: pure modules do no I/O; the proxy never loads wrapcert (inetd pays imports)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "tlswrap"
PURE = ["config.py", "errors.py", "hostsaccess.py", "hostsoptions.py", "hostslint.py"]


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("name", PURE)
def test_pure_modules_import_no_io(name):
    assert not imported(SRC / name) & {"trio", "socket", "OpenSSL", "cryptography",
                                       "subprocess", "os", "io"}


def test_proxy_path_never_imports_wrapcert():
    code = ("import sys, tlswrap.cli, tlswrap.daemon, tlswrap.service, tlswrap.access, "
            "tlswrap.execbackend, tlswrap.systemd, tlswrap.workers; "
            "print(sorted(m for m in sys.modules if m.startswith('tlswrap.wrapcert')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "[]"
