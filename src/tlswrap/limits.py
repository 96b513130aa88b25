"""Connection limits: counters and token buckets, decided before any TLS work (pure).

General theory of operation: one ``Limiter`` per serving process holds the live state -- the
connections each service has open, those of each client (address, or IPv6 prefix) of each
service, one token bucket per client for its new-connection rate, and the handshakes under
way. The settings come with each call (``LimitSettings``, from the service as the connection
was accepted), so a reload changes the limits but never the counts: a connection admitted
under the old configuration still counts, and is released when it ends.

``admit`` either refuses (the reason is the option that refused: ``maxConnections``,
``maxClientConnections``, ``maxClientRate``) or returns a ``Ticket`` that the connection
holds to its end and releases once (``release`` is idempotent). A refused connection takes
nothing. ``maxHandshakes`` bounds the handshakes under way across every service of the process
(a ticket holds a handshake slot from admission until ``handshake_done``): the handshake is
where a flood costs CPU, and that CPU is the process's, shared by every service.

Nothing here reads a clock: ``now`` is an argument (trio's clock in the daemon, numbers in the
tests). Memory stays bounded under a flood from many addresses: a client's entry goes when it
has no connection open, and its bucket once it has filled up again (a full bucket is the same
as none), swept at most every ``SWEEP_INTERVAL`` seconds once there are ``SWEEP_AT`` buckets.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

# The reasons a connection is refused: the option that refused it.
MAX_CONNECTIONS = "maxConnections"
MAX_CLIENT_CONNECTIONS = "maxClientConnections"
MAX_CLIENT_RATE = "maxClientRate"
MAX_HANDSHAKES = "maxHandshakes"
REASONS = (MAX_CONNECTIONS, MAX_CLIENT_CONNECTIONS, MAX_CLIENT_RATE, MAX_HANDSHAKES)

IPV6_PREFIX_DEFAULT = 64  # one site's LAN (RFC 6177): a client can pick any address in it
SWEEP_AT = 4096  # buckets tracked before full ones are swept
SWEEP_INTERVAL = 1.0  # seconds between two sweeps
LOG_INTERVAL = 1.0  # seconds between two refusal lines for one service and reason


@dataclass(frozen=True, slots=True)
class Rate:
    """``maxClientRate = N/SECONDS``: N new connections per SECONDS, in bursts of up to N."""

    count: int
    seconds: float

    def __str__(self) -> str:
        return f"{self.count}/{self.seconds:g}"


def parse_rate(value: str) -> Rate:
    """``N/SECONDS`` (``10/60``: ten a minute); ValueError with the reason otherwise."""
    count, slash, seconds = value.partition("/")
    count, seconds = count.strip(), seconds.strip()
    if not slash or not (count.isascii() and count.isdigit()) or int(count) < 1:
        raise ValueError(f"expected N/SECONDS (e.g. 10/60: ten a minute), got {value!r}")
    try:
        period = float(seconds)
    except ValueError:
        period = -1.0
    if not 0 < period < float("inf"):
        raise ValueError(f"expected a positive number of seconds after '/', got {seconds!r}")
    return Rate(int(count), period)


def parse_ipv6_prefix(value: str) -> int:
    """``clientIPv6Prefix``: 1 to 128 bits."""
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= 128:
        raise ValueError(f"expected a prefix length from 1 to 128, got {value!r}")
    return int(value)


def client_key(host: str | None, ipv6_prefix: int = IPV6_PREFIX_DEFAULT) -> str | None:
    """Who a client is, for the per-client limits: its IPv4 address, or the IPv6 network of
    ``ipv6_prefix`` bits its address is in (``2001:db8:1:2::/64``); an IPv4-mapped IPv6
    address counts as its IPv4 address. None: no address (a unix socket client), which no
    per-client limit applies to."""
    if host is None:
        return None
    if ":" not in host and host[:1].isdigit():
        return host  # IPv4, as the socket module writes it: already one canonical form
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, ipv6_prefix), strict=False))
    return str(ip)


@dataclass(frozen=True, slots=True)
class LimitSettings:
    """One service's limits, and the process's ``maxHandshakes``; None: no limit."""

    max_connections: int | None = None
    max_client_connections: int | None = None
    max_client_rate: Rate | None = None
    max_handshakes: int | None = None  # a global option: the bound is the process's


NO_LIMITS = LimitSettings()


class TokenBucket:
    """Up to ``rate.count`` tokens, refilled at ``count`` per ``seconds``; starts full."""

    __slots__ = ("stamp", "tokens")

    def __init__(self, rate: Rate, now: float):
        self.tokens = float(rate.count)
        self.stamp = now

    def refill(self, rate: Rate, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(float(rate.count),
                              self.tokens + (now - self.stamp) * rate.count / rate.seconds)
        self.stamp = max(self.stamp, now)

    def take(self, rate: Rate, now: float) -> bool:
        """One token if there is one (True), else nothing (False)."""
        self.refill(rate, now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def full(self, rate: Rate, now: float) -> bool:
        self.refill(rate, now)
        return self.tokens >= rate.count


class Ticket:
    """An admitted connection's share of the counts: its handshake slot, given back by
    ``handshake_done`` (or with the rest), and its connection counts, given back by
    ``release``. Each is given back once, however often these are called."""

    __slots__ = ("client", "handshaking", "limiter", "service")

    def __init__(self, limiter: Limiter, service: str, client: str | None):
        self.limiter: Limiter | None = limiter
        self.service = service
        self.client = client
        self.handshaking = True

    def handshake_done(self) -> None:
        if self.handshaking:
            self.handshaking = False
            if self.limiter is not None:
                self.limiter.handshakes -= 1

    def release(self) -> None:
        self.handshake_done()
        limiter, self.limiter = self.limiter, None
        if limiter is not None:
            limiter.give_back(self.service, self.client)


class Limiter:
    """The live counts of one process, kept across reloads (see the module docstring)."""

    def __init__(self) -> None:
        self.live: dict[str, int] = {}  # service -> connections open
        self.client_live: dict[tuple[str, str], int] = {}  # (service, client) -> open
        self.buckets: dict[tuple[str, str], tuple[TokenBucket, Rate]] = {}
        self.handshakes = 0  # admitted connections whose handshake is not over
        self.refused: dict[tuple[str, str], int] = {}  # (service, reason) -> count
        self.throttle = LogThrottle()
        self._swept = float("-inf")

    def admit(self, service: str, client: str | None, limits: LimitSettings,
              now: float) -> Ticket | str:
        """A ticket for a new connection of ``service`` from ``client`` (a ``client_key``),
        or the reason it is refused (counted in ``refused``). Checked in the order: the
        handshakes under way, the service's connections, the client's connections, the
        client's rate -- so a connection refused for a count spends no token."""
        reason = self._check(service, client, limits, now)
        if reason is not None:
            key = (service, reason)
            self.refused[key] = self.refused.get(key, 0) + 1
            return reason
        self.handshakes += 1
        self.live[service] = self.live.get(service, 0) + 1
        if client is not None:
            ckey = (service, client)
            self.client_live[ckey] = self.client_live.get(ckey, 0) + 1
        return Ticket(self, service, client)

    def _check(self, service: str, client: str | None, limits: LimitSettings,
               now: float) -> str | None:
        if limits.max_handshakes is not None and self.handshakes >= limits.max_handshakes:
            return MAX_HANDSHAKES
        if limits.max_connections is not None and \
                self.live.get(service, 0) >= limits.max_connections:
            return MAX_CONNECTIONS
        if client is None:
            return None
        ckey = (service, client)
        if limits.max_client_connections is not None and \
                self.client_live.get(ckey, 0) >= limits.max_client_connections:
            return MAX_CLIENT_CONNECTIONS
        rate = limits.max_client_rate
        if rate is not None:
            self._sweep(now)
            held = self.buckets.get(ckey)
            if held is None or held[1] != rate:  # new, or the rate changed on a reload
                bucket = TokenBucket(rate, now)
                if held is not None:  # keep what was spent, within the new capacity
                    held[0].refill(held[1], now)
                    bucket.tokens = min(float(rate.count), held[0].tokens)
                self.buckets[ckey] = (bucket, rate)
            else:
                bucket = held[0]
            if not bucket.take(rate, now):
                return MAX_CLIENT_RATE
        return None

    def give_back(self, service: str, client: str | None) -> None:
        """The end of an admitted connection (``Ticket.release`` calls this)."""
        left = self.live.get(service, 0) - 1
        if left > 0:
            self.live[service] = left
        else:
            self.live.pop(service, None)
        if client is not None:
            ckey = (service, client)
            left = self.client_live.get(ckey, 0) - 1
            if left > 0:
                self.client_live[ckey] = left
            else:
                self.client_live.pop(ckey, None)

    def _sweep(self, now: float) -> None:
        if len(self.buckets) < SWEEP_AT or now - self._swept < SWEEP_INTERVAL:
            return
        self._swept = now
        for ckey in [k for k, (b, rate) in self.buckets.items() if b.full(rate, now)]:
            del self.buckets[ckey]


class LogThrottle:
    """At most one line per key every ``interval`` seconds; the lines held back are counted
    and told with the next line, so a flood of refusals writes a line a second, not one per
    connection. The keys are few (a service and a reason), so none is ever forgotten."""

    def __init__(self, interval: float = LOG_INTERVAL):
        self.interval = interval
        self._last: dict[object, float] = {}
        self._held: dict[object, int] = {}

    def allow(self, key: object, now: float) -> int | None:
        """None: hold this line back. A number: write it, adding that this many were held
        back since the last one written."""
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._held.pop(key, 0)
