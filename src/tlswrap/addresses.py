"""Socket addresses as people read them: the one place that formats them (pure).

A dual-stack listener reports IPv4 clients as IPv4-mapped IPv6 (``::ffff:192.0.2.1``); every
log line, rule match and environment variable shows them as plain IPv4, as tcpd does.
"""

from __future__ import annotations

# What the socket module hands back: (host, port[, flowinfo, scope_id]) or a unix path.
SockAddr = tuple[str, int] | tuple[str, int, int, int] | str


def peer_host(sockaddr: object) -> str | None:
    """The host of a socket address, ``::ffff:a.b.c.d`` shown as ``a.b.c.d``; None for none."""
    if not isinstance(sockaddr, tuple) or not sockaddr or not isinstance(sockaddr[0], str):
        return None
    host = sockaddr[0]
    return host[7:] if host.startswith("::ffff:") and "." in host else host


def peer_port(sockaddr: object) -> int | None:
    """The port of an IP socket address; None for a unix socket or no address."""
    if isinstance(sockaddr, tuple) and len(sockaddr) >= 2 and isinstance(sockaddr[1], int):
        return sockaddr[1]
    return None


def format_peer(sockaddr: object) -> str:
    """``192.0.2.1:993`` or ``[2001:db8::1]:993``; a unix path as itself; ``unknown`` if none."""
    host = peer_host(sockaddr)
    if host is None:
        return str(sockaddr) if sockaddr else "unknown"
    port = peer_port(sockaddr)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def format_sockaddr(sockaddr: object) -> str:
    """A backend address as dialled: a unix path, ``host:port`` or ``[v6]:port``."""
    return sockaddr if isinstance(sockaddr, str) else format_peer(sockaddr)
