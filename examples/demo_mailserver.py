#!/usr/bin/env python3
"""A tiny plaintext IMAP4rev1 + POP3 server with one mailbox, for trying tlswrap out.

Not a mail server: it accepts any user name and password and serves the same demo message to
everyone. It exists so the quickstart (and the tests) have a real plaintext backend to put TLS in
front of. Standard library only.

    python3 examples/demo_mailserver.py --imap 127.0.0.1:10143 --pop3 127.0.0.1:10110
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal

MESSAGE = (
    b"From: demo@example.org\r\n"
    b"To: you@example.org\r\n"
    b"Subject: Welcome to tlswrap\r\n"
    b"Date: Wed, 25 Nov 2026 06:00:00 +0000\r\n"
    b"Message-ID: <demo-1@example.org>\r\n"
    b"\r\n"
    b"This message was read through TLS.\r\n"
)
MAILBOXES = ["INBOX", "Sent", "Trash"]
CAPS = b"IMAP4rev1 LITERAL+ ID IDLE AUTH=PLAIN"


async def _lines(reader: asyncio.StreamReader):
    while True:
        line = await reader.readline()
        if not line:
            return
        yield line.rstrip(b"\r\n")


async def imap_session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    w = writer.write
    w(b"* OK [CAPABILITY " + CAPS + b"] tlswrap demo IMAP ready\r\n")
    selected = False
    async for line in _lines(reader):
        parts = line.split(None, 2)
        if len(parts) < 2:
            w(b"* BAD missing tag or command\r\n")
            continue
        tag, cmd = parts[0], parts[1].upper()
        arg = parts[2] if len(parts) > 2 else b""
        if cmd == b"UID" and arg:
            sub = arg.split(None, 1)
            cmd, arg = sub[0].upper(), (sub[1] if len(sub) > 1 else b"")
        if cmd == b"CAPABILITY":
            w(b"* CAPABILITY " + CAPS + b"\r\n" + tag + b" OK CAPABILITY completed\r\n")
        elif cmd == b"NOOP":
            w(tag + b" OK NOOP completed\r\n")
        elif cmd == b"ID":
            w(b'* ID ("name" "tlswrap-demo")\r\n' + tag + b" OK ID completed\r\n")
        elif cmd == b"LOGIN":
            m = re.match(rb"\{(\d+)\+?\}$", arg)  # a literal user name: read and drop it
            if m:
                await reader.readexactly(int(m.group(1)))
                await reader.readline()
            w(tag + b" OK [CAPABILITY " + CAPS + b"] LOGIN completed\r\n")
        elif cmd == b"AUTHENTICATE":  # PLAIN, any credentials
            if len(arg.split()) < 2:  # no initial response: ask for it
                w(b"+ \r\n")
                await writer.drain()
                await reader.readline()
            w(tag + b" OK [CAPABILITY " + CAPS + b"] AUTHENTICATE completed\r\n")
        elif cmd in (b"LIST", b"LSUB"):
            for box in MAILBOXES:
                w(b"* " + cmd + b' (\\HasNoChildren) "/" ' + box.encode() + b"\r\n")
            w(tag + b" OK " + cmd + b" completed\r\n")
        elif cmd in (b"SELECT", b"EXAMINE"):
            selected = True
            w(b"* 1 EXISTS\r\n* 0 RECENT\r\n* FLAGS (\\Seen \\Deleted)\r\n"
              b"* OK [UIDVALIDITY 1] UIDs valid\r\n* OK [UIDNEXT 2] next UID\r\n"
              + tag + b" OK [READ-WRITE] " + cmd + b" completed\r\n")
        elif cmd == b"STATUS":
            w(b"* STATUS INBOX (MESSAGES 1 UNSEEN 0)\r\n" + tag + b" OK STATUS completed\r\n")
        elif cmd == b"FETCH" and selected:
            w(b"* 1 FETCH (UID 1 FLAGS (\\Seen) RFC822.SIZE %d BODY[] {%d}\r\n"
              % (len(MESSAGE), len(MESSAGE)) + MESSAGE + b")\r\n"
              + tag + b" OK FETCH completed\r\n")
        elif cmd == b"SEARCH" and selected:
            w(b"* SEARCH 1\r\n" + tag + b" OK SEARCH completed\r\n")
        elif cmd == b"IDLE":
            w(b"+ idling\r\n")
            await writer.drain()
            await reader.readline()  # DONE
            w(tag + b" OK IDLE terminated\r\n")
        elif cmd in (b"CLOSE", b"EXPUNGE", b"CHECK"):
            w(tag + b" OK " + cmd + b" completed\r\n")
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
        elif cmd in (b"RETR", b"TOP"):
            w(b"+OK message follows\r\n" + MESSAGE + b".\r\n")
        elif cmd == b"QUIT":
            w(b"+OK bye\r\n")
            await writer.drain()
            break
        else:
            w(b"-ERR unknown command\r\n")
        await writer.drain()


def _handler(session):
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await session(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
    return handle


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--imap", default="127.0.0.1:10143", help="HOST:PORT for IMAP ('' for none)")
    ap.add_argument("--pop3", default="127.0.0.1:10110", help="HOST:PORT for POP3 ('' for none)")
    args = ap.parse_args()
    servers = []
    for spec, session, name in ((args.imap, imap_session, "IMAP"),
                                (args.pop3, pop3_session, "POP3")):
        if spec:
            host, port = _hostport(spec)
            servers.append(await asyncio.start_server(_handler(session), host, port))
            print(f"demo {name} (plaintext) on {host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for s in servers:
        s.close()


if __name__ == "__main__":
    asyncio.run(main())
