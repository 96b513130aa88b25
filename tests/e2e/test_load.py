"""Load with a real server: 50 IMAP sessions at once through tlswrap to Dovecot, each logged in
before any goes on, all succeed; afterwards tlswrap holds no more descriptors than when idle."""

from __future__ import annotations

import imaplib
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import wait_for
from test_e2e_inetd import open_fds

from . import clients
from .conftest import need
from .servers import PASSWORD, Dovecot

pytestmark = pytest.mark.e2e

SESSIONS = 50
USERS = [f"user{i:02d}" for i in range(SESSIONS)]  # Dovecot allows 10 per user and address


@pytest.fixture
def many_users(scratch):
    need("dovecot")
    server = Dovecot(scratch, USERS)
    yield server
    server.stop()


def message(user: str) -> bytes:
    return (f"From: load@example.test\r\nTo: {user}@example.test\r\n"
            f"Subject: load test for {user}\r\n\r\n" + "payload line\r\n" * 200).encode()


def test_50_concurrent_imap_sessions_then_descriptors_back_to_idle(many_users, front, certs):
    for user in USERS:
        many_users.deliver(message(user), user=user)
    served = front("daemon", "dovecot.conf", {143: many_users.ports["imap"]})
    port, tlswrap = served.ports["imaps"], served.process

    def session(user: str, all_in: threading.Barrier) -> bytes:
        with imaplib.IMAP4_SSL(clients.HOST, port, ssl_context=certs.client_context(),
                               timeout=120) as m:
            assert m.login(user, PASSWORD)[0] == "OK"
            all_in.wait()  # every session is open and logged in at this point
            assert m.select("INBOX") == ("OK", [b"1"])
            typ, data = m.fetch("1", "(BODY.PEEK[])")
            assert typ == "OK", data
            assert m.logout()[0] == "BYE"
            return data[0][1]

    # The idle count is taken after one whole session: the daemon may already listen before
    # its event loop has opened its own descriptors (seen under a loaded CI machine).
    assert session(USERS[0], threading.Barrier(1)) == message(USERS[0])
    wait_for(lambda: " closed: TLSv" in tlswrap.log(), 10, "the warm-up session's end")
    idle = tlswrap.fd_count()
    all_in = threading.Barrier(SESSIONS, timeout=120)
    with ThreadPoolExecutor(SESSIONS) as pool:
        results = list(pool.map(session, USERS, [all_in] * SESSIONS))
    assert results == [message(user) for user in USERS]
    # two descriptors of slack, as in the other descriptor checks; a leak would be 50 or 100
    try:
        wait_for(lambda: tlswrap.fd_count() <= idle + 2, 30, "descriptors back to idle")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {idle} idle, now {open_fds(tlswrap.proc.pid)}") from None
    log = tlswrap.log()
    assert log.count("accepted connection") >= SESSIONS
