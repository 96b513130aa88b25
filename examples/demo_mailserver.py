#!/usr/bin/env python3
"""A tiny plaintext IMAP4rev1 + POP3 server with one mailbox, for trying tlswrap out.

Not a mail server: it accepts any user name and password and serves the same demo message to
everyone; flags and deletions last for one session. It exists so the quickstart (and the
tests) have a real plaintext backend to put TLS in front of, and it answers what common clients
(curl, fetchmail, mutt, Thunderbird-style FETCH lists) ask. Standard library only.

    python3 examples/demo_mailserver.py --imap 127.0.0.1:10143 --pop3 127.0.0.1:10110
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import sys
from email.utils import getaddresses

MESSAGE = (
    b"From: demo@example.org\r\n"
    b"To: you@example.org\r\n"
    b"Subject: Welcome to tlswrap\r\n"
    b"Date: Wed, 25 Nov 2026 06:00:00 +0000\r\n"
    b"Message-ID: <demo-1@example.org>\r\n"
    b"\r\n"
    b"This message was read through TLS.\r\n"
)
INTERNALDATE = b'"25-Nov-2026 06:00:00 +0000"'
UID, UIDVALIDITY = 1, 1
MAILBOXES = ["INBOX", "Sent", "Trash"]
CAPS = b"IMAP4rev1 LITERAL+ ID IDLE UIDPLUS AUTH=PLAIN"
SYSTEM_FLAGS = b"\\Answered \\Flagged \\Deleted \\Seen \\Draft"
MACROS = {b"ALL": [b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE", b"ENVELOPE"],
          b"FAST": [b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE"],
          b"FULL": [b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE", b"ENVELOPE", b"BODY"]}
SECTION = re.compile(rb"(BODY|BODY\.PEEK|BINARY|BINARY\.PEEK)\[([^\]]*)\]"
                     rb"(?:<(\d+)(?:\.(\d+))?>)?")


# --- the message, as IMAP sees it (pure functions) ---------------------------------------

def split_message(message: bytes) -> tuple[bytes, bytes]:
    """(header including the blank line that ends it, text)."""
    end = message.find(b"\r\n\r\n")
    return (message, b"") if end < 0 else (message[:end + 4], message[end + 4:])


def header_lines(header: bytes) -> list[tuple[bytes, bytes]]:
    """[(NAME upper-cased, the whole field with its continuation lines and CRLF)]."""
    fields: list[tuple[bytes, bytes]] = []
    for line in header.split(b"\r\n")[:-2]:
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] = (fields[-1][0], fields[-1][1] + line + b"\r\n")
        elif line:
            fields.append((line.split(b":", 1)[0].strip().upper(), line + b"\r\n"))
    return fields


def header_value(header: bytes, name: bytes) -> bytes | None:
    for field, text in header_lines(header):
        if field == name:
            return b" ".join(text.split(b":", 1)[1].split())
    return None


def section_data(message: bytes, section: bytes) -> bytes:
    """RFC 3501 6.4.5 for a single-part message: "", HEADER, TEXT, 1, MIME-less
    HEADER.FIELDS (...) and HEADER.FIELDS.NOT (...)."""
    header, text = split_message(message)
    section = section.upper()
    if section == b"":
        return message
    if section == b"HEADER":
        return header
    if section in (b"TEXT", b"1"):
        return text
    m = re.fullmatch(rb"HEADER\.FIELDS(\.NOT)? \(([^)]*)\)", section)
    if m:
        names = set(m.group(2).split())
        keep = [t for f, t in header_lines(header) if (f in names) != bool(m.group(1))]
        return b"".join(keep) + b"\r\n"
    raise ValueError(f"unsupported section {section!r}")


def quoted(value: bytes | None) -> bytes:
    if value is None:
        return b"NIL"
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def addresses(value: bytes | None) -> bytes:
    if value is None:
        return b"NIL"
    out = []
    for name, addr in getaddresses([value.decode("utf-8", "replace")]):
        mailbox, _, host = addr.partition("@")
        out.append(b"(" + quoted(name.encode() or None) + b" NIL " + quoted(mailbox.encode())
                   + b" " + quoted(host.encode() or None) + b")")
    return b"(" + b"".join(out) + b")"


def envelope(message: bytes) -> bytes:
    header, _ = split_message(message)
    sender = header_value(header, b"FROM")
    parts = [quoted(header_value(header, b"DATE")), quoted(header_value(header, b"SUBJECT")),
             addresses(sender), addresses(header_value(header, b"SENDER") or sender),
             addresses(header_value(header, b"REPLY-TO") or sender),
             addresses(header_value(header, b"TO")), addresses(header_value(header, b"CC")),
             addresses(header_value(header, b"BCC")),
             quoted(header_value(header, b"IN-REPLY-TO")),
             quoted(header_value(header, b"MESSAGE-ID"))]
    return b"(" + b" ".join(parts) + b")"


def bodystructure(message: bytes) -> bytes:
    _, text = split_message(message)
    return b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" %d %d)' % (
        len(text), text.count(b"\r\n"))


def fetch_items(spec: bytes) -> list[bytes]:
    """``(UID FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.100>)`` -> its items, upper-cased;
    the macros ALL, FAST and FULL expanded."""
    spec = spec.strip()
    if spec.upper() in MACROS:
        return list(MACROS[spec.upper()])
    if spec.startswith(b"(") and spec.endswith(b")"):
        spec = spec[1:-1]
    items, i = [], 0
    while i < len(spec):
        if spec[i:i + 1] == b" ":
            i += 1
            continue
        j, depth = i, 0
        while j < len(spec) and (depth or spec[j:j + 1] != b" "):
            depth += {b"[": 1, b"]": -1}.get(spec[j:j + 1], 0)
            j += 1
        items.append(spec[i:j].upper())
        i = j
    return items


def in_sequence_set(spec: bytes, number: int, highest: int) -> bool:
    """Whether ``number`` is in an IMAP sequence set such as ``1``, ``1:*``, ``2,4:7``."""
    for part in spec.split(b","):
        low, _, high = part.partition(b":")
        a = highest if low == b"*" else int(low)
        b = a if not high else (highest if high == b"*" else int(high))
        if min(a, b) <= number <= max(a, b):
            return True
    return False


def fetch_response(seq: int, items: list[bytes], flags: set[bytes], message: bytes,
                   uid: bool = False) -> tuple[bytes, set[bytes]]:
    """One ``* SEQ FETCH (...)`` line with its literals, and the flags afterwards (a
    non-PEEK body fetch sets \\Seen and then reports FLAGS too)."""
    if uid and b"UID" not in items:
        items = [b"UID", *items]
    out, new_flags = [], set(flags)
    for item in items:
        if item == b"UID":
            out.append(b"UID %d" % UID)
        elif item == b"FLAGS":
            out.append(b"FLAGS (" + b" ".join(sorted(flags)) + b")")
        elif item == b"INTERNALDATE":
            out.append(b"INTERNALDATE " + INTERNALDATE)
        elif item == b"RFC822.SIZE":
            out.append(b"RFC822.SIZE %d" % len(message))
        elif item == b"ENVELOPE":
            out.append(b"ENVELOPE " + envelope(message))
        elif item in (b"BODY", b"BODYSTRUCTURE"):
            out.append(item + b" " + bodystructure(message))
        elif item in (b"RFC822", b"RFC822.HEADER", b"RFC822.TEXT"):
            data = section_data(message, {b"RFC822": b"", b"RFC822.HEADER": b"HEADER",
                                          b"RFC822.TEXT": b"TEXT"}[item])
            out.append(item + b" {%d}\r\n" % len(data) + data)
            if item != b"RFC822.HEADER":
                new_flags.add(b"\\Seen")
        elif m := SECTION.fullmatch(item):
            kind, section, start, length = m.groups()
            data = section_data(message, section)
            name = kind.replace(b".PEEK", b"") + b"[" + section + b"]"
            if start is not None:
                data = data[int(start):][:int(length)] if length else data[int(start):]
                name += b"<" + start + b">"
            out.append(name + b" {%d}\r\n" % len(data) + data)
            if not kind.endswith(b".PEEK"):
                new_flags.add(b"\\Seen")
        else:
            raise ValueError(f"unsupported FETCH item {item!r}")
    if new_flags != flags and b"FLAGS" not in items:
        out.append(b"FLAGS (" + b" ".join(sorted(new_flags)) + b")")
    return b"* %d FETCH (" % seq + b" ".join(out) + b")\r\n", new_flags


# --- the sessions (asyncio streams) ------------------------------------------------------

async def _lines(reader: asyncio.StreamReader):
    while True:
        line = await reader.readline()
        if not line:
            return
        yield line.rstrip(b"\r\n")


async def _read_literals(line: bytes, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> bytes:
    """A command line with its {N} / {N+} literals read in: a synchronizing literal {N} is
    invited with a '+' first; LITERAL+ clients send {N+} at once."""
    while m := re.search(rb"\{(\d+)(\+?)\}$", line):
        if not m.group(2):
            writer.write(b"+ go ahead\r\n")
            await writer.drain()
        line = line[:m.start()] + b'"' + await reader.readexactly(int(m.group(1))) + b'"'
        line += (await reader.readline()).rstrip(b"\r\n")
    return line


async def imap_session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    w = writer.write
    w(b"* OK [CAPABILITY " + CAPS + b"] tlswrap demo IMAP ready\r\n")
    selected, present, flags = False, True, set()
    async for raw in _lines(reader):
        line = await _read_literals(raw, reader, writer)
        parts = line.split(None, 2)
        if len(parts) < 2:
            w(b"* BAD missing tag or command\r\n")
            await writer.drain()
            continue
        tag, cmd = parts[0], parts[1].upper()
        arg = parts[2] if len(parts) > 2 else b""
        uid = False
        if cmd == b"UID" and arg:
            sub = arg.split(None, 1)
            cmd, arg, uid = sub[0].upper(), (sub[1] if len(sub) > 1 else b""), True
        exists = 1 if present else 0
        if cmd == b"CAPABILITY":
            w(b"* CAPABILITY " + CAPS + b"\r\n" + tag + b" OK CAPABILITY completed\r\n")
        elif cmd == b"NOOP":
            w(tag + b" OK NOOP completed\r\n")
        elif cmd == b"ID":
            w(b'* ID ("name" "tlswrap-demo")\r\n' + tag + b" OK ID completed\r\n")
        elif cmd == b"LOGIN":
            w(tag + b" OK [CAPABILITY " + CAPS + b"] LOGIN completed\r\n")
        elif cmd == b"AUTHENTICATE":  # PLAIN, any credentials
            if len(arg.split()) < 2:  # no initial response: ask for it
                w(b"+ \r\n")
                await writer.drain()
                await reader.readline()
            w(tag + b" OK [CAPABILITY " + CAPS + b"] AUTHENTICATE completed\r\n")
        elif cmd in (b"LIST", b"LSUB"):
            if arg.endswith(b'""'):  # LIST "" "": the hierarchy delimiter
                w(b"* " + cmd + b' (\\Noselect) "/" ""\r\n')
            else:
                for box in MAILBOXES:
                    w(b"* " + cmd + b' (\\HasNoChildren) "/" ' + box.encode() + b"\r\n")
            w(tag + b" OK " + cmd + b" completed\r\n")
        elif cmd in (b"SELECT", b"EXAMINE"):
            selected = True
            w(b"* %d EXISTS\r\n* 0 RECENT\r\n* FLAGS (%s)\r\n" % (exists, SYSTEM_FLAGS)
              + b"* OK [PERMANENTFLAGS (" + SYSTEM_FLAGS + b")] flags last this session\r\n"
              + b"* OK [UIDVALIDITY %d] UIDs valid\r\n* OK [UIDNEXT %d] next UID\r\n"
              % (UIDVALIDITY, UID + 1)
              + tag + (b" OK [READ-ONLY] " if cmd == b"EXAMINE" else b" OK [READ-WRITE] ")
              + cmd + b" completed\r\n")
        elif cmd == b"STATUS":
            unseen = int(present and b"\\Seen" not in flags)
            w(b"* STATUS INBOX (MESSAGES %d UNSEEN %d UIDNEXT %d UIDVALIDITY %d)\r\n"
              % (exists, unseen, UID + 1, UIDVALIDITY) + tag + b" OK STATUS completed\r\n")
        elif cmd == b"FETCH" and selected:
            spec, _, what = arg.partition(b" ")
            try:
                items = fetch_items(what)
                if present and in_sequence_set(spec, UID if uid else 1, UID if uid else 1):
                    data, flags = fetch_response(1, items, flags, MESSAGE, uid)
                    w(data)
                w(tag + b" OK FETCH completed\r\n")
            except ValueError as exc:
                w(tag + b" BAD " + str(exc).encode() + b"\r\n")
        elif cmd == b"STORE" and selected:
            spec, _, rest = arg.partition(b" ")
            how, _, values = rest.partition(b" ")
            given = set(values.strip(b"()").split())
            if present and in_sequence_set(spec, 1, 1):
                op = how.upper().split(b".")[0]
                flags = (flags | given if op == b"+FLAGS" else
                         flags - given if op == b"-FLAGS" else given)
                if not how.upper().endswith(b".SILENT"):
                    w(fetch_response(1, [b"FLAGS"], flags, MESSAGE, uid)[0])
            w(tag + b" OK STORE completed\r\n")
        elif cmd == b"SEARCH" and selected:
            words = arg.upper().split()
            hit = present and not (b"UNSEEN" in words and b"\\Seen" in flags) and not (
                b"SEEN" in words and b"\\Seen" not in flags) and not (
                b"DELETED" in words and b"\\Deleted" not in flags) and not (
                b"UNDELETED" in words and b"\\Deleted" in flags)
            w(b"* SEARCH" + (b" %d" % (UID if uid else 1) if hit else b"") + b"\r\n"
              + tag + b" OK SEARCH completed\r\n")
        elif cmd == b"EXPUNGE" and selected:
            if present and b"\\Deleted" in flags:
                present = False
                w(b"* 1 EXPUNGE\r\n")
            w(tag + b" OK EXPUNGE completed\r\n")
        elif cmd == b"IDLE":
            w(b"+ idling\r\n")
            await writer.drain()
            await reader.readline()  # DONE
            w(tag + b" OK IDLE terminated\r\n")
        elif cmd in (b"CLOSE", b"UNSELECT"):
            selected = False
            w(tag + b" OK " + cmd + b" completed\r\n")
        elif cmd == b"CHECK":
            w(tag + b" OK CHECK completed\r\n")
        elif cmd == b"LOGOUT":
            w(b"* BYE logging out\r\n" + tag + b" OK LOGOUT completed\r\n")
            await writer.drain()
            break
        else:
            w(tag + b" BAD unknown or unsupported command\r\n")
        await writer.drain()


async def pop3_session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    w = writer.write
    w(b"+OK tlswrap demo POP3 ready\r\n")
    stuffed = re.sub(rb"(?m)^\.", b"..", MESSAGE)  # RFC 1939 byte-stuffing
    async for line in _lines(reader):
        cmd, _, arg = line.partition(b" ")
        cmd = cmd.upper()
        if cmd in (b"USER", b"PASS", b"NOOP", b"RSET", b"DELE"):
            w(b"+OK\r\n")
        elif cmd == b"CAPA":
            w(b"+OK capabilities\r\nUSER\r\nUIDL\r\nTOP\r\n.\r\n")
        elif cmd == b"STAT":
            w(b"+OK 1 %d\r\n" % len(MESSAGE))
        elif cmd == b"LIST":
            w(b"+OK 1 %d\r\n" % len(MESSAGE) if arg else
              b"+OK 1 messages\r\n1 %d\r\n.\r\n" % len(MESSAGE))
        elif cmd == b"UIDL":
            w(b"+OK 1 demo-1\r\n" if arg else b"+OK\r\n1 demo-1\r\n.\r\n")
        elif cmd == b"RETR":
            w(b"+OK message follows\r\n" + stuffed + b".\r\n")
        elif cmd == b"TOP":
            header, text = split_message(stuffed)
            lines = int(arg.split()[1]) if len(arg.split()) > 1 else 0
            body = b"".join(text.splitlines(keepends=True)[:lines])
            w(b"+OK top of message follows\r\n" + header + body + b".\r\n")
        elif cmd == b"QUIT":
            w(b"+OK bye\r\n")
            await writer.drain()
            break
        else:
            w(b"-ERR unknown command\r\n")
        await writer.drain()


class Server:
    """The listeners and the sessions they run; ``close`` ends every session cleanly, so an
    interrupt with clients connected leaves nothing for asyncio to complain about."""

    def __init__(self) -> None:
        self.listeners: list[asyncio.Server] = []
        self.sessions: set[asyncio.Task[None]] = set()
        self.writers: set[asyncio.StreamWriter] = set()

    def handler(self, session):
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self.sessions.add(task)
            self.writers.add(writer)
            try:
                await session(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                self.writers.discard(writer)
                self.sessions.discard(task)
                writer.close()
        return handle

    async def close(self) -> None:
        for listener in self.listeners:
            listener.close()
        for writer in list(self.writers):
            writer.close()  # the session reads EOF and ends
        if self.sessions:
            await asyncio.wait(self.sessions, timeout=5)
        for task in list(self.sessions):
            task.cancel()


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


async def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--imap", default="127.0.0.1:10143", help="HOST:PORT for IMAP ('' for none)")
    ap.add_argument("--pop3", default="127.0.0.1:10110", help="HOST:PORT for POP3 ('' for none)")
    args = ap.parse_args()
    server = Server()
    for spec, session, name in ((args.imap, imap_session, "IMAP"),
                                (args.pop3, pop3_session, "POP3")):
        if spec:
            host, port = _hostport(spec)
            try:
                server.listeners.append(
                    await asyncio.start_server(server.handler(session), host, port))
            except OSError as exc:
                why = os.strerror(exc.errno) if exc.errno else str(exc)
                print(f"demo_mailserver: cannot listen for {name} on {host}:{port}: {why}",
                      file=sys.stderr, flush=True)
                await server.close()
                return 1
            print(f"demo {name} (plaintext) on {host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
