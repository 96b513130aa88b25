"""certwatch.watch on trio's autojump clock: files looked at every interval, a change swapped
in once, a broken pair refused once and the old context kept."""

from __future__ import annotations

import os

import pytest
import trio
import trio.testing
import trustme

from tlswrap.certwatch import watch
from tlswrap.config import parse_config
from tlswrap.fileid import file_ids
from tlswrap.snapshot import prepare


@pytest.fixture
def autojump_clock():
    # jumps only after 20 ms of real idleness: the watcher's stat and rebuild run in threads,
    # which must finish before the clock moves on (with 0, time flies while they run)
    return trio.testing.MockClock(autojump_threshold=0.02)


async def until(predicate) -> None:
    """Wait (on the mock clock) until ``predicate()``; bounded (600 of its seconds: a few
    real seconds at most, however slow the threads are)."""
    with trio.fail_after(600):
        while not predicate():
            await trio.sleep(1)


def pem_pair() -> bytes:
    leaf = trustme.CA().issue_cert("localhost")
    return leaf.cert_chain_pems[0].bytes() + leaf.private_key_pem.bytes()


async def test_watch_swaps_a_changed_service_once_and_refuses_a_broken_one(tmp_path,
                                                                         autojump_clock):
    combined, other = tmp_path / "imaps.pem", tmp_path / "pop3s.pem"
    combined.write_bytes(pem_pair())
    other.write_bytes(pem_pair())
    os.chmod(combined, 0o600)
    os.chmod(other, 0o600)
    config = parse_config(f"[imaps]\naccept = 993\nconnect = 143\ncert = {combined}\n"
                          f"[pop3s]\naccept = 995\nconnect = 110\ncert = {other}\n",
                          str(tmp_path / "t.conf"))
    current = [prepare(config)]
    counted: list[tuple[str, bool]] = []

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch, lambda: current[-1], current.append,
                           lambda what, ok: counted.append((what, ok)), 3.0)
        await trio.sleep(10)
        assert len(current) == 1 and counted == []  # nothing changed: nothing rebuilt

        fresh = tmp_path / "next.pem"
        fresh.write_bytes(pem_pair())
        os.replace(fresh, combined)
        await until(lambda: len(current) == 2)
        assert counted == [("certificate", True)]
        new, old = current[-1], current[0]
        assert new.services["imaps"].context is not old.services["imaps"].context
        assert new.services["imaps"].files == file_ids(config.services[0])
        assert new.services["pop3s"] is old.services["pop3s"]  # untouched

        end = b"-----END CERTIFICATE-----\n"
        cert_only = combined.read_bytes().split(end)[0] + end
        combined.write_bytes(cert_only + pem_pair().split(end)[1])  # another pair's key
        await until(lambda: len(counted) == 2)
        await trio.sleep(30)  # ten more looks at the same broken files
        assert len(current) == 2
        assert counted == [("certificate", True), ("certificate", False)]  # said once
        nursery.cancel_scope.cancel()
