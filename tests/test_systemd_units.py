"""The shipped systemd units: hardened, Type=notify with ExecReload, and accepted by
``systemd-analyze verify`` (and its offline security score) where systemd-analyze exists."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from conftest import REPO

UNITS = REPO / "inetd" / "systemd"
HARDENING = ("NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes",
             "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "ProtectHome=yes",
             "SystemCallFilter=@system-service", "CapabilityBoundingSet=")
needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze is not installed")


def test_the_daemon_unit_is_notify_with_reload_and_hardened():
    text = (UNITS / "tlswrap-daemon.service").read_text()
    for line in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID",
                 "CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_SETUID CAP_SETGID CAP_KILL",
                 *HARDENING):
        assert f"\n{line}" in text, line
    per_connection = (UNITS / "tlswrap@.service").read_text()
    for line in HARDENING:
        assert f"\n{line}" in per_connection, line


def installable(tmp_path):
    """The units, with the tlswrap command pointed at a program that exists here (verify
    checks that ExecStart is executable)."""
    true = shutil.which("true")
    assert true is not None
    for unit in UNITS.iterdir():
        (tmp_path / unit.name).write_text(unit.read_text().replace("/usr/bin/tlswrap", true))
    return sorted(str(p) for p in tmp_path.iterdir())


@needs_analyze
def test_systemd_analyze_verify(tmp_path):
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", *installable(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done
    assert done.stderr == "", done.stderr


@needs_analyze
@pytest.mark.parametrize("unit", ["tlswrap-daemon.service", "tlswrap@.service"])
def test_systemd_analyze_security_rates_the_services_ok(tmp_path, unit):
    installable(tmp_path)
    done = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--threshold=30",
                           str(tmp_path / unit)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
