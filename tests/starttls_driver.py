"""Drives a pure STARTTLS conversation against a scripted backend, for the unit tests.

The backend is a greeting plus a function from one command line it receives to the bytes it
answers. Client and backend bytes are fed whole or one byte at a time. At StartTLS the client
bytes not yet fed are dropped (on a real connection they reach the TLS engine, never the
conversation) and ``after_tls`` becomes the client's input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tlswrap import starttls


@dataclass
class Transcript:
    to_client: bytes = b""  # what the client received, in order
    to_backend: bytes = b""  # what the backend received
    to_client_after_tls: bytes = b""  # the part of to_client sent inside TLS
    tls: list[starttls.StartTLS] = field(default_factory=list)
    end: starttls.Relay | starttls.Close | None = None  # None: still waiting for the client


def drive(conv: starttls.Conversation, greeting: bytes, answer: Callable[[bytes], bytes],
          client: bytes, after_tls: bytes = b"", *, one_byte: bool = False,
          client_eof: bool = False, max_events: int = 100_000) -> Transcript:
    out = Transcript()
    backend_pending = bytearray(greeting)
    backend_lines = bytearray()
    pending = bytearray(client)
    step = 1 if one_byte else None
    for _ in range(max_events):
        event = conv.next_event()
        if isinstance(event, starttls.ToClient):
            out.to_client += event.data
            if out.tls:
                out.to_client_after_tls += event.data
        elif isinstance(event, starttls.ToBackend):
            out.to_backend += event.data
            backend_lines += event.data
            while b"\n" in backend_lines:
                line, _, rest = bytes(backend_lines).partition(b"\n")
                backend_lines[:] = rest
                backend_pending += answer(line.rstrip(b"\r"))
        elif event is starttls.NEED_BACKEND:
            assert backend_pending, "the conversation waits for a backend that has nothing to say"
            chunk = bytes(backend_pending[:step])
            del backend_pending[:len(chunk)]
            conv.receive_backend(chunk)
        elif event is starttls.NEED_CLIENT:
            if not pending:
                if client_eof:
                    conv.receive_client(b"")
                    continue
                return out
            chunk = bytes(pending[:step])
            del pending[:len(chunk)]
            conv.receive_client(chunk)
        elif isinstance(event, starttls.StartTLS):
            out.tls.append(event)
            pending[:] = after_tls
        else:
            assert isinstance(event, (starttls.Relay, starttls.Close))
            out.end = event
            return out
    raise AssertionError("the conversation did not settle")
