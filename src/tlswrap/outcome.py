"""What one connection came to: a value filled in as the connection goes, logged once at the end.

The pipeline (``pipeline.serve_one``) records each fact here as it learns it; the guarded
spawner writes the one closing log line from it, whatever happened. Nothing here does I/O.
A plain class, not a dataclass: the inetd fast path uses it too, and importing ``dataclasses``
costs more than a whole stunnel connection (see ``tlswrap.fast``).
"""

from __future__ import annotations

import time


class Outcome:
    """One connection's record: who, which service, how it ended, what moved."""

    __slots__ = ("auth", "backend_failed", "conn_id", "connect_seconds", "ended",
                 "handshake_seconds", "peer", "peer_cert", "quiet", "reason", "refused",
                 "service", "stage", "started", "starttls", "tls", "to_backend", "to_client",
                 "truncated")

    def __init__(self, service: str, peer: str, started: float | None = None,
                 conn_id: str | None = None) -> None:
        self.service = service
        self.peer = peer
        self.started = time.monotonic() if started is None else started
        self.reason = "closed"
        self.tls = "no TLS"  # protocol, cipher and group once the handshake is done
        self.starttls = ""  # "imap", "pop3" or "smtp": TLS was started by that STARTTLS
        self.auth = ""  # "PLAIN" or "LOGIN": tlswrap authenticated to the server (client mode)
        self.peer_cert: str | None = None  # the client certificate, when the service asks
        self.to_backend = 0
        self.to_client = 0
        self.truncated = False  # the client closed TCP without close_notify
        self.ended: float | None = None
        self.conn_id = conn_id  # logId: shown in every line of the connection when set
        # refused before TLS: "rules", or the limit (limits.REASONS)
        self.refused: str | None = None
        self.quiet = False  # no closing line: a throttled refusal line said it (limits)
        self.stage = "accepted"  # the last step reached: accepted, handshake, backend, relay
        # from accept to the end of a done handshake; to open the backend that was opened
        self.handshake_seconds: float | None = None
        self.connect_seconds: float | None = None
        # the backend (as configured) that could not be had
        self.backend_failed: str | None = None

    @property
    def tag(self) -> str:
        """``[service]``, or ``[service] #ID`` with a connection id (``logId``)."""
        return f"[{self.service}] #{self.conn_id}" if self.conn_id else f"[{self.service}]"

    @property
    def who(self) -> str:
        """``[service] peer`` (``[service] #ID peer`` with ``logId``), the prefix of every
        line about this connection."""
        return f"{self.tag} {self.peer}"

    def end(self, reason: str | None = None) -> None:
        """Note why it ended (a later, more specific reason replaces an earlier one) and when
        (the first call's time counts)."""
        if reason is not None:
            self.reason = reason
        if self.ended is None:
            self.ended = time.monotonic()

    def log_line(self) -> str:
        """The closing line: TLS parameters, bytes each way, duration and why it ended."""
        ended = self.ended if self.ended is not None else time.monotonic()
        reason = self.reason
        if self.truncated and not reason.startswith("client:"):
            reason += " (the client sent no close_notify)"  # fine for mail, worth knowing
        auth = f", AUTH {self.auth}" if self.auth else ""
        tls = f"{self.tls} ({self.starttls} STARTTLS{auth})" if self.starttls else self.tls
        if self.peer_cert:
            tls = f"{tls}, {self.peer_cert}"
        return (f"{self.who} closed: {tls}, {self.to_backend} bytes to backend, "
                f"{self.to_client} bytes to client, {ended - self.started:.3f}s, {reason}")

