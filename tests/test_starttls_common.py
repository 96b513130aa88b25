"""The shared pieces of the STARTTLS conversations: the bounded line reader and the driver."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlswrap import starttls
from tlswrap.starttls.common import LineBuffer, LineTooLong


def test_lines_fed_one_byte_at_a_time():
    buf = LineBuffer(16)
    got = []
    for byte in b"a1 NOOP\r\nb\nc STARTTLS\r\n":
        buf.feed(bytes([byte]))
        line = buf.line()
        if line is not None:
            got.append(line)
    assert got == [b"a1 NOOP", b"b", b"c STARTTLS"]
    assert buf.pending == 0 and not buf.eof
    buf.feed(b"")
    assert buf.eof and buf.line() is None


@pytest.mark.parametrize("data", [b"x" * 16, b"x" * 16 + b"\r\n", b"x" * 40])
def test_a_line_longer_than_the_limit(data):
    buf = LineBuffer(16)
    buf.feed(data)
    with pytest.raises(LineTooLong, match="a line longer than 16 bytes"):
        buf.line()


def test_the_longest_line_allowed():
    buf = LineBuffer(16)
    buf.feed(b"x" * 14 + b"\r\n")
    assert buf.line() == b"x" * 14


def test_drop_clear_take_all():
    buf = LineBuffer()
    buf.feed(b"0123456789")
    assert buf.drop(3) == 3 and buf.drop(100) == 7 and buf.pending == 0
    buf.feed(b"abc")
    assert buf.take_all() == b"abc" and buf.clear() == 0


def test_events_in_order_and_the_end_repeats():
    conv = starttls.conversation("pop3")
    assert conv.next_event() is starttls.NEED_BACKEND
    assert conv.next_event() is starttls.NEED_BACKEND  # asked again without data: still waits
    conv.receive_backend(b"+OK hi\r\n")
    assert conv.next_event() == starttls.ToClient(b"+OK hi\r\n")
    assert conv.next_event() is starttls.NEED_CLIENT
    conv.receive_client(b"STLS\r\n")
    assert conv.next_event() == starttls.ToClient(b"+OK Begin TLS negotiation\r\n")
    assert conv.next_event() == starttls.StartTLS(0)
    assert conv.next_event() == starttls.Relay(b"", tls=True)
    assert conv.next_event() == starttls.Relay(b"", tls=True)


def test_backend_gone_before_its_greeting():
    conv = starttls.conversation("smtp")
    assert conv.next_event() is starttls.NEED_BACKEND
    conv.receive_backend(b"220 almost")
    conv.receive_backend(b"")
    assert conv.next_event() == starttls.ToClient(b"421 4.3.0 Service not available\r\n")
    assert conv.next_event() == starttls.Close("the backend closed the connection")


def test_backend_gone_while_the_client_thinks():
    conv = starttls.conversation("imap")
    conv.receive_backend(b"* OK hi\r\n")
    assert isinstance(conv.next_event(), starttls.ToClient)
    assert conv.next_event() is starttls.NEED_CLIENT
    conv.receive_backend(b"")
    assert conv.next_event() == starttls.ToClient(b"* BYE service unavailable\r\n")
    assert conv.next_event() == starttls.Close("the backend closed the connection")


@pytest.mark.parametrize("protocol", sorted(starttls.PROTOCOLS))
def test_every_protocol_names_itself(protocol):
    assert starttls.conversation(protocol).protocol == protocol


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(starttls.PROTOCOLS)), st.booleans(),
       st.lists(st.tuples(st.booleans(), st.binary(max_size=64)), max_size=40))
def test_hostile_bytes_from_either_side_never_raise(protocol, required, chunks):
    """Whatever either peer sends, in whatever order: events only, never an exception."""
    conv = starttls.conversation(protocol, required)
    kinds = (starttls.Need, starttls.ToClient, starttls.ToBackend, starttls.StartTLS,
             starttls.Relay, starttls.Close)
    for from_client, data in [*chunks, (True, b""), (False, b"")]:
        (conv.receive_client if from_client else conv.receive_backend)(data)
        for _ in range(1000):
            event = conv.next_event()
            assert isinstance(event, kinds)
            if isinstance(event, (starttls.Need, starttls.Relay, starttls.Close)):
                break
        else:
            raise AssertionError("no settling")
