"""Prometheus metrics (GET /metrics on every node) that cost the hot path nothing.

The nodes keep plain counters in a small `stats` object (MasterStats, SecondaryStats),
bumped at a few call sites with an integer add; a custom prometheus_client Collector reads
them, and the node's /health, only when Prometheus scrapes. The client library's own
Counter and Histogram take a lock per update (2.4 us per append for a counter and a
histogram, against 0.17 us here, measured with timeit; see docs/dashboard.md). A node
process runs its threads as gevent greenlets, which never switch inside these few
bytecodes, so the counts are exact there; with OS threads a lost update is possible and
harmless for monitoring.
"""
from __future__ import annotations

from bisect import bisect_left
from typing import Any, Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily, StateSetMetricFamily)
from prometheus_client.registry import Collector


# seconds; the last bucket (+Inf) is implicit
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
           10.0, 30.0)
STATUSES = ("Healthy", "Suspected", "Unhealthy")


class Hist:
    """A histogram as a list of per-bucket counts: observe() is one bisect and two adds."""
    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.sum += seconds

    def buckets(self) -> list[tuple[str, int]]:
        """Cumulative (le, count) pairs, as the exposition format wants them."""
        out, total = [], 0
        for bound, count in zip(BUCKETS + (float("inf"),), self.counts):
            total += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), total))
        return out


class MasterStats:
    """Counters the master's code bumps: HTTP appends, replicate calls per secondary."""

    def __init__(self) -> None:
        self.appends: dict[tuple[str, str], int] = {}     # (w, code) -> count
        self.append_seconds: dict[str, Hist] = {}          # w -> latency histogram
        self.replicate_calls: dict[str, int] = {}          # secondary -> calls answered
        self.replicate_failures: dict[str, int] = {}       # secondary -> calls failed
        self.replicated: dict[str, int] = {}               # secondary -> messages sent
        self.replicate_seconds: dict[str, Hist] = {}       # secondary -> call latency

    def http_append(self, w: Any, code: int, seconds: float) -> None:
        w = str(w) if w is not None else "unknown"
        key = (w, str(code))
        self.appends[key] = self.appends.get(key, 0) + 1
        hist = self.append_seconds.get(w)
        if hist is None:
            hist = self.append_seconds[w] = Hist()
        hist.observe(seconds)

    def replicate_ok(self, name: str, count: int, seconds: float) -> None:
        self.replicate_calls[name] = self.replicate_calls.get(name, 0) + 1
        self.replicated[name] = self.replicated.get(name, 0) + count
        hist = self.replicate_seconds.get(name)
        if hist is None:
            hist = self.replicate_seconds[name] = Hist()
        hist.observe(seconds)

    def replicate_failed(self, name: str) -> None:
        self.replicate_failures[name] = self.replicate_failures.get(name, 0) + 1


class SecondaryStats:
    """Counters the secondary's code bumps."""

    def __init__(self) -> None:
        self.replicate_calls = 0      # replicate calls received (answered or not)
        self.received = 0             # messages in them, duplicates included
        self.refused = 0              # calls refused: another log, a stale epoch, too far ahead
        self.injected_errors = 0      # calls answered with an injected error
        self.injected_delays = 0      # calls slowed by an injected delay
        self.cut = 0                  # entries cut back to an elected master's log (failover)


def _histogram(name: str, doc: str, labels: list[str],
               hists: dict[str, Hist]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=labels)
    for key, hist in sorted(hists.items()):
        family.add_metric([key], hist.buckets(), hist.sum)
    return family


def _followers(node: Any) -> GaugeMetricFamily:
    follow = getattr(node, "follow", None)
    return GaugeMetricFamily("replog_http_followers", "GET /messages?wait= requests held and "
                             "streams parked until the next message",
                             value=0 if follow is None else follow.waiting)


class MasterCollector(Collector):
    def __init__(self, master: Any) -> None:
        self.master = master

    def collect(self) -> Iterable[Any]:
        stats: MasterStats = self.master.stats
        health = self.master.health()
        appends = CounterMetricFamily("replog_http_appends", "POST /messages answered, by "
                                      "write concern w and HTTP status code",
                                      labels=["w", "code"])
        for (w, code), count in sorted(stats.appends.items()):
            appends.add_metric([w, code], count)
        yield appends
        yield _histogram("replog_http_append_duration_seconds", "time from receiving a POST "
                         "/messages to its answer, by write concern w", ["w"],
                         stats.append_seconds)
        for metric, doc, values in (
                ("replog_replicate_calls", "replicate calls a secondary answered",
                 stats.replicate_calls),
                ("replog_replicate_failures", "replicate calls that failed (refused, timed "
                 "out, remote error) and will be retried", stats.replicate_failures),
                ("replog_replicated_messages", "messages sent in answered replicate calls",
                 stats.replicated)):
            family = CounterMetricFamily(metric, doc, labels=["secondary"])
            for name, value in sorted(values.items()):
                family.add_metric([name], value)
            yield family
        yield _histogram("replog_replicate_duration_seconds", "duration of an answered "
                         "replicate call", ["secondary"], stats.replicate_seconds)

        secondaries = health["secondaries"]
        acked = GaugeMetricFamily("replog_secondary_acked_seq", "highest seq the secondary "
                                  "acknowledged (holds with no gap before it)",
                                  labels=["secondary"])
        lag = GaugeMetricFamily("replog_secondary_lag_messages", "messages the master holds "
                                "that the secondary has not acknowledged", labels=["secondary"])
        age = GaugeMetricFamily("replog_secondary_last_answer_age_seconds", "seconds since "
                                "the secondary last answered (absent if it never did)",
                                labels=["secondary"])
        status = StateSetMetricFamily("replog_secondary_status", "the master's view of the "
                                      "secondary's health", labels=["secondary"])
        in_flight = GaugeMetricFamily("replog_secondary_in_flight_calls", "replicate (or sync) "
                                      "calls out to the secondary now (the pipeline)",
                                      labels=["secondary"])
        for name, p in secondaries.items():
            acked.add_metric([name], p["acked_seq"])
            in_flight.add_metric([name], p["in_flight"])
            lag.add_metric([name], p["lag"])
            if p["last_answer_age"] is not None:
                age.add_metric([name], p["last_answer_age"])
            status.add_metric([name], {s: p["status"] == s for s in STATUSES})
        yield from (acked, lag, age, status, in_flight)
        q = health["quorum"]
        for metric, doc, value in (
                ("replog_read_only", "1 while the master refuses appends (no quorum, "
                 "still recovering, or its disk failed)", int(bool(health["read_only"]))),
                ("replog_log_messages", "messages in the master's log (its last seq)",
                 health["last_seq"]),
                ("replog_waiting_appends", "appends waiting for their write concern",
                 health["waiting"]),
                ("replog_cluster_nodes", "nodes in the cluster, the master included", q["size"]),
                ("replog_quorum_needed_nodes", "nodes that must be reachable for appends",
                 q["needed"]),
                ("replog_quorum_available_nodes", "nodes reachable (Healthy or Suspected, the "
                 "master included)", q["available"])):
            yield GaugeMetricFamily(metric, doc, value=value)
        yield _followers(self.master)


class SecondaryCollector(Collector):
    def __init__(self, secondary: Any) -> None:
        self.secondary = secondary

    def collect(self) -> Iterable[Any]:
        s: SecondaryStats = self.secondary.stats
        health = self.secondary.health()
        for metric, doc, value in (
                ("replog_secondary_messages", "messages shown: the gap-free prefix held",
                 health["messages"]),
                ("replog_secondary_held_back_messages", "messages held past a gap, not shown "
                 "until the gap is filled", health["held_back"]),
                ("replog_secondary_fault_delay_seconds", "injected delay of every replicate "
                 "call", health["delay"]),
                ("replog_secondary_fault_error_rate", "injected probability of an error after "
                 "storing", health["error_rate"])):
            yield GaugeMetricFamily(metric, doc, value=value)
        yield _followers(self.secondary)
        for metric, doc, value in (
                ("replog_secondary_replicate_calls", "replicate calls received", s.replicate_calls),
                ("replog_secondary_received_messages", "messages in replicate calls received, "
                 "duplicates included", s.received),
                ("replog_secondary_refused_calls", "calls refused: another log, a stale epoch, "
                 "or too far ahead", s.refused),
                ("replog_secondary_injected_errors", "replicate calls answered with an injected "
                 "error", s.injected_errors),
                ("replog_secondary_injected_delays", "replicate calls slowed by an injected "
                 "delay", s.injected_delays),
                ("replog_secondary_cut_messages", "messages cut back to an elected master's "
                 "log (unreplicated w=1 writes of a deposed master)", s.cut)):
            yield CounterMetricFamily(metric, doc, value=value)


def registry_for(collector: Collector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def add_metrics_route(app: Any, collector: Collector) -> None:
    """GET /metrics: the Prometheus text exposition of `collector`."""
    import bottle
    registry = registry_for(collector)

    @app.get("/metrics")
    def metrics():
        bottle.response.content_type = CONTENT_TYPE_LATEST
        return generate_latest(registry)


def measured(stats: MasterStats):
    """Wrap the POST /messages route: count its answer by w and status code and time it.
    The route puts the parsed w in the WSGI environ ("replog.w")."""
    import functools
    from time import perf_counter

    import bottle

    def wrap(handler):
        @functools.wraps(handler)
        def route(*args, **kw):
            started = perf_counter()
            code = 500
            try:
                out = handler(*args, **kw)
                code = bottle.response.status_code
                return out
            except bottle.HTTPResponse as e:
                code = e.status_code
                raise
            finally:
                stats.http_append(bottle.request.environ.get("replog.w"), code,
                                  perf_counter() - started)
        return route
    return wrap
