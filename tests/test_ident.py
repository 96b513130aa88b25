"""``ident = USER`` (RFC 1413): the codec, and a real daemon asking a real responder."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from conftest import free_port, service_config, wait_for
from tlswrap.ident import IdentError, parse_reply, query


def test_query_names_the_clients_port_then_ours():
    assert query(6193, 993) == b"6193 , 993\r\n"


@pytest.mark.parametrize(("reply", "user"), [
    (b"6193, 993 : USERID : UNIX : alice\r\n", "alice"),
    (b"6193,993:USERID:UNIX:  bob\r\n", "bob"),
    (b"1 , 2 : USERID : OTHER : name:with:colons\r\n", "name:with:colons"),
])
def test_replies_give_the_user(reply, user):
    assert parse_reply(reply) == user


@pytest.mark.parametrize(("reply", "why"), [
    (b"6193 , 993 : ERROR : NO-USER\r\n", "IDENT error: NO-USER"),
    (b"garbage\r\n", "malformed IDENT reply"),
    (b"1 , 2 : WHATEVER : UNIX : x\r\n", "malformed IDENT reply"),
    (b"", "malformed IDENT reply"),
])
def test_other_replies_are_errors(reply, why):
    with pytest.raises(IdentError, match=why):
        parse_reply(reply)


class IdentServer:
    """An RFC 1413 responder on 127.0.0.5:113 that names ``user`` for any connection."""

    def __init__(self, user: str):
        self.sock = socket.create_server(("127.0.0.5", 113))
        self.sock.settimeout(0.2)
        self.user, self.queries, self.stop = user, [], False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                line = conn.recv(100)
                self.queries.append(line)
                conn.sendall(line.strip() + f" : USERID : UNIX : {self.user}\r\n".encode())

    def close(self) -> None:
        self.stop = True
        self.thread.join(2)
        self.sock.close()


def client_of(certs, proc, port: int, user: str, served: bool, refusal: str) -> None:
    """A client from 127.0.0.5 whose ident server names ``user``: greeted through TLS, or
    closed before any TLS byte with ``refusal`` in the log; the server was asked once."""
    responder = IdentServer(user)
    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10,
                                       source_address=("127.0.0.5", 0))
        client_port = raw.getsockname()[1]
        with raw:
            if served:
                with certs.client_context().wrap_socket(raw, server_hostname="localhost") as t:
                    assert t.recv(10) == b"* OK\r\n"
            else:
                assert raw.recv(10) == b""
                wait_for(lambda: refusal in proc.log(), 10, "the refusal in the log")
        assert responder.queries == [f"{client_port} , {port}\r\n".encode()]
    finally:
        responder.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="port 113 needs root")
@pytest.mark.parametrize(("user", "served"), [("alice", True), ("mallory", False)])
def test_only_the_named_user_is_served(certs, thread_server, tlswrap, user, served):
    backend = thread_server(lambda conn: conn.sendall(b"* OK\r\n"))
    port = free_port()
    proc = tlswrap(service_config(certs, port, f"127.0.0.1:{backend.port}",
                                  extra="ident = alice"), [port])
    client_of(certs, proc, port, user, served, "refused by IDENT: user 'mallory'")


@pytest.mark.skipif(os.geteuid() != 0, reason="port 113 needs root")
@pytest.mark.parametrize(("user", "served"), [("alice", True), ("mallory", False)])
def test_a_user_at_host_rule_asks_the_clients_ident_server(certs, thread_server, tlswrap,
                                                           tmp_path, user, served):
    """hosts.allow ``imaps: alice@127.0.0.5`` as tcpd reads it: the client's ident server
    is asked (from the address the client reached), and names the user of the log line."""
    (tmp_path / "allow").write_text("imaps: alice@127.0.0.5\n")
    (tmp_path / "deny").write_text("ALL: ALL\n")
    backend = thread_server(lambda conn: conn.sendall(b"* OK\r\n"))
    port = free_port()
    proc = tlswrap(service_config(certs, port, f"127.0.0.1:{backend.port}", debug="notice",
                                  global_extra=f"hostsAllow = {tmp_path / 'allow'}\n"
                                               f"hostsDeny = {tmp_path / 'deny'}"), [port])
    client_of(certs, proc, port, user, served, "refused connect from mallory@127.0.0.5")
