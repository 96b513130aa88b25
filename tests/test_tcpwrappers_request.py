"""The request: lookups are lazy and run at most once."""

from __future__ import annotations

from test_tcpwrappers_decide import allow_text
from tlswrap.tcpwrappers import PARANOID, UNKNOWN, Request
from tlswrap.tcpwrappers.request import known


def test_name_lookup_is_lazy_and_once():
    calls = []

    def lookup():
        calls.append(1)
        return "mail.example.com"

    req = Request("imapd", client_addr="192.0.2.1", client_name=lookup)
    assert allow_text("ALL: 192.0.2.1\n", req).granted
    assert calls == []
    assert allow_text("ALL: .example.com\nALL: KNOWN\n", req).granted
    assert calls == [1]


def test_failed_lookups_read_unknown():
    req = Request("imapd", client_name=lambda: None, user="")
    assert (req.client_hostname(), req.username(), req.client_hostaddr()) == (UNKNOWN,) * 3
    assert not known(UNKNOWN) and not known("PARANOID") and not known(PARANOID)
    assert known("mail.example.com")


def test_a_copy_does_not_share_looked_up_values():
    req = Request("imapd", client_name=lambda: "a.example")
    assert req.client_hostname() == "a.example"
    assert req.client().name_ready()
    other = req.replace(client_name=lambda: "b.example")
    assert not other.client().name_ready()
    assert other.client_hostname() == "b.example"
