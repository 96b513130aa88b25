"""The daemon's accept loop and reload, in process: a fault in one connection leaves the
server serving; a socket that stops being a listener ends its loop instead of spinning; a
reload swaps one whole snapshot."""

from __future__ import annotations

import functools
import logging
import socket

import pytest
import trio
import trio.testing

from conftest import free_port
from tlswrap import daemon
from tlswrap.config import parse_config
from tlswrap.outcome import Outcome
from tlswrap.snapshot import prepare


def config_text(certs, connect: str, name: str = "imaps", accept: str = "127.0.0.1:993") -> str:
    return (f"[{name}]\naccept = {accept}\nconnect = {connect}\ncert = {certs.cert_file}\n"
            f"key = {certs.key_file}\nlibwrap = no\n")


async def greet(stream: trio.SocketStream) -> None:
    async with stream:
        await stream.send_all(b"* OK ready\r\n")
        try:
            while data := await stream.receive_some(1000):
                await stream.send_all(data)
        except trio.BrokenResourceError:
            pass


async def imap_greeting(certs, port: int) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    tls = trio.SSLStream(stream, certs.client_context(), server_hostname="localhost")
    try:
        return await tls.receive_some(100)
    finally:
        await tls.aclose()


async def test_a_fault_in_the_closing_step_leaves_the_daemon_serving(certs, monkeypatch,
                                                                      caplog):
    caplog.set_level(logging.INFO, logger="tlswrap")

    def boom(self):
        raise AttributeError("'Connection' object has no attribute 'get_group_name'")

    monkeypatch.setattr(Outcome, "log_line", boom)
    async with trio.open_nursery() as n:
        backends = await n.start(functools.partial(trio.serve_tcp, greet, 0, host="127.0.0.1"))
        bport = backends[0].socket.getsockname()[1]
        config = parse_config(config_text(certs, f"127.0.0.1:{bport}",
                                          accept=f"127.0.0.1:{free_port()}"), "test.conf")
        listeners = daemon.bind_all(config, config.services)
        port = listeners[0][0].getsockname()[1]
        await n.start(daemon.serve, listeners, prepare(config), False)
        for _ in range(3):  # the first connection's fault did not stop the second
            with trio.fail_after(10):
                assert await imap_greeting(certs, port) == b"* OK ready\r\n"
        n.cancel_scope.cancel()


async def test_a_dead_listener_stops_its_loop_and_says_so_once(caplog):
    caplog.set_level(logging.ERROR, logger="tlswrap")
    sock = socket.socket()  # never listening: accept() fails with EINVAL
    sock.setblocking(False)
    server = daemon.Server(None)  # type: ignore[arg-type]
    async with trio.open_nursery() as n:
        with trio.fail_after(5):
            await daemon.accept_loop(sock, "imaps", server, n)
    sock.close()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["[imaps] accept: Invalid argument: the listening socket is gone; "
                     "this service stops accepting"]


async def test_a_closed_listener_stops_its_loop(caplog):
    caplog.set_level(logging.ERROR, logger="tlswrap")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.setblocking(False)
    dup = socket.socket(fileno=sock.detach())
    dup.close()  # the descriptor is gone under the loop (what a worker closing it did)
    server = daemon.Server(None)  # type: ignore[arg-type]
    async with trio.open_nursery() as n:
        with trio.fail_after(5):
            await daemon.accept_loop(sock, "imaps", server, n)
    assert len(caplog.records) == 1
    assert "Bad file descriptor" in caplog.records[0].getMessage()


def test_merge_reload_keeps_moved_and_removed_services_and_reports_new_ones(certs, tmp_path):
    old = prepare(parse_config(config_text(certs, "127.0.0.1:143") +
                               config_text(certs, "127.0.0.1:110", "pop3s", "127.0.0.1:995") +
                               config_text(certs, "127.0.0.1:25", "smtps", "127.0.0.1:465"),
                               "a.conf"), "a.conf")
    new = prepare(parse_config(config_text(certs, "127.0.0.1:1143") +
                               config_text(certs, "127.0.0.1:110", "pop3s", "127.0.0.1:9995") +
                               config_text(certs, "127.0.0.1:587", "submission",
                                           "127.0.0.1:587"), "a.conf"), "a.conf")
    merged, warnings = daemon.merge_reload(old, new)
    assert merged.services["imaps"] is new.services["imaps"]  # new settings
    assert merged.services["pop3s"] is old.services["pop3s"]  # accept changed: kept
    assert merged.services["smtps"] is old.services["smtps"]  # removed: kept
    assert "submission" not in merged.services
    assert warnings == [
        "[pop3s] accept changed: takes effect at the next restart",
        "[smtps] no longer in a.conf: still served until a restart",
        "new service(s) submission: take effect at the next restart",
    ]


@pytest.mark.parametrize("bad", ["bogus = 1\n", "[imaps]\n"])
async def test_reload_failure_keeps_the_snapshot(certs, tmp_path, bad, caplog):
    path = tmp_path / "t.conf"
    path.write_text(config_text(certs, "127.0.0.1:143"))
    server = daemon.Server(daemon.load_snapshot(str(path)))
    before = server.snapshot
    path.write_text(path.read_text() + bad)
    await daemon.reload(server)
    assert server.snapshot is before
    assert any("reload failed, keeping the running configuration" in r.getMessage()
               for r in caplog.records)
