"""The per-connection pipeline: access check -> TLS handshake -> backend -> relay -> log line.

The order is deliberate: a refused client costs no crypto, and a client that has not finished
its handshake (under TIMEOUTbusy) never gets a backend connection it could leave hanging.
Each connection catches its own errors: nothing that happens to one client reaches the server.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass

import trio
from OpenSSL import SSL

from .access import AccessControl, Verdict, apply_socket_options
from .backend import BackendError, Target, open_backend
from .config import Service
from .execbackend import ExecStream, exec_environment, spawn
from .relay import Relay
from .sockstream import SocketStream, peer_host, set_socket_options
from .tlsstream import TLSStream

log = logging.getLogger("tlswrap.service")



def format_peer(sockaddr: tuple | str | None) -> str:
    """``1.2.3.4:993`` or ``[2001:db8::1]:993``; IPv4-mapped IPv6 shows as IPv4."""
    host = peer_host(sockaddr)
    if host is None:
        return str(sockaddr or "unknown")
    port = sockaddr[1]  # type: ignore[index]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class ConnInfo:
    """What is known about one connection, for the backend, the environment and the log."""

    peer: tuple
    local: tuple
    tls: TLSStream | None = None
    verdict: Verdict | None = None  # tcp_wrappers' decision and the options to apply


@dataclass
class Runtime:
    """A service ready to serve: its config, compiled TLS context and backend targets."""

    service: Service
    context: SSL.Context
    targets: tuple[Target, ...] = ()
    access: AccessControl | None = None
    nursery: trio.Nursery | None = None  # for helper tasks (a child's stderr reader)

    @property
    def name(self) -> str:
        return self.service.name

    async def handle(self, sock: socket.socket, peer: tuple) -> None:
        """Serve one accepted connection to its end; never raises (but Cancelled)."""
        started = time.monotonic()
        client: TLSStream | None = None
        backend: SocketStream | None = None
        relay: Relay | None = None
        who = f"[{self.name}] {format_peer(peer)}"
        reason = "closed"
        try:
            log.info("%s accepted connection", who)
            svc = self.service
            if svc.socket_options:
                set_socket_options(sock, svc.socket_options, "a")
            local = sock.getsockname()
            verdict = None
            if self.access is not None and self.service.libwrap:
                verdict = await self.access.check(self.name, peer, local)
                apply_socket_options(sock, verdict.decision)
                if not verdict.decision.granted and verdict.twist is None:
                    self.access.log_refusal(self.name, verdict)
                    reason = "refused by tcp_wrappers"
                    if verdict.banner is None:
                        return  # closed before any TLS byte
            client = TLSStream(sock, self.context)
            with trio.move_on_after(svc.timeout_busy) as scope:
                await client.do_handshake()
            if scope.cancelled_caught:
                reason = f"TLS handshake timed out after {svc.timeout_busy:g}s"
                return
            if verdict is not None and verdict.banner:
                await client.send_all(verdict.banner)
                if not verdict.decision.granted and verdict.twist is None:
                    return
            info = ConnInfo(peer, local, client, verdict)
            try:
                if verdict is not None and verdict.twist is not None:
                    backend = await self._spawn(info, "/bin/sh", ["sh", "-c", verdict.twist])
                    reason = "twist"
                elif svc.exec is not None:
                    argv = list(svc.exec_args) if svc.exec_args else [os.path.basename(svc.exec)]
                    backend = await self._spawn(info, svc.exec, argv)
                else:
                    backend, _ = await open_backend(self.targets, svc.timeout_connect)
                    if svc.socket_options:
                        set_socket_options(backend.socket, svc.socket_options, "r")
            except (BackendError, OSError) as exc:
                reason = f"backend unavailable: {exc}"
                log.warning("%s backend unavailable: %s", who, exc)
                return
            relay = Relay(client, backend, svc.timeout_idle, svc.timeout_close)
            await relay.run()
            reason = relay.reason or "closed"
            if client.truncated and not reason.startswith("client:"):
                # a bare TCP close: fine for mail, but worth knowing
                reason += " (the client sent no close_notify)"
        except trio.BrokenResourceError as exc:
            reason = str(exc)
        except trio.Cancelled:
            reason = "shut down"
            raise
        except Exception as exc:  # one connection's bug must not take the server down
            reason = f"internal error: {exc!r}"
            log.exception("%s internal error", who)
        finally:
            if isinstance(backend, ExecStream):
                await backend.finish(self.service.timeout_close)
            elif backend is not None:
                backend.close()
            if client is not None:
                client.close()
            else:
                sock.close()
            if log.isEnabledFor(logging.INFO):
                tls = client.describe() if client is not None else "no TLS"
                up = relay.to_backend if relay else 0
                down = relay.to_client if relay else 0
                log.info("%s closed: %s, %d bytes to backend, %d bytes to client, %.3fs, %s",
                         who, tls, up, down, time.monotonic() - started, reason)


    async def _spawn(self, info: ConnInfo, program: str, argv: list[str]) -> ExecStream:
        """Run ``program`` for this connection (exec, or a tcp_wrappers twist)."""
        assert self.nursery is not None
        dn = issuer = None
        cert = (info.tls.conn.get_peer_certificate(as_cryptography=True)
                if info.tls is not None else None)
        if cert is not None:
            dn, issuer = oneline(cert.subject), oneline(cert.issuer)
        v = info.verdict
        env = exec_environment(os.environ, info.peer, info.local, dn, issuer,
                               extra=v.env if v else None)
        return await spawn(program, argv, env, self.nursery, f"[{self.name}] {argv[0]}",
                           umask=v.umask if v else None, nice=v.nice if v else None,
                           user=v.user if v else None)


def oneline(name) -> str:  # type: ignore[no-untyped-def]
    """An x509.Name as OpenSSL's X509_NAME_oneline: /C=CA/O=Example/CN=mail.example.org."""
    from cryptography.x509.oid import NameOID

    def short(attr) -> str:  # type: ignore[no-untyped-def]
        return "emailAddress" if attr.oid == NameOID.EMAIL_ADDRESS else attr.rfc4514_attribute_name

    return "".join(f"/{short(a)}={a.value}" for rdn in name.rdns for a in rdn)
