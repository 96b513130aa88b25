"""What one connection came to: a value filled in as the connection goes, logged once at the end.

The pipeline (``pipeline.serve_one``) records each fact here as it learns it; the guarded
spawner writes the one closing log line from it, whatever happened. Nothing here does I/O.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(slots=True)
class Outcome:
    """One connection's record: who, which service, how it ended, what moved."""

    service: str
    peer: str
    started: float = field(default_factory=time.monotonic)
    reason: str = "closed"
    tls: str = "no TLS"  # protocol, cipher and group once the handshake is done
    starttls: str = ""  # "imap", "pop3" or "smtp": TLS was started by that protocol's STARTTLS
    peer_cert: str | None = None  # the client certificate, when the service asks for one
    to_backend: int = 0
    to_client: int = 0
    truncated: bool = False  # the client closed TCP without close_notify
    ended: float | None = None
    conn_id: str | None = None  # logId: shown in every line of the connection when set

    @property
    def tag(self) -> str:
        """``[service]``, or ``[service] #ID`` with a connection id (``logId``)."""
        return f"[{self.service}] #{self.conn_id}" if self.conn_id else f"[{self.service}]"
    refused: str | None = None  # refused before TLS: "rules", or the limit (limits.REASONS)
    quiet: bool = False  # no closing line: a throttled refusal line said it (limits)
    stage: str = "accepted"  # the last step reached: accepted, handshake, backend, relay
    handshake_seconds: float | None = None  # from accept to the end of a done handshake
    connect_seconds: float | None = None  # to open the backend that was opened
    backend_failed: str | None = None  # the backend (as configured) that could not be had

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
        tls = f"{self.tls} ({self.starttls} STARTTLS)" if self.starttls else self.tls
        if self.peer_cert:
            tls = f"{tls}, {self.peer_cert}"
        return (f"{self.who} closed: {tls}, {self.to_backend} bytes to backend, "
                f"{self.to_client} bytes to client, {ended - self.started:.3f}s, {reason}")

