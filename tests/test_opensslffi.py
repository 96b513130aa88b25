"""The pyOpenSSL internals the fast path relies on: if a release moves them, this fails first,
with a message that says what moved (instead of every connection failing at run time)."""

from __future__ import annotations

import re
import socket
import tomllib
from importlib.metadata import version
from pathlib import Path

from OpenSSL import SSL

from tlswrap import opensslffi

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def test_the_binding_has_every_function_and_constant_used():
    missing = [name for name in opensslffi.REQUIRED if not hasattr(opensslffi.lib, name)]
    assert not missing, f"pyOpenSSL's binding no longer exposes {missing}"


def test_connection_and_context_pointers_are_where_the_shim_looks():
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    a, b = socket.socketpair()
    with a, b:
        conn = SSL.Connection(ctx, a)
        ssl = opensslffi.ssl_pointer(conn)
        assert opensslffi.ffi.typeof(ssl).cname == "SSL *"
        assert opensslffi.ffi.typeof(opensslffi.context_pointer(ctx)).cname == "SSL_CTX *"
        assert opensslffi.pointer_key(ssl) == int(opensslffi.ffi.cast("uintptr_t", ssl)) != 0


def test_raise_ssl_error_turns_a_failed_call_into_pyopenssl_exceptions():
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        conn = SSL.Connection(ctx, a)
        conn.set_accept_state()
        n = opensslffi.lib.SSL_do_handshake(opensslffi.ssl_pointer(conn))
        try:
            opensslffi.raise_ssl_error(conn, n)
        except SSL.WantReadError:
            pass
        else:  # pragma: no cover
            raise AssertionError("a handshake with nothing to read must want to read")


def test_the_installed_pyopenssl_is_inside_the_pinned_range():
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    pin = next(d for d in deps if d.lower().startswith("pyopenssl"))
    low, high = re.fullmatch(r"pyOpenSSL>=([\d.]+),<([\d.]+)", pin).groups()
    installed = tuple(int(x) for x in version("pyOpenSSL").split(".")[:2])
    assert tuple(int(x) for x in low.split(".")) <= installed
    assert installed < tuple(int(x) for x in ([*high.split("."), "0"])[:2])
