"""POP3 STLS (RFC 2595 section 4, RFC 2449 CAPA), server side, sans I/O.

Before TLS a client may send CAPA and QUIT (relayed to the backend) and STLS (answered here);
USER, PASS, APOP and AUTH are refused, and so is anything else (``-ERR``). The backend's CAPA
list goes to the client with STLS added and USER and SASL removed: before TLS no login is
possible, and RFC 2449 section 6.8 has a server leave USER out when it would refuse it. After
TLS the session is relayed: the client's next CAPA reaches the backend and gets its real list.
``starttls = optional`` changes nothing here: in the AUTHORIZATION state a client can only log
in, and that waits for TLS.
"""

from __future__ import annotations

from .common import Conversation, Relay, Steps, Stop, Waits

LOGINS = {b"USER", b"PASS", b"APOP", b"AUTH"}
HIDDEN = {b"STLS", b"USER", b"SASL"}  # capabilities not offered before TLS (STLS: added once)


class Pop3(Conversation):
    protocol = "pop3"
    reply_too_long = b"-ERR line too long\r\n"
    reply_too_many = b"-ERR too many commands before STLS\r\n"
    reply_unavailable = b"-ERR service unavailable\r\n"

    @property
    def tls_first(self) -> bool:
        return True  # optional or not: nothing but TLS leads to the relay

    def run(self) -> Steps:
        greeting = yield from self.backend_line()
        self.to_client(greeting + b"\r\n")
        if not greeting.startswith(b"+OK"):
            raise Stop("the backend refused the session")
        while True:
            line = yield from self.client_line()
            command, _, args = line.partition(b" ")
            command = command.upper()
            if command == b"STLS" and not args:
                yield from self.start_tls(b"+OK Begin TLS negotiation\r\n")
                return Relay()
            if command == b"CAPA" and not args:
                self.to_backend(b"CAPA\r\n")
                yield from self.relay_capa()
            elif command == b"QUIT" and not args:
                self.to_backend(b"QUIT\r\n")
                self.to_client((yield from self.backend_line()) + b"\r\n")
                raise Stop("the client quit before TLS")
            elif command in LOGINS:
                self.to_client(b"-ERR Logins are disabled before STLS\r\n")
            else:
                self.to_client(b"-ERR Command not allowed before STLS\r\n")

    def relay_capa(self) -> Waits:
        """The backend's CAPA reply, rewritten; a server without CAPA gets a list of one."""
        first = yield from self.backend_line()
        if not first.startswith(b"+OK"):
            self.to_client(b"+OK Capability list follows\r\nSTLS\r\n.\r\n")
            return
        reply = [first]
        while True:
            line = yield from self.backend_line()
            if line == b".":
                break
            if line.split(b" ", 1)[0].upper() not in HIDDEN:
                reply.append(line)
        reply += [b"STLS", b"."]
        self.to_client(b"".join(line + b"\r\n" for line in reply))
