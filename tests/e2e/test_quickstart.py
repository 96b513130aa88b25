"""fetchmail and mutt against the quickstart: the demo mail server behind tlswrap running
examples/quickstart.conf, as the README's "Try it" section promises."""

from __future__ import annotations

import importlib.util

import pytest

from conftest import EXAMPLES

from . import clients
from .conftest import need

pytestmark = pytest.mark.e2e


@pytest.fixture
def quickstart(demo_mailserver, front):
    imap, pop3 = demo_mailserver
    return front("daemon", "quickstart.conf", {10143: imap, 10110: pop3})


def demo_message() -> bytes:
    """The message the demo serves (examples/ is not a package: loaded from its file)."""
    spec = importlib.util.spec_from_file_location("demo", EXAMPLES / "demo_mailserver.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MESSAGE


@pytest.mark.parametrize("proto", ["IMAP", "POP3"])
def test_fetchmail_fetches_the_demo_message(quickstart, certs, tmp_path, proto):
    need("fetchmail")
    port = quickstart.ports["imaps" if proto == "IMAP" else "pop3s"]
    got = clients.fetchmail(proto, port, certs.ca_file, "demo", "demo", tmp_path / "fm")
    assert got == [demo_message().replace(b"\r\n", b"\n")]


@pytest.mark.parametrize("scheme", ["imaps", "pops"])
def test_mutt_reads_the_demo_message(quickstart, certs, tmp_path, scheme):
    need("mutt", "script")
    port = quickstart.ports["imaps" if scheme == "imaps" else "pop3s"]
    url = f"{scheme}://{clients.HOST}:{port}/" + ("INBOX" if scheme == "imaps" else "")
    got = clients.mutt_read(url, certs.ca_file, "demo", "demo", tmp_path / "mutt")
    assert got == demo_message().replace(b"\r\n", b"\n")
