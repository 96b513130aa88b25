"""The STARTTLS step of the pipeline (``protocol = imap | pop3 | smtp``): the thin I/O shell
around a ``starttls`` conversation.

General theory of operation: the backend is already open (plaintext) when this step runs.
``converse`` does what the conversation's events say -- send to one side, read the side it
waits for, start TLS on the client's socket -- until the conversation hands the session to the
relay or ends it. While the conversation waits for the client, the backend is read too: a
backend that speaks unasked ends the conversation (see ``starttls.common``), so nothing it sent
before TLS reaches the client after it.

Deadlines: everything before the client's STARTTLS, then the handshake and what follows it
until the relay (SMTP: the client's new EHLO), each within TIMEOUTbusy; a client that never
starts TLS is closed when the first runs out. The backend connection is opened before any TLS
(the session starts with its greeting), so on a STARTTLS port an unauthenticated client holds
one for at most TIMEOUTbusy, where an implicit-TLS client holds none until its handshake.

The client side (``client = yes``) has two steps here, each within TIMEOUTbusy:
``starttls_with_server`` before the TLS handshake with the remote server, and
``authenticate_with_server`` (SMTP AUTH, when the service has credentials) after it. What the
latter sends holds the password: it goes to the TLS stream and nowhere else.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from . import starttls
from .backend import BackendError
from .execbackend import ExecStream
from .outcome import Outcome
from .sockstream import SocketStream
from .tlsstream import TLSStream

if TYPE_CHECKING:
    from OpenSSL import SSL

    from .access import Verdict
    from .config import Service
    from .snapshot import ServiceRuntime

log = logging.getLogger("tlswrap.preamble")
READ_SIZE = 4096  # pre-TLS reads: commands and replies are short lines


@dataclass(slots=True)
class ClientSide:
    """The client's stream as it is now: plaintext, then TLS (the one to close)."""

    stream: SocketStream
    tls: TLSStream | None = None


async def converse(conv: starttls.Conversation, sock: socket.socket, context: SSL.Context,
                   client: ClientSide, backend: SocketStream, busy: float,
                   outcome: Outcome) -> starttls.Relay | None:
    """Run ``conv`` between the client (``client.stream``, plaintext at first) and ``backend``.

    Returns the ``Relay`` event when the session is to be relayed (its ``to_backend`` bytes not
    yet sent), or None when it ended (``outcome`` says why). ``client`` is updated when TLS
    starts; the caller closes ``client.tls`` (or the plaintext stream) whatever happens.
    """
    with trio.move_on_after(busy) as scope:
        while True:
            event = conv.next_event()
            if isinstance(event, starttls.ToClient):
                await client.stream.send_all(event.data)
                outcome.to_client += len(event.data)
            elif isinstance(event, starttls.ToBackend):
                await backend.send_all(event.data)
                outcome.to_backend += len(event.data)
            elif event is starttls.NEED_BACKEND:
                conv.receive_backend(await backend.receive_some(READ_SIZE))
            elif event is starttls.NEED_CLIENT:
                await read_either(conv, client.stream, backend)
            elif isinstance(event, starttls.StartTLS):
                if event.discarded:
                    log.warning("%s %d bytes sent after STARTTLS before TLS discarded",
                                outcome.who, event.discarded)
                scope.deadline = trio.current_time() + busy
                tls = client.tls = TLSStream(sock, context)
                client.stream = tls
                await tls.do_handshake()
                outcome.tls = tls.describe()
                outcome.starttls = conv.protocol
            elif isinstance(event, starttls.Relay):
                if not event.tls:
                    outcome.tls = "no TLS (the client went on without STARTTLS)"
                return event
            else:
                assert isinstance(event, starttls.Close)
                outcome.end(event.reason)
                return None
    if client.tls is None:
        outcome.end(f"no STARTTLS within {busy:g}s")
    elif not client.tls.handshake_done:
        outcome.end(f"TLS handshake timed out after {busy:g}s")
    else:
        outcome.end(f"no EHLO after STARTTLS within {busy:g}s")
    return None


async def read_either(conv: starttls.Conversation, client: SocketStream,
                      backend: SocketStream) -> None:
    """Wait for the client's next bytes, and take the backend's too if it speaks meanwhile."""
    async with trio.open_nursery() as nursery:
        async def read(stream: SocketStream, feed: Callable[[bytes], None]) -> None:
            data = await stream.receive_some(READ_SIZE)
            feed(data)
            nursery.cancel_scope.cancel()

        nursery.start_soon(read, client, conv.receive_client)
        nursery.start_soon(read, backend, conv.receive_backend)


async def serve_starttls(rt: ServiceRuntime, sock: socket.socket, peer: object, local: object,
                         verdict: Verdict | None, helpers: trio.Nursery,
                         outcome: Outcome) -> None:
    """A STARTTLS service's connection after the access check: the backend first (and its
    PROXY header), the conversation, then the relay, inside TLS (or, where ``starttls =
    optional`` lets a client go on without it, in plaintext).

    A tcp_wrappers banner goes to the client in plaintext, before anything else, as tcpd
    writes it; a twist program talks to the client in plaintext. The sockets are closed
    whatever happens."""
    from .pipeline import close_backend, open_side, proxy_header, relay_session

    svc = rt.service
    assert svc.protocol is not None
    conv = starttls.conversation(svc.protocol, svc.starttls == "required")
    client = ClientSide(SocketStream(sock))
    backend: SocketStream | None = None
    try:
        refused = verdict is not None and not verdict.decision.granted
        if verdict is not None and verdict.banner:
            with trio.move_on_after(svc.timeout_busy):  # a client that never reads
                await client.stream.send_all(verdict.banner)
        if refused and verdict is not None and verdict.twist is None:
            return
        try:
            backend = await open_side(rt, None, peer, local, verdict, helpers)
        except (BackendError, OSError) as exc:
            log.warning("%s backend unavailable: %s", outcome.who, exc)
            outcome.end(f"backend unavailable: {exc}")
            with trio.move_on_after(svc.timeout_busy):
                await client.stream.send_all(conv.reply_unavailable)
            return
        if verdict is not None and verdict.twist is not None:
            outcome.end("twist")
        else:
            if svc.proxy_protocol and not isinstance(backend, ExecStream):
                await backend.push(proxy_header(svc.proxy_protocol, peer, local, None,
                                                tls_promised=conv.tls_first,
                                                tlvs=svc.proxy_tlvs))
            relay = await converse(conv, sock, rt.context, client, backend, svc.timeout_busy,
                                   outcome)
            if relay is None:
                return
            if relay.to_backend:
                await backend.send_all(relay.to_backend)
                outcome.to_backend += len(relay.to_backend)
        await relay_session(svc, client.stream, backend, outcome)
    except trio.BrokenResourceError as exc:
        outcome.end(str(exc))
    finally:
        if backend is not None:
            await close_backend(backend, svc)
        client.stream.close()


async def starttls_with_server(svc: Service, backend: SocketStream, client: SocketStream,
                               outcome: Outcome) -> None:
    """``client = yes`` with ``protocol``: ask the remote server for TLS on ``backend`` as a
    mail client would (the local client gets the server's greeting), within TIMEOUTbusy.
    OSError with the reason when the server refuses or misbehaves (after a last word to the
    local client, where the protocol has one); on return, start the TLS handshake."""
    from .starttls.client import NEED, TLS, Negotiation

    assert svc.protocol is not None
    neg = Negotiation(svc.protocol, svc.protocol_host or "localhost")
    with trio.move_on_after(svc.timeout_busy):  # TIMEOUTbusy
        while neg.state == NEED:
            data = await backend.receive_some(READ_SIZE)
            neg.receive(data)
            to_server, to_client = neg.take()
            if to_client:
                await client.send_all(to_client)
            if to_server and neg.state == NEED:
                await backend.send_all(to_server)
    if neg.state == NEED:
        raise OSError(f"STARTTLS with the server: no answer within {svc.timeout_busy:g}s")
    if neg.state != TLS:
        raise OSError(f"STARTTLS with the server: {neg.reason}")
    outcome.starttls = svc.protocol


async def authenticate_with_server(svc: Service, server: TLSStream, client: SocketStream,
                                   outcome: Outcome) -> None:
    """``client = yes``, ``protocol = smtp`` with ``protocolUsername`` and ``protocolPassword``:
    after the TLS handshake with the server, EHLO and AUTH (``starttls.client.Authentication``)
    within TIMEOUTbusy, before the local client's bytes are relayed. OSError with the reason
    (the server's reply, never the credentials) when it fails, after the local client's last
    word (a 421: its MTA keeps the mail queued)."""
    from .starttls.client import AUTHENTICATED, NEED, Authentication

    assert svc.protocol_username is not None and svc.protocol_password is not None
    auth = Authentication(svc.protocol_username, svc.protocol_password.reveal(),
                          svc.protocol_authentication or "plain", svc.protocol_host or "localhost")
    try:
        with trio.move_on_after(svc.timeout_busy):  # TIMEOUTbusy
            while auth.state == NEED:
                to_server, _ = auth.take()
                if to_server:
                    await server.send_all(to_server)
                auth.receive(await server.receive_some(READ_SIZE))
        if auth.state == NEED:
            auth.give_up(f"no answer within {svc.timeout_busy:g}s")
    except trio.BrokenResourceError as exc:
        auth.give_up(str(exc))
    if auth.state != AUTHENTICATED:
        _, last_word = auth.take()
        with trio.move_on_after(svc.timeout_busy):  # a client that never reads
            try:
                await client.send_all(last_word)
            except trio.BrokenResourceError:
                pass  # gone already: the log line says why the session ended
        raise OSError(f"SMTP AUTH with the server: {auth.reason}")
    outcome.auth = auth.mechanism.upper()
