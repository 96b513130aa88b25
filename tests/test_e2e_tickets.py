"""Session resumption across ``workers = 2``: the contexts (and so the session-ticket keys) are
made once, before the workers are forked, so a ticket one worker issued is accepted by every
other -- even by a worker that did not exist when it was issued."""

from __future__ import annotations

import os
import signal

from conftest import two_workers, wait_for
from test_e2e_inetd import _children
from tlsclients import needs_openssl, s_client

pytestmark = needs_openssl


def test_a_session_is_resumed_by_workers_that_did_not_issue_it(certs, thread_server, tlswrap,
                                                             tmp_path):
    proc, port = two_workers(certs, thread_server, tlswrap)
    session = tmp_path / "session.pem"
    first = s_client(port, "-sess_out", str(session))
    assert b"* OK echo ready" in first.stdout and b"New, TLSv1.3" in first.stdout
    assert session.stat().st_size > 0
    # both workers are replaced: neither process that could have issued the ticket is left
    for pid in _children(proc.proc.pid):
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda pid=pid: pid not in _children(proc.proc.pid)
                 and len(_children(proc.proc.pid)) == 2, 10, "a replacement worker")
    for _ in range(4):
        again = s_client(port, "-sess_in", str(session))
        assert b"Reused, TLSv1.3" in again.stdout, again.stdout
        assert b"* OK echo ready" in again.stdout


def _reload(proc, count: int) -> None:  # type: ignore[no-untyped-def]
    proc.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: proc.log().count("configuration reloaded") >= count, 15, "the reloads")


def test_sessions_outlive_a_reload_that_leaves_the_service_unchanged(certs, thread_server,
                                                                     tlswrap, tmp_path):
    """A SIGHUP keeps a service's TLS contexts, and so its ticket keys, when neither its
    section nor its files changed; a new certificate makes new ones."""
    from test_e2e_reload import switch_to_a_new_certificate

    proc, port = two_workers(certs, thread_server, tlswrap)
    session = tmp_path / "session.pem"
    assert b"New, TLSv1.3" in s_client(port, "-sess_out", str(session)).stdout
    proc.config.write_text(proc.config.read_text().replace("debug = info", "debug = notice"))
    _reload(proc, 2)  # both workers: the global part changed, the service did not
    for _ in range(4):
        assert b"Reused, TLSv1.3" in s_client(port, "-sess_in", str(session)).stdout
    switch_to_a_new_certificate(proc, certs, tmp_path)
    _reload(proc, 4)
    assert b"New, TLSv1.3" in s_client(port, "-sess_in", str(session)).stdout
