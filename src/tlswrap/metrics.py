"""Metrics: what the daemon has done, counted, and written in the Prometheus text format (pure).

General theory of operation: a ``Metrics`` value holds one process's samples -- counters,
gauges and histograms by family and label values -- and is fed from each connection's
``Outcome`` (``record``) plus a few events (reloads). ``state()`` is a plain, JSON-able copy,
so that the supervisor of workers can ask each worker for its state and add them up
(``merge``); ``render`` writes a state in the text exposition format (version 0.0.4), and
``parse`` reads it back (``tlswrap status``). The families are declared once, in
``FAMILIES``. A connection is counted as accepted at once; the rest of what it did (its
handshake and connect times, bytes, how it ended) when it ends, from its ``Outcome``, as its
log line is written; live connections and handshakes under way are gauges read at each scrape.
Every label value comes from the configuration (service names, backend
addresses) or from a short fixed list (refusal and failure reasons), never from a peer, so the
number of series stays bounded whatever clients do.

Written here rather than with ``prometheus_client``: a dozen families need no dependency, and
that library's multi-process mode (files in a shared directory, by environment variable) fits
a daemon that drops privileges and forks workers worse than asking the workers directly.
"""

from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass
from typing import Any

from .outcome import Outcome

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# seconds: handshakes and backend connects take milliseconds; the top buckets show trouble
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

Labels = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    kind: str  # "counter", "gauge" or "histogram"
    help: str
    labels: tuple[str, ...] = ()
    merge: str = "sum"  # how workers' values combine: "sum" or "max"


FAMILIES = {f.name: f for f in [
    Family("tlswrap_connections_accepted_total", "counter",
           "Connections accepted, by service.", ("service",)),
    Family("tlswrap_connections_refused_total", "counter",
           "Connections refused before any TLS work, by service and reason (rules: "
           "hosts.allow/hosts.deny; or the limit that refused them).", ("service", "reason")),
    Family("tlswrap_handshake_failures_total", "counter",
           "TLS handshakes that failed, by service and reason (timeout, failed).",
           ("service", "reason")),
    Family("tlswrap_backend_failures_total", "counter",
           "Backends that could not be reached or run, by service and target.",
           ("service", "target")),
    Family("tlswrap_connections_served_total", "counter",
           "Connections relayed to a backend, by service.", ("service",)),
    Family("tlswrap_bytes_to_backend_total", "counter",
           "Plaintext bytes relayed from clients to the backend, by service.", ("service",)),
    Family("tlswrap_bytes_to_client_total", "counter",
           "Plaintext bytes relayed from the backend to clients, by service.", ("service",)),
    Family("tlswrap_handshake_seconds", "histogram",
           "Time from accept to the end of the TLS handshake, by service.", ("service",)),
    Family("tlswrap_connect_seconds", "histogram",
           "Time to open the backend connection (or start the program), by service.",
           ("service",)),
    Family("tlswrap_connections_live", "gauge",
           "Connections open now, by service.", ("service",)),
    Family("tlswrap_handshakes_in_progress", "gauge", "TLS handshakes under way now."),
    Family("tlswrap_reloads_total", "counter",
           "Reloads, by what was reloaded (config, certificate) and result (ok, failed).",
           ("what", "result")),
    Family("tlswrap_certificate_not_after_seconds", "gauge",
           "When the certificate served expires (Unix time), by service.", ("service",),
           merge="max"),
    Family("tlswrap_ocsp_next_update_seconds", "gauge",
           "The nextUpdate of the OCSP response stapled (Unix time), by service; absent "
           "while nothing is stapled.", ("service",), merge="max"),
]}


class Metrics:
    """One process's samples. Counters and gauges: family -> labels -> value; histograms:
    family -> labels -> bucket counts (one per BUCKETS bound, then +Inf), sum, count."""

    def __init__(self) -> None:
        self.values: dict[str, dict[Labels, float]] = {}
        self.histograms: dict[str, dict[Labels, list[float]]] = {}

    def count(self, family: str, labels: Labels = (), n: float = 1) -> None:
        series = self.values.setdefault(family, {})
        series[labels] = series.get(labels, 0) + n

    def set(self, family: str, labels: Labels, value: float) -> None:
        self.values.setdefault(family, {})[labels] = value

    def observe(self, family: str, labels: Labels, value: float) -> None:
        series = self.histograms.setdefault(family, {})
        row = series.get(labels)
        if row is None:
            row = series[labels] = [0.0] * (len(BUCKETS) + 3)
        index = bisect.bisect_left(BUCKETS, value)  # the first bound >= value; past all: +Inf
        row[index] += 1
        row[-2] += value
        row[-1] += 1

    def on_accept(self, service: str) -> None:
        accepted(self, service)

    def on_end(self, outcome: Outcome) -> None:
        record(self, outcome)

    def state(self) -> dict[str, Any]:
        """A JSON-able copy: {"values": {family: [[labels, value], ...]}, "histograms": ...}."""
        return {
            "values": {f: [[list(k), v] for k, v in s.items()] for f, s in self.values.items()},
            "histograms": {f: [[list(k), list(v)] for k, v in s.items()]
                           for f, s in self.histograms.items()},
        }


def accepted(metrics: Metrics, service: str) -> None:
    """A connection accepted (counted then, not at its end, so a long one is seen at once)."""
    metrics.count("tlswrap_connections_accepted_total", (service,))


def record(metrics: Metrics, outcome: Outcome) -> None:
    """What one connection adds once it has ended, from its outcome (``Outcome.stage``)."""
    svc = (outcome.service,)
    if outcome.refused is not None:
        metrics.count("tlswrap_connections_refused_total", (outcome.service, outcome.refused))
        return
    if outcome.handshake_seconds is not None:
        metrics.observe("tlswrap_handshake_seconds", svc, outcome.handshake_seconds)
    elif outcome.stage == "handshake":
        reason = "timeout" if outcome.reason.startswith("TLS handshake timed out") else "failed"
        metrics.count("tlswrap_handshake_failures_total", (outcome.service, reason))
    if outcome.connect_seconds is not None:
        metrics.observe("tlswrap_connect_seconds", svc, outcome.connect_seconds)
        metrics.count("tlswrap_connections_served_total", svc)
    elif outcome.backend_failed is not None:
        metrics.count("tlswrap_backend_failures_total", (outcome.service, outcome.backend_failed))
    if outcome.to_backend:
        metrics.count("tlswrap_bytes_to_backend_total", svc, outcome.to_backend)
    if outcome.to_client:
        metrics.count("tlswrap_bytes_to_client_total", svc, outcome.to_client)


def merge(states: list[dict[str, Any]]) -> dict[str, Any]:
    """The states of several workers as one: counters, live gauges and histograms added up,
    ``merge = "max"`` families (the same fact seen by each) taken once."""
    values: dict[str, dict[Labels, float]] = {}
    hists: dict[str, dict[Labels, list[float]]] = {}
    for state in states:
        for family, rows in state.get("values", {}).items():
            take_max = FAMILIES[family].merge == "max" if family in FAMILIES else False
            series = values.setdefault(family, {})
            for labels, value in rows:
                key = tuple(labels)
                old = series.get(key)
                series[key] = value if old is None else (max(old, value) if take_max
                                                         else old + value)
        for family, rows in state.get("histograms", {}).items():
            hseries = hists.setdefault(family, {})
            for labels, row in rows:
                key = tuple(labels)
                old_row = hseries.get(key)
                hseries[key] = list(row) if old_row is None else [
                    a + b for a, b in zip(old_row, row, strict=True)]
    return {"values": {f: [[list(k), v] for k, v in s.items()] for f, s in values.items()},
            "histograms": {f: [[list(k), v] for k, v in s.items()] for f, s in hists.items()}}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return str(int(value)) if value == int(value) and abs(value) < 2**53 else repr(value)


def _series(name: str, names: tuple[str, ...], values: list[str] | tuple[str, ...],
            extra: str = "") -> str:
    parts = [f'{k}="{_escape(v)}"' for k, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return f"{name}{{{','.join(parts)}}}" if parts else name


def render(state: dict[str, Any]) -> str:
    """``state`` in the Prometheus text format: every declared family with HELP and TYPE
    (empty families too, so a scraper sees them from the start), series sorted."""
    out: list[str] = []
    values = state.get("values", {})
    hists = state.get("histograms", {})
    for family in FAMILIES.values():
        out.append(f"# HELP {family.name} {family.help}")
        out.append(f"# TYPE {family.name} {family.kind}")
        if family.kind == "histogram":
            for labels, row in sorted(hists.get(family.name, []), key=lambda r: r[0]):
                running = 0.0
                for bound, n in zip((*BUCKETS, math.inf), row[:-2], strict=True):
                    running += n
                    le = f'le="{_number(bound)}"'
                    out.append(f"{_series(family.name + '_bucket', family.labels, labels, le)} "
                               f"{_number(running)}")
                out.append(f"{_series(family.name + '_sum', family.labels, labels)} "
                           f"{_number(row[-2])}")
                out.append(f"{_series(family.name + '_count', family.labels, labels)} "
                           f"{_number(row[-1])}")
        else:
            for labels, value in sorted(values.get(family.name, []), key=lambda r: r[0]):
                out.append(f"{_series(family.name, family.labels, labels)} {_number(value)}")
    return "\n".join(out) + "\n"


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> list[tuple[str, dict[str, str], float]]:
    """The samples of a text exposition: (name, labels, value); comments skipped.
    ValueError on a line that is not a sample."""
    samples = []
    for lineno, line in enumerate(text.split("\n"), 1):  # \n only: values may hold \x1e
        if not line.strip() or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m is None:
            raise ValueError(f"line {lineno}: not a metric sample: {line[:80]!r}")
        name, labels_text, value = m.groups()
        labels = {k: re.sub(r"\\(.)", lambda e: "\n" if e.group(1) == "n" else e.group(1), v)
                  for k, v in _LABEL.findall(labels_text or "")}
        samples.append((name, labels, float(value)))
    return samples
