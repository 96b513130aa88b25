"""``tlswrap reload CONFIG`` and ``tlswrap status CONFIG``: talk to a running daemon.

``reload`` signals the daemon that the config's ``pid`` file names; ``status`` reads the
config's ``metrics`` address and prints what it serves as a table.

A convenience over ``kill -HUP $(cat PIDFILE)`` that checks what it signals: the pid file must
be a regular file holding a process id, and that process must be a tlswrap (its command line
says so), so a stale file whose pid was reused by another program is never signalled.
"""

from __future__ import annotations

import os
import signal
import sys

from . import pidfile
from .config import load_config
from .errors import TlswrapError

USAGE = "usage: tlswrap reload CONFIG   (SIGHUP to the daemon in CONFIG's pid file)\n"


def daemon_pid(config_path: str) -> int:
    """The pid of the tlswrap serving ``config_path``, from its ``pid`` file; TlswrapError
    saying why if there is none."""
    config = load_config(config_path)
    path = config.globals.pid
    if not path:
        raise TlswrapError(f"{config_path}: no 'pid' option, so there is no pid file to find "
                           "the daemon by: add pid = /run/tlswrap.pid, or send SIGHUP yourself")
    try:
        pid = pidfile.read(path)
    except pidfile.PidFileError as exc:
        raise config.error(f"pid = {path}: cannot read the pid file: {exc}", "pid") from None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except FileNotFoundError:
        raise TlswrapError(f"{path}: process {pid} is not running (a stale pid file?)") \
            from None
    except OSError:
        argv = None  # no /proc here: trust the file
    if argv is not None and not any(b"tlswrap" in arg for arg in argv):
        raise TlswrapError(f"{path}: process {pid} is not tlswrap (a stale pid file whose "
                           "pid was reused?)")
    return pid


def main(args: list[str]) -> int:
    if len(args) != 1 or args[0].startswith("-"):
        sys.stderr.write(USAGE)
        return 2
    pid = daemon_pid(args[0])
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        raise TlswrapError(f"cannot signal process {pid}: {exc.strerror}") from None
    print(f"tlswrap: sent SIGHUP to pid {pid}")
    return 0


STATUS_USAGE = "usage: tlswrap status CONFIG   (the metrics of the daemon, as a table)\n"
STATUS_TIMEOUT = 10.0
_COLUMNS = (  # header, family (summed over the service's series)
    ("accepted", "tlswrap_connections_accepted_total"),
    ("refused", "tlswrap_connections_refused_total"),
    ("tls failed", "tlswrap_handshake_failures_total"),
    ("backend failed", "tlswrap_backend_failures_total"),
    ("served", "tlswrap_connections_served_total"),
    ("live", "tlswrap_connections_live"),
    ("bytes in", "tlswrap_bytes_to_backend_total"),
    ("bytes out", "tlswrap_bytes_to_client_total"),
)


def fetch_metrics(config_path: str) -> str:
    """The exposition text from the ``metrics`` address of ``config_path``."""
    import urllib.error
    import urllib.request

    config = load_config(config_path)
    addr = config.globals.metrics
    if addr is None:
        raise TlswrapError(f"{config_path}: no 'metrics' option: add metrics = 127.0.0.1:9993 "
                           "(any free port) and reload")
    host = f"[{addr.host}]" if addr.host and ":" in addr.host else addr.host
    url = f"http://{host}:{addr.port}/metrics"
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
        with opener.open(url, timeout=STATUS_TIMEOUT) as answer:
            return str(answer.read().decode("utf-8"))
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise config.error(f"metrics = {addr}: no answer from {url}: {reason}",
                           "metrics") from None


def status_table(text: str) -> str:
    """The samples of ``text`` as a table for a person: a row per service, then refusals
    and failures by reason, reloads, certificate expiry and the stapled OCSP response's
    nextUpdate."""
    import datetime

    from .metrics import parse

    samples = parse(text)
    services = sorted({labels["service"] for _, labels, _ in samples if "service" in labels})

    def total(family: str, **match: str) -> float:
        return sum(value for name, labels, value in samples if name == family
                   and all(labels.get(k) == v for k, v in match.items()))

    def day(family: str, svc: str) -> str:
        when = total(family, service=svc)
        return (datetime.datetime.fromtimestamp(when, datetime.UTC).strftime("%Y-%m-%d")
                if when else "-")

    rows = [["service", *(header for header, _ in _COLUMNS), "cert expires", "OCSP until"]]
    rows += [[svc, *(f"{total(family, service=svc):g}" for _, family in _COLUMNS),
              day("tlswrap_certificate_not_after_seconds", svc),
              day("tlswrap_ocsp_next_update_seconds", svc)] for svc in services]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    details = []
    for name, labels, value in samples:
        if name in ("tlswrap_connections_refused_total", "tlswrap_handshake_failures_total",
                    "tlswrap_backend_failures_total") and value:
            what = {"tlswrap_connections_refused_total": "refused",
                    "tlswrap_handshake_failures_total": "TLS failed",
                    "tlswrap_backend_failures_total": "backend failed"}[name]
            why = labels.get("reason") or labels.get("target", "")
            details.append(f"  [{labels.get('service')}] {what}: {why}: {value:g}")
        elif name == "tlswrap_reloads_total" and value:
            details.append(f"  reloads of the {labels.get('what')}: {labels.get('result')}: "
                           f"{value:g}")
    handshakes = total("tlswrap_handshakes_in_progress")
    details.append(f"  handshakes in progress: {handshakes:g}")
    return "\n".join([*lines, "", *details]) + "\n"


def status_main(args: list[str]) -> int:
    if len(args) != 1 or args[0].startswith("-"):
        sys.stderr.write(STATUS_USAGE)
        return 2
    sys.stdout.write(status_table(fetch_metrics(args[0])))
    return 0
