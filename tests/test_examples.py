"""Every shipped example config parses; the inetd/ files carry what they promise."""

from __future__ import annotations

from pathlib import Path

import pytest

from tlswrap.cli import one_service_config
from tlswrap.config import parse_config

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("path", sorted((REPO / "examples").glob("*.conf")), ids=lambda p: p.name)
def test_example_configs_parse(path):
    config = parse_config(path.read_text(), str(path))
    assert config.services


def test_qmail_example_is_an_exec_service():
    svc = parse_config((REPO / "examples" / "qmail-pop3d.conf").read_text()).services[0]
    assert svc.exec == "/var/qmail/bin/qmail-popup"
    assert svc.exec_args[0] == "qmail-popup" and svc.accept.port == 995


def test_inetd_conf_lines_are_valid_command_lines():
    text = (REPO / "inetd" / "inetd.conf").read_text()
    lines = [row.lstrip("#") for row in text.splitlines()
             if "/usr/bin/tlswrap" in row and not row.startswith("# ")]
    assert len(lines) >= 6
    for line in lines:
        fields = line.split()
        assert fields[1:5] == ["stream", "tcp", "nowait", "root"]
        config = one_service_config(fields[7:])  # after "/usr/bin/tlswrap tlswrap"
        assert config.services[0].accept is None  # inetd mode


def test_xinetd_and_systemd_files_present():
    for name in ("imaps", "pop3s", "submissions"):
        text = (REPO / "inetd" / "xinetd.d" / name).read_text()
        assert "server          = /usr/bin/tlswrap" in text and "wait            = no" in text
    socket_unit = (REPO / "inetd" / "systemd" / "tlswrap.socket").read_text()
    assert "Accept=yes" in socket_unit
    assert "Type=notify" in (REPO / "inetd" / "systemd" / "tlswrap-daemon.service").read_text()
