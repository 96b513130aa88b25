"""The relay on real socketpairs, timeouts on trio's autojump clock (no real waiting)."""

from __future__ import annotations

import socket
import tracemalloc

import pytest
import trio
import trio.testing

from tlswrap.relay import PLAIN_READ_MAX, Relay
from tlswrap.sockstream import SocketStream


@pytest.fixture
def autojump_clock():
    return trio.testing.MockClock(autojump_threshold=0)


class Pair:
    """A relay between two socketpairs; the test holds the far ends as trio sockets."""

    def __init__(self, idle: float = 300.0, close: float = 60.0, busy: float | None = None):
        c_near, c_far = socket.socketpair()
        b_near, b_far = socket.socketpair()
        self.client = trio.socket.from_stdlib_socket(c_far)
        self.backend = trio.socket.from_stdlib_socket(b_far)
        self.relay = Relay(SocketStream(c_near), SocketStream(b_near), idle, close, busy)

    def close(self) -> None:
        self.client.close()
        self.backend.close()
        self.relay._up.src.close()  # type: ignore[attr-defined]
        self.relay._down.src.close()  # type: ignore[attr-defined]


async def recv_all(sock: trio.socket.SocketType) -> bytes:
    out = b""
    while chunk := await sock.recv(65536):
        out += chunk
    return out


async def test_idle_timeout_ends_a_silent_connection(autojump_clock):
    p = Pair(idle=300)
    start = trio.current_time()
    await p.relay.run()
    assert p.relay.reason == "idle timeout"
    assert trio.current_time() - start == pytest.approx(300, abs=1)
    p.close()


async def test_traffic_keeps_an_idle_deadline_away(autojump_clock):
    p = Pair(idle=300)
    start = trio.current_time()

    async def chatter():
        for _ in range(3):
            await trio.sleep(200)
            await p.client.send(b"NOOP\r\n")
            assert await p.backend.recv(100) == b"NOOP\r\n"

    async with trio.open_nursery() as n:
        n.start_soon(chatter)
        await p.relay.run()
    assert p.relay.reason == "idle timeout"
    assert trio.current_time() - start == pytest.approx(600 + 300, abs=2)
    assert p.relay.to_backend == 18
    p.close()


async def test_backend_close_gives_the_client_timeout_close_then_ends(autojump_clock):
    p = Pair(idle=3600, close=60)
    await p.backend.send(b"* BYE\r\n")
    p.backend.shutdown(socket.SHUT_WR)
    start = trio.current_time()
    await p.relay.run()
    assert p.relay.reason == "backend closed"
    assert trio.current_time() - start == pytest.approx(60, abs=1)
    assert await recv_all(p.client) == b"* BYE\r\n"  # the data, then EOF
    p.close()


async def test_half_close_from_the_client_still_gets_the_reply(autojump_clock):
    p = Pair()
    await p.client.send(b"a1 LOGOUT\r\n")
    p.client.shutdown(socket.SHUT_WR)

    async def backend():
        assert await recv_all(p.backend) == b"a1 LOGOUT\r\n"  # EOF passed on as FIN
        await p.backend.send(b"* BYE\r\na1 OK\r\n")
        p.backend.shutdown(socket.SHUT_WR)

    start = trio.current_time()
    async with trio.open_nursery() as n:
        n.start_soon(backend)
        await p.relay.run()
    assert p.relay.reason == "closed"
    assert trio.current_time() - start < 60  # done without waiting for TIMEOUTclose
    assert await recv_all(p.client) == b"* BYE\r\na1 OK\r\n"
    assert (p.relay.to_backend, p.relay.to_client) == (11, 14)
    p.close()


async def test_a_reader_that_stops_stops_the_writer_with_bounded_memory(autojump_clock):
    """Backpressure: the client never reads; the relay must stop reading the backend, so the
    backend's writes block and nothing piles up in between."""
    p = Pair(idle=3600)
    p.backend.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)  # big reads
    chunk = b"x" * 65536
    written = 0
    samples = []

    async def flood():
        nonlocal written
        while True:
            written += await p.backend.send(chunk)

    held = []

    async def sample():
        for _ in range(3):
            await trio.sleep(100)
            samples.append((written, p.relay.to_client))
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(True, "*tlswrap*")])
        held.append(sum(stat.size for stat in snapshot.statistics("filename")))

    tracemalloc.start()
    try:
        async with trio.open_nursery() as n:
            n.start_soon(flood)
            n.start_soon(p.relay.run)
            await sample()
            n.cancel_scope.cancel()
    finally:
        tracemalloc.stop()
    (w1, c1), (w2, c2), (w3, c3) = samples
    assert w1 == w2 == w3 and c1 == c2 == c3, "the flood did not stall"
    in_flight = w3 - c3  # read by the relay from the backend but not delivered
    assert 0 <= in_flight <= PLAIN_READ_MAX + 16 * 1024 * 1024  # a batch plus socket buffers
    assert c3 < 32 * 1024 * 1024
    # what tlswrap's own code holds while stalled: one batch (64 KiB), not a growing buffer
    assert held[0] <= 80 * 1024, f"{held[0]} bytes held by the stalled relay"
    p.close()


async def test_a_vanished_client_ends_the_whole_relay_naming_the_side(autojump_clock):
    p = Pair(idle=3600)
    p.client.close()  # the client is gone; the backend still has things to say
    start = trio.current_time()

    async def talk():
        with trio.move_on_after(10):
            while True:
                await p.backend.send(b"* 1 EXISTS\r\n")
                await trio.sleep(1)

    async with trio.open_nursery() as n:
        n.start_soon(talk)
        await p.relay.run()
        n.cancel_scope.cancel()
    assert p.relay.reason.startswith("client: peer reset or vanished"), p.relay.reason
    assert p.relay.broken == "client"
    assert trio.current_time() - start < 10
    p.close()


@pytest.mark.parametrize("stalled", ["client", "backend"])
async def test_a_side_that_takes_nothing_for_timeout_busy_ends_the_relay(autojump_clock,
                                                                        stalled):
    """TIMEOUTbusy: the side that stops reading while data waits is the broken one, after
    exactly that long without progress; while it reads, however slowly, nothing ends."""
    p = Pair(idle=3600, busy=10)
    writer = p.backend if stalled == "client" else p.client
    reader = p.client if stalled == "client" else p.backend
    chunk = b"x" * 65536
    start = trio.current_time()
    slow_until = start + 100

    async def flood():
        while True:
            await writer.send(chunk)

    async def slow_reader():  # empties its buffer every 5 s: progress, so no stall
        while trio.current_time() < slow_until:
            await trio.sleep(5)
            await reader.recv(16 << 20)

    async with trio.open_nursery() as n:
        n.start_soon(flood)
        n.start_soon(slow_reader)
        await p.relay.run()
        n.cancel_scope.cancel()
    assert p.relay.reason == (f"{stalled}: stalled: read nothing for 10s (TIMEOUTbusy) while "
                              "data waited")
    assert p.relay.broken == stalled
    assert trio.current_time() - start == pytest.approx(100 + 10, abs=6)
    p.close()
