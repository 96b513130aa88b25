"""The quickstart's demo mail server answers FETCH the way IMAP clients read it: the pure
helpers of examples/demo_mailserver.py, item by item."""

from __future__ import annotations

import importlib.util
import re
import signal
import socket
import subprocess
import sys

import pytest

from conftest import EXAMPLES, free_port, port_open, wait_for

spec = importlib.util.spec_from_file_location("demo_mailserver", EXAMPLES / "demo_mailserver.py")
assert spec is not None and spec.loader is not None
demo = importlib.util.module_from_spec(spec)
spec.loader.exec_module(demo)

MESSAGE = demo.MESSAGE
HEADER, TEXT = MESSAGE.split(b"\r\n\r\n", 1)
HEADER += b"\r\n\r\n"


def fetch(items: bytes, flags=frozenset(), uid=False) -> tuple[bytes, set[bytes]]:
    return demo.fetch_response(1, demo.fetch_items(items), set(flags), MESSAGE, uid)


def literal(line: bytes, name: bytes) -> bytes:
    """The literal that follows ``name {N}`` in a FETCH response."""
    m = re.search(re.escape(name) + rb" \{(\d+)\}\r\n", line)
    assert m, line
    return line[m.end():m.end() + int(m.group(1))]


@pytest.mark.parametrize(("spec", "items"), [
    (b"FLAGS", [b"FLAGS"]),
    (b"(UID RFC822.SIZE FLAGS)", [b"UID", b"RFC822.SIZE", b"FLAGS"]),
    (b"(uid body.peek[header.fields (From To)]<0.10>)",
     [b"UID", b"BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.10>"]),
    (b"FAST", [b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE"]),
    (b"(BODY[] ENVELOPE)", [b"BODY[]", b"ENVELOPE"]),
])
def test_fetch_items(spec, items):
    assert demo.fetch_items(spec) == items


def test_body_peek_is_the_whole_message_and_sets_no_flag():
    line, flags = fetch(b"(BODY.PEEK[])")
    assert line.startswith(b"* 1 FETCH (BODY[] {%d}\r\n" % len(MESSAGE))
    assert literal(line, b"BODY[]") == MESSAGE and line.endswith(MESSAGE + b")\r\n")
    assert flags == set()


def test_body_sets_seen_and_says_so():
    line, flags = fetch(b"BODY[]")
    assert literal(line, b"BODY[]") == MESSAGE
    assert flags == {b"\\Seen"} and line.endswith(b" FLAGS (\\Seen))\r\n")


def test_header_text_and_size_are_what_they_name():
    line, _ = fetch(b"(RFC822.SIZE BODY.PEEK[HEADER] BODY.PEEK[TEXT])")
    assert b"RFC822.SIZE %d " % len(MESSAGE) in line
    assert literal(line, b"BODY[HEADER]") == HEADER
    assert literal(line, b"BODY[TEXT]") == TEXT


def test_rfc822_items_fetchmail_uses():
    line, _ = fetch(b"RFC822.HEADER")
    assert literal(line, b"RFC822.HEADER") == HEADER
    line, flags = fetch(b"RFC822")
    assert literal(line, b"RFC822") == MESSAGE and flags == {b"\\Seen"}


def test_header_fields_and_not():
    line, _ = fetch(b"(BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])")
    assert literal(line, b"BODY[HEADER.FIELDS (SUBJECT FROM)]") == (
        b"From: demo@example.org\r\nSubject: Welcome to tlswrap\r\n\r\n")
    line, _ = fetch(b"(BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT FROM DATE MESSAGE-ID)])")
    assert literal(line, b"BODY[HEADER.FIELDS.NOT (SUBJECT FROM DATE MESSAGE-ID)]") == (
        b"To: you@example.org\r\n\r\n")


def test_partial_fetch():
    line, _ = fetch(b"BODY.PEEK[]<6.10>")
    assert literal(line, b"BODY[]<6>") == MESSAGE[6:16]


def test_uid_flags_and_uid_fetch_always_names_the_uid():
    line, _ = fetch(b"(FLAGS)", flags={b"\\Seen"}, uid=True)
    assert line == b"* 1 FETCH (UID 1 FLAGS (\\Seen))\r\n"


def test_envelope_and_bodystructure():
    line, _ = fetch(b"(ENVELOPE BODYSTRUCTURE)")
    assert (b'ENVELOPE ("Wed, 25 Nov 2026 06:00:00 +0000" "Welcome to tlswrap" '
            b'((NIL NIL "demo" "example.org")) ((NIL NIL "demo" "example.org")) '
            b'((NIL NIL "demo" "example.org")) ((NIL NIL "you" "example.org")) NIL NIL NIL '
            b'"<demo-1@example.org>")') in line
    assert b'BODYSTRUCTURE ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" %d 1)' % (
        len(TEXT)) in line


def test_unknown_items_are_refused():
    with pytest.raises(ValueError, match="unsupported FETCH item"):
        fetch(b"(X-GM-MSGID)")


@pytest.mark.parametrize(("spec", "hit"), [
    (b"1", True), (b"1:*", True), (b"*", True), (b"2:*", True), (b"2", False),
    (b"3,1", True), (b"2:4", False),
])
def test_sequence_sets(spec, hit):
    assert demo.in_sequence_set(spec, 1, 1) is hit


def start_demo(imap: str, pop3: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(EXAMPLES / "demo_mailserver.py"),
                             "--imap", imap, "--pop3", pop3],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_ctrl_c_with_clients_connected_stops_cleanly():
    imap, pop3 = free_port(), free_port()
    proc = start_demo(f"127.0.0.1:{imap}", f"127.0.0.1:{pop3}")
    try:
        wait_for(lambda: port_open(imap) and port_open(pop3), 10, "the demo server")
        with socket.create_connection(("127.0.0.1", imap), timeout=10) as a, \
                socket.create_connection(("127.0.0.1", pop3), timeout=10) as b:
            assert a.recv(100).startswith(b"* OK")
            assert b.recv(100).startswith(b"+OK")
            a.sendall(b"t1 SELECT INBOX\r\n")
            assert b"t1 OK" in a.recv(1000)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=10)
            assert a.recv(100) == b"" and b.recv(100) == b""  # both sessions closed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=5)
    assert proc.returncode == 0
    assert err == b""  # no asyncio traceback
    assert b"demo IMAP (plaintext)" in out


def test_a_busy_port_is_one_line_and_exit_1():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = start_demo(f"127.0.0.1:{port}", "")
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 1
    assert err.decode() == (f"demo_mailserver: cannot listen for IMAP on 127.0.0.1:{port}: "
                            "Address already in use\n")
    assert out == b""
