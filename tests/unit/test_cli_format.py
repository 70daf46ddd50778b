"""The CLI's pure parts: health rows, quorum line, --node parsing, URLs, the demo's runner."""
import pytest

from replog_cli import format as fmt
from replog_cli.narrator import Failed, Narrator, Skipped, check

HEALTH = {
    "role": "master", "read_only": False, "reason": None, "last_seq": 7, "waiting": 1,
    "quorum": {"size": 3, "needed": 2, "available": 2},
    "secondaries": {
        "s2": {"status": "Unhealthy", "acked_seq": 3, "lag": 4, "last_answer_age": None},
        "s1": {"status": "Healthy", "acked_seq": 7, "lag": 0, "last_answer_age": 0.25},
    },
}


def test_health_rows_master_first_then_secondaries_by_name():
    rows = fmt.health_rows(HEALTH)
    assert rows[0] == fmt.Row("master", "writable", 7, 0, "-")
    assert rows[1] == fmt.Row("s1", "Healthy", 7, 0, "0.2 s ago")
    assert rows[2] == fmt.Row("s2", "Unhealthy", 3, 4, "never")
    assert fmt.health_rows({**HEALTH, "read_only": True})[0].status == "read-only"


def test_quorum_line_says_writable_or_why_read_only():
    assert fmt.quorum_line(HEALTH) == "quorum 2 of 3 (2 needed) · writable · 1 POST(s) waiting"
    ro = {**HEALTH, "read_only": True, "waiting": 0, "reason": "no quorum: 1 of 3",
          "quorum": {"size": 3, "needed": 2, "available": 1}}
    assert fmt.quorum_line(ro) == "quorum 1 of 3 (2 needed) · READ-ONLY: no quorum: 1 of 3"


@pytest.mark.parametrize("seconds,text", [(None, "never"), (0.04, "0.0 s ago"),
                                          (59.9, "59.9 s ago"), (150, "2 min ago"),
                                          (7200, "2.0 h ago")])
def test_age(seconds, text):
    assert fmt.age(seconds) == text


def test_duration_rate_and_append_line():
    assert fmt.duration(0.0123) == "12.3 ms" and fmt.duration(2.5) == "2.50 s"
    assert fmt.rate(300, 0.5) == "300 messages in 500.0 ms (600/s)"
    assert fmt.rate(0, 0) == "0 messages"
    assert fmt.append_line({"seq": 4, "acks": 2, "w": 2}, 0.002) == "seq 4 · acks 2 (w=2) · 2.0 ms"


@pytest.mark.parametrize("node,kind,value", [
    (None, "master", "master"), ("master", "master", "master"),
    ("http://h:5001/", "url", "http://h:5001"), ("localhost:5002", "url", "http://localhost:5002"),
    ("secondary1", "name", "secondary1"), ("odd:name", "name", "odd:name")])
def test_parse_node(node, kind, value):
    assert fmt.parse_node(node) == fmt.Target(kind, value)


def test_secondary_urls_follow_the_port_convention_unless_given():
    assert fmt.secondary_urls("http://127.0.0.1:5000", ["secondary2", "secondary1"]) == {
        "secondary1": "http://127.0.0.1:5001", "secondary2": "http://127.0.0.1:5002"}
    assert fmt.secondary_urls("http://h:7000", ["a", "b"], {"b": "http://x:1"}) == {
        "a": "http://h:7001", "b": "http://x:1"}
    assert fmt.pairs(["a=http://x:1"]) == {"a": "http://x:1"}
    with pytest.raises(ValueError, match="NAME=URL"):
        fmt.pairs(["a"])


def test_in_order_needs_each_once_in_this_order():
    assert fmt.in_order(["x", "Msg1", "Msg2", "y", "Msg3"], ["Msg1", "Msg2", "Msg3"])
    assert not fmt.in_order(["Msg2", "Msg1"], ["Msg1", "Msg2"])
    assert not fmt.in_order(["Msg1", "Msg1", "Msg2"], ["Msg1", "Msg2"])
    assert not fmt.in_order(["Msg1"], ["Msg1", "Msg2"])


def test_short_list_keeps_the_tail():
    assert fmt.short_list([1, 2]) == "[1, 2]"
    assert fmt.short_list(list(range(10)), keep=3) == "[... 7 more, 7, 8, 9]"


def narrator():
    said, slept = [], []
    return Narrator(said.append, pace=0.5, sleep=slept.append), said, slept


def test_steps_that_hold_exit_0_and_say_all_three_parts():
    n, said, slept = narrator()

    def body():
        n.scenario("demo", "intro")
        n.step("do [a]", "b happens", lambda: "b [happened]")
    n.run("demo", body)
    text = "\n".join(said)
    assert "What we do:" in text and "do \\[a]" in text        # markup escaped
    assert "Should happen:" in text and "What happened:" in text and "✓" in text
    assert n.exit_code() == 0 and slept == [0.5]
    assert n.summary() == "1 of 1 steps as expected"


def test_a_failed_expectation_stops_its_scenario_and_exits_1():
    n, said, _ = narrator()
    ran = []

    def first():
        n.scenario("one", "")
        n.step("a", "ok", lambda: "fine")
        n.step("b", "x == 1", lambda: check(False, "x was 2") or "unreachable")
        ran.append("after the failure")

    def second():
        n.scenario("two", "")
        n.step("c", "ok", lambda: "fine")
    n.run("one", first)
    n.run("two", second)
    assert ran == [] and n.exit_code() == 1
    assert [r.ok for r in n.results] == [True, False, True]
    assert "FAILED one [2] b: x was 2" in n.summary()
    assert any("✗ FAILED" in line for line in said)


def test_an_exception_in_a_step_or_in_set_up_is_a_failure():
    n, said, _ = narrator()

    def boom():
        raise ConnectionError("refused")
    n.run("s", lambda: n.step("a", "ok", boom))
    assert n.results[-1].happened == "ConnectionError: refused"

    def bad_set_up():
        raise RuntimeError("no cluster")
    n.run("t", bad_set_up)
    assert n.results[-1] .happened == "RuntimeError: no cluster" and n.exit_code() == 1


def test_skips_are_reported_and_nothing_run_is_not_a_pass():
    n, said, _ = narrator()

    def needs_control():
        raise Skipped("needs process control")
    n.run("iteration 3", needs_control)
    assert n.exit_code() == 1 and "skipped: iteration 3" in n.summary()
    n.run("ok", lambda: n.step("a", "b", lambda: "c"))
    assert n.exit_code() == 0


def test_check_raises_failed_with_what_happened():
    check(True, "unused")
    with pytest.raises(Failed, match="what happened"):
        check(0, "what happened")


def test_a_skip_inside_a_step_skips_the_scenario():
    n, said, _ = narrator()

    def body():
        n.step("a", "b", lambda: "c")
        n.step("kill", "x", lambda: (_ for _ in ()).throw(Skipped("no control")))
    n.run("faults", body)
    assert n.skipped == [("faults", "no control")] and n.exit_code() == 0


def test_batches_cut_by_count_and_by_bytes_and_keep_the_order():
    lines = [f"l{i}" for i in range(7)]
    assert fmt.batches(lines, 3) == [(0, lines[0:3]), (3, lines[3:6]), (6, lines[6:])]
    assert fmt.batches(lines, 1) == [(i, [line]) for i, line in enumerate(lines)]
    assert fmt.batches([], 5) == []
    big = "x" * 100
    # each line costs its JSON (102 bytes) plus 2: two fit in 210 bytes, three do not
    assert fmt.batches(["a", big, big, big, "b"], 10, max_bytes=210) == [
        (0, ["a", big]), (2, [big, big]), (4, ["b"])]
    assert fmt.batches(["a", "y" * 500, "b"], 10, max_bytes=210) == [
        (0, ["a"]), (1, ["y" * 500]), (2, ["b"])]        # alone when it is too long anyway


def test_lines_label_names_the_refused_line():
    assert fmt.lines_label(4, 10, 2) == "line 7"
    assert fmt.lines_label(4, 1) == "line 5"
    assert fmt.lines_label(4, 3) == "lines 5-7"
    assert fmt.lines_label(4, 3, 9) == "lines 5-7"       # an index outside the batch
