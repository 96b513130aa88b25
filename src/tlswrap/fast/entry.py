"""The inetd fast path: one connection on fd 0 (inetd, xinetd) or fd 3 (systemd Accept=yes).

``serve_inetd(args)`` first decides, changing nothing, whether this start is one it serves:
a connected socket was handed over, the config (or command line) is one the fast path reads
(``spec``), ``opensslraw`` builds the TLS context, and the hosts files hold no rule or the
deciding rule's options are ones the fast path honours (``access``; decided here, per
connection, before anything is read from the connection or logged). If not, it returns None
and ``cli`` runs the full path in this process, on the same descriptor, which reads the same
input and serves (or says what is wrong) as it always has. Otherwise it serves the connection as
``inetd.serve_connection`` and ``pipeline.serve_one`` do, step for step and line for line,
and returns the exit status.
"""

from __future__ import annotations

import os
import stat
import sys
import time
from _socket import (
    AF_UNIX,
    IPPROTO_TCP,
    SO_ACCEPTCONN,
    SO_KEEPALIVE,
    SO_LINGER,
    SOL_SOCKET,
    TCP_NODELAY,
)
from _socket import socket as raw_socket

from ..addresses import format_peer
from ..execenv import exec_environment
from ..logtext import NOTICE, TCPD_SEVERITY_LEVELS
from ..opensslraw import READ, Connection, RawTLSError, TLSFailure, server_context
from ..outcome import Outcome
from ..regularfile import HOSTS_MAX_BYTES, read_regular
from . import spec as specs
from .backend import BackendFailure, Program, open_backend
from .log import DEBUG, ERROR, WARNING, Log
from .relay import Relay
from .waits import POLLIN, POLLOUT, wait_fd

TYPE_CHECKING = False  # typing costs milliseconds to import; annotations are strings here
if TYPE_CHECKING:
    from .access import Verdict

SHORT_LINE = 1000  # well below tcpd's line buffer (tcpwrappers.rules.BUFLEN)
_LINGER_ZERO = (1).to_bytes(4, sys.byteorder) + (0).to_bytes(4, sys.byteorder)  # linger {1, 0}


def is_socket(fd: int) -> bool:
    try:
        return stat.S_ISSOCK(os.fstat(fd).st_mode)
    except OSError:
        return False


def connection_fd() -> int | None:
    """The connected socket handed over (systemd's one LISTEN_FDS descriptor, else fd 0), or
    None when there is none (a daemon start, or a mistake the full path reports)."""
    fd = 0
    if os.environ.get("LISTEN_PID", "") == str(os.getpid()):
        if os.environ.get("LISTEN_FDS") != "1":
            return None
        fd = 3
    if not is_socket(fd):
        return None
    probe = raw_socket(fileno=os.dup(fd))
    try:
        listening = probe.getsockopt(SOL_SOCKET, SO_ACCEPTCONN)
    except OSError:
        return None
    finally:
        probe.close()
    return None if listening else fd


def no_rules(path: str) -> bool:
    """True when the hosts file ``path`` is missing or holds only what tcpd skips without a
    word: comments (``#`` in the first column) and blank lines (spaces, tabs, CR), each line
    short and ended by a newline, no continuation. tcpd then grants everyone, and the rule
    engine need not even be imported. Anything else -- a rule, an indented ``#`` (a rule to
    tcpd), a line the full path would warn about -- is for the rule engine (``access``)."""
    try:
        data = read_regular(path, HOSTS_MAX_BYTES)
    except FileNotFoundError:
        return True
    except (OSError, ValueError):
        return False
    if not data:
        return True
    if not data.endswith(b"\n") or b"\0" in data or b"\\\n" in data:
        return False
    return all(len(line) < SHORT_LINE and (line.startswith(b"#") or not line.strip(b" \t\r"))
               for line in data.split(b"\n")[:-1])


def read_spec(args: list[str]) -> specs.Spec:
    """The service, as the fast path reads it; Unsupported otherwise."""
    if len(args) == 1 and not args[0].startswith("-"):
        try:
            text = read_regular(args[0], specs.CONFIG_MAX_BYTES).decode("utf-8-sig")
        except (OSError, ValueError):
            raise specs.Unsupported from None
        return specs.from_config_text(text)
    from ..cli import split_one_service_args
    from ..errors import TlswrapError

    try:
        return specs.from_args(*split_one_service_args(args))
    except TlswrapError:
        raise specs.Unsupported from None


def serve_inetd(args: list[str]) -> int | None:
    """Serve the handed-over connection and return the exit status; None when this start is
    for the full path (nothing changed then but what the full path does too: an ``output``
    file created if missing)."""
    fd = connection_fd()
    if fd is None:
        return None
    try:
        spec = read_spec(args)
    except specs.Unsupported:
        return None
    low, high = spec.tls_range
    try:
        ctx = server_context(name=spec.name, cert=spec.cert or "", key=spec.key,
                             ciphers=spec.ciphers, ciphersuites=spec.ciphersuites,
                             curves=spec.curves, version_low=low, version_high=high,
                             ssl_options=spec.ssl_options,
                             session_timeout=spec.session_timeout)
    except RawTLSError:
        return None
    if spec.output:
        try:  # the full path says why it cannot be opened
            os.close(os.open(spec.output, os.O_WRONLY | os.O_APPEND | os.O_CREAT
                             | os.O_CLOEXEC, 0o640))
        except OSError:
            return None
    verdict = None
    if spec.libwrap and not (no_rules(spec.hosts_allow) and no_rules(spec.hosts_deny)):
        from .access import HandOver

        try:
            verdict = check_access(spec, fd)
        except HandOver:
            return None
    for var in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):  # systemd.forget_activation_env
        os.environ.pop(var, None)
    # inetd.serve_connection: the connection moves off 0, 1 (and 2 when inetd gave it)
    conn = raw_socket(fileno=os.dup(fd))
    devnull = os.open(os.devnull, os.O_RDWR)
    for std in {0, 1, fd} | ({2} if is_socket(2) else set()):
        os.dup2(devnull, std)
    os.close(devnull)
    stderr_ok = spec.foreground and not is_socket(2)
    syslog = spec.syslog if spec.syslog is not None else not stderr_ok
    log = Log(spec.debug, stderr=stderr_ok, output=spec.output, syslog=syslog,
              facility=spec.facility, ident=spec.name)
    log(DEBUG, f"[{spec.name}] inetd fast path: no trio, no pyOpenSSL")
    try:
        peer = conn.getpeername()
    except OSError as exc:
        log(WARNING, f"[{spec.name}] inetd connection already gone: {exc.strerror}")
        conn.close()
        return 0
    outcome = Outcome(spec.name, format_peer(peer))
    try:
        serve_one(spec, ctx, conn, peer, outcome, log, verdict)
    except Exception as exc:  # noqa: BLE001 - as pipeline.serve_guarded: logged, never a crash
        outcome.end(f"internal error: {exc!r}")
        import traceback

        log(ERROR, f"{outcome.who} internal error", traceback.format_exc())
    finally:
        outcome.end()
        if log.enabled(NOTICE):
            log(NOTICE, outcome.log_line())
        log.close()
    return 0


def check_access(spec: specs.Spec, fd: int) -> Verdict | None:
    """hosts.allow/hosts.deny for the connection on ``fd`` (``access.check``); None when it
    is already gone (the caller says so, as the full path does). HandOver: the full path's."""
    probe = raw_socket(fileno=os.dup(fd))
    try:
        peer, local = probe.getpeername(), probe.getsockname()
    except OSError:
        return None
    finally:
        probe.close()
    from .access import check

    return check(spec.name, spec.hosts_allow, spec.hosts_deny, peer, local, f"[{spec.name}]")


def refused(verdict: Verdict | None, conn: raw_socket, outcome: Outcome, log: Log) -> bool:
    """``pipeline``'s access step on a verdict made before: the resolver's warnings, the
    rule's keepalive and linger (``access.apply_socket_options``), and for a refusal its line
    (``AccessControl.log_refusal``, at the rule's ``severity``); True when refused."""
    if verdict is None:
        return False
    for warning in verdict.warnings:
        log(WARNING, warning)
    decision = verdict.decision
    if decision.option("keepalive") is not None:
        conn.setsockopt(SOL_SOCKET, SO_KEEPALIVE, 1)
    linger = decision.option("linger")
    if linger is not None:
        seconds = int(linger.arg)  # type: ignore[call-overload]
        conn.setsockopt(SOL_SOCKET, SO_LINGER,  # struct linger {1, seconds}
                        (1).to_bytes(4, sys.byteorder) + seconds.to_bytes(4, sys.byteorder))
    if decision.granted:
        return False
    level = WARNING
    severity = decision.option("severity")
    if severity is not None:
        level = TCPD_SEVERITY_LEVELS.get(severity.arg.level, WARNING)  # type: ignore[attr-defined]
    where = f" ({decision.file} line {decision.line})" if decision.file else ""
    log(level, f"{outcome.tag} refused connect from {verdict.client}{where}")
    outcome.end("refused by tcp_wrappers")
    outcome.refused = "rules"
    return True


def serve_one(spec: specs.Spec, ctx: object, conn: raw_socket, peer: object,
              outcome: Outcome, log: Log, verdict: Verdict | None = None) -> None:
    """``pipeline.serve_one`` for a service whose rules (if any) the fast path honours:
    access step on ``verdict``, handshake under TIMEOUTbusy, backend or program, relay,
    close."""
    client: Connection | None = None
    backend: raw_socket | None = None
    program: Program | None = None
    fd = conn.fileno()
    try:
        conn.setblocking(False)
        if conn.family != AF_UNIX:  # as the daemon's accept loop (small replies go at once)
            conn.setsockopt(IPPROTO_TCP, TCP_NODELAY, 1)
        local = conn.getsockname()
        log(NOTICE, f"{outcome.who} accepted connection")
        if refused(verdict, conn, outcome, log):
            return  # closed before any TLS byte
        client = Connection(ctx, fd)
        deadline = time.monotonic() + spec.timeout_busy
        try:
            while not client.handshake():
                if not wait_fd(fd, POLLIN if client.wants == READ else POLLOUT, deadline):
                    outcome.end(f"TLS handshake timed out after {spec.timeout_busy:g}s")
                    return
        except TLSFailure as exc:
            outcome.end(str(exc))
            return
        outcome.tls = client.describe()
        try:
            if spec.exec is not None:
                argv = list(spec.exec_args) if spec.exec_args else [os.path.basename(spec.exec)]
                env = exec_environment(os.environ, peer, local)
                program = Program(spec.exec, argv, env, f"[{spec.name}] {argv[0]}")
                backend = program.sock
            else:
                backend = open_backend(spec.connect, spec.timeout_connect)
        except (BackendFailure, OSError) as exc:
            log(WARNING, f"{outcome.who} backend unavailable: {exc}")
            outcome.end(f"backend unavailable: {exc}")
            return
        relay = Relay(client, fd, backend, spec.timeout_idle, spec.timeout_close, program,
                      log)
        try:
            relay.run()
        finally:
            outcome.to_backend, outcome.to_client = relay.to_backend, relay.to_client
            outcome.truncated = client.truncated
        outcome.end(relay.reason or "closed")
        if relay.broken == "client" and program is None:
            try:  # the client reset: so does the backend connection
                backend.setsockopt(SOL_SOCKET, SO_LINGER, _LINGER_ZERO)
            except OSError:
                pass
    finally:
        if program is not None:
            program.finish(spec.timeout_close, log)
        elif backend is not None:
            backend.close()
        if client is not None:
            client.close()
        conn.close()
