"""The per-connection pipeline, in process: steps, outcomes, timeouts on the autojump clock,
and the guard that keeps any one connection's failure away from the server."""

from __future__ import annotations

import logging
import socket
import ssl

import pytest
import trio
import trio.testing

from tlswrap import pipeline
from tlswrap.config import parse_config
from tlswrap.outcome import Outcome
from tlswrap.snapshot import ServiceRuntime, prepare
from tlswrap.tlsstream import TLSStream


@pytest.fixture
def autojump_clock():
    return trio.testing.MockClock(autojump_threshold=0)


def runtime(certs, connect: str, extra: str = "") -> ServiceRuntime:
    text = (f"[imaps]\naccept = 127.0.0.1:993\nconnect = {connect}\ncert = {certs.cert_file}\n"
            f"key = {certs.key_file}\nlibwrap = no\n{extra}")
    return next(iter(prepare(parse_config(text, "test.conf"))))


class Backend:
    """A trio listener on loopback that greets and echoes one line per connection."""

    def __init__(self) -> None:
        self.listener: trio.SocketListener | None = None

    async def start(self, nursery: trio.Nursery) -> int:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.listener = listeners[0]
        nursery.start_soon(trio.serve_listeners, self.serve, listeners)
        return self.listener.socket.getsockname()[1]

    async def serve(self, stream: trio.SocketStream) -> None:
        async with stream:
            await stream.send_all(b"* OK ready\r\n")
            try:
                while data := await stream.receive_some(1000):
                    if data == b"a1 LOGOUT\r\n":
                        await stream.send_all(b"* BYE\r\na1 OK\r\n")
                        return
                    await stream.send_all(data)
            except trio.BrokenResourceError:
                pass


async def tls_client(certs, sock: socket.socket) -> trio.SSLStream:
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
    return trio.SSLStream(stream, certs.client_context(), server_hostname="localhost")


async def guarded_connection(certs) -> None:
    """serve_guarded for one client that completes its handshake and closes."""
    async with trio.open_nursery() as n:
        port = await Backend().start(n)
        rt = runtime(certs, f"127.0.0.1:{port}")
        a, b = socket.socketpair()

        async def client():
            tls = await tls_client(certs, b)
            try:
                await tls.do_handshake()
                await tls.aclose()
            except (trio.BrokenResourceError, ssl.SSLError):
                pass

        n.start_soon(client)
        with trio.fail_after(30):
            await pipeline.serve_guarded(rt, a, None, n)
        n.cancel_scope.cancel()
    b.close()


async def run_one(rt: ServiceRuntime, client_side, limit: float = 3600) -> Outcome:
    """serve_one on one end of a socketpair while ``client_side(sock)`` drives the other;
    the outcome's ``ended`` is on trio's clock."""
    a, b = socket.socketpair()
    outcome = Outcome(rt.name, "test", started=trio.current_time())
    async with trio.open_nursery() as n:
        n.start_soon(client_side, b)
        with trio.fail_after(limit):
            await pipeline.serve_one(rt, a, None, n, outcome)
        outcome.ended = trio.current_time()
        n.cancel_scope.cancel()
    b.close()
    return outcome


async def test_a_full_connection_gives_its_outcome(certs):
    async with trio.open_nursery() as n:
        port = await Backend().start(n)
        rt = runtime(certs, f"127.0.0.1:{port}")

        async def client(sock):
            tls = await tls_client(certs, sock)
            assert await tls.receive_some(100) == b"* OK ready\r\n"
            await tls.send_all(b"a1 LOGOUT\r\n")
            got = b""
            while data := await tls.receive_some(100):  # to the relayed close_notify
                got += data
            assert got == b"* BYE\r\na1 OK\r\n"
            await tls.aclose()

        outcome = await run_one(rt, client, limit=30)
        n.cancel_scope.cancel()
    assert outcome.reason == "backend closed"
    assert outcome.tls.startswith("TLSv1.3 ")
    assert (outcome.to_backend, outcome.to_client) == (11, 26)
    assert not outcome.truncated
    assert "11 bytes to backend, 26 bytes to client" in outcome.log_line()


async def test_handshake_timeout_touches_no_backend(certs, autojump_clock):
    rt = runtime(certs, "127.0.0.1:9", "TIMEOUTbusy = 30\n")

    async def silent(sock):
        await trio.sleep(1000)
        sock.close()

    outcome = await run_one(rt, silent)
    assert outcome.reason == "TLS handshake timed out after 30s"
    assert outcome.ended - outcome.started == pytest.approx(30, abs=1)


async def test_backend_down_is_an_outcome_not_an_error(certs):
    rt = runtime(certs, "127.0.0.1:9")  # discard port: nothing listens

    async def client(sock):
        tls = await tls_client(certs, sock)
        await tls.do_handshake()
        assert await tls.receive_some(100) == b""  # closed with close_notify, no data

    outcome = await run_one(rt, client, limit=30)
    assert outcome.reason.startswith("backend unavailable: 127.0.0.1:9: ")


async def test_sigterm_drain_logs_shut_down(certs, autojump_clock, caplog):
    """A connection cut by the drain deadline ends as 'shut down', even though the
    cancellation arrives inside the relay's nursery as an exception group."""
    caplog.set_level(logging.INFO, logger="tlswrap")
    async with trio.open_nursery() as outer:
        port = await Backend().start(outer)
        rt = runtime(certs, f"127.0.0.1:{port}")
        a, b = socket.socketpair()
        with trio.move_on_after(10):  # the drain deadline
            async with trio.open_nursery() as conns:
                conns.start_soon(pipeline.serve_guarded, rt, a, None, conns)
                tls = await tls_client(certs, b)
                assert await tls.receive_some(100) == b"* OK ready\r\n"
                await trio.sleep(1000)  # an IMAP IDLE that outlives the drain
        outer.cancel_scope.cancel()
    closed = [r.getMessage() for r in caplog.records if " closed: " in r.getMessage()]
    assert len(closed) == 1
    assert closed[0].endswith(", shut down")
    b.close()


@pytest.mark.parametrize("where", ["describe", "log_line", "relay"])
async def test_a_fault_anywhere_in_a_connection_stays_in_that_connection(certs, monkeypatch,
                                                                          caplog, where):
    caplog.set_level(logging.INFO, logger="tlswrap")

    def boom(*args, **kwargs):
        raise AttributeError("injected fault")

    if where == "describe":
        monkeypatch.setattr(TLSStream, "describe", boom)
    elif where == "log_line":
        monkeypatch.setattr(Outcome, "log_line", boom)
    else:
        async def group(*args, **kwargs):
            raise ExceptionGroup("relay", [ValueError("injected fault")])

        monkeypatch.setattr(pipeline.Relay, "run", group)
    await guarded_connection(certs)  # must not raise
    if where != "log_line":
        assert any("internal error" in r.getMessage() for r in caplog.records)


async def test_an_exception_group_of_resets_is_a_routine_ending(certs, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="tlswrap")

    async def group(*args, **kwargs):
        raise ExceptionGroup("relay", [trio.BrokenResourceError("peer reset or vanished")])

    monkeypatch.setattr(pipeline.Relay, "run", group)
    await guarded_connection(certs)
    messages = [r.getMessage() for r in caplog.records]
    assert not any("internal error" in m for m in messages)
    assert any(m.endswith(", peer reset or vanished") for m in messages)


def test_each_log_id_kind_gives_stunnels_kind_of_id():
    import os
    import threading

    assert pipeline.connection_id(None) is None
    first, second = (int(pipeline.connection_id("sequential") or 0) for _ in range(2))
    assert second > first > 0
    unique = {pipeline.connection_id("unique") for _ in range(50)}
    assert len(unique) == 50 and all(len(u or "") == 16 for u in unique)
    assert pipeline.connection_id("process") == str(os.getpid())
    thread_id, _, number = (pipeline.connection_id("thread") or "").partition(".")
    assert thread_id == str(threading.get_native_id()) and int(number) > second
