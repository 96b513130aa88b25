"""The STARTTLS pipeline step in process: deadlines on the autojump clock, the outcome, a
backend that is down."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from test_pipeline import run_one, runtime
from tlswrap.snapshot import ServiceRuntime


@pytest.fixture
def autojump_clock():
    return trio.testing.MockClock(autojump_threshold=0)


async def smtp_backend(nursery: trio.Nursery) -> int:
    """A trio SMTP backend on loopback: greets, answers EHLO with one extension, QUIT with
    221, anything else with 250."""
    async def serve(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.send_all(b"220 backend\r\n")
            buf = b""
            try:
                while data := await stream.receive_some(1000):
                    buf += data
                    while b"\r\n" in buf:
                        line, buf = buf.split(b"\r\n", 1)
                        if line.startswith(b"EHLO"):
                            await stream.send_all(b"250-backend\r\n250 8BITMIME\r\n")
                        elif line == b"QUIT":
                            await stream.send_all(b"221 bye\r\n")
                            return
                        else:
                            await stream.send_all(b"250 ok\r\n")
            except trio.BrokenResourceError:
                pass

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    nursery.start_soon(trio.serve_listeners, serve, listeners)
    return listeners[0].socket.getsockname()[1]


class Lines:
    """Line reading over a trio stream, for the test's client."""

    def __init__(self, stream: trio.abc.Stream):
        self.stream, self.buf = stream, b""

    async def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            data = await self.stream.receive_some(1000)
            assert data, f"EOF after {self.buf!r}"
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    async def reply(self) -> list[bytes]:
        lines = [await self.line()]
        while lines[-1][3:4] == b"-":
            lines.append(await self.line())
        return lines


def smtp_runtime(certs, port: int) -> ServiceRuntime:
    return runtime(certs, f"127.0.0.1:{port}", "protocol = smtp\nTIMEOUTbusy = 30\n")


async def plain(sock) -> tuple[trio.SocketStream, Lines]:
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
    return stream, Lines(stream)


async def test_a_whole_starttls_session_and_its_outcome(certs):
    async with trio.open_nursery() as n:
        rt = smtp_runtime(certs, await smtp_backend(n))

        async def client(sock):
            stream, r = await plain(sock)
            assert await r.line() == b"220 backend"
            await stream.send_all(b"EHLO c\r\n")
            assert await r.reply() == [b"250-backend", b"250-8BITMIME", b"250 STARTTLS"]
            await stream.send_all(b"STARTTLS\r\n")
            assert await r.line() == b"220 2.0.0 Ready to start TLS"
            tls = trio.SSLStream(stream, certs.client_context(), server_hostname="localhost")
            t = Lines(tls)
            await tls.send_all(b"EHLO c\r\n")
            assert await t.reply() == [b"250-backend", b"250 8BITMIME"]
            await tls.send_all(b"QUIT\r\n")
            assert await t.line() == b"221 bye"
            assert await tls.receive_some(100) == b""  # the relayed close_notify
            await tls.aclose()

        outcome = await run_one(rt, client, limit=30)
        n.cancel_scope.cancel()
    assert outcome.starttls == "smtp" and outcome.tls.startswith("TLSv1.3 ")
    assert outcome.reason == "backend closed"
    # to the backend: EHLO before TLS, EHLO and QUIT inside it; to the client: the greeting,
    # the EHLO reply, the STARTTLS reply, then inside TLS the EHLO reply and 221
    assert (outcome.to_backend, outcome.to_client) == (8 + 8 + 6, 13 + 41 + 30 + 27 + 9)
    assert "(smtp STARTTLS)" in outcome.log_line()


async def test_no_starttls_within_timeout_busy(certs, autojump_clock):
    async with trio.open_nursery() as n:
        rt = smtp_runtime(certs, await smtp_backend(n))

        async def client(sock):
            stream, r = await plain(sock)
            await r.line()
            await trio.sleep(20)
            await stream.send_all(b"NOOP\r\n")  # a command does not extend the deadline
            assert await r.line() == b"250 ok"
            await trio.sleep(1000)

        outcome = await run_one(rt, client)
        n.cancel_scope.cancel()
    assert outcome.reason == "no STARTTLS within 30s"
    assert 29 < outcome.ended - outcome.started < 31


async def test_the_handshake_has_its_own_deadline(certs, autojump_clock):
    async with trio.open_nursery() as n:
        rt = smtp_runtime(certs, await smtp_backend(n))

        async def client(sock):
            stream, r = await plain(sock)
            await r.line()
            await trio.sleep(20)
            await stream.send_all(b"EHLO c\r\n")
            await r.reply()
            await stream.send_all(b"STARTTLS\r\n")
            await r.line()
            await trio.sleep(1000)  # no ClientHello

        outcome = await run_one(rt, client)
        n.cancel_scope.cancel()
    assert outcome.reason == "TLS handshake timed out after 30s"
    assert 49 < outcome.ended - outcome.started < 51


async def test_no_ehlo_after_starttls(certs, autojump_clock):
    async with trio.open_nursery() as n:
        rt = smtp_runtime(certs, await smtp_backend(n))

        async def client(sock):
            stream, r = await plain(sock)
            await r.line()
            await stream.send_all(b"EHLO c\r\nSTARTTLS\r\n")
            await r.reply()
            await r.line()
            tls = trio.SSLStream(stream, certs.client_context(), server_hostname="localhost")
            await tls.do_handshake()
            await trio.sleep(1000)

        outcome = await run_one(rt, client)
        n.cancel_scope.cancel()
    assert outcome.reason == "no EHLO after STARTTLS within 30s"
    assert outcome.starttls == "smtp"


async def test_backend_down_gets_the_protocol_s_reply(certs):
    rt = runtime(certs, "127.0.0.1:9", "protocol = pop3\n")  # discard port: nothing listens

    async def client(sock):
        stream, r = await plain(sock)
        assert await r.line() == b"-ERR service unavailable"
        assert await stream.receive_some(100) == b""

    outcome = await run_one(rt, client, limit=30)
    assert outcome.reason.startswith("backend unavailable: 127.0.0.1:9: ")


def _auth_service(extra: str = ""):  # type: ignore[no-untyped-def]
    from tlswrap.config import parse_config

    return parse_config("[relay]\nclient = yes\nprotocol = smtp\naccept = 2525\n"
                        "connect = 127.0.0.1:587\nprotocolUsername = me\n"
                        f"protocolPassword = pw\n{extra}", "t.conf").services[0]


async def _auth_over_memory(svc, server_replies: list[bytes]):  # type: ignore[no-untyped-def]
    """authenticate_with_server over memory streams: the server side answers each line it
    gets with the next reply (and then says nothing); (what the server got, the local
    client's end, the error or None, the outcome)."""
    from tlswrap.outcome import Outcome
    from tlswrap.preamble import authenticate_with_server

    ours, theirs = trio.testing.memory_stream_pair()
    local, client_end = trio.testing.memory_stream_pair()
    got, error = bytearray(), None
    outcome = Outcome("relay", "127.0.0.1:1")

    async def server() -> None:
        replies = list(server_replies)
        while True:
            data = await theirs.receive_some(1000)
            if not data:
                return
            got.extend(data)
            if data.endswith(b"\r\n") and replies:
                await theirs.send_all(replies.pop(0))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        try:
            await authenticate_with_server(svc, ours, local, outcome)  # type: ignore[arg-type]
        except OSError as exc:
            error = str(exc)
        nursery.cancel_scope.cancel()
    return bytes(got), client_end, error, outcome


async def test_auth_without_an_answer_ends_after_timeout_busy(autojump_clock):
    """A server that goes silent after TLS: TIMEOUTbusy ends it, the local client gets its
    421, and the reason says so."""
    svc = _auth_service("TIMEOUTbusy = 30\n")
    start = trio.current_time()
    got, client_end, error, _ = await _auth_over_memory(svc, [])
    assert trio.current_time() - start == pytest.approx(30)
    assert got == b"EHLO localhost\r\n"
    assert error == "SMTP AUTH with the server: no answer within 30s"
    assert await client_end.receive_some(1000) == (
        b"421 4.7.0 Authentication with the remote server failed, closing\r\n")


async def test_auth_success_marks_the_outcome():
    svc = _auth_service()
    got, _, error, outcome = await _auth_over_memory(
        svc, [b"250 AUTH PLAIN\r\n", b"235 ok\r\n"])
    assert error is None and outcome.auth == "PLAIN"
    assert got == b"EHLO localhost\r\nAUTH PLAIN AG1lAHB3\r\n"
    outcome.starttls = "smtp"
    assert "(smtp STARTTLS, AUTH PLAIN)" in outcome.log_line()
