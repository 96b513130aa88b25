"""The per-connection pipeline: access check -> TLS handshake -> backend -> relay.

General theory of operation: ``serve_one`` runs the steps in order, each a function that takes
values and returns values, and records what happened in an ``Outcome``. The order is
deliberate: a refused client costs no crypto, and a client that has not finished its handshake
(under TIMEOUTbusy) never gets a backend connection it could leave hanging. A STARTTLS service
(``protocol = imap | pop3 | smtp``) goes another way after the access check, in
``preamble.serve_starttls``: backend first, the plaintext start, then TLS. Routine endings
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
import itertools
import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from OpenSSL import SSL

    from .certnames import PeerIdentity
    from .metrics import Metrics  # only its methods are used: inetd mode never imports it

from . import limits
from .access import Verdict, apply_socket_options
from .addresses import format_peer, peer_host, peer_port
from .backend import BackendError, open_backend
from .config import PROXY_TLVS, Service
from .execbackend import ExecStream, exec_environment, spawn
from .limits import Limiter, Ticket, client_key
from .logsetup import NOTICE
from .outcome import Outcome
from .relay import Relay
from .snapshot import ServiceRuntime
from .sockstream import SocketStream, set_socket_options
from .tlsstream import TLSStream

log = logging.getLogger("tlswrap.pipeline")
_sequence = itertools.count(1)


def connection_id(kind: str | None) -> str | None:
    """A connection id of stunnel's ``logId`` kind: ``sequential`` (1, 2, ... in this
    process), ``unique`` (random, 16 characters, unique across processes and restarts),
    ``thread`` (the OS thread and a sequence number: one thread serves every connection),
    ``process`` (the pid: one per connection in inetd mode); None when not configured."""
    if kind is None:
        return None
    if kind == "sequential":
        return str(next(_sequence))
    if kind == "unique":
        return secrets.token_urlsafe(12)
    if kind == "process":
        return str(os.getpid())
    return f"{threading.get_native_id()}.{next(_sequence)}"


async def serve_guarded(rt: ServiceRuntime, sock: socket.socket, peer: object,
                        helpers: trio.Nursery, limiter: Limiter | None = None,
                        metrics: Metrics | None = None) -> None:
    """Serve one accepted connection to its end; never raises, except KeyboardInterrupt and
    SystemExit. Writes the connection's closing log line, and its metrics, from its
    outcome."""
    outcome = Outcome(rt.name, format_peer(peer), conn_id=connection_id(rt.service.log_id))
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
    client: SocketStream | None = None
    backend: SocketStream | None = None
    identity: PeerIdentity | None = None
    ticket: Ticket | None = None
    relay: Relay | None = None
    try:
        svc = rt.service
        if svc.socket_options and sock.family != socket.AF_UNIX:  # as stunnel
            for problem in set_socket_options(sock, svc.socket_options, "l"):
                log.warning("%s socket option refused: %s", outcome.who, problem)
        local = sock.getsockname()
        balancer: str | None = None
        if svc.accept_proxy:
            found: tuple[object, object] | str = f"none within {svc.timeout_busy:g}s"
            with trio.move_on_after(svc.timeout_busy):  # TIMEOUTbusy
                found = await proxy_in(svc, sock, peer, local)
            if isinstance(found, str):  # refused before any TLS work
                log.warning("%s PROXY header refused: %s", outcome.who, found)
                outcome.end(f"PROXY header refused: {found}")
                return outcome
            balancer = outcome.peer
            peer, local = found
            outcome.peer = format_peer(peer)
        if limiter is not None:
            ticket = admit(limiter, rt, peer, outcome)
            if ticket is None:
                return outcome  # closed before any TLS byte
        if balancer is not None:
            log.log(NOTICE, "%s accepted connection (via %s)", outcome.who, balancer)
        else:
            log.log(NOTICE, "%s accepted connection", outcome.who)
        verdict = await check_access(rt, sock, peer, local, outcome.tag)
        if verdict is not None and not verdict.decision.granted and verdict.twist is None:
            assert rt.access is not None  # a verdict comes from it
            rt.access.log_refusal(rt.name, verdict, outcome.tag)
            outcome.end("refused by tcp_wrappers")
            outcome.refused = "rules"
            if verdict.banner is None:
                return outcome  # closed before any TLS byte
        if svc.ident is not None and sock.family != socket.AF_UNIX:
            refusal = await check_ident(svc, peer, local)
            if refusal is not None:
                log.warning("%s refused by IDENT: %s", outcome.who, refusal)
                outcome.end(f"refused by IDENT: {refusal}")
                return outcome
        if svc.protocol is not None and not svc.client:  # STARTTLS, TLS in the middle
            from .preamble import serve_starttls

            if ticket is not None:
                ticket.handshake_done()  # maxHandshakes bounds implicit-TLS handshakes only
            await serve_starttls(rt, sock, peer, local, verdict, helpers, outcome)
            return outcome
        if svc.client:  # client = yes: plaintext here, TLS towards the backend
            client = SocketStream(sock)
            if ticket is not None:
                ticket.handshake_done()
        else:
            client = tls = TLSStream(sock, rt.context)
            outcome.stage = "handshake"
            with trio.move_on_after(svc.timeout_busy):  # TIMEOUTbusy
                await tls.do_handshake()
            if ticket is not None:
                ticket.handshake_done()
            if not tls.handshake_done:
                outcome.end(f"TLS handshake timed out after {svc.timeout_busy:g}s")
                return outcome
            outcome.handshake_seconds = time.monotonic() - outcome.started
            outcome.tls = tls.describe()
            rt, identity = served_by(rt, tls, outcome)
            svc = rt.service
            refusal = await ocsp_refusal(svc, tls, outcome.who)
            if refusal is not None:
                if not rt.redirect:
                    outcome.end(f"refused: {refusal}")
                    return outcome
                assert identity is not None  # a verified chain is the client's
                identity = replace(identity, verified=f"FAILED:{refusal}")
        if verdict is not None and verdict.banner:
            await client.send_all(verdict.banner)
            if not verdict.decision.granted and verdict.twist is None:
                return outcome
        outcome.stage = "backend"
        opening = time.monotonic()
        try:
            backend = await open_side(rt, identity, peer, local, verdict, helpers)
            if svc.client:
                if svc.protocol is not None:  # ask the server for TLS, as its mail client
                    from .preamble import starttls_with_server

                    await starttls_with_server(svc, backend, client, outcome)
                backend = await tls_to_backend(rt, backend, outcome)
                if svc.protocol_password is not None:  # SMTP AUTH inside TLS (smtp only)
                    from .preamble import authenticate_with_server

                    await authenticate_with_server(svc, backend, client, outcome)
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
            assert isinstance(client, TLSStream)  # parse_config: no PROXY header in client mode
            await backend.push(proxy_header(svc.proxy_protocol, peer, local, client, identity,
                                            tlvs=svc.proxy_tlvs, unique_id=outcome.conn_id))
        try:
            relay = await relay_session(svc, client, backend, outcome)
        finally:
            if svc.client and isinstance(backend, TLSStream):
                keep_session(rt, backend)
    except trio.BrokenResourceError as exc:
        outcome.end(str(exc))
    finally:
        if ticket is not None:
            ticket.release()
        if backend is not None:
            await close_backend(backend, rt.service,
                                abort=relay is not None and relay.broken is not None)
        if client is not None:
            client.close()
        else:
            sock.close()
    return outcome


async def relay_session(svc: Service, client: SocketStream, backend: SocketStream,
                        outcome: Outcome) -> Relay:
    """Relay until the connection ends; the bytes each way and why go into ``outcome``.
    TIMEOUTbusy ends a side that stops taking data; a side that breaks resets the other
    (``reset = yes``, stunnel's default)."""
    relay = Relay(client, backend, svc.timeout_idle, svc.timeout_close, svc.timeout_busy)
    try:
        await relay.run()
    finally:
        outcome.to_backend += relay.to_backend
        outcome.to_client += relay.to_client
        outcome.truncated = client.truncated
    outcome.end(relay.reason or "closed")
    if svc.reset and relay.broken == "client" and not isinstance(backend, ExecStream):
        backend.abort()  # the client reset: so does the backend connection
    elif svc.reset and relay.broken == "backend":
        client.abort()  # and the other way round
    return relay


async def close_backend(backend: SocketStream, svc: Service, abort: bool = False) -> None:
    """Close the backend connection, or let an exec'd program finish (up to TIMEOUTclose;
    ``abort``: the connection broke, so it is stopped at once)."""
    if isinstance(backend, ExecStream):
        await backend.finish(svc.timeout_close, abort=abort)
    else:
        backend.close()


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
                       local: object, label: str | None = None) -> Verdict | None:
    """hosts.allow/hosts.deny on the raw client address; None when libwrap is off."""
    if rt.access is None:
        return None
    verdict = await rt.access.check(rt.name, peer, local, label)
    apply_socket_options(sock, verdict.decision)
    return verdict


async def check_ident(svc: Service, peer: Any, local: Any) -> str | None:
    """``ident = USER``: None when the client's RFC 1413 server names USER, else why not."""
    from .ident import IdentError, ask

    try:
        user = await ask(peer, local, svc.timeout_connect, svc.timeout_busy)
    except IdentError as exc:
        return str(exc)
    return None if user == svc.ident else f"user {user!r}"


def served_by(rt: ServiceRuntime, tls: TLSStream,
              outcome: Outcome) -> tuple[ServiceRuntime, PeerIdentity | None]:
    """After the handshake: the section serving the client's server name (``sni``), and the
    client's certificate as verified (``verify``), both noted in the outcome.

    BrokenResourceError (the connection is refused) for a resumed session landing on an
    ``sni`` section that asks for client certificates: TLS 1.3 binds no server name to a
    session and OpenSSL looks the session up before the SNI callback switches sections, so a
    session of the primary would otherwise skip the section's certificate request. (A
    section's own sessions never resume: their session id context is not the primary's.)"""
    served = rt
    if rt.sni_routes:  # (nothing to look up for a service with one certificate)
        name = tls.conn.get_servername()
        served = rt.for_server_name(name.decode("ascii", "replace") if name else None)
    policy = served.service.verification
    if served is not rt:
        from .tlshooks import session_reused

        outcome.service = f"{rt.name}/{served.name}"
        if policy.request and session_reused(tls.conn):
            raise trio.BrokenResourceError(
                f"refused: a TLS session of [{rt.name}] resumed for [{served.name}], which "
                "asks for client certificates (a full handshake is needed)")
    identity = None
    if policy.request:
        from .tlshooks import peer_identity

        identity = peer_identity(tls.conn)
        outcome.peer_cert = identity.describe() if identity else "no client certificate"
        if identity is None and policy.require and not served.redirect:
            raise trio.BrokenResourceError("refused: no client certificate")
    return served, identity


async def ocsp_refusal(svc: Service, tls: TLSStream, who: str,
                       stapled: bytes | None = None) -> str | None:
    """The OCSP checks of the peer's verified chain (``OCSPaia``, ``OCSP = URL``): None when
    it passes or nothing is to be checked, else why it is refused. A resumed session carries
    no chain, so it is not checked again (as in stunnel)."""
    if not (svc.ocsp_checks and svc.verification.chain):
        return None
    from .ocspcheck import check_chain
    from .tlshooks import verified_chain

    chain = verified_chain(tls.conn)
    if len(chain) < 2:
        return None
    return await check_chain(svc, chain, stapled, who)


def verification_failed(rt: ServiceRuntime, identity: PeerIdentity | None) -> bool:
    """Whether a client is sent to ``redirect`` (it failed the certificate policy)."""
    policy = rt.service.verification
    if identity is None:
        return policy.require
    return identity.verified != "SUCCESS" and (policy.chain or policy.peer)


async def tls_to_backend(rt: ServiceRuntime, backend: SocketStream,
                         outcome: Outcome) -> TLSStream:
    """``client = yes``: TLS over the backend connection, the server's certificate checked
    (chain and name, unless ``verifyChain = no``), a session from an earlier connection
    resumed. OSError (the connection is logged as refused) when the handshake fails."""
    import ipaddress

    from .tlshooks import (
        ask_for_staple,
        expect_server,
        peer_identity,
        session_reused,
        stapled_response,
    )

    svc = rt.service
    tls = TLSStream(backend.detach(), rt.context, server_side=False)
    target = svc.connect[0].host if svc.connect and not svc.connect[0].is_unix else None
    name = svc.sni[0] if svc.sni else target
    host = ip = None
    if svc.verification.chain and not svc.check_host and not svc.check_ip and name:
        try:
            ip = str(ipaddress.ip_address(name))
        except ValueError:
            host = name
    expect_server(tls.conn, None if ip else name, host, ip)
    if svc.ocsp_checks and svc.verification.chain:
        ask_for_staple(tls.conn)
    session = rt.sessions.get("backend")
    if session is not None:
        tls.conn.set_session(session)
    try:
        with trio.move_on_after(svc.timeout_busy):  # TIMEOUTbusy
            await tls.do_handshake()
    except trio.BrokenResourceError as exc:
        tls.close()
        raise OSError(str(exc)) from None
    if not tls.handshake_done:
        tls.close()
        raise OSError(f"TLS handshake timed out after {svc.timeout_busy:g}s")
    refusal = await ocsp_refusal(svc, tls, outcome.who, stapled_response(tls.conn))
    if refusal is not None:
        tls.close()
        raise OSError(f"refused the server: {refusal}")
    resumed = " (resumed)" if session_reused(tls.conn) else ""
    outcome.tls = f"to backend {tls.describe()}{resumed}"
    server = peer_identity(tls.conn)
    if server is not None:
        outcome.peer_cert = server.describe("server")
    return tls


def keep_session(rt: ServiceRuntime, tls: TLSStream) -> None:
    """Remember the backend's TLS session for the next connection to resume."""
    session = tls.conn.get_session()
    if session is not None:
        rt.sessions["backend"] = session


async def open_side(rt: ServiceRuntime, identity: PeerIdentity | None, peer: object,
                    local: object, verdict: Verdict | None,
                    helpers: trio.Nursery) -> SocketStream:
    """The plaintext side: a tcp_wrappers twist, the exec'd program, or a backend connection
    (the ``redirect`` one for a client whose certificate failed)."""
    svc = rt.service
    if verdict is not None and verdict.twist is not None:
        return await run_program(rt, identity, peer, local, verdict, helpers,
                                 "/bin/sh", ["sh", "-c", verdict.twist])
    if rt.redirect and verification_failed(rt, identity):
        log.warning("%s client certificate refused: redirected", format_peer(peer))
        backend, _ = await open_backend(replace(rt.dialer, targets=rt.redirect, rotate=False),
                                        svc.timeout_connect, peer)
        return backend
    if svc.exec is not None:
        argv = list(svc.exec_args) if svc.exec_args else [os.path.basename(svc.exec)]
        return await run_program(rt, identity, peer, local, verdict, helpers, svc.exec, argv)
    backend, _ = await open_backend(rt.dialer, svc.timeout_connect, peer)
    return backend


async def run_program(rt: ServiceRuntime, identity: PeerIdentity | None, peer: object,
                      local: object, verdict: Verdict | None, helpers: trio.Nursery,
                      program: str, argv: list[str]) -> ExecStream:
    """Run ``program`` for this connection (exec, or a tcp_wrappers twist); a client
    certificate's identity is in its environment (SSL_CLIENT_DN, ...); None before TLS
    (STARTTLS) or without one."""
    extra = {**(identity.environment() if identity else {}), **(verdict.env if verdict else {})}
    env = exec_environment(rt.child_env or os.environ, peer, local, extra=extra)
    return await spawn(program, argv, env, helpers, f"[{rt.name}] {argv[0]}",
                       umask=verdict.umask if verdict else None,
                       nice=verdict.nice if verdict else None,
                       user=verdict.user if verdict else None,
                       pty=rt.service.pty and program == rt.service.exec)


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


def proxy_header(version: str, peer: object, local: object, client: TLSStream | None,
                 identity: PeerIdentity | None = None, tls_promised: bool = False,
                 tlvs: tuple[str, ...] = PROXY_TLVS, unique_id: str | None = None) -> bytes:
    """The PROXY header (``proxyProtocol = v1 | v2``) that tells the backend who the client
    is: its address and port and ours; v2 adds what the TLS handshake settled (the PP2_TYPE_SSL
    TLV with PP2_CLIENT_SSL, version and cipher; the SNI name as PP2_TYPE_AUTHORITY; the ALPN
    protocol). A client on a unix socket is sent as an unknown address. The certificate's
    Common Name (PP2_SUBTYPE_SSL_CN) goes only with a verified certificate: Dovecot takes it as
    the user name without looking at the verify field, so an unverified one (``verify = 0``)
    must not put a name there.

    With STARTTLS the header goes out before TLS (``client`` None): v2 then carries
    PP2_TYPE_SSL with PP2_CLIENT_SSL alone when ``tls_promised`` (the backend will see nothing
    but negotiation commands before the handshake), and no TLS TLV otherwise."""
    from . import proxyproto

    host, port = peer_host(peer), peer_port(peer)
    lhost, lport = peer_host(local), peer_port(local)
    known = None not in (host, port, lhost, lport) and (":" in str(host)) == (":" in str(lhost))
    source = (str(host), int(port or 0)) if known else None
    destination = (str(lhost), int(lport or 0)) if known else None
    if version == "v1":
        return proxyproto.encode_v1(source, destination)
    if client is None:
        promise = [proxyproto.SSLInfo(client=proxyproto.PP2_CLIENT_SSL).to_tlv()]
        return proxyproto.encode_v2(proxyproto.ProxyHeader(
            proxyproto.PROXY, source, destination,
            tuple(promise if tls_promised and "ssl" in tlvs else ())))
    from .tlshooks import session_reused

    conn = client.conn
    cert_flag = 0  # a certificate sent on this connection, or in the session it resumed
    if identity is not None:
        cert_flag = (proxyproto.PP2_CLIENT_CERT_SESS if session_reused(conn)
                     else proxyproto.PP2_CLIENT_CERT_CONN)
    # the CN only of a verified certificate: dovecot takes it as the user name without
    # looking at the verify field (with verify = 0 a self-made certificate would name anyone)
    verified = identity if identity is not None and identity.verified == "SUCCESS" else None
    sent: list[proxyproto.TLV] = []
    if "ssl" in tlvs:
        sig_alg, key_alg = _certificate_algorithms(conn)
        sent.append(proxyproto.SSLInfo(
            client=proxyproto.PP2_CLIENT_SSL | cert_flag, verify=0 if verified else 1,
            version=conn.get_protocol_version_name(), cipher=conn.get_cipher_name(),
            sig_alg=sig_alg, key_alg=key_alg,
            cn=verified.cn if verified and "cn" in tlvs else None).to_tlv())
    sni = conn.get_servername()
    if sni and "authority" in tlvs:
        sent.append((proxyproto.PP2_TYPE_AUTHORITY, sni))
    alpn = conn.get_alpn_proto_negotiated()
    if alpn and "alpn" in tlvs:
        sent.append((proxyproto.PP2_TYPE_ALPN, alpn))
    if unique_id and "unique_id" in tlvs:
        sent.append((proxyproto.PP2_TYPE_UNIQUE_ID, unique_id.encode("ascii")))
    return proxyproto.encode_v2(proxyproto.ProxyHeader(
        proxyproto.PROXY, source, destination, tuple(sent)))


def _certificate_algorithms(conn: SSL.Connection) -> tuple[str | None, str | None]:
    """The server certificate's signature algorithm and key (``RSA2048``, ``EC256``): the
    PP2_SUBTYPE_SSL_SIG_ALG and _KEY_ALG sub-TLVs, as haproxy fills them."""
    from OpenSSL import crypto

    cert = conn.get_certificate()
    if cert is None:
        return None, None
    try:
        sig_alg = cert.get_signature_algorithm().decode("ascii")
    except ValueError:  # an algorithm OpenSSL has no name for
        sig_alg = None
    key = cert.get_pubkey()
    kind = {crypto.TYPE_RSA: "RSA", crypto.TYPE_EC: "EC", crypto.TYPE_DSA: "DSA"}.get(key.type())
    return sig_alg, f"{kind}{key.bits()}" if kind else None
