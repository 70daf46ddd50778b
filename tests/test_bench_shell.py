"""bench/shell.py and bench/baseline.py: the pure pieces without processes, and one quick
end-to-end run of ``python -m bench --only shell --quick``.

Nothing asserts on speed: the figures depend on the machine and on the code under test
(the shell part measures main and its fix alike). The smoke test checks that every figure
is there with a sane type.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- shell: pure


def test_percentile_is_nearest_rank_like_the_load_generator():
    from bench.loadgen import percentile as loadgen_percentile
    from bench.shell import percentile

    values = [5.0, 1.0, 4.0, 2.0, 3.0, 10.0, 7.0, 6.0, 9.0, 8.0]     # unsorted on purpose
    for q in (0, 1, 10, 50, 90, 99, 100):
        assert percentile(values, q) == loadgen_percentile(sorted(values), q)
    assert percentile(values, 50) == 5.0 and percentile(values, 90) == 9.0
    assert percentile(values, 99) == 10.0
    assert percentile([], 50) is None
    assert percentile([0.3], 99) == 0.3


def test_latency_summary_counts_the_share_over_the_limit():
    from bench.shell import latency_summary

    s = latency_summary([0.01, 1.5, 2.0, 0.5, 1.2], over=1.2)
    assert s["count"] == 5 and s["p50_s"] == 1.2 and s["max_s"] == 2.0
    assert s["share_over"] == 0.4           # 1.5 and 2.0; 1.2 itself is not over
    empty = latency_summary([], over=1.2)
    assert empty["count"] == 0 and empty["p50_s"] is None and empty["share_over"] is None


def test_shell_settings_quick_and_full():
    from bench import shell

    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    shell.add_args(p)
    full, quick = shell.settings(p.parse_args([])), shell.settings(p.parse_args(["--quick"]))
    assert (full["writes"], full["reset_trials"], full["waits"]) == (10, 3, 100_000)
    assert (quick["writes"], quick["reset_trials"], quick["waits"]) == (3, 1, 2_000)
    assert full["writers"] == quick["writers"] == 16 and full["slow_ws"] == [2, 3]
    assert full["cases"] == ["slow", "reset", "waits"]
    own = shell.settings(p.parse_args(["--quick", "--shell-waits", "50", "--shell-cases", "waits"]))
    assert own["waits"] == 50 and own["cases"] == ["waits"]
    with pytest.raises(SystemExit, match="unknown shell cases"):
        shell.settings(p.parse_args(["--shell-cases", "slow,nope"]))
    # a parser without our options (python -m bench before it adds them) still works
    assert shell.settings(argparse.Namespace(quick=True))["waits"] == 2_000


def test_shell_and_baseline_options_fit_in_one_parser():
    from bench import baseline, shell

    p = argparse.ArgumentParser()
    shell.add_args(p)
    baseline.add_args(p)        # no clash between the two parts' option names
    args = p.parse_args(["--baseline", "HEAD~1", "--baseline-rounds", "2", "--shell-writes", "4"])
    assert (args.baseline, args.baseline_rounds, args.shell_writes) == ("HEAD~1", 2, 4)


def _shell_result() -> dict:
    slow = {"count": 48, "p50_s": 1.9, "p90_s": 2.0, "p99_s": 2.1, "max_s": 2.2, "over_s": 1.2,
            "share_over": 0.75, "writers": 16, "writes_per_writer": 3, "w": 3, "delay_s": 1.0,
            "statuses": {"201": 48}, "elapsed_s": 6.0, "target_p50_s": 1.1, "met": False}
    return {
        "slow": {"w3": slow},
        "reset": {"trials_s": [9.1, None], "deadline_s": 30.0, "poll_s": 0.01,
                  "stall_delay_s": 600.0, "max_s": 9.1, "target_s": 0.5, "met": False},
        "waits": {"posts": 2000, "clients": 128, "procs": 2, "w": 3, "timeout_s": 0.05,
                  "message_bytes": 16, "statuses": {"504": 1999, "503": 1},
                  "all_504": False, "answered_504": 1999, "elapsed_s": 1.2, "posts_per_s": 1666.7,
                  "waiting_to_zero_s": None, "waiting_deadline_s": 5.0, "waiting_at_end": 2512,
                  "rss_before_mib": 42.0, "rss_after_mib": 44.0, "rss_growth_mib": 2.0,
                  "rss_ratio": 1.048, "rss_bytes_per_post": 1048.6},
    }


def test_shell_render_without_a_cluster():
    from bench.shell import render

    text = render(_shell_result())
    assert "1.900" in text and "75.0%" in text
    assert "9.100 s, not within 30 s" in text
    assert "never within 5 s (waiting=2512)" in text and "1,999 answered 504" in text
    assert "'503': 1" in text                       # not all 504: the other answers shown
    assert "MISSED" in text


# --------------------------------------------------------------------------- baseline: pure


def test_schedule_alternates_and_swaps_the_order_every_round():
    from bench.baseline import schedule

    assert schedule(1) == [(0, "baseline"), (0, "current")]
    order = schedule(3)
    assert [t for _, t in order] == ["baseline", "current", "current", "baseline",
                                     "baseline", "current"]
    assert [r for r, _ in order] == [0, 0, 1, 1, 2, 2]
    assert schedule(0) == []


def test_compare_sums_ratios_and_rounds():
    from bench.baseline import compare

    metrics = (("rate", "higher"), ("p99", "lower"), ("catch-up", "higher"))
    runs = {
        "baseline": [{"rate": 100.0, "p99": 2.0, "catch-up": 50.0},
                     {"rate": 300.0, "p99": 4.0, "catch-up": None}],
        "current": [{"rate": 150.0, "p99": 1.0, "catch-up": 100.0},
                    {"rate": 300.0, "p99": 2.0, "catch-up": 80.0}],
    }
    c = compare(runs, metrics)
    assert c["rate"]["baseline_sum"] == 400.0 and c["rate"]["current_sum"] == 450.0
    assert c["rate"]["ratio"] == 1.125                      # of the sums, not a mean of ratios
    assert c["rate"]["round_ratios"] == [1.5, 1.0]
    assert c["p99"]["ratio"] == 0.5 and c["p99"]["better"] == "lower"
    # a round where one tree lacks the figure is left out of both sums
    assert c["catch-up"]["round_ratios"] == [2.0, None]
    assert c["catch-up"]["paired_rounds"] == 1 and c["catch-up"]["ratio"] == 2.0
    none = compare({"baseline": [{"rate": 0.0}], "current": [{"rate": 5.0}]}, (("rate", "higher"),))
    assert none["rate"]["ratio"] is None and none["rate"]["round_ratios"] == [None]
    empty = compare({"baseline": [], "current": []}, metrics)
    assert empty["rate"]["ratio"] is None and empty["rate"]["baseline_sum"] is None


def test_figures_and_render_without_a_cluster():
    from bench.baseline import METRICS, compare, figures, render

    def load(rate, p99):
        return {"appends_per_s": rate, "latency_ms": {"p50": 1.0, "p99": p99}}

    f = figures({1: load(2000.0, 10.0), 3: load(1500.0, 12.0)}, {"rate": 40_000.0})
    assert f == {"http-w1 appends/s": 2000.0, "http-w1 p99 ms": 10.0,
                 "http-w3 appends/s": 1500.0, "http-w3 p99 ms": 12.0, "catch-up msg/s": 40_000.0}
    assert set(f) == {name for name, _ in METRICS}
    assert figures({}, None)["catch-up msg/s"] is None
    g = dict(f, **{"catch-up msg/s": None})
    res = {"ref": "5b74b8d", "sha": "5b74b8de3e" + "0" * 30, "current": "abc1234", "rounds": 1,
           "order": ["baseline", "current"], "compare": compare({"baseline": [f], "current": [g]})}
    text = render(res)
    assert "5b74b8d" in text and "B C" in text and "1.000" in text
    assert text.splitlines()[-1].split()[-1] == "-"      # catch-up: no paired round


def test_baseline_case_args_defaults():
    from bench.baseline import DEFAULT_BASELINE, case_args

    quick = case_args(argparse.Namespace(quick=True, baseline=None, baseline_rounds=None))
    assert (quick.seconds, quick.catchup, quick.rounds, quick.ref) == (2.0, 10_000, 1, DEFAULT_BASELINE)
    full = case_args(argparse.Namespace(quick=False, baseline="HEAD", seconds=3.0))
    assert (full.seconds, full.catchup, full.rounds, full.ref) == (3.0, 100_000, 3, "HEAD")
    assert full.catchup_trials == 1                      # the rounds repeat the catch-up


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_quick_shell_end_to_end(tmp_path, capsys):
    pytest.importorskip("psutil")
    out = tmp_path / "shell.json"
    proc = subprocess.run([sys.executable, "-m", "bench", "--only", "shell", "--quick",
                           "--no-chart", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=280)
    with capsys.disabled():   # CI's log shows the figures (nothing below asserts on them)
        print("\n" + proc.stdout, flush=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    shell = json.loads(out.read_text())["shell"]
    assert shell["params"]["quick"] is True

    assert set(shell["slow"]) == {"w2", "w3"}
    for key, r in shell["slow"].items():
        assert r["w"] == int(key[1:]) and r["writers"] == 16 and r["writes_per_writer"] == 3
        assert r["count"] == 48 and r["statuses"] == {"201": 48}, r
        for p in ("p50_s", "p90_s", "p99_s", "max_s"):
            assert isinstance(r[p], float) and r[p] > 0, (key, p, r)
        assert r["p50_s"] <= r["p90_s"] <= r["p99_s"] <= r["max_s"]
        assert 0.0 <= r["share_over"] <= 1.0 and isinstance(r["met"], bool)

    reset = shell["reset"]
    assert len(reset["trials_s"]) == 1
    assert all(x is None or (isinstance(x, float) and 0 < x <= reset["deadline_s"] + 5)
               for x in reset["trials_s"]), reset
    assert isinstance(reset["met"], bool)

    waits = shell["waits"]
    assert waits["posts"] == 2_000
    assert isinstance(waits["all_504"], bool) and isinstance(waits["answered_504"], int)
    assert sum(waits["statuses"].values()) == 2_000, waits["statuses"]
    assert waits["waiting_to_zero_s"] is None or waits["waiting_to_zero_s"] >= 0
    assert waits["waiting_to_zero_s"] is not None or isinstance(waits["waiting_at_end"], int)
    assert waits["rss_before_mib"] > 0 and waits["rss_after_mib"] > 0
    assert isinstance(waits["rss_ratio"], float) and waits["rss_ratio"] > 0
    assert isinstance(waits["rss_growth_mib"], float)
    assert "replication shell" in proc.stdout and "master RSS" in proc.stdout
