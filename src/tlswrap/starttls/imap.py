"""IMAP STARTTLS (RFC 3501 and RFC 9051, section 6.2.1), server side, sans I/O.

Before TLS a client may send CAPABILITY, NOOP and LOGOUT (relayed to the backend), and
STARTTLS (answered here). Every capability list the backend sends -- ``* CAPABILITY`` lines
and ``[CAPABILITY ...]`` response codes, the greeting's included -- is rewritten: STARTTLS and
LOGINDISABLED added, AUTH=* removed, so no client offers a password in plaintext. LOGIN and
AUTHENTICATE are refused (``NO [PRIVACYREQUIRED]``, RFC 5530), anything else is ``BAD``. After
TLS the session is relayed: the client's next CAPABILITY reaches the backend and gets its real
list. ``starttls = optional`` changes nothing here: a client that has not logged in can do
nothing but the commands above.
"""

from __future__ import annotations

import re

from .common import Conversation, Relay, Steps, Stop, Waits

RELAYED = {b"CAPABILITY", b"NOOP", b"LOGOUT"}
LOGINS = {b"LOGIN", b"AUTHENTICATE"}
LITERAL_MAX = 65536  # a literal of a refused command is read and dropped up to this size
_CAPABILITY_CODE = re.compile(rb"\[CAPABILITY ([^\]]*)\]", re.IGNORECASE)
_LITERAL = re.compile(rb"\{(\d{1,10})(\+?)\}$")
# RFC 9051 tag: ASTRING-CHARs but "+", i.e. printable ASCII but the atom-specials and "+"
_TAG = re.compile(rb'[\x21-\x7e]+')
_NOT_IN_TAG = re.compile(rb'[(){%*"\\+]')


def rewrite_capabilities(caps: bytes) -> bytes:
    """A space-separated capability list as offered before TLS."""
    drop = {b"STARTTLS", b"LOGINDISABLED"}
    kept = [c for c in caps.split() if c.upper() not in drop and not c.upper().startswith(b"AUTH=")]
    return b" ".join([*kept, b"STARTTLS", b"LOGINDISABLED"])


def rewrite_line(line: bytes) -> bytes:
    """A backend response line with every capability list in it rewritten."""
    head, _, rest = line.partition(b" ")
    if head == b"*" and (rest[:11].upper() == b"CAPABILITY " or rest.upper() == b"CAPABILITY"):
        return b"* CAPABILITY " + rewrite_capabilities(rest[11:])
    return _CAPABILITY_CODE.sub(
        lambda m: b"[CAPABILITY " + rewrite_capabilities(m.group(1)) + b"]", line)


class Imap(Conversation):
    protocol = "imap"
    reply_too_long = b"* BYE line too long\r\n"
    reply_too_many = b"* BYE too many commands before STARTTLS\r\n"
    reply_unavailable = b"* BYE service unavailable\r\n"

    @property
    def tls_first(self) -> bool:
        return True  # optional or not: nothing but TLS leads to the relay

    def run(self) -> Steps:
        greeting = yield from self.backend_line()
        kind = greeting[:7].upper()
        if kind.startswith(b"* BYE"):
            self.to_client(greeting + b"\r\n")
            raise Stop("the backend refused the session")
        if not kind.startswith(b"* OK"):  # PREAUTH: there is no STARTTLS in that state
            raise Stop("the backend's greeting is not * OK",
                       b"* BYE the server cannot start TLS\r\n")
        self.to_client(rewrite_line(greeting) + b"\r\n")
        while True:
            line = yield from self.client_line()
            tag, _, rest = line.partition(b" ")
            command, _, args = rest.partition(b" ")
            command = command.upper()
            if not _TAG.fullmatch(tag) or _NOT_IN_TAG.search(tag) or not command:
                self.to_client(b"* BAD missing tag or command\r\n")
                continue
            literal = _LITERAL.search(line)
            if command == b"STARTTLS" and not args:
                yield from self.start_tls(tag + b" OK Begin TLS negotiation now\r\n")
                return Relay()
            if command in RELAYED and not args:
                self.to_backend(tag + b" " + command + b"\r\n")
                yield from self.relay_reply(tag)
                if command == b"LOGOUT":
                    raise Stop("the client logged out before TLS")
                continue
            if literal is not None:  # the rest of a command that is refused anyway
                if not literal.group(2):  # synchronizing: it waits for "+", which never comes
                    self.to_client(tag + self.why(command) + b"\r\n")
                    continue
                yield from self.skip_literals(int(literal.group(1)))
            self.to_client(tag + self.why(command) + b"\r\n")

    @staticmethod
    def why(command: bytes) -> bytes:
        if command in LOGINS:
            return b" NO [PRIVACYREQUIRED] Logins are disabled before STARTTLS"
        if command in (b"STARTTLS", *RELAYED):
            return b" BAD no arguments allowed"
        return b" BAD command not allowed before STARTTLS"

    def skip_literals(self, size: int) -> Waits:
        """Drop a non-synchronizing literal and the rest of its command (more literals)."""
        while True:
            if size > LITERAL_MAX:
                raise Stop(f"client: a literal of {size} bytes before TLS", self.reply_too_long)
            yield from self.skip_client(size)
            line = yield from self.client_line()
            self.commands -= 1  # the same command goes on
            literal = _LITERAL.search(line)
            if literal is None or not literal.group(2):
                return
            size = int(literal.group(1))

    def relay_reply(self, tag: bytes) -> Waits:
        """Relay the backend's response lines up to the one tagged ``tag``."""
        while True:
            line = yield from self.backend_line()
            self.to_client(rewrite_line(line) + b"\r\n")
            if line.partition(b" ")[0] == tag:
                return
