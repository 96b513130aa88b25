"""stunnel's ``ident = USERNAME``: an RFC 1413 query to the client's identification server,
and the connection refused unless it names USERNAME.

The codec (``query``, ``parse_reply``) is pure. ``ask`` is stunnel's exchange on the event
loop, bounded by the service's TIMEOUTconnect (to connect) and TIMEOUTbusy (for the reply), as
stunnel bounds them; ``lookup`` is the same exchange blocking, for the thread where
hosts.allow/hosts.deny are decided when a rule wants the user (``user@host`` patterns, ``%u``,
the ``rfc931`` option), as tcpd asks.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import trio

IDENT_PORT = 113  # RFC 1413 "auth"
REPLY_MAX = 1000  # RFC 1413: a reply line is at most 1000 characters


class IdentError(Exception):
    """No usable answer: the message says why (refused, malformed, an error reply)."""


def query(client_port: int, server_port: int) -> bytes:
    """The request: the port on the client's machine, then the one on ours (RFC 1413)."""
    return f"{client_port} , {server_port}\r\n".encode()


def parse_reply(line: bytes) -> str:
    """The user id of ``<ports> : USERID : <os> : <user>``; IdentError for anything else
    (``<ports> : ERROR : NO-USER`` included)."""
    text = line.rstrip(b"\r\n").decode("latin-1")
    fields = text.split(":", 3)
    if len(fields) < 3:
        raise IdentError("malformed IDENT reply")
    kind = fields[1].strip()
    if kind == "ERROR":
        raise IdentError(f"IDENT error: {fields[2].strip()}")
    if kind != "USERID" or len(fields) < 4:
        raise IdentError("malformed IDENT reply")
    return fields[3].lstrip(" ")


def lookup(peer: tuple[Any, ...], local: tuple[Any, ...], seconds: float) -> str:
    """The user the client's identification server names for this connection, blocking (for
    a thread), the whole exchange within ``seconds`` (tcpd's one alarm). The query goes out
    from the address the client reached, as tcpd's rfc931() sends it."""
    family = socket.AF_INET6 if ":" in peer[0] else socket.AF_INET
    deadline = time.monotonic() + seconds
    reply = b""
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((local[0], 0, *local[2:]))
            sock.settimeout(seconds)
            sock.connect((peer[0], IDENT_PORT, *peer[2:]))
            sock.sendall(query(peer[1], local[1]))
            while b"\n" not in reply and len(reply) < REPLY_MAX:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                sock.settimeout(left)
                data = sock.recv(REPLY_MAX - len(reply))
                if not data:
                    break
                reply += data
    except TimeoutError:
        raise IdentError("the IDENT server did not answer in time") from None
    except OSError as exc:
        raise IdentError(f"IDENT server: {exc.strerror or exc}") from None
    return parse_reply(reply.split(b"\n", 1)[0])


async def ask(peer: tuple[Any, ...], local: tuple[Any, ...], connect_seconds: float,
              reply_seconds: float) -> str:
    """``lookup`` on the event loop (stunnel's ``ident``): no thread held while the client's
    server takes its time."""
    family = socket.AF_INET6 if ":" in peer[0] else socket.AF_INET
    with trio.socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            with trio.fail_after(connect_seconds):
                await sock.connect((peer[0], IDENT_PORT, *peer[2:]))
            await sock.send(query(peer[1], local[1]))
            reply = b""
            with trio.fail_after(reply_seconds):
                while b"\n" not in reply and len(reply) < REPLY_MAX:
                    data = await sock.recv(REPLY_MAX - len(reply))
                    if not data:
                        break
                    reply += data
        except trio.TooSlowError:
            raise IdentError("the IDENT server did not answer in time") from None
        except OSError as exc:
            raise IdentError(f"IDENT server: {exc.strerror or exc}") from None
    return parse_reply(reply.split(b"\n", 1)[0])
