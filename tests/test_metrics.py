"""metrics: recording outcomes, merging workers' states, the text format and reading it back."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tlswrap.control import status_table
from tlswrap.metrics import BUCKETS, FAMILIES, Metrics, accepted, merge, parse, record, render
from tlswrap.outcome import Outcome


def outcome(**fields) -> Outcome:
    o = Outcome("imaps", "192.0.2.7:40000")
    for k, v in fields.items():
        setattr(o, k, v)
    return o


def samples(metrics_or_state) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    state = metrics_or_state.state() if isinstance(metrics_or_state, Metrics) else \
        metrics_or_state
    return {(name, tuple(sorted(labels.items()))): value
            for name, labels, value in parse(render(state))}


def test_record_each_kind_of_ending():
    m = Metrics()
    for _ in range(6):
        accepted(m, "imaps")
    record(m, outcome(stage="relay", handshake_seconds=0.004, connect_seconds=0.0005,
                      to_backend=9, to_client=26))
    record(m, outcome(refused="rules"))
    record(m, outcome(refused="maxClientRate"))
    record(m, outcome(stage="handshake", reason="TLS handshake timed out after 10s"))
    record(m, outcome(stage="handshake", reason="TLS handshake failed: wrong version number"))
    record(m, outcome(stage="backend", handshake_seconds=0.003,
                      backend_failed="127.0.0.1:143"))
    got = samples(m)
    svc = (("service", "imaps"),)
    assert got[("tlswrap_connections_accepted_total", svc)] == 6
    assert got[("tlswrap_connections_refused_total", (("reason", "maxClientRate"), *svc))] == 1
    assert got[("tlswrap_connections_refused_total", (("reason", "rules"), *svc))] == 1
    assert got[("tlswrap_handshake_failures_total", (("reason", "failed"), *svc))] == 1
    assert got[("tlswrap_handshake_failures_total", (("reason", "timeout"), *svc))] == 1
    assert got[("tlswrap_backend_failures_total", (*svc, ("target", "127.0.0.1:143")))] == 1
    assert got[("tlswrap_connections_served_total", svc)] == 1
    assert got[("tlswrap_bytes_to_backend_total", svc)] == 9
    assert got[("tlswrap_bytes_to_client_total", svc)] == 26
    assert got[("tlswrap_handshake_seconds_count", svc)] == 2
    assert got[("tlswrap_handshake_seconds_sum", svc)] == pytest.approx(0.007)
    assert got[("tlswrap_handshake_seconds_bucket", (("le", "0.0025"), *svc))] == 0
    assert got[("tlswrap_handshake_seconds_bucket", (("le", "0.005"), *svc))] == 2
    assert got[("tlswrap_handshake_seconds_bucket", (("le", "+Inf"), *svc))] == 2
    assert got[("tlswrap_connect_seconds_bucket", (("le", "0.001"), *svc))] == 1


def test_render_declares_every_family_and_escapes_label_values():
    m = Metrics()
    m.count("tlswrap_connections_accepted_total", ('odd "name"\\ with\nnewline',))
    text = render(m.state())
    for family in FAMILIES.values():
        assert f"# TYPE {family.name} {family.kind}\n" in text
        assert f"# HELP {family.name} " in text
    assert ('tlswrap_connections_accepted_total{service="odd \\"name\\"\\\\ with\\nnewline"} 1'
            in text)
    assert parse(text) == [("tlswrap_connections_accepted_total",
                            {"service": 'odd "name"\\ with\nnewline'}, 1.0)]


@given(st.lists(st.tuples(st.text(min_size=1, max_size=20),
                          st.floats(min_value=0, max_value=1e6, allow_nan=False)),
                max_size=20))
def test_render_parse_round_trip(rows):
    m = Metrics()
    for name, value in rows:
        m.observe("tlswrap_handshake_seconds", (name,), value)
        m.count("tlswrap_bytes_to_client_total", (name,), value)
    got = {(n, labels.get("service"), labels.get("le")): v for n, labels, v in
           parse(render(m.state()))}
    for name in {name for name, _ in rows}:
        values = [v for n, v in rows if n == name]
        assert got[("tlswrap_handshake_seconds_count", name, None)] == len(values)
        assert got[("tlswrap_bytes_to_client_total", name, None)] == pytest.approx(sum(values))
        cumulative = [got[("tlswrap_handshake_seconds_bucket", name, repr(b) if b != int(b)
                           else str(int(b)))] for b in BUCKETS]
        assert cumulative == sorted(cumulative)
        assert cumulative[-1] <= len(values)


def test_merge_adds_workers_and_takes_shared_facts_once():
    a, b = Metrics(), Metrics()
    for m, n in ((a, 2), (b, 3)):
        m.count("tlswrap_connections_accepted_total", ("imaps",), n)
        m.set("tlswrap_connections_live", ("imaps",), n)
        m.set("tlswrap_certificate_not_after_seconds", ("imaps",), 1.9e9)
        m.observe("tlswrap_connect_seconds", ("imaps",), 0.002 * n)
    state = merge([json.loads(json.dumps(a.state())), json.loads(json.dumps(b.state()))])
    got = samples(state)
    svc = (("service", "imaps"),)
    assert got[("tlswrap_connections_accepted_total", svc)] == 5
    assert got[("tlswrap_connections_live", svc)] == 5
    assert got[("tlswrap_certificate_not_after_seconds", svc)] == 1.9e9
    assert got[("tlswrap_connect_seconds_count", svc)] == 2
    assert got[("tlswrap_connect_seconds_bucket", (("le", "0.005"), *svc))] == 1
    assert got[("tlswrap_connect_seconds_bucket", (("le", "0.01"), *svc))] == 2


def test_parse_refuses_what_is_not_a_sample():
    with pytest.raises(ValueError, match="line 2: not a metric sample"):
        parse("# HELP x y\nthis is not { a sample\n")


def test_status_table():
    m = Metrics()
    accepted(m, "imaps")
    accepted(m, "imaps")
    record(m, outcome(stage="relay", handshake_seconds=0.004, connect_seconds=0.0005,
                      to_backend=9, to_client=26))
    record(m, outcome(refused="rules"))
    m.set("tlswrap_certificate_not_after_seconds", ("imaps",), 1893456000)  # 2030-01-01
    m.set("tlswrap_ocsp_next_update_seconds", ("imaps",), 1800000000)  # 2027-01-15
    m.count("tlswrap_reloads_total", ("config", "ok"))
    table = status_table(render(m.state()))
    head, row = table.splitlines()[:2]
    assert head.split() == ["service", "accepted", "refused", "tls", "failed", "backend",
                            "failed", "served", "live", "bytes", "in", "bytes", "out", "cert",
                            "expires", "OCSP", "until"]
    assert row.split() == ["imaps", "2", "1", "0", "0", "1", "0", "9", "26", "2030-01-01",
                           "2027-01-15"]
    assert "  [imaps] refused: rules: 1\n" in table
    assert "  reloads of the config: ok: 1\n" in table
