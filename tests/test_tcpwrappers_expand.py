"""%-expansion: every sequence, shell-safe values, no lookup until one is needed."""

from __future__ import annotations

from tlswrap.tcpwrappers import Request, expand_percent


def test_expand_percent_sanitizes_hostile_names():
    req = Request("imapd", "192.0.2.1", client_name="x;rm -rf /$(id)`.example", user="bob",
                  server_addr="127.0.0.1", server_name="localhost", client_port=4321,
                  server_port=993, pid=77)
    assert expand_percent("%h", req) == "x_rm_-rf_/__id__.example"
    assert expand_percent("%a %A %c %d %H %N %p %r %R %s %u %% %", req) == (
        "192.0.2.1 127.0.0.1 bob@x_rm_-rf_/__id__.example imapd localhost localhost 77 4321"
        " 993 imapd@localhost bob % %")
    warnings = []
    assert expand_percent("a%qb;", req, warnings.append) == "ab;"
    assert warnings == ["unrecognized %q"]


def test_expand_hostinfo_uses_address_until_name_is_looked_up():
    req = Request("imapd", "192.0.2.1", client_name=lambda: "mail.example.com")
    assert expand_percent("%h %c %s", req) == "192.0.2.1 192.0.2.1 imapd"
    assert expand_percent("%n", req) == "mail.example.com"
    assert expand_percent("%h", req) == "mail.example.com"
    assert expand_percent("%n %u", Request("imapd")) == "unknown unknown"


def test_non_ascii_becomes_one_underscore_per_byte():
    assert expand_percent("%n", Request("imapd", client_name="é.example")) == "__.example"
