"""listening: listeners kept by address across a rebind, new ones bound, gone ones handed back."""

from __future__ import annotations

import socket

from conftest import free_port
from tlswrap.config import parse_config
from tlswrap.listening import Listening, bind_all, close_all, rebind_workers, unused


def config(*sections: tuple[str, int]):
    text = "".join(f"[{name}]\naccept = 127.0.0.1:{port}\nconnect = 143\ncert = c.pem\n"
                   for name, port in sections)
    return parse_config(text, "t.conf")


def test_rebind_keeps_sockets_by_address_and_reports_what_it_cannot_bind():
    a, b, c = free_port(), free_port(), free_port()
    first = config(("imaps", a), ("pop3s", b))
    bound = bind_all(first, first.services)
    listening = Listening(bound, {s.name: s for s in first.services})
    old = {s.name: s for s in first.services}
    try:
        with socket.create_server(("127.0.0.1", 0)) as squatter:
            taken = squatter.getsockname()[1]
            second = config(("mail", a), ("pop3s", taken), ("smtps", c))
            result = listening.rebind(second, old)
        by_name = {name: sock for sock, name in result.listeners.values()}
        assert by_name["mail"] is bound[0][0]  # same address, renamed: the very socket
        assert by_name["pop3s"] is bound[1][0]  # its new address is taken: stays where it was
        assert result.kept_old == {"pop3s"}
        assert by_name["smtps"].getsockname() == ("127.0.0.1", c)
        assert [str(e) for e in result.errors] == [
            f"t.conf:6: [pop3s] accept = 127.0.0.1:{taken}: cannot listen: Address already "
            "in use"]
        assert result.closed == []
        listening.apply(result)
        third = listening.rebind(config(("smtps", c)), old)
        assert [name for _, name in third.closed] == ["mail", "pop3s"]
        assert [name for _, name in third.listeners.values()] == ["smtps"]
    finally:
        close_all(listening.all())
        close_all(bound)


def test_rebind_workers_gives_each_worker_its_own_socket_and_unused_lists_the_rest():
    a, b = free_port(), free_port()
    first = config(("imaps", a))
    old = {s.name: s for s in first.services}
    sets = [bind_all(first, first.services, reuseport=True) for _ in range(2)]
    new_sets, result = rebind_workers(config(("pop3s", b)), old, sets, 3)
    try:
        assert result.errors == []
        socks = [pairs[0][0] for pairs in new_sets]
        assert len({id(s) for s in socks}) == 3  # one SO_REUSEPORT socket per worker
        assert {s.getsockname() for s in socks} == {("127.0.0.1", b)}
        gone = unused(sets, new_sets)
        assert sorted(id(s) for s, _ in gone) == sorted(id(p[0][0]) for p in sets)
    finally:
        for pairs in new_sets:
            close_all(pairs)
        for pairs in sets:
            close_all(pairs)
