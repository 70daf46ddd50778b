"""The event feed and the metrics' counters and collectors, without processes."""
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from nodes.events import Feed
from nodes.metrics import (BUCKETS, Hist, MasterCollector, MasterStats, SecondaryCollector,
                           SecondaryStats, registry_for)


def test_feed_gives_what_came_after_an_id_and_keeps_the_newest():
    t = iter(range(100, 200))
    feed = Feed(size=3, clock=lambda: next(t))
    for i in range(5):
        feed.add("health", f"e{i}")
    assert feed.last_id == 5
    assert [e["text"] for e in feed.since(0)] == ["e2", "e3", "e4"]
    assert [e["id"] for e in feed.since(3)] == [4, 5]
    assert feed.since(5) == [] and feed.since(99) == []
    assert feed.since(4)[0] == {"id": 5, "time": 104, "kind": "health", "text": "e4"}


def test_hist_buckets_are_cumulative_and_end_with_inf():
    h = Hist()
    for v in (0.0001, 0.0005, 0.003, 100.0):
        h.observe(v)
    b = dict(h.buckets())
    assert b["0.0005"] == 2          # le is inclusive
    assert b["0.005"] == 3 and b["30.0"] == 3 and b["+Inf"] == 4
    assert len(h.buckets()) == len(BUCKETS) + 1
    assert abs(h.sum - 100.0036) < 1e-9


def samples(collector):
    text = generate_latest(registry_for(collector)).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


class FakeMaster:
    def __init__(self):
        self.stats = MasterStats()

    def health(self):
        return {"read_only": True, "last_seq": 7, "waiting": 2,
                "quorum": {"size": 3, "needed": 2, "available": 1},
                "secondaries": {"s1": {"status": "Suspected", "acked_seq": 5, "lag": 2,
                                       "last_answer_age": 1.0, "in_flight": 3},
                                "s2": {"status": "Unhealthy", "acked_seq": 0, "lag": 7,
                                       "last_answer_age": None, "in_flight": 0}}}


def test_master_collector_reads_the_counters_and_health_at_scrape_time():
    m = FakeMaster()
    m.stats.http_append(3, 201, 0.002)
    m.stats.http_append(3, 201, 0.004)
    m.stats.http_append(None, 400, 0.0001)
    m.stats.replicate_ok("s1", 10, 0.001)
    m.stats.replicate_failed("s2")
    s = samples(MasterCollector(m))
    assert s[("replog_http_appends_total", (("code", "201"), ("w", "3")))] == 2
    assert s[("replog_http_appends_total", (("code", "400"), ("w", "unknown")))] == 1
    assert s[("replog_http_append_duration_seconds_count", (("w", "3"),))] == 2
    assert s[("replog_http_append_duration_seconds_bucket", (("le", "0.0025"), ("w", "3")))] == 1
    assert s[("replog_replicated_messages_total", (("secondary", "s1"),))] == 10
    assert s[("replog_replicate_failures_total", (("secondary", "s2"),))] == 1
    assert s[("replog_secondary_lag_messages", (("secondary", "s2"),))] == 7
    assert ("replog_secondary_last_answer_age_seconds", (("secondary", "s2"),)) not in s
    assert s[("replog_secondary_status", (("replog_secondary_status", "Suspected"),
                                          ("secondary", "s1")))] == 1
    assert s[("replog_secondary_status", (("replog_secondary_status", "Healthy"),
                                          ("secondary", "s1")))] == 0
    assert s[("replog_secondary_in_flight_calls", (("secondary", "s1"),))] == 3
    assert s[("replog_read_only", ())] == 1
    assert s[("replog_waiting_appends", ())] == 2
    assert s[("replog_quorum_available_nodes", ())] == 1


def test_secondary_collector():
    class FakeSecondary:
        stats = SecondaryStats()

        def health(self):
            return {"messages": 4, "held_back": 1, "delay": 0.5, "error_rate": 0.25}

    sec = FakeSecondary()
    sec.stats.replicate_calls, sec.stats.injected_errors = 3, 1
    s = samples(SecondaryCollector(sec))
    assert s[("replog_secondary_messages", ())] == 4
    assert s[("replog_secondary_held_back_messages", ())] == 1
    assert s[("replog_secondary_replicate_calls_total", ())] == 3
    assert s[("replog_secondary_injected_errors_total", ())] == 1
    assert s[("replog_secondary_fault_error_rate", ())] == 0.25


def test_a_secondary_tail_has_seqs_and_what_is_held_back_past_a_gap():
    from nodes.secondary_node import Secondary
    s = Secondary("s9", allow_faults=True)
    s.log.store(1, ["a", "b"])
    s.log.store(4, ["d", "e"])
    t = s.tail(20)
    assert t["ack"] == 2 and t["tail"] == [[1, "a"], [2, "b"]]
    assert t["held"] == [4, 5] and t["held_back"] == 2 and t["allow_faults"] is True
    s.log.store(3, ["c"])
    assert s.tail(2)["tail"] == [[4, "d"], [5, "e"]] and s.tail(2)["held"] == []
