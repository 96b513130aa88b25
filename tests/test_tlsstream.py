"""The streams under trio's own conformance suite, and the ragged-EOF policy, on real
socketpairs with the production server context (``tlscontext.server_context``)."""

from __future__ import annotations

import socket
import subprocess

import pytest
import trio
from OpenSSL import SSL
from trio.testing import check_half_closeable_stream

from tlswrap.config import parse_config
from tlswrap.relay import Relay
from tlswrap.sockstream import SocketStream
from tlswrap.tlscontext import server_context
from tlswrap.tlsstream import TLSStream


async def socket_pair() -> tuple[SocketStream, SocketStream]:
    a, b = socket.socketpair()
    return SocketStream(a), SocketStream(b)


async def clogged_socket_pair() -> tuple[SocketStream, SocketStream]:
    """A pair where neither stream can send until the other one reads (the suite runs the
    pair both ways round)."""
    s, r = await socket_pair()
    for sender in (s, r):
        try:
            while True:
                sender.socket.send(b"x" * 65536)
        except BlockingIOError:
            pass
    return s, r


async def test_socket_stream_conformance():
    await check_half_closeable_stream(socket_pair, clogged_socket_pair)


def production_server_context(certs) -> SSL.Context:
    config = parse_config(f"[imaps]\naccept = 993\nconnect = 143\ncert = {certs.cert_file}\n"
                          f"key = {certs.key_file}\n", "test.conf")
    return server_context(config, config.services[0])


def client_context(certs) -> SSL.Context:
    client = SSL.Context(SSL.TLS_CLIENT_METHOD)
    client.load_verify_locations(str(certs.ca_file).encode())
    client.set_verify(SSL.VERIFY_PEER, None)
    return client


async def tls_pair(certs, ragged_eof_ok: bool = False) -> tuple[TLSStream, TLSStream]:
    """A server (production context) and a client TLSStream over a socketpair, handshake done."""
    a, b = socket.socketpair()
    s = TLSStream(a, production_server_context(certs), ragged_eof_ok=ragged_eof_ok)
    c = TLSStream(b, client_context(certs), server_side=False)
    async with trio.open_nursery() as n:
        n.start_soon(s.do_handshake)
        n.start_soon(c.do_handshake)
    return s, c


async def clogged_tls_pair(certs) -> tuple[TLSStream, TLSStream]:
    """One-byte records each way until the socket stops taking them: the next send blocks
    until the other side reads. What the socket did not take waits in the stream's queue and
    goes out first with the next write; the suite's clogged cases check blocking, wake-ups
    and conflicts, not the bytes."""
    s, c = await tls_pair(certs)
    for sock in (s.socket, c.socket):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    for sender in (s, c):
        while sender.send_now(b"x") is not None:
            pass
    return s, c


async def test_tls_stream_conformance(certs):
    await check_half_closeable_stream(lambda: tls_pair(certs), lambda: clogged_tls_pair(certs))


async def test_tls_half_close_keeps_reading(certs):
    s, c = await tls_pair(certs)
    await c.send_all(b"request")
    await c.send_eof()  # close_notify
    assert await s.receive_some(100) == b"request"
    assert await s.receive_some(100) == b""  # EOF, and only at close_notify
    assert not s.truncated
    await s.send_all(b"reply after EOF")
    assert await c.receive_some(100) == b"reply after EOF"
    await s.aclose()
    assert await c.receive_some(100) == b""
    await c.aclose()
    await c.aclose()  # idempotent


async def test_a_bare_tcp_close_is_truncated_not_a_clean_eof(certs):
    """With the production context (SSL_OP_IGNORE_UNEXPECTED_EOF set) a FIN without
    close_notify still must not pass for close_notify."""
    s, c = await tls_pair(certs)
    await c.send_all(b"a1 LOGOUT\r\n")
    c.socket.shutdown(socket.SHUT_WR)  # FIN, no close_notify
    assert await s.receive_some(100) == b"a1 LOGOUT\r\n"
    with pytest.raises(trio.BrokenResourceError, match="without close_notify"):
        await s.receive_some(100)
    assert s.truncated
    await s.send_all(b"* BYE\r\n")  # the half-closed client still gets its reply
    assert await c.receive_some(100) == b"* BYE\r\n"
    await s.aclose()
    await c.aclose()


async def test_ragged_eof_ok_reads_a_bare_close_as_eof_and_still_says_so(certs):
    s, c = await tls_pair(certs, ragged_eof_ok=True)
    c.socket.shutdown(socket.SHUT_WR)
    assert await s.receive_some(100) == b""
    assert s.truncated
    assert await s.receive_some(100) == b""  # and again: EOF stays EOF
    await s.aclose()
    await c.aclose()


async def test_close_notify_then_fin_is_clean_on_every_later_read(certs):
    s, c = await tls_pair(certs)
    await c.send_eof()
    c.socket.shutdown(socket.SHUT_WR)
    assert await s.receive_some(100) == b""
    assert await s.receive_some(100) == b""
    assert not s.truncated
    await s.aclose()
    await c.aclose()


@pytest.mark.parametrize("clean", [True, False])
async def test_the_relay_reports_which_eof_the_client_sent(certs, clean):
    s, c = await tls_pair(certs)
    b_near, b_far = socket.socketpair()
    backend = trio.socket.from_stdlib_socket(b_far)
    relay = Relay(s, SocketStream(b_near), 300, 60)
    await c.send_all(b"a1 LOGOUT\r\n")
    if clean:
        await c.send_eof()
    else:
        c.socket.shutdown(socket.SHUT_WR)

    async def backend_side():
        got = b""
        while chunk := await backend.recv(100):
            got += chunk
        assert got == b"a1 LOGOUT\r\n"
        await backend.send(b"a1 OK\r\n")
        backend.shutdown(socket.SHUT_WR)

    async with trio.open_nursery() as n:
        n.start_soon(backend_side)
        await relay.run()
    assert relay.reason == "closed"
    assert s.truncated is not clean
    assert await c.receive_some(100) == b"a1 OK\r\n"
    for x in (s, c):
        await x.aclose()
    backend.close()
    b_near.close()


UPLOAD = 2 * 1024 * 1024
KEY_UPDATE_EVERY = 256 * 1024


async def test_keyupdate_replies_queue_behind_a_full_socket_and_reading_goes_on(
        certs, keyupdate_client):
    """The server fills its socket (the client reads nothing yet); then the client asks for a
    KeyUpdate every 256 KiB of a 2 MiB upload. Each reply written by SSL_read must queue
    behind the unsent output (written in between, OpenSSL fails the connection: "bad length"),
    and the server must go on reading meanwhile: the client reads only after its upload, so
    a reader that waited for its reply to go out first would wait forever."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):  # small fixed buffers (no
            listener.setsockopt(socket.SOL_SOCKET, option, 16384)  # growth): the upload
        listener.setblocking(False)  # outgrows them many times over
        cmd = [keyupdate_client, str(listener.getsockname()[1]), str(UPLOAD),
               str(KEY_UPDATE_EVERY), "up"]
        result: list[subprocess.CompletedProcess[str]] = []

        async def client() -> None:
            result.append(await trio.to_thread.run_sync(lambda: subprocess.run(
                cmd, capture_output=True, text=True, timeout=60)))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(client)
            with trio.fail_after(60):
                await trio.lowlevel.wait_readable(listener)
                sock, _ = listener.accept()
                server = TLSStream(sock, production_server_context(certs))
                await server.do_handshake()
                queued = 0
                while True:  # fill until the kernel stops taking more: the client reads nothing
                    while (n := server.send_now(b"d" * 16384)) is not None:
                        queued += n
                    with trio.move_on_after(0.5):  # (its receive queue may still take some)
                        await server.wait_writable()
                        continue
                    break
                received = 0
                while received < UPLOAD:
                    data = await server.receive_some(65536)
                    assert data
                    received += len(data)
                await server.send_eof()
                await server.aclose()
    out = result[0]
    ok, sent, got, _, replies = out.stdout.split()
    assert (ok, int(sent), int(got)) == ("ok", UPLOAD, queued), out
    # RFC 8446 4.6.3: requests received while silent may be answered with a single update
    assert 1 <= int(replies) <= UPLOAD // KEY_UPDATE_EVERY, out
