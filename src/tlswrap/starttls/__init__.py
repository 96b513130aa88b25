"""STARTTLS for IMAP, POP3 and SMTP, server side: the plaintext start of a mail session, with
no networking code at all (``common`` explains the events and the rules every protocol keeps).

``conversation("imap", required=True)`` returns a fresh ``Conversation`` for one connection;
the caller feeds it the bytes it reads and does what ``next_event()`` says.
"""

from __future__ import annotations

from .common import (
    COMMANDS_MAX,
    LINE_MAX,
    NEED_BACKEND,
    NEED_CLIENT,
    Close,
    Conversation,
    Event,
    Need,
    Relay,
    StartTLS,
    ToBackend,
    ToClient,
)
from .imap import Imap
from .pop3 import Pop3
from .smtp import Smtp

PROTOCOLS: dict[str, type[Conversation]] = {"imap": Imap, "pop3": Pop3, "smtp": Smtp}

__all__ = [
    "COMMANDS_MAX", "LINE_MAX", "NEED_BACKEND", "NEED_CLIENT", "PROTOCOLS", "Close",
    "Conversation", "Event", "Need", "Relay", "StartTLS", "ToBackend", "ToClient",
    "conversation",
]


def conversation(protocol: str, required: bool = True) -> Conversation:
    """A new conversation for ``protocol`` (imap, pop3 or smtp)."""
    return PROTOCOLS[protocol](required)
