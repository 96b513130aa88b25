"""The per-connection pipeline: access check -> TLS handshake -> backend -> relay.

General theory of operation: ``serve_one`` runs the steps in order, each a function that takes
values and returns values, and records what happened in an ``Outcome``. The order is
deliberate: a refused client costs no crypto, and a client that has not finished its handshake
(under TIMEOUTbusy) never gets a backend connection it could leave hanging. Routine endings
(refusals, timeouts, resets, a backend that is down) are outcomes, not exceptions.

``serve_guarded`` is what the accept loop spawns: it runs ``serve_one``, catches everything
that escapes it (exception groups included), logs an unexpected error once with the service
and peer, and always writes the one closing log line from the outcome. Nothing one connection
does reaches the server: trio's ``serve_listeners`` warns that an exception escaping a handler
takes the whole server down.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import os
import socket
import time
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from cryptography import x509

    from .metrics import Metrics  # only its methods are used: inetd mode never imports it

from . import limits
from .access import Verdict, apply_socket_options
from .addresses import format_peer, peer_host, peer_port
from .backend import BackendError, open_backend
from .config import Service
from .execbackend import ExecStream, exec_environment, spawn
from .limits import Limiter, Ticket, client_key
from .logsetup import NOTICE
from .outcome import Outcome
from .relay import Relay
from .snapshot import ServiceRuntime
from .sockstream import SocketStream, set_socket_options
from .tlsstream import TLSStream

log = logging.getLogger("tlswrap.pipeline")


async def serve_guarded(rt: ServiceRuntime, sock: socket.socket, peer: object,
                        helpers: trio.Nursery, limiter: Limiter | None = None,
                        metrics: Metrics | None = None) -> None:
    """Serve one accepted connection to its end; never raises, except KeyboardInterrupt and
    SystemExit. Writes the connection's closing log line, and its metrics, from its
    outcome."""
    outcome = Outcome(rt.name, format_peer(peer))
    if metrics is not None:
        metrics.on_accept(rt.name)
    try:
        await serve_one(rt, sock, peer, helpers, outcome, limiter)
    except BaseException as exc:
        leaves = list(_leaves(exc))
        if any(isinstance(e, (KeyboardInterrupt, SystemExit)) for e in leaves):
            raise
        problems = [e for e in leaves if not isinstance(e, trio.Cancelled)]
        if not problems:
            outcome.end("shut down")  # cancelled: the SIGTERM drain ran out
        elif all(isinstance(e, trio.BrokenResourceError) for e in problems):
            outcome.end(str(problems[0]))
        else:
            outcome.end(f"internal error: {problems[0]!r}")
            log.error("%s internal error", outcome.who, exc_info=exc)
    finally:
        outcome.end()
        try:
            if metrics is not None:
                metrics.on_end(outcome)
            if not outcome.quiet and log.isEnabledFor(NOTICE):  # stunnel's default: every one
                log.log(NOTICE, "%s", outcome.log_line())
        except Exception:  # noqa: BLE001 - a broken log handler must not end the server
            pass


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, or the exception itself."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


async def serve_one(rt: ServiceRuntime, sock: socket.socket, peer: object,
                    helpers: trio.Nursery, outcome: Outcome,
                    limiter: Limiter | None = None) -> Outcome:
    """Run one connection through every step, recording each in ``outcome`` (returned).

    ``rt`` is the service as it was when the connection was accepted; ``helpers`` is a
    nursery for tasks that outlive a step (an exec'd program's stderr reader); ``limiter``
    the process's live counts (None: no limits, as in inetd mode). The socket is closed
    whatever happens; exceptions other than the routine ones propagate to the guard.
    """
    client: TLSStream | None = None
    backend: SocketStream | None = None
    ticket: Ticket | None = None
    relay: Relay | None = None
    try:
        svc = rt.service
        if svc.socket_options:
            set_socket_options(sock, svc.socket_options, "a")
        local = sock.getsockname()
        if svc.accept_proxy:
            found: tuple[object, object] | str = f"none within {svc.timeout_busy:g}s"
            with trio.move_on_after(svc.timeout_busy):  # TIMEOUTbusy
                found = await proxy_in(svc, sock, peer, local)
            if isinstance(found, str):  # refused before any TLS work
                log.warning("%s PROXY header refused: %s", outcome.who, found)
                outcome.end(f"PROXY header refused: {found}")
                return outcome
            balancer: str | None = outcome.peer
            peer, local = found
            outcome.peer = format_peer(peer)
        else:
            balancer = None
        if limiter is not None:
            ticket = admit(limiter, rt, peer, outcome)
            if ticket is None:
                return outcome  # closed before any TLS byte
        if balancer is not None:
            log.log(NOTICE, "%s accepted connection (via %s)", outcome.who, balancer)
        else:
            log.log(NOTICE, "%s accepted connection", outcome.who)
        verdict = await check_access(rt, sock, peer, local)
        if verdict is not None and not verdict.decision.granted and verdict.twist is None:
            assert rt.access is not None  # a verdict comes from it
            rt.access.log_refusal(rt.name, verdict)
            outcome.end("refused by tcp_wrappers")
            outcome.refused = "rules"
            if verdict.banner is None:
                return outcome  # closed before any TLS byte
        client = TLSStream(sock, rt.context)
        outcome.stage = "handshake"
        with trio.move_on_after(svc.timeout_busy):  # TIMEOUTbusy
            await client.do_handshake()
        if ticket is not None:
            ticket.handshake_done()
        if client.handshake_done:
            outcome.handshake_seconds = time.monotonic() - outcome.started
        else:
            outcome.end(f"TLS handshake timed out after {svc.timeout_busy:g}s")
            return outcome
        outcome.tls = client.describe()
        if verdict is not None and verdict.banner:
            await client.send_all(verdict.banner)
            if not verdict.decision.granted and verdict.twist is None:
                return outcome
        outcome.stage = "backend"
        opening = time.monotonic()
        try:
            backend = await open_side(rt, client, peer, local, verdict, helpers)
        except (BackendError, OSError) as exc:
            log.warning("%s backend unavailable: %s", outcome.who, exc)
            outcome.end(f"backend unavailable: {exc}")
            outcome.backend_failed = ", ".join(map(str, svc.connect)) or svc.exec
            return outcome
        outcome.connect_seconds = time.monotonic() - opening
        outcome.stage = "relay"
        if verdict is not None and verdict.twist is not None:
            outcome.end("twist")
        elif svc.proxy_protocol and not isinstance(backend, ExecStream):
            await backend.push(proxy_header(svc.proxy_protocol, peer, local, client))
        relay = Relay(client, backend, svc.timeout_idle, svc.timeout_close, svc.timeout_busy)
        try:
            await relay.run()
        finally:
            outcome.to_backend, outcome.to_client = relay.to_backend, relay.to_client
            outcome.truncated = client.truncated
        outcome.end(relay.reason or "closed")
        if relay.broken == "client" and not isinstance(backend, ExecStream):
            backend.abort()  # the client reset: so does the backend connection
    except trio.BrokenResourceError as exc:
        outcome.end(str(exc))
    finally:
        if ticket is not None:
            ticket.release()
        if isinstance(backend, ExecStream):
            await backend.finish(rt.service.timeout_close, abort=relay is not None
                                 and relay.broken is not None)
        elif backend is not None:
            backend.close()
        if client is not None:
            client.close()
        else:
            sock.close()
    return outcome


def admit(limiter: Limiter, rt: ServiceRuntime, peer: object,
          outcome: Outcome) -> Ticket | None:
    """The limits (``limits.Limiter``): a ticket the connection holds to its end, or None
    when it is refused. Checked before the access check, the ``accepted`` line and any TLS
    work, so that a flood costs no lookup and no crypto; a refusal writes one line (at most
    one a second per service and reason, with the count of those held back) instead of the
    connection's own lines."""
    svc = rt.service
    now = trio.current_time()
    got = limiter.admit(rt.name, client_key(peer_host(peer), svc.client_ipv6_prefix),
                        rt.limits, now)
    if isinstance(got, Ticket):
        return got
    outcome.refused = got
    outcome.quiet = True
    outcome.end(f"refused: {got}")
    held = limiter.throttle.allow((rt.name, got), now)
    if held is not None:
        value = {limits.MAX_CONNECTIONS: svc.max_connections,
                 limits.MAX_HANDSHAKES: rt.limits.max_handshakes,
                 limits.MAX_CLIENT_CONNECTIONS: svc.max_client_connections,
                 limits.MAX_CLIENT_RATE: svc.max_client_rate}.get(got)
        more = f" ({held} more refused for this reason since the last such line)" if held else ""
        log.warning("%s refused before TLS: %s = %s reached%s", outcome.who, got, value, more)
    return None


async def check_access(rt: ServiceRuntime, sock: socket.socket, peer: object,
                       local: object) -> Verdict | None:
    """hosts.allow/hosts.deny on the raw client address; None when libwrap is off."""
    if rt.access is None:
        return None
    verdict = await rt.access.check(rt.name, peer, local)
    apply_socket_options(sock, verdict.decision)
    return verdict


async def open_side(rt: ServiceRuntime, client: TLSStream, peer: object, local: object,
                    verdict: Verdict | None, helpers: trio.Nursery) -> SocketStream:
    """The plaintext side: a tcp_wrappers twist, the exec'd program, or a backend connection."""
    svc = rt.service
    if verdict is not None and verdict.twist is not None:
        return await run_program(rt, client, peer, local, verdict, helpers,
                                 "/bin/sh", ["sh", "-c", verdict.twist])
    if svc.exec is not None:
        argv = list(svc.exec_args) if svc.exec_args else [os.path.basename(svc.exec)]
        return await run_program(rt, client, peer, local, verdict, helpers, svc.exec, argv)
    backend, _ = await open_backend(rt.targets, svc.timeout_connect)
    if svc.socket_options:
        set_socket_options(backend.socket, svc.socket_options, "r")
    return backend


async def run_program(rt: ServiceRuntime, client: TLSStream, peer: object, local: object,
                      verdict: Verdict | None, helpers: trio.Nursery, program: str,
                      argv: list[str]) -> ExecStream:
    """Run ``program`` for this connection (exec, or a tcp_wrappers twist)."""
    dn = issuer = None
    cert = client.conn.get_peer_certificate(as_cryptography=True)
    if cert is not None:
        dn, issuer = oneline(cert.subject), oneline(cert.issuer)
    env = exec_environment(os.environ, peer, local, dn, issuer,
                           extra=verdict.env if verdict else None)
    return await spawn(program, argv, env, helpers, f"[{rt.name}] {argv[0]}",
                       umask=verdict.umask if verdict else None,
                       nice=verdict.nice if verdict else None,
                       user=verdict.user if verdict else None)


async def proxy_in(svc: Service, sock: socket.socket, peer: object,
                   local: object) -> tuple[object, object] | str:
    """``acceptProxy``: read the PROXY header a trusted balancer sends first; the client's
    (address, port) and the address it reached, or why the connection is refused.

    Only ``proxyTrusted`` peers may (and must) send one. Exactly the header's bytes are read,
    so the TLS bytes behind it stay in the socket: 12 bytes first (the shortest header is
    longer), then a v2 header's length field and the rest, or a v1 line up to its CRLF. A LOCAL
    header (a balancer's health check) keeps the connection's own addresses.
    """
    from . import proxyproto

    sock.setblocking(False)
    host = peer_host(peer)
    if host is None or not _trusted(host, svc.proxy_trusted):
        return f"{host or 'a unix socket client'} is not in proxyTrusted"
    try:
        data = await _recv_exact(sock, 12)
        if data == proxyproto.PP2_SIGNATURE:
            data += await _recv_exact(sock, 4)
            proxyproto.decode(data)  # refuses a bad version, family or length now
            data += await _recv_exact(sock, int.from_bytes(data[14:16], "big"))
        else:
            while not data.endswith(b"\r\n") and len(data) < proxyproto.MAX_V1_LINE:
                proxyproto.decode(data)  # refuses what can no longer be a v1 line
                data += await _recv_exact(sock, 1)
        got = proxyproto.decode(data)
    except proxyproto.ProxyProtocolError as exc:
        return str(exc)
    except EOFError:
        return "the connection ended inside the header"
    if got is None:
        return "incomplete header"
    header, _ = got
    if svc.accept_proxy not in ("any", f"v{header.version}"):
        return f"a v{header.version} header, acceptProxy = {svc.accept_proxy}"
    if header.command == proxyproto.LOCAL or header.source is None:
        return peer, local
    return header.source, header.destination


@functools.lru_cache(maxsize=64)
def _networks(nets: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network,
                                              ...]:
    return tuple(ipaddress.ip_network(net, strict=False) for net in nets)


def _trusted(host: str, nets: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return any(ip.version == net.version and ip in net for net in _networks(nets))


async def _recv_exact(sock: socket.socket, size: int) -> bytes:
    """Exactly ``size`` bytes from the non-blocking ``sock``; EOFError if it ends first."""
    data = b""
    while len(data) < size:
        try:
            chunk = sock.recv(size - len(data))
        except BlockingIOError:
            chunk = None
        if chunk is None:
            await trio.lowlevel.wait_readable(sock)
            continue
        if not chunk:
            raise EOFError
        data += chunk
    return data


def proxy_header(version: str, peer: object, local: object, client: TLSStream) -> bytes:
    """The PROXY header (``proxyProtocol = v1 | v2``) that tells the backend who the client
    is: its address and port and ours; v2 adds what the TLS handshake settled (the PP2_TYPE_SSL
    TLV with PP2_CLIENT_SSL, version and cipher; the SNI name as PP2_TYPE_AUTHORITY; the ALPN
    protocol). A client on a unix socket is sent as an unknown address."""
    from . import proxyproto

    host, port = peer_host(peer), peer_port(peer)
    lhost, lport = peer_host(local), peer_port(local)
    known = None not in (host, port, lhost, lport) and (":" in str(host)) == (":" in str(lhost))
    source = (str(host), int(port or 0)) if known else None
    destination = (str(lhost), int(lport or 0)) if known else None
    if version == "v1":
        return proxyproto.encode_v1(source, destination)
    conn = client.conn
    tlvs = [proxyproto.SSLInfo(client=proxyproto.PP2_CLIENT_SSL,
                               version=conn.get_protocol_version_name(),
                               cipher=conn.get_cipher_name()).to_tlv()]
    sni = conn.get_servername()
    if sni:
        tlvs.append((proxyproto.PP2_TYPE_AUTHORITY, sni))
    alpn = conn.get_alpn_proto_negotiated()
    if alpn:
        tlvs.append((proxyproto.PP2_TYPE_ALPN, alpn))
    return proxyproto.encode_v2(proxyproto.ProxyHeader(
        proxyproto.PROXY, source, destination, tuple(tlvs)))


def oneline(name: x509.Name) -> str:
    """An x509.Name as OpenSSL's X509_NAME_oneline: /C=CA/O=Example/CN=mail.example.org."""
    from cryptography.x509.oid import NameOID

    def short(attr: x509.NameAttribute[Any]) -> str:
        return "emailAddress" if attr.oid == NameOID.EMAIL_ADDRESS else attr.rfc4514_attribute_name

    def text(value: str | bytes) -> str:
        return value if isinstance(value, str) else value.hex()

    return "".join(f"/{short(a)}={text(a.value)}" for rdn in name.rdns for a in rdn)
