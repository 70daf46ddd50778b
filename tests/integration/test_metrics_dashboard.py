"""GET /metrics (parsed with prometheus_client's own parser, checked against /health and the
log), GET /cluster and the event feed, and --allow-faults, on real processes."""
import pytest
from prometheus_client.parser import text_string_to_metric_families

from nodes.launcher import wait_until
from .conftest import FAST, Client, start_cluster


def scrape(session, url):
    r = session.get(url + "/metrics", timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))


def test_master_and_secondary_metrics_match_health_and_the_log(cluster, http):
    master, secs = start_cluster(cluster, master_flags=FAST)
    c = Client(http, master.url)
    for i in range(3):
        assert c.post(f"one-{i}", w=1).status_code == 201
    for i in range(2):
        assert c.post(f"three-{i}", w=3).status_code == 201
    assert c.post("bad", w=9).status_code == 400
    assert http.post(master.url + "/faults", json={}, timeout=5).status_code == 404
    c.wait_converged(secs)
    wait_until(lambda: all(s["lag"] == 0 for s in c.health()["secondaries"].values()), 10,
               what="lag 0 in /health")

    m = scrape(http, master.url)
    health = c.health()
    assert value(m, "replog_http_appends_total", w="1", code="201") == 3
    assert value(m, "replog_http_appends_total", w="3", code="201") == 2
    assert value(m, "replog_http_appends_total", w="unknown", code="400") == 1
    assert value(m, "replog_http_append_duration_seconds_count", w="3") == 2
    assert value(m, "replog_http_append_duration_seconds_bucket", w="3", le="+Inf") == 2
    assert value(m, "replog_http_append_duration_seconds_sum", w="3") > 0
    assert value(m, "replog_log_messages") == health["last_seq"] == len(c.messages()) == 5
    assert value(m, "replog_read_only") == 0
    assert value(m, "replog_waiting_appends") == health["waiting"] == 0
    assert value(m, "replog_cluster_nodes") == 3
    assert value(m, "replog_quorum_needed_nodes") == 2
    assert value(m, "replog_quorum_available_nodes") == health["quorum"]["available"] == 3
    for name, peer in health["secondaries"].items():
        assert value(m, "replog_secondary_acked_seq", secondary=name) == peer["acked_seq"] == 5
        assert value(m, "replog_secondary_lag_messages", secondary=name) == 0
        assert value(m, "replog_secondary_status", secondary=name,
                     replog_secondary_status="Healthy") == 1
        assert value(m, "replog_secondary_status", secondary=name,
                     replog_secondary_status="Unhealthy") == 0
        assert value(m, "replog_replicated_messages_total", secondary=name) == 5
        assert value(m, "replog_replicate_calls_total", secondary=name) >= 1
        assert value(m, "replog_replicate_duration_seconds_count", secondary=name) == \
            value(m, "replog_replicate_calls_total", secondary=name)

    for sec in secs:
        s = scrape(http, sec.url)
        h = c.health(sec.url)
        assert value(s, "replog_secondary_messages") == h["messages"] == \
            len(c.messages(sec.url)) == 5
        assert value(s, "replog_secondary_held_back_messages") == h["held_back"] == 0
        assert value(s, "replog_secondary_received_messages_total") >= 5
        assert value(s, "replog_secondary_replicate_calls_total") >= 1
        assert value(s, "replog_secondary_injected_errors_total") == 0


def test_injected_faults_and_read_only_are_counted(cluster, http):
    master, (s1, s2) = start_cluster(cluster, master_flags=FAST)
    c = Client(http, master.url)
    assert http.post(s2.url + "/faults", json={"error_rate": 1.0}, timeout=5).status_code == 200
    assert c.post("fails-on-s2", w=2).status_code == 201
    wait_until(lambda: value(scrape(http, s2.url), "replog_secondary_injected_errors_total") >= 1
               and value(scrape(http, master.url), "replog_replicate_failures_total",
                         secondary="s2") >= 1, 10, what="the injected error counted on both")
    assert value(scrape(http, s2.url), "replog_secondary_fault_error_rate") == 1.0
    assert http.post(s2.url + "/faults", json={"error_rate": 0}, timeout=5).status_code == 200

    def has_event(prefix):
        events = http.get(master.url + "/cluster", timeout=5).json()["events"]
        return any(e["text"].startswith(prefix) for e in events)

    s1.pause()
    s2.pause()
    try:
        wait_until(lambda: c.health()["read_only"], 15, what="read-only")
        assert c.post("refused", w=1).status_code == 503
        m = scrape(http, master.url)
        assert value(m, "replog_read_only") == 1
        assert value(m, "replog_http_appends_total", w="1", code="503") == 1
        assert value(m, "replog_quorum_available_nodes") == 1
        # the feed follows the master's tick loop, a tick behind /health
        wait_until(lambda: has_event("read-only: no quorum"), 5, what="the read-only event")
    finally:
        s1.resume()
        s2.resume()
    c.wait_writable()
    wait_until(lambda: has_event("quorum back"), 5, what="the 'quorum back' event")
    events = http.get(master.url + "/cluster", timeout=5).json()["events"]
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)


def test_cluster_view_carries_tails_and_events_after_an_id(cluster, http):
    master, secs = start_cluster(cluster, master_flags=FAST)
    c = Client(http, master.url)
    for i in range(25):
        assert c.post(f"m{i}", w=3).status_code == 201

    def view():
        return http.get(master.url + "/cluster", timeout=5).json()

    def tails_read():
        v = view()
        return v if all(t and t["ack"] == 25 for t in v["tails"]["secondaries"].values()) else None

    v = wait_until(tails_read, 10, what="tails read from both secondaries")
    assert v["tails"]["master"] == [[seq, f"m{seq - 1}"] for seq in range(6, 26)]
    for name in ("s1", "s2"):
        assert v["tails"]["secondaries"][name]["tail"] == v["tails"]["master"]
        assert v["tails"]["secondaries"][name]["held"] == []
    assert v["health"]["last_seq"] == 25
    kinds = {e["kind"] for e in v["events"]}
    assert {"discovered", "health"} <= kinds
    after = http.get(master.url + f"/cluster?after={v['last_event']}", timeout=5).json()
    assert after["events"] == []
    r = http.get(master.url + "/cluster?after=x", timeout=5)
    assert r.status_code == 400 and "after" in r.json()["error"]
    page = http.get(master.url + "/", timeout=5)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "/dashboard/app.js" in page.text and "http" not in page.text.replace(
        'http-equiv', '')      # nothing loaded from elsewhere
    assert http.get(master.url + "/dashboard/app.js", timeout=5).status_code == 200
    r = http.get(master.url + "/dashboard/../web.py", timeout=5)
    assert r.status_code == 404 and "error" in r.json()


def test_without_allow_faults_fault_injection_is_refused_with_403(cluster, http):
    s1 = cluster.start_secondary("s1", allow_faults=False)
    s2 = cluster.start_secondary("s2")
    master = cluster.start_master(["s1", "s2"], allow_faults=False, **FAST)
    r = http.post(s1.url + "/faults", json={"delay": 1}, timeout=5)
    assert r.status_code == 403 and "--allow-faults" in r.json()["error"]
    assert http.get(s1.url + "/health", timeout=5).json()["delay"] == 0.0
    r = http.post(master.url + "/cluster/faults", json={"secondary": "s2", "delay": 1}, timeout=5)
    assert r.status_code == 403 and "--allow-faults" in r.json()["error"]
    assert http.get(s2.url + "/health", timeout=5).json()["delay"] == 0.0
    assert http.get(master.url + "/cluster", timeout=5).json()["allow_faults"] is False


def test_the_master_forwards_faults_only_to_a_secondary_that_allows_them(cluster, http):
    s1 = cluster.start_secondary("s1", allow_faults=False)
    s2 = cluster.start_secondary("s2")
    master = cluster.start_master(["s1", "s2"], **FAST)
    url = master.url + "/cluster/faults"
    r = http.post(url, json={"secondary": "s1", "delay": 1}, timeout=5)
    assert r.status_code == 403 and "s1" in r.json()["error"]
    r = http.post(url, json={"secondary": "s2", "delay": 0.25, "error_rate": 0.5}, timeout=5)
    assert r.status_code == 200 and r.json() == {"delay": 0.25, "error_rate": 0.5}
    h = http.get(s2.url + "/health", timeout=5).json()
    assert (h["delay"], h["error_rate"]) == (0.25, 0.5)
    for body, status in (({"secondary": "nope"}, 404), ({"secondary": "s2", "delay": -1}, 400),
                         ({"secondary": "s2", "error_rate": 2}, 400), ({"delay": 1}, 400),
                         ({"secondary": "s2", "x": 1}, 400)):
        r = http.post(url, json=body, timeout=5)
        assert r.status_code == status and "error" in r.json(), (body, r.text)
    r = http.post(url, data="{", headers={"Content-Type": "application/json"}, timeout=5)
    assert r.status_code == 400
    events = http.get(master.url + "/cluster", timeout=5).json()["events"]
    assert any(e["kind"] == "faults" and e["text"].startswith("s2: delay=0.25") for e in events)


@pytest.mark.parametrize("module", ["nodes.master_node", "nodes.secondary_node"])
def test_allow_faults_has_help_and_an_env_fallback(module):
    import importlib
    p = importlib.import_module(module).parser()
    assert "REPLOG_ALLOW_FAULTS" in p.format_help()
    assert p.parse_args([]).allow_faults is False
    assert p.parse_args(["--allow-faults"]).allow_faults is True


def test_the_first_cluster_view_after_a_start_has_an_entry_for_every_secondary(cluster, http):
    """The very first GET /cluster (no tail read yet) already names every secondary with a
    well-formed entry, so a page opened right after the start draws every node."""
    master, secs = start_cluster(cluster, master_flags=FAST)
    first = http.get(master.url + "/cluster", timeout=5).json()   # nobody asked before
    entries = first["tails"]["secondaries"]
    assert sorted(entries) == sorted(first["health"]["secondaries"]) == ["s1", "s2"]
    for name, t in entries.items():
        assert isinstance(t, dict), f"{name}: {t!r}"
        assert t["tail"] == [] and t["held"] == [] and t["error"] is None, t
        assert t["loading"] is True and t["age"] is None, t

    def read():
        v = http.get(master.url + "/cluster", timeout=5).json()["tails"]["secondaries"]
        return v if all(not t["loading"] and t["age"] is not None for t in v.values()) else None

    later = wait_until(read, 10, what="both tails read")
    assert all(t["error"] is None and t["tail"] == [] for t in later.values())
