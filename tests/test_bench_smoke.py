"""The benchmark runs end to end (``python -m bench --quick``) and reports what it should.

Nothing here asserts on speed: the figures depend on the machine. The test only checks
that every part ran, every case completed without errors, and the JSON has its keys.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

LOAD_CASES = {f"{mode}-w{w}" for mode in ("http", "pyro") for w in (1, 2, 3)}
CEILINGS = {"ceiling-http", "ceiling-pyro"}
HTTP_TARGETS = {"w3_vs_w1_throughput", "w3_vs_ceiling_throughput", "w3_p99_vs_w1"}
SIZED_TARGETS = {"catchup_rate", "memory_master", "memory_secondary"}  # judged at full size only
TARGETS = HTTP_TARGETS | SIZED_TARGETS


def _synthetic_report() -> dict:
    lat = {"p50": 1.0, "p90": 2.0, "p99": 3.0, "max": 9.0, "mean": 1.2}
    cases = [
        {"case": name, "appends_per_s": 1000.0 + i, "latency_ms": dict(lat), "errors": 0,
         "requests": 2000, "cpu_cores": {"master": 0.5, "s1": 0.1, "s2": 0.1, "loadgen": 0.2,
                                         "server": 0.9}}
        for i, name in enumerate(sorted(LOAD_CASES) + sorted(CEILINGS))
    ]
    return {
        "meta": {"date": "2000-01-01T00:00:00+00:00", "platform": "test", "python": "3.11",
                 "cpu_count": 2, "commit": None},
        "params": {"clients": 16, "procs": 2, "seconds": 1.0, "warmup": 0.1, "size": 100},
        "cases": cases,
        "catchup": {"messages": 10, "catchup_s": 0.1, "rate": 100.0, "rate_min": 90.0, "rate_max": 110.0,
                    "answer_to_first_message_s": 0.01, "fill_rate": 1000.0,
                    "trials": [{"restart_to_answer_s": 0.5, "answer_to_first_message_s": 0.01,
                                "catchup_s": 0.1, "rate": 100.0, "rate_basis": "first /health answer"}]},
        "memory": {"messages": 10, "message_bytes": 100, "fill_rate": 100.0,
                   "nodes": {n: {"rss_before": 1 << 20, "rss_after": 2 << 20,
                                 "bytes_per_message": 150.0, "x_payload": 1.5}
                             for n in ("master", "s1", "s2")}},
    }


def test_report_renders_without_a_cluster(tmp_path):
    from bench import render, report as rep

    report = _synthetic_report()
    report["ratios"] = rep.compute_ratios(report["cases"])
    report["targets"] = rep.compute_targets(report["ratios"], report["catchup"], report["memory"], 100)
    assert {t["target"] for t in report["targets"]} == TARGETS
    assert report["ratios"]["http-w3"]["throughput_vs_w1"] == pytest.approx(1002 / 1000, abs=1e-3)
    text = render.render_table(report)
    for name in LOAD_CASES | CEILINGS:
        assert name in text
    assert "targets:" in text
    # 10 messages are far below the sizes the catch-up and memory targets are judged at
    sized = [t for t in report["targets"] if t["target"] in SIZED_TARGETS]
    assert all(t["met"] is None and t["comparable"] is False for t in sized)
    assert "not comparable to the target" in text
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    png = render.draw_chart(report, tmp_path / "chart.png")
    assert png and Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sized_targets_judged_at_full_size():
    from bench import report as rep

    report = _synthetic_report()
    report["catchup"]["messages"] = rep.TARGET_CATCHUP_MESSAGES
    report["memory"]["messages"] = rep.TARGET_MEMORY_MESSAGES
    targets = {t["target"]: t for t in rep.compute_targets({}, report["catchup"], report["memory"], 100)}
    assert targets["catchup_rate"]["met"] is False      # 100 msg/s
    assert targets["memory_master"]["met"] is True      # 150 B <= 250 B
    assert all(targets[n]["comparable"] for n in SIZED_TARGETS)


def test_ceiling_serves_on_the_masters_stack():
    """The HTTP ceiling is a gevent-patched process serving on nodes.web's server; importing
    the module (as here) patches nothing."""
    import bench.ceiling  # noqa: F401
    from gevent import monkey

    assert not monkey.is_module_patched("socket")
    proc = subprocess.Popen([sys.executable, "-m", "bench.ceiling", "--kind", "http", "--port", "0"],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().split()
        assert line[0] == "READY", line
        info = dict(x.split("=", 1) for x in line[2:])
        assert info["server"] == "nodes.web.create_http_server"
        assert info["gevent_patched"] == "yes"
        req = urllib.request.Request(line[1] + "/messages", data=b'{"message": "x"}', method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 201
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0


def test_durable_rounds_merge_into_one_case_each():
    from bench import durable

    def res(rate, p99):
        return {"appends_per_s": rate, "latency_ms": {"p50": 1.0, "p99": p99},
                "cpu_cores": {"master": 0.9}}
    merged = durable._merged([res(100, 3.0), res(200, 5.0), res(150, 4.0)])
    assert merged["appends_per_s"] == 150 and merged["latency_ms"]["p99"] == 4.0
    assert merged["rounds"] == [100, 200, 150] and merged["cpu_cores"] == {"master": 0.9}
    assert merged["sched"] == {}          # results without scheduler figures merge to none


def test_pin_master_splits_the_cpus_and_marks_the_ratio_targets_not_comparable():
    from bench import durable

    assert durable.split_cpus({0, 1}) == ({0}, {1})
    assert durable.split_cpus({3, 1, 2}) == ({1}, {2, 3})
    with pytest.raises(SystemExit, match="at least 2 CPUs"):
        durable.split_cpus({0})
    d = {"load": {"ratios": {"w3_throughput": 0.9, "w1_throughput": 0.9, "w3_p99": 1.1},
                  "disk": {"x_payload": {"master": 1.06}}, "pinned": {"master": [0], "others": [1]}},
         "recovery": {"stored": 10, "master_start_to_http_s": 0.5, "secondary_missed": 1,
                      "secondary_answer_to_caught_up_s": 0.2}}
    rows = durable.targets(d)
    assert [r["met"] for r in rows] == [None, None, None, True, True, True]
    d["load"]["pinned"] = None
    assert [r["met"] for r in durable.targets(d)] == [True] * 6


def test_sched_counters_read_this_process():
    from bench.procs import sched_counters

    waited, preempted = sched_counters(os.getpid())
    assert waited >= 0 and isinstance(waited, float) and preempted >= 0
    assert sched_counters(None) is None
    assert sched_counters(2 ** 22 + 12345) is None     # no such process


def test_loadgen_slices_take_turns_in_abba_order():
    """bench/loadgen.py --slice: whose turn each slice is, and when a generator's next one
    begins (anchored at the window's start; the warm-up's slices go on in the same order)."""
    from bench.loadgen import next_turn_at, turn_of

    t0, s = 100.0, 2.0
    assert [turn_of(t0, s, t0 + s * k + 0.5)[1] for k in range(8)] == list("ABBAABBA")
    assert turn_of(t0, s, t0 - 0.5) == (-1, "A") and turn_of(t0, s, t0 - 2.5) == (-2, "B")
    assert next_turn_at(t0, s, t0 + 0.5, "B") == t0 + 2.0     # in A's slice 0: B's is 1
    assert next_turn_at(t0, s, t0 + 0.5, "A") == t0 + 6.0     # and A's next is 3
    assert next_turn_at(t0, s, t0 + 6.5, "A") == t0 + 8.0     # 3 then 4: A, A
    assert next_turn_at(t0, s, t0 - 0.5, "B") == t0 + 2.0     # warm-up: -1 is A's


def test_loadgen_percentile():
    from bench.loadgen import make_payload, percentile

    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert len(make_payload(100, "tag")) == 100


@pytest.mark.slow
def test_quick_benchmark_end_to_end(tmp_path, capsys):
    pytest.importorskip("psutil")
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--no-chart", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=280,
    )
    with capsys.disabled():   # CI's log shows the figures (nothing below asserts on them)
        print("\n" + proc.stdout[proc.stdout.find("replog benchmark"):], flush=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert {"meta", "params", "cases", "ratios", "catchup", "memory", "targets"} <= set(report)
    assert {"cpu_count", "python", "platform", "date"} <= set(report["meta"])
    assert report["params"]["quick"] is True
    cases = {c["case"]: c for c in report["cases"]}
    assert set(cases) == LOAD_CASES | CEILINGS
    for name, case in cases.items():
        assert case["errors"] == 0, (name, case["error_kinds"])
        assert case["requests"] > 0, name
        assert {"p50", "p90", "p99", "max"} <= set(case["latency_ms"]), name
    assert report["catchup"]["completed"], report["catchup"]
    assert report["catchup"]["messages"] == 10_000
    assert set(report["memory"]["nodes"]) == {"master", "s1", "s2"}
    assert {t["target"] for t in report["targets"]} == TARGETS
    for t in report["targets"]:
        if t["target"] in HTTP_TARGETS:
            assert isinstance(t["met"], bool), t
        else:  # quick sizes: reported, labelled not comparable, never a miss
            assert t["value"] is not None and t["met"] is None and t["comparable"] is False, t
    assert "targets:" in proc.stdout
    dash = report["dashboard"]["variants"]           # bench/dashboard.py (issue 11)
    assert set(dash) == {"plain", "dashboard", "metrics"}
    assert all(v["errors"] == 0 and v["appends_per_s"] > 0 for v in dash.values()), dash
    assert dash["dashboard"]["watcher_requests"] > 0 and dash["metrics"]["watcher_requests"] > 0
    assert isinstance(dash["dashboard"]["met"], bool)
    assert "dashboard and metrics cost" in proc.stdout
    durable = report["durable"]                       # bench/durable.py (issue 9)
    assert set(durable["load"]["cases"]) == {f"{k}-w{w}" for k in ("memory", "durable")
                                             for w in (1, 3)}
    assert durable["load"]["ratios"]["rounds"] == 1
    assert all(c["appends_per_s"] > 0 for c in durable["load"]["cases"].values())
    for c in durable["load"]["cases"].values():      # the master's scheduling, from /proc
        assert 0 <= c["sched"]["master_runq_wait"] <= 1 and c["sched"]["master_preempted_per_s"] >= 0
        assert c["sched"]["steal_cores"] >= 0
    assert "the master's CPU taken by other tasks" in proc.stdout
    rec = durable["recovery"]
    assert rec["secondary_missed"] <= rec["secondary_sent"] < rec["stored"], rec  # the tail
    assert "Durability (every node --fsync always" in proc.stdout
    assert "not comparable to the target" in proc.stdout


def test_a_registered_part_is_one_line(tmp_path, monkeypatch, capsys):
    """bench/parts.py: a module with add_args, run and render, registered by one Part(...),
    gets its flag, runs under --only, lands in the JSON under its name and prints after the
    main table (no cluster: no core part is selected)."""
    import types

    from bench import parts, run

    fake = types.ModuleType("bench_fake_part")
    fake.add_args = lambda p: p.add_argument("--fake-count", type=int, default=1)
    fake.run = lambda args, out: out.__setitem__("fake", {"count": args.fake_count,
                                                          "workdir": str(args.workdir)})
    fake.render = lambda d: f"fake part: {d['count']}"
    monkeypatch.setitem(sys.modules, "bench_fake_part", fake)
    monkeypatch.setattr(parts, "PARTS", (*parts.PARTS, parts.Part("fake", "bench_fake_part",
                                                                     default=False)))
    monkeypatch.setattr(parts, "ALL_PARTS", (*parts.ALL_PARTS, "fake"))
    out = tmp_path / "bench.json"
    assert run.main(["--only", "fake", "--fake-count", "7", "--no-chart", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["fake"]["count"] == 7
    assert "fake part: 7" in capsys.readouterr().out


def opt_in_part(name, module):
    """An opt-in part's parser and its settings, full and --quick (checking that it is a
    part, and not a default one)."""
    import argparse

    from bench import parts

    assert name in parts.ALL_PARTS and name not in parts.DEFAULT_PARTS
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    module.add_args(p)
    return p, module.settings(p.parse_args([])), module.settings(p.parse_args(["--quick"]))


def test_failover_part_settings_and_render_without_a_cluster():
    """bench/failover.py: its sizes (quick and full) and its text from a made-up section."""
    from bench import failover

    p, full, quick = opt_in_part("failover", failover)
    assert (full["kills"], full["pauses"], full["rounds"]) == (20, 5, 3)
    assert (quick["kills"], quick["pauses"], quick["rounds"]) == (5, 2, 1)
    with pytest.raises(SystemExit, match="unknown failover cases"):
        failover.settings(p.parse_args(["--failover-cases", "kills,nope"]))
    stat = {"median": 1.0, "max": 1.2, "min": 0.8, "n": 2}
    section = {
        "kills": {"kills": 2, "completed": 2, "median_s": 0.9, "p90_s": 1.0, "max_s": 1.0,
                  "min_s": 0.8, "retry_s": 0.01, "targets": {"median_s": 1.5, "max_s": 3.0},
                  "met": {"median": True, "max": True},
                  "trials": [{"seconds": 0.8}, {"seconds": 1.0}]},
        "pause": {"elected": stat, "write": stat, "stepped_down": stat, "refused": stat,
                  "pauses": [{"old_master_answered": 503}], "old_master_201": 0},
        "steady": {"rounds": 1, "clients": 16, "seconds": 2.0, "throughput_ratio": 0.97,
                   "ratio_rounds": [0.97], "p99_ratio": 1.1, "target": 0.95, "met": True,
                   "off": {"appends_per_s": 1000.0, "p99_ms": 10.0, "errors": 0,
                           "rounds": [1000.0]},
                   "on": {"appends_per_s": 970.0, "p99_ms": 11.0, "errors": 0,
                          "rounds": [970.0]}},
    }
    text = failover.render(section)
    assert "kill -9 of the master -> first 201" in text and "[   met] median <= 1.5 s" in text
    assert "master cut off: refuses writes (lease)" in text and "[503]" in text
    assert "--failover on" in text and "throughput x0.970" in text


@pytest.mark.slow
def test_failover_part_end_to_end(tmp_path):
    """python -m bench --only failover, as small as it goes: 2 kills, 1 pause, 1 round."""
    pytest.importorskip("psutil")
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "failover", "--quick", "--failover-kills",
         "2", "--failover-pauses", "1", "--seconds", "1", "--no-chart", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    fo = json.loads(out.read_text())["failover"]
    assert fo["kills"]["completed"] == 2 and fo["kills"]["median_s"] > 0
    assert all(t["new_master"] and t["new_master"] != t["killed"] for t in fo["kills"]["trials"])
    assert fo["pause"]["elected"]["n"] == 1 and fo["pause"]["refused"]["n"] == 1
    assert fo["pause"]["old_master_201"] == 0          # a deposed master never accepts one
    assert fo["steady"]["on"]["errors"] == 0 and fo["steady"]["off"]["errors"] == 0
    assert fo["steady"]["throughput_ratio"] > 0
    assert "kill -9 of the master -> first 201" in proc.stdout


def test_nameserver_part_settings_summary_and_render_without_a_cluster():
    """bench/nsdown.py: its sizes (quick and full), its summary of made-up rounds and its text."""
    from bench import nsdown

    p, full, quick = opt_in_part("nameserver", nsdown)
    assert (full["rounds"], full["write_s"], full["modes"]) == (10, 1.0, ["fixed", "failover"])
    assert (quick["rounds"], quick["write_s"]) == (2, 0.5)
    with pytest.raises(SystemExit, match="unknown --ns-modes"):
        nsdown.settings(p.parse_args(["--ns-modes", "fixed,nope"]))
    at = {"master": "h:1", "s1": "h:2", "s2": "h:3"}
    listed = {f"replog.node.{x}": f"PYRO:replog.node.{x}@{a}" for x, a in at.items()}
    listed.update({f"replog.secondary.{x}": f"PYRO:replog.secondary.{x}@{at[x]}" for x in ("s1", "s2")})
    listed["replog.master"] = "PYRO:replog.master@h:1"
    roles, nodes = nsdown.wanted(listed, True, "s1", ["s1", "s2"])      # master killed, s1 elected
    assert roles == {"replog.master": "PYRO:replog.master@h:2",
                     "replog.secondary.s2": "PYRO:replog.secondary.s2@h:3"}
    assert set(nodes) == {"replog.node.s1", "replog.node.s2"}
    assert nsdown.wanted(listed, False, "master", ["master", "s1", "s2"])[0] == {
        k: v for k, v in listed.items() if not k.startswith("replog.node.")}

    def rnd(reg, election=None):
        r = {"registered_s": reg, "registered_from_start_s": reg + 0.5, "ns_answers_s": 0.5,
             "nodes_registered_s": None if election is None else reg + 0.3,
             "up": {"per_s": 80.0, "failed": {}}, "down": {"per_s": 70.0, "accepted": 35,
                                                           "failed": {}},
             "healthy_while_down": True, "wrong": []}
        return {**r, "election": election} if election else r
    el = {"elected_s": 0.8, "write_s": 1.0}
    section = {"params": quick, "target_s": nsdown.TARGET_S,
               "fixed": {"trials": [rnd(0.7), rnd(0.9)]},
               "failover": {"trials": [rnd(0.3, el), rnd(2.5, el)]}}
    for mode in ("fixed", "failover"):
        section[mode].update(nsdown.summary(section[mode]["trials"], 2))
    assert section["fixed"]["met"] is True and section["failover"]["met"] is False
    assert section["fixed"]["registered"]["median"] == 0.8 and section["fixed"]["writes_down"] == 70
    assert section["failover"]["elected"]["n"] == 2
    text = nsdown.render(section)
    assert "name server down: kill -9" in text and "[   met] fixed" in text
    assert "[MISSED] failover" in text and "a w=2 write after 1.000 s" in text


@pytest.mark.slow
def test_nameserver_part_end_to_end(tmp_path):
    """python -m bench --only nameserver, as small as it goes: 1 round per cluster."""
    pytest.importorskip("psutil")
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "nameserver", "--quick", "--ns-rounds", "1",
         "--no-chart", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ns = json.loads(out.read_text())["nameserver"]
    for mode in ("fixed", "failover"):
        r = ns[mode]
        assert r["completed"] == 1 and r["registered"]["max"] > 0, r
        assert r["writes_down"] > 0 and r["writes_down_failed"] == 0, r   # writes go on
        assert r["wrong"] == 0, r["trials"]
    assert ns["failover"]["write"]["n"] == 1, ns["failover"]["trials"]    # elections go on
    assert ns["failover"]["nodes_registered"]["n"] == 1
    assert "every live node registered again" in proc.stdout


def test_security_part_render_without_a_cluster():
    """bench/security.py: its text from a made-up section (pairs of slices in ABBA order, each
    pair's ratio beside the ratio of the sums), and its flags."""
    import argparse

    from bench import parts, security

    assert "security" in parts.ALL_PARTS and "security" not in parts.DEFAULT_PARTS
    p = argparse.ArgumentParser()
    security.add_args(p)
    assert p.parse_args([]).security_pairs == 16 and p.parse_args([]).security_slice == 2.0
    lat = {"p50": 1.0, "p90": 2.0, "p99": 3.0, "max": 9.0, "mean": 1.2}
    run = lambda rate: {"appends_per_s": rate, "errors": 0, "error_kinds": {},  # noqa: E731
                        "latency_ms": dict(lat)}
    section = {
        "token_check": {"tokens_in_file": 20, "token_us": 3.5, "no_tokens_us": 0.2},
        "load": {"pairs": 2, "slice_s": 2.0, "runs": {"plain": [run(1050.0)],
                                                      "secure": [run(925.0)]},
                 "per_slice": {"plain": [2000, 2200], "secure": [1800, 1900]},
                 "pair_ratios": [0.9, 0.864], "median_pair_ratio": 0.882,
                 "appends_per_s": {"plain": 1050.0, "secure": 925.0}, "ratio": 0.881},
        "slow": {"clients": 4, "idle": 1000, "trickle": 1000, "rounds": 1,
                 "alone": [run(500.0)], "hostile": [run(480.0)],
                 "hostile_counts": [{"opened": 2000}], "p99_ms": {"alone": 3.0, "hostile": 3.0},
                 "p99_ratio": 1.0},
        "targets": [{"target": "HTTP w=3 appends/s, HTTPS + tokens / plain HTTP without",
                     "value": 0.881, "op": ">=", "limit": 0.85, "met": True}],
    }
    text = security.render(section)
    assert ("HTTPS + tokens / plain appends/s: 0.881 (ratio of the sums over 2 pairs of 2 s "
            "slices, ABBA; median pair 0.882)") in text
    assert "each pair: 0.9 0.864" in text
    assert text.count("plain w=3") == 1 and text.count("secure w=3") == 1
    assert "[   met] HTTP w=3 appends/s" in text


def test_security_part_end_to_end(tmp_path):
    """python -m bench --only security, as small as it goes: both clusters loaded in turn by
    two load generators in 1 s slices (2 pairs, ABBA), and 20 + 20 hostile connections."""
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "security", "--quick", "--seconds", "1",
         "--security-idle", "20", "--security-trickle", "20", "--no-chart", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    sec = json.loads(out.read_text())["security"]
    load = sec["load"]
    assert load["pairs"] == 2 and load["slice_s"] == 1.0
    # each generator counted requests only in its own slices: A's are 0 and 3, B's 1 and 2
    assert len(load["per_slice"]["plain"]) == 2 and len(load["per_slice"]["secure"]) == 2
    assert all(n > 0 for kind in ("plain", "secure") for n in load["per_slice"][kind])
    for kind in ("plain", "secure"):
        r = load["runs"][kind][0]
        assert r["errors"] == 0, r
        assert r["appends_per_s"] == pytest.approx(sum(load["per_slice"][kind]) / 2, abs=0.1)
    assert len(load["pair_ratios"]) == 2 and load["ratio"] > 0
    assert sec["token_check"]["token_us"] > 0
    assert sec["slow"]["alone"] and sec["slow"]["hostile"] and sec["slow"]["p99_ratio"]
    assert "HTTPS + tokens / plain appends/s" in proc.stdout
