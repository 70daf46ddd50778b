"""The fault schedule is deterministic, well-formed and loses the quorum often enough."""

from __future__ import annotations

import pytest

from .history import MASTER, History
from .nemesis import (
    ScheduleConfig,
    Step,
    down_windows,
    make_schedule,
    master_steps,
    max_concurrent,
)

NODES = ["s1", "s2", "s3"]


def test_same_seed_same_schedule():
    assert make_schedule(42, 30, NODES) == make_schedule(42, 30, NODES)


def test_different_seeds_differ():
    schedules = {tuple(make_schedule(seed, 30, NODES)) for seed in range(20)}
    assert len(schedules) == 20


@pytest.mark.parametrize("seed", range(60))
@pytest.mark.parametrize("duration", [5, 15, 60, 600])
def test_schedule_is_well_formed(seed, duration):
    steps = make_schedule(seed, duration, NODES)
    assert steps, "every schedule has at least one fault"
    assert [s.t for s in steps] == sorted(s.t for s in steps)
    assert all(0 < s.t <= duration for s in steps)
    # per node: faults alternate start/end, never overlap, and all end
    assert {s.target for s in steps} <= set(NODES) | {MASTER}
    assert all(s.action in ("kill", "restart", "pause", "resume") for s in master_steps(steps))
    for node in NODES + [MASTER]:
        mine = [s for s in steps if s.target == node]
        open_fault = None
        for s in mine:
            if s.action in ("kill", "pause") or (s.action == "faults" and s.params[0][1]):
                assert open_fault is None, f"{node}: {s} while {open_fault} is active"
                open_fault = s
            else:
                assert open_fault is not None, f"{node}: {s} ends nothing"
                if open_fault.action == "kill":
                    assert s.action == "restart"
                elif open_fault.action == "pause":
                    assert s.action == "resume"
                else:
                    assert s.action == "faults" and s.params[0][0] == open_fault.params[0][0]
                    assert s.params[0][1] == 0.0
                if node != MASTER:
                    assert s.t - open_fault.t >= ScheduleConfig().min_fault - 1e-9
                open_fault = None
        assert open_fault is None, f"{node}: {open_fault} never ends"


def test_all_kinds_and_quorum_loss_are_common():
    kinds = set()
    lost = 0
    for seed in range(50):
        steps = make_schedule(seed, 15, NODES)
        kinds |= {s.action if s.action != "faults" else s.params[0][0] for s in steps}
        # quorum is lost when two secondaries stay down longer than the health timers (1.5 s)
        if any(b - a >= 1.5 for a, b in down_windows(steps)):
            lost += 1
    assert kinds == {"kill", "restart", "pause", "resume", "delay", "error_rate"}
    assert lost >= 25, f"only {lost}/50 short schedules lose the quorum"


def test_master_faults_are_common_and_do_not_change_the_secondaries():
    kills = pauses = 0
    for seed in range(50):
        steps = make_schedule(seed, 22, NODES)
        ms = master_steps(steps)
        kills += any(s.action == "kill" for s in ms)
        pauses += any(s.action == "pause" for s in ms)
        # the master's faults come from their own random stream: the secondaries' are the
        # same as without them (so a seed replays the same secondary faults as before)
        alone = make_schedule(seed, 22, NODES, ScheduleConfig(master=None))
        assert [s for s in steps if s.target != MASTER] == alone
    assert kills >= 45 and pauses >= 15, (kills, pauses)
    # down_windows and max_concurrent count secondaries only
    assert max_concurrent([Step(1, "kill", MASTER), Step(2, "restart", MASTER)]) == 0


def test_fixed_ci_seed_exercises_every_fault():
    from .runner import SECONDARIES
    from .test_chaos import DURATION, FIXED_SEED

    steps = make_schedule(FIXED_SEED, DURATION, list(SECONDARIES))
    sec = [s for s in steps if s.target != MASTER]
    assert {s.action if s.action != "faults" else s.params[0][0] for s in sec} == {
        "kill", "restart", "pause", "resume", "delay", "error_rate"}
    assert max_concurrent(steps) == 3
    assert len([1 for a, b in down_windows(steps) if b - a >= 2.0]) >= 2
    ms = master_steps(steps)
    assert [s.action for s in ms if s.action in ("kill", "pause")] == ["kill", "kill", "pause"]
    # one master kill while all three secondaries are killed or paused: it restarts into a
    # cluster without a quorum
    assert any(a <= k.t <= b for k in ms if k.action == "kill"
               for a, b in down_windows(steps, at_least=3))


def test_several_secondaries_at_once():
    assert sum(max_concurrent(make_schedule(seed, 15, NODES)) >= 2 for seed in range(50)) >= 35
    assert any(max_concurrent(make_schedule(seed, 15, NODES)) == 3 for seed in range(50))


def test_down_windows():
    steps = [Step(1, "kill", "s1"), Step(2, "pause", "s2"), Step(3, "restart", "s1"),
             Step(4, "kill", "s3"), Step(5, "resume", "s2"), Step(6, "restart", "s3")]
    assert down_windows(steps) == [(2, 3), (4, 5)]
    assert max_concurrent(steps) == 2


class FakeProc:
    def __init__(self, name, calls):
        self.name, self.calls, self.url = name, calls, f"http://fake/{name}"

    def kill(self):
        self.calls.append(("kill", self.name))

    def restart(self):
        self.calls.append(("restart", self.name))

    def pause(self):
        self.calls.append(("pause", self.name))

    def resume(self):
        self.calls.append(("resume", self.name))


def test_nemesis_applies_records_and_heals(monkeypatch):
    pytest.importorskip("requests")
    from . import nemesis as nm

    calls = []
    procs = {n: FakeProc(n, calls) for n in [MASTER] + NODES}
    h = History(secondaries=NODES)
    steps = [Step(0.0, "kill", "s1"), Step(0.05, "pause", "s2"),
             Step(0.10, "faults", "s3", (("delay", 0.5),)), Step(0.12, "kill", MASTER)]
    nem = nm.Nemesis(procs, h, steps, log=lambda _: None)

    class Resp:
        status_code = 200

    posts = []
    monkeypatch.setattr(nem, "_post", lambda url, body: posts.append((url, body)) or Resp())
    nem.start()
    assert nem.join(5.0)
    # one worker per node: the order across nodes is not fixed
    assert sorted((f.action, f.target, f.ok) for f in h.faults) == [
        ("faults", "s3", True), ("kill", MASTER, True), ("kill", "s1", True),
        ("pause", "s2", True)]
    assert posts == [("http://fake/s3/faults", {"delay": 0.5})]
    calls.clear()
    assert nem.heal() == []
    # the secondaries first, the master last (it then finds them up when it starts)
    assert calls == [("restart", "s1"), ("resume", "s2"), ("restart", MASTER)]
    assert posts[-1] == ("http://fake/s3/faults", {"delay": 0.0, "error_rate": 0.0})
    assert not any(url.endswith("/master/faults") for url, _ in posts)
    assert [(f.action, f.target) for f in h.faults[-4:]] == [
        ("heal", "s1"), ("heal", "s2"), ("heal", "s3"), ("heal", MASTER)]
    assert set(nem.state.values()) == {"up"}
