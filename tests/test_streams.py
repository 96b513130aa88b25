"""trio's own Stream conformance suite over the project's streams, on real socketpairs."""

from __future__ import annotations

import socket

import trio
from OpenSSL import SSL
from trio.testing import check_half_closeable_stream

from tlswrap.sockstream import SocketStream
from tlswrap.tlsstream import TLSStream


async def socket_pair():
    a, b = socket.socketpair()
    return SocketStream(a), SocketStream(b)


async def test_socket_stream_conformance():
    await check_half_closeable_stream(socket_pair, None)


def _contexts(certs):
    server = SSL.Context(SSL.TLS_SERVER_METHOD)
    server.use_certificate_chain_file(str(certs.cert_file).encode())
    server.use_privatekey_file(str(certs.key_file).encode())
    client = SSL.Context(SSL.TLS_CLIENT_METHOD)
    client.load_verify_locations(str(certs.ca_file).encode())
    client.set_verify(SSL.VERIFY_PEER, None)
    return server, client


async def tls_pair(certs) -> tuple[TLSStream, TLSStream]:
    """A server and a client TLSStream over a socketpair, handshake done."""
    server_ctx, client_ctx = _contexts(certs)
    a, b = socket.socketpair()
    s, c = TLSStream(a, server_ctx), TLSStream(b, client_ctx, server_side=False)
    async with trio.open_nursery() as n:
        n.start_soon(s.do_handshake)
        n.start_soon(c.do_handshake)
    return s, c


async def test_tls_stream_conformance(certs):
    await check_half_closeable_stream(lambda: tls_pair(certs), None)


async def test_tls_half_close_keeps_reading(certs):
    s, c = await tls_pair(certs)
    await c.send_all(b"request")
    await c.send_eof()  # close_notify
    assert await s.receive_some(100) == b"request"
    assert await s.receive_some(100) == b""  # EOF, and only at close_notify
    await s.send_all(b"reply after EOF")
    assert await c.receive_some(100) == b"reply after EOF"
    await s.aclose()
    assert await c.receive_some(100) == b""
    await c.aclose()
    await c.aclose()  # idempotent


async def test_tcp_close_without_close_notify_is_marked_truncated(certs):
    s, c = await tls_pair(certs)
    c.socket.close()
    try:
        await s.receive_some(100)
    except trio.BrokenResourceError:
        pass
    else:  # pragma: no cover
        raise AssertionError("a truncated stream must not look like a clean EOF")
    assert s.truncated
    await s.aclose()
