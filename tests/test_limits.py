"""limits: the counts, the token bucket, the client key and the refusal-line throttle."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tlswrap.config import parse_config
from tlswrap.errors import ConfigError
from tlswrap.limits import (
    MAX_CLIENT_CONNECTIONS,
    MAX_CLIENT_RATE,
    MAX_CONNECTIONS,
    MAX_HANDSHAKES,
    SWEEP_AT,
    Limiter,
    LimitSettings,
    LogThrottle,
    Rate,
    Ticket,
    TokenBucket,
    client_key,
    parse_ipv6_prefix,
    parse_rate,
)


def test_parse_rate():
    assert parse_rate("10/60") == Rate(10, 60.0)
    assert parse_rate(" 3 / 0.5 ") == Rate(3, 0.5)
    assert str(parse_rate("10/60")) == "10/60"
    for bad in ("10", "0/60", "-1/60", "x/60", "10/", "10/0", "10/-5", "10/inf", "10/nan",
                "١/60", "10/x"):
        with pytest.raises(ValueError):
            parse_rate(bad)


def test_parse_ipv6_prefix():
    assert parse_ipv6_prefix("48") == 48
    for bad in ("0", "129", "x", "", "-1"):
        with pytest.raises(ValueError):
            parse_ipv6_prefix(bad)


def test_client_key_groups_ipv6_by_prefix():
    assert client_key("192.0.2.7") == "192.0.2.7"
    assert client_key("2001:db8:1:2::7") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::7") == "2001:db8:1:3::/64"
    assert client_key("2001:db8:1:3::7", 48) == "2001:db8:1::/48"
    assert client_key("2001:db8::1", 128) == "2001:db8::1/128"
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_key("fe80::1%eth0") == "fe80::/64"
    assert client_key(None) is None
    assert client_key("/run/tlswrap.sock") is None


def test_token_bucket_bursts_then_refills():
    rate = Rate(3, 60.0)
    bucket = TokenBucket(rate, 0.0)
    assert [bucket.take(rate, 0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(rate, 19.9)  # one token takes 20 s to come back
    assert bucket.take(rate, 20.0)
    assert not bucket.take(rate, 20.0)
    assert bucket.full(rate, 1000.0)
    assert bucket.tokens == 3.0  # never above the burst
    assert bucket.take(rate, 999.0)  # a clock going back neither refills nor moves the stamp
    assert (bucket.tokens, bucket.stamp) == (2.0, 1000.0)


@given(st.lists(st.floats(min_value=0, max_value=1e4, allow_nan=False), max_size=60))
def test_token_bucket_never_grants_more_than_the_rate(times):
    """Over any window from the start, granted <= count + elapsed * count / seconds."""
    rate = Rate(5, 10.0)
    bucket = TokenBucket(rate, 0.0)
    granted = 0
    for now in sorted(times):
        granted += bucket.take(rate, now)
        assert granted <= rate.count + now * rate.count / rate.seconds + 1e-9


def test_max_connections_counts_live_connections_of_the_service():
    lim = Limiter()
    limits = LimitSettings(max_connections=2)
    a = lim.admit("imaps", "192.0.2.1", limits, 0.0)
    b = lim.admit("imaps", "192.0.2.2", limits, 0.0)
    assert isinstance(a, Ticket) and isinstance(b, Ticket)
    assert lim.admit("imaps", "192.0.2.3", limits, 0.0) == MAX_CONNECTIONS
    assert isinstance(lim.admit("pop3s", "192.0.2.3", limits, 0.0), Ticket)  # its own count
    a.release()
    a.release()  # once only
    assert lim.live["imaps"] == 1
    assert isinstance(lim.admit("imaps", "192.0.2.3", limits, 0.0), Ticket)
    assert lim.refused == {("imaps", MAX_CONNECTIONS): 1}


def test_max_client_connections_per_address_and_per_ipv6_prefix():
    lim = Limiter()
    limits = LimitSettings(max_client_connections=1)
    first = lim.admit("imaps", client_key("2001:db8::1"), limits, 0.0)
    assert isinstance(first, Ticket)
    assert lim.admit("imaps", client_key("2001:db8::2"), limits, 0.0) == MAX_CLIENT_CONNECTIONS
    assert isinstance(lim.admit("imaps", client_key("2001:db8:0:1::2"), limits, 0.0), Ticket)
    assert isinstance(lim.admit("imaps", "192.0.2.1", limits, 0.0), Ticket)
    assert isinstance(lim.admit("imaps", None, limits, 0.0), Ticket)  # unix: no address
    assert isinstance(lim.admit("imaps", None, limits, 0.0), Ticket)
    first.release()
    assert ("imaps", "2001:db8::/64") not in lim.client_live  # nothing kept for a gone client
    assert isinstance(lim.admit("imaps", client_key("2001:db8::2"), limits, 0.0), Ticket)


def test_max_client_rate_refuses_a_flood_from_one_address_only():
    lim = Limiter()
    limits = LimitSettings(max_client_rate=Rate(3, 60.0))
    results = [lim.admit("pop3s", "192.0.2.1", limits, t * 0.1) for t in range(10)]
    assert [isinstance(r, Ticket) for r in results] == [True] * 3 + [False] * 7
    assert set(results[3:]) == {MAX_CLIENT_RATE}
    assert isinstance(lim.admit("pop3s", "192.0.2.2", limits, 1.0), Ticket)
    assert lim.admit("pop3s", "192.0.2.1", limits, 19.0) == MAX_CLIENT_RATE
    assert isinstance(lim.admit("pop3s", "192.0.2.1", limits, 21.0), Ticket)
    assert lim.refused == {("pop3s", MAX_CLIENT_RATE): 8}


def test_a_connection_refused_for_its_count_spends_no_token():
    lim = Limiter()
    limits = LimitSettings(max_client_connections=1, max_client_rate=Rate(2, 60.0))
    held = lim.admit("imaps", "192.0.2.1", limits, 0.0)
    assert isinstance(held, Ticket)
    for _ in range(5):
        assert lim.admit("imaps", "192.0.2.1", limits, 0.0) == MAX_CLIENT_CONNECTIONS
    held.release()
    assert isinstance(lim.admit("imaps", "192.0.2.1", limits, 0.0), Ticket)  # token 2 of 2


def test_max_handshakes_is_for_the_process_and_freed_when_the_handshake_ends():
    lim = Limiter()
    bound = LimitSettings(max_handshakes=2)
    a = lim.admit("imaps", "192.0.2.1", bound, 0.0)
    b = lim.admit("pop3s", "192.0.2.2", bound, 0.0)
    assert isinstance(a, Ticket) and isinstance(b, Ticket)
    assert lim.admit("smtps", "192.0.2.3", bound, 0.0) == MAX_HANDSHAKES
    a.handshake_done()
    a.handshake_done()  # once only
    assert lim.handshakes == 1
    c = lim.admit("smtps", "192.0.2.3", bound, 0.0)
    assert isinstance(c, Ticket)
    c.release()  # a connection that ends in its handshake frees the slot too
    b.release()
    a.release()
    assert lim.handshakes == 0
    assert lim.live == {}
    assert lim.refused == {("smtps", MAX_HANDSHAKES): 1}


def test_new_limits_apply_to_the_counts_already_live():
    """A reload hands new settings; the counts of live connections stay."""
    lim = Limiter()
    tickets = [lim.admit("imaps", "192.0.2.1", LimitSettings(), 0.0) for _ in range(3)]
    assert lim.admit("imaps", "192.0.2.9", LimitSettings(max_connections=3), 0.0) \
        == MAX_CONNECTIONS
    assert lim.admit("imaps", "192.0.2.1", LimitSettings(max_client_connections=2), 0.0) \
        == MAX_CLIENT_CONNECTIONS
    for t in tickets:
        assert isinstance(t, Ticket)
        t.release()
    assert isinstance(lim.admit("imaps", "192.0.2.9", LimitSettings(max_connections=3), 0.0),
                      Ticket)


def test_a_changed_rate_keeps_the_tokens_spent():
    lim = Limiter()
    for _ in range(3):
        assert isinstance(lim.admit("imaps", "192.0.2.1",
                                    LimitSettings(max_client_rate=Rate(3, 60.0)), 0.0), Ticket)
    # the new rate allows more per minute, but the client spent its burst a moment ago
    assert lim.admit("imaps", "192.0.2.1", LimitSettings(max_client_rate=Rate(6, 60.0)),
                     0.0) == MAX_CLIENT_RATE
    assert isinstance(lim.admit("imaps", "192.0.2.1",
                                LimitSettings(max_client_rate=Rate(6, 60.0)), 10.0), Ticket)


def test_buckets_that_filled_up_again_are_forgotten():
    lim = Limiter()
    limits = LimitSettings(max_client_rate=Rate(1, 1.0))
    for n in range(SWEEP_AT + 10):
        lim.admit("imaps", f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}", limits, 0.0)
    assert len(lim.buckets) == SWEEP_AT + 10
    lim.admit("imaps", "192.0.2.1", limits, 5.0)  # all the others are full again by now
    assert list(lim.buckets) == [("imaps", "192.0.2.1")]


def test_log_throttle_one_line_a_second_with_the_count_held_back():
    throttle = LogThrottle(1.0)
    key = ("imaps", MAX_CLIENT_RATE)
    assert throttle.allow(key, 0.0) == 0
    assert [throttle.allow(key, 0.1 * n) for n in range(1, 10)] == [None] * 9
    assert throttle.allow(("imaps", MAX_CONNECTIONS), 0.5) == 0  # another reason: its own
    assert throttle.allow(key, 1.0) == 9
    assert throttle.allow(key, 5.0) == 0


def test_limit_options_in_a_config():
    cfg = parse_config("maxHandshakes = 100\nmaxClientRate = 10/60\n[imaps]\naccept = 993\n"
                       "connect = 143\ncert = c.pem\nmaxConnections = 500\n"
                       "maxClientConnections = 20\nclientIPv6Prefix = 56\n"
                       "[pop3s]\naccept = 995\nconnect = 110\ncert = c.pem\n")
    assert cfg.globals.max_handshakes == 100
    imaps, pop3s = cfg.services
    assert (imaps.max_connections, imaps.max_client_connections, imaps.max_client_rate,
            imaps.client_ipv6_prefix) == (500, 20, Rate(10, 60.0), 56)
    assert (pop3s.max_connections, pop3s.max_client_rate, pop3s.client_ipv6_prefix) \
        == (None, Rate(10, 60.0), 64)


@pytest.mark.parametrize(("line", "message"), [
    ("maxConnections = 0", "maxConnections = 0: expected a positive whole number, got '0'"),
    ("maxClientRate = 10", "maxClientRate = 10: expected N/SECONDS (e.g. 10/60: ten a minute)"),
    ("maxClientRate = 10/0", "maxClientRate = 10/0: expected a positive number of seconds"),
    ("clientIPv6Prefix = 200", "clientIPv6Prefix = 200: expected a prefix length from 1 to 128"),
    ("maxHandshakes = 10", "'maxHandshakes' is a global option"),
])
def test_limit_option_mistakes_at_their_line(line, message):
    with pytest.raises(ConfigError) as info:
        parse_config(f"[imaps]\naccept = 993\nconnect = 143\ncert = c.pem\n{line}\n", "t.conf")
    assert str(info.value).startswith("t.conf:5: [imaps] ")
    assert message in str(info.value)
