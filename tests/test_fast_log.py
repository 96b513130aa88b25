"""fast.log writes what logsetup's handlers write, byte for byte: file lines and syslog
datagrams; logtext escapes as the regular expression it replaced did."""

from __future__ import annotations

import logging
import re
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlswrap import logtext
from tlswrap.config import SYSLOG_FACILITIES
from tlswrap.fast.log import FACILITIES, Log
from tlswrap.logsetup import NOTICE, setup_logging

MESSAGES = ["[imaps] 127.0.0.1:5 accepted connection", "bad\x1b[2J\rvalue \u202e \udcff ü"]
LEVELS = [(logging.DEBUG, 7), (logging.INFO, 6), (NOTICE, 5), (logging.WARNING, 4),
          (logging.ERROR, 3), (logging.CRITICAL, 2)]


def test_facilities_are_the_stdlibs():
    names = logging.handlers.SysLogHandler.facility_names
    assert {name: names[name] for name in SYSLOG_FACILITIES} == FACILITIES


@pytest.fixture
def syslog_sock(tmp_path):
    path = str(tmp_path / "log")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    yield path, sock
    sock.close()


def drop_stamp(text: str) -> str:
    return re.sub(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", "", text, flags=re.M)


@pytest.mark.parametrize("ident", ["imaps", "my service"])
def test_lines_and_datagrams_are_logsetups(tmp_path, syslog_sock, ident):
    path, sock = syslog_sock
    full_file, fast_file = tmp_path / "full.log", tmp_path / "fast.log"
    setup_logging(7, stderr=False, output=str(full_file), syslog=True, facility="mail",
                  ident=ident, syslog_address=path)
    logger = logging.getLogger("tlswrap.test")
    fast = Log(7, stderr=False, output=str(fast_file), syslog=True, facility="mail",
               ident=ident, syslog_address=path)
    try:
        for message in MESSAGES:
            for level, _ in LEVELS:
                logger.log(level, "%s", message)
                full = sock.recv(4096)
                fast(level, message)
                assert sock.recv(4096) == full
    finally:
        fast.close()
        setup_logging(5, stderr=False)
    assert drop_stamp(fast_file.read_text()) == drop_stamp(full_file.read_text())
    assert fast_file.read_text().count("\n") == len(MESSAGES) * len(LEVELS)


def test_a_traceback_is_written_as_logging_writes_exc_info(tmp_path):
    full_file, fast_file = tmp_path / "full.log", tmp_path / "fast.log"
    setup_logging(5, stderr=False, output=str(full_file))
    fast = Log(5, stderr=False, output=str(fast_file), syslog=False, facility="daemon",
               ident="x")
    try:
        raise ValueError("bad\x1b[2J\rvalue")
    except ValueError:
        import traceback

        logging.getLogger("tlswrap.test").error("[x] peer internal error", exc_info=True)
        fast(logging.ERROR, "[x] peer internal error", traceback.format_exc())
    finally:
        fast.close()
        setup_logging(5, stderr=False)
    assert drop_stamp(fast_file.read_text()) == drop_stamp(full_file.read_text())
    assert "\\x1b[2J\\rvalue" in fast_file.read_text()


def test_the_level_filters_as_stunnels(tmp_path):
    out = tmp_path / "fast.log"
    fast = Log(5, stderr=False, output=str(out), syslog=False, facility="daemon", ident="x")
    for level, _ in LEVELS:
        fast(level, "m")
    fast.close()
    assert [line.split()[2] for line in out.read_text().splitlines()] == [
        "NOTICE", "WARNING", "ERROR", "CRITICAL"]


def test_unreachable_syslog_is_said_once_on_the_file(tmp_path):
    out = tmp_path / "fast.log"
    fast = Log(5, stderr=False, output=str(out), syslog=True, facility="daemon", ident="x",
               syslog_address=str(tmp_path / "nothing"))
    fast(NOTICE, "one")
    fast(NOTICE, "two")
    fast.close()
    lines = drop_stamp(out.read_text()).splitlines()
    assert lines == [
        f"WARNING syslog at {tmp_path / 'nothing'} is unreachable (No such file or directory): "
        f"logging to {out} only; trying again every 10 s", "NOTICE one", "NOTICE two"]


_OLD = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _old_escape(text: str) -> str:
    short = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}

    def one(m: re.Match[str]) -> str:
        c = m.group()
        return short.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")
    return _OLD.sub(one, text)


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_escaping_is_the_regular_expressions(text):
    assert logtext.escape_controls(text) == _old_escape(text)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_syslog_tags_are_the_regular_expressions(text):
    assert logtext.syslog_tag(text) == re.sub(r"[^\w.@+-]", "_", text)
