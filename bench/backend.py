#!/usr/bin/env python3
"""Fallback plaintext backend (asyncio), used only when backend.c cannot be compiled.

Same protocol as backend.c: a greeting line on connect; then a first line "BULK DOWN <n>"
(send n pattern bytes), "BULK UP <n>" (read and check n bytes, answer "OK <n> <bad>"), or
anything else, which is echoed back byte for byte.

    python bench/backend.py PORT [HOST]      prints "READY <port>" once listening
"""

from __future__ import annotations

import asyncio
import resource
import sys

import pattern  # bench/pattern.py: this script runs from bench/, so it is on sys.path

GREETING = b"* OK [CAPABILITY IMAP4rev1] tlswrap-bench ready\r\n"


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        writer.write(GREETING)
        first = await reader.read(65536)
        if first.startswith(b"BULK ") and b"\n" not in first:
            first += await reader.readline()
        words = first.split(b"\n", 1)[0].split()
        if len(words) == 3 and words[0] == b"BULK" and words[1] in (b"DOWN", b"UP"):
            n = int(words[2])
            rest = first.split(b"\n", 1)[1] if b"\n" in first else b""
            if words[1] == b"DOWN":
                sent = 0
                while sent < n:
                    k = min(pattern.MAX_CHUNK, n - sent)
                    writer.write(pattern.chunk(sent, k))
                    await writer.drain()
                    sent += k
                await reader.read()  # until the peer closes
            else:
                got = bad = 0
                data = rest
                while True:
                    take = data[: n - got]
                    bad += pattern.mismatches(take, got)
                    got += len(take)
                    if got >= n:
                        break
                    data = await reader.read(65536)
                    if not data:
                        return
                writer.write(b"OK %d %d\r\n" % (got, bad))
                await writer.drain()
                await reader.read()
            return
        data = first
        while data:
            writer.write(data)
            await writer.drain()
            data = await reader.read(65536)
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    host = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
    server = await asyncio.start_server(handle, host, port, backlog=4096)
    print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
