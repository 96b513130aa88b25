"""The environment of a program run per connection (``exec``, a tcp_wrappers twist): pure.

Both conventions mail programs look for: stunnel's (REMOTE_HOST, REMOTE_PORT, SSL_CLIENT_DN,
...) and UCSPI-TCP's (PROTO=TCP, TCPREMOTEIP, TCPLOCALPORT, ..., used by qmail and friends).
Shared by the daemon's pipeline and the inetd fast path.
"""

from __future__ import annotations

from .addresses import peer_host, peer_port

TYPE_CHECKING = False  # collections.abc costs ~1.5 ms, paid by every inetd connection
if TYPE_CHECKING:
    from collections.abc import Mapping

# Variables a wrapper must not pass on from its own environment to a per-client program.
DROPPED = ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET")


def _host(sockaddr: object) -> tuple[str, str]:
    host, port = peer_host(sockaddr), peer_port(sockaddr)
    return (host, str(port)) if host is not None and port is not None else ("", "")


def exec_environment(base: Mapping[str, str], peer: object, local: object,
                     client_dn: str | None = None, issuer_dn: str | None = None,
                     remote_host: str | None = None,
                     extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a per-connection program (everything comes in as values)."""
    env = {k: v for k, v in base.items() if k not in DROPPED}
    rip, rport = _host(peer)
    lip, lport = _host(local)
    env.update({
        "REMOTE_HOST": rip, "REMOTE_PORT": rport,
        "PROTO": "TCP", "TCPREMOTEIP": rip, "TCPREMOTEPORT": rport,
        "TCPLOCALIP": lip, "TCPLOCALPORT": lport,
    })
    if remote_host:
        env["TCPREMOTEHOST"] = remote_host
    if client_dn is not None:
        env["SSL_CLIENT_DN"] = client_dn
    if issuer_dn is not None:
        env["SSL_CLIENT_I_DN"] = issuer_dn
    if extra:
        env.update(extra)
    return env
