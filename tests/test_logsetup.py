"""logsetup: log file problems are user errors; syslog that is not there costs one warning."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile

import pytest

from tlswrap import logsetup
from tlswrap.errors import TlswrapError
from tlswrap.logsetup import NOTICE, setup_logging, writable_path_problem

log = logging.getLogger("tlswrap.test")


@pytest.fixture(autouse=True)
def _reset_logging():
    yield
    root = logging.getLogger("tlswrap")
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()


@pytest.fixture
def sockdir():
    """A short directory for unix sockets (their paths are limited to about 100 bytes)."""
    path = tempfile.mkdtemp(prefix="tw-", dir="/tmp")
    yield path
    shutil.rmtree(path)


def _syslog_server(path: str) -> socket.socket:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(5)
    return server


# --- output = FILE ------------------------------------------------------------------------

def test_output_appends_to_the_file(tmp_path):
    path = tmp_path / "tlswrap.log"
    path.write_text("before\n")
    setup_logging(5, stderr=False, output=str(path))
    log.log(NOTICE, "hello")
    lines = path.read_text().splitlines()
    assert lines[0] == "before" and lines[1].endswith(" NOTICE hello")


def test_new_output_file_is_0640(tmp_path):
    path = tmp_path / "new.log"
    old = os.umask(0)
    try:
        setup_logging(5, stderr=False, output=str(path))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640


def test_output_in_a_missing_directory_is_a_tlswrap_error(tmp_path, capfd):
    setup_logging(5, stderr=True)
    path = tmp_path / "nonexistent" / "log"
    with pytest.raises(TlswrapError) as info:
        setup_logging(5, stderr=False, output=str(path))
    assert str(info.value) == f"output = {path}: cannot open log file: No such file or directory"
    log.log(NOTICE, "still logging")  # logging is left as it was
    assert capfd.readouterr().err.endswith(" NOTICE still logging\n")


def test_output_that_is_a_directory(tmp_path):
    with pytest.raises(TlswrapError) as info:
        setup_logging(5, stderr=False, output=str(tmp_path))
    assert str(info.value) == f"output = {tmp_path}: cannot open log file: Is a directory"


# --- writable_path_problem: what `tlswrap check` asks of output and pid --------------------

def test_writable_path_problem(tmp_path):
    (tmp_path / "file").write_text("x")
    assert writable_path_problem(str(tmp_path / "file")) is None
    assert writable_path_problem(str(tmp_path / "new")) is None
    assert not (tmp_path / "new").exists()  # nothing is created
    assert writable_path_problem(str(tmp_path / "no" / "new")) == "No such file or directory"
    assert writable_path_problem(str(tmp_path / "file" / "new")) == "Not a directory"
    assert writable_path_problem(str(tmp_path)) == "Is a directory"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_writable_path_problem_permissions(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "file").write_text("x")
    os.chmod(locked / "file", 0o444)
    os.chmod(locked, 0o555)
    try:
        assert writable_path_problem(str(locked / "new")) == "Permission denied"
        assert writable_path_problem(str(locked / "file")) == "Permission denied"
    finally:
        os.chmod(locked, 0o755)
    os.chmod(locked / "file", 0o644)
    os.chmod(locked, 0o555)
    try:
        assert writable_path_problem(str(locked / "file")) is None
        assert writable_path_problem(str(locked / "file"), directory=True) == "Permission denied"
    finally:
        os.chmod(locked, 0o755)


# --- syslog --------------------------------------------------------------------------------

def test_syslog_unreachable_at_start_warns_once_and_stderr_goes_on(sockdir, capfd):
    address = os.path.join(sockdir, "log")
    setup_logging(5, stderr=True, syslog=True, syslog_address=address)
    for i in range(100):
        log.log(NOTICE, "line %d", i)
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Logging error" not in err
    lines = err.splitlines()
    assert len(lines) == 101
    assert lines[0].endswith(f" WARNING syslog at {address} is unreachable (No such file or "
                             "directory): logging to stderr only; trying again every 10 s")
    assert lines[100].endswith(" NOTICE line 99")


def test_syslog_unreachable_and_nothing_else_says_so_once_on_stderr(sockdir, capfd):
    address = os.path.join(sockdir, "log")
    setup_logging(5, stderr=False, syslog=True, syslog_address=address)
    for i in range(100):
        log.log(NOTICE, "line %d", i)
    assert capfd.readouterr() == ("", f"tlswrap: syslog at {address} is unreachable (No such "
                                      "file or directory): log lines are dropped; trying again "
                                      "every 10 s\n")


def test_syslog_socket_that_refuses(sockdir, capfd):
    address = os.path.join(sockdir, "log")
    _syslog_server(address).close()  # the path stays, nobody listens
    setup_logging(5, stderr=False, syslog=True, syslog_address=address)
    log.log(NOTICE, "lost")
    assert capfd.readouterr().err == (f"tlswrap: syslog at {address} is unreachable "
                                      "(Connection refused): log lines are dropped; trying "
                                      "again every 10 s\n")


def test_syslog_that_goes_away_warns_once_then_recovers(sockdir, tmp_path, capfd, monkeypatch):
    address = os.path.join(sockdir, "log")
    server = _syslog_server(address)
    output = tmp_path / "out.log"
    setup_logging(5, stderr=False, output=str(output), syslog=True, syslog_address=address,
                  facility="mail", ident="imaps")
    log.log(NOTICE, "first")
    assert server.recv(4096).decode() == f"<21>imaps[{os.getpid()}]: first\x00"  # mail.notice
    server.close()
    os.unlink(address)
    for i in range(100):
        log.log(NOTICE, "line %d", i)
    assert capfd.readouterr() == ("", "")
    warnings = [line for line in output.read_text().splitlines() if "WARNING" in line]
    assert len(warnings) == 1
    assert warnings[0].endswith(f" WARNING syslog at {address} is unreachable (No such file "
                                f"or directory): logging to {output} only; trying again every "
                                "10 s")

    monkeypatch.setattr(logsetup, "SYSLOG_RETRY_SECONDS", 0)
    log.log(NOTICE, "one more")  # tries again: still down, dropped, no second warning
    server = _syslog_server(address)
    try:
        log.log(NOTICE, "back")
        assert server.recv(4096).decode() == f"<21>imaps[{os.getpid()}]: back\x00"
        assert server.recv(4096).decode() == (f"<20>imaps[{os.getpid()}]: syslog was "
                                              "unreachable: 101 log line(s) dropped\x00")
    finally:
        server.close()
    assert len([line for line in output.read_text().splitlines() if "WARNING" in line]) == 1
    assert capfd.readouterr().err == ""


def test_a_broken_log_call_still_shows_its_traceback(sockdir, capfd):
    # only syslog's own failures are silenced, not a bug in a log call
    setup_logging(5, stderr=False, syslog=True, syslog_address=os.path.join(sockdir, "log"))
    server = _syslog_server(os.path.join(sockdir, "log"))
    try:
        setup_logging(5, stderr=False, syslog=True, syslog_address=os.path.join(sockdir, "log"))
        log.log(NOTICE, "%d", "not a number")
    finally:
        server.close()
    assert "--- Logging error ---" in capfd.readouterr().err


# --- control characters never reach a log destination raw (issue 17, item 13) ---------------

_HOSTILE = "a\rb\x1b[31mc\nd"
_ESCAPED = "a\\rb\\x1b[31mc\\nd"


def test_control_characters_are_escaped_on_stderr(capfd):
    setup_logging(5, stderr=True)
    log.log(NOTICE, "child said: %s", _HOSTILE)
    err = capfd.readouterr().err
    assert err.count("\n") == 1
    assert err.endswith(f" NOTICE child said: {_ESCAPED}\n")


def test_control_characters_are_escaped_in_the_output_file(tmp_path):
    path = tmp_path / "out.log"
    setup_logging(5, stderr=False, output=str(path))
    log.warning(_HOSTILE)
    (line,) = path.read_text().splitlines()
    assert line.endswith(f" WARNING {_ESCAPED}")


def test_control_characters_are_escaped_for_syslog(sockdir):
    address = os.path.join(sockdir, "log")
    server = _syslog_server(address)
    try:
        setup_logging(5, stderr=False, syslog=True, syslog_address=address, ident="imaps")
        log.log(NOTICE, "%s", _HOSTILE)
        assert server.recv(4096).decode() == f"<29>imaps[{os.getpid()}]: {_ESCAPED}\x00"
    finally:
        server.close()


@pytest.mark.parametrize("raw,shown", [
    ("tab\there", "tab\\there"),
    ("nul\x00 del\x7f", "nul\\x00 del\\x7f"),
    ("c1\x85\x9b", "c1\\x85\\x9b"),
    ("line\u2028sep\u2029", "line\\u2028sep\\u2029"),
    ("bidi\u202eevil\u2066", "bidi\\u202eevil\\u2066"),
    ("lone \udcff surrogate", "lone \\udcff surrogate"),
    ("Grüße, 東京, café, emoji \U0001f600", "Grüße, 東京, café, emoji \U0001f600"),
    ("a \\x1b backslash stays", "a \\x1b backslash stays"),
])
def test_what_is_escaped_and_what_stays_readable(raw, shown):
    assert logsetup.escape_controls(raw) == shown


def test_a_traceback_keeps_its_lines_but_not_control_characters(capfd):
    setup_logging(5, stderr=True)
    try:
        raise ValueError("bad\x1b[2J\rvalue")
    except ValueError:
        log.exception("failed: %s", "x\ny")
    err = capfd.readouterr().err
    assert "failed: x\\ny\nTraceback (most recent call last):\n" in err
    assert "ValueError: bad\\x1b[2J\\rvalue\n" in err
    assert "\x1b" not in err and "\r" not in err


def test_a_service_name_with_a_space_is_one_syslog_tag(sockdir):
    address = os.path.join(sockdir, "log")
    server = _syslog_server(address)
    try:
        setup_logging(5, stderr=False, syslog=True, syslog_address=address,
                      ident="my service:1 %s")
        log.log(NOTICE, "hello")
        assert server.recv(4096).decode() == f"<29>my_service_1__s[{os.getpid()}]: hello\x00"
    finally:
        server.close()
