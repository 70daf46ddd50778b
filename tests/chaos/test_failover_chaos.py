"""Failover under chaos (tests/chaos/failover.py): a real cluster whose master is killed and
paused again and again, and the checker of issue 19's guarantees, which must catch each
kind of violation in a history made to contain it."""
from __future__ import annotations

import os
import random

import pytest

from .failover import Op, Run, check, master_epochs, run, summary

SEED = int(os.environ.get("REPLOG_CHAOS_SEED") or random.SystemRandom().randrange(1, 10**6))
DURATION = float(os.environ.get("REPLOG_CHAOS_DURATION", "20"))


@pytest.mark.chaos
@pytest.mark.timeout(DURATION + 200)
def test_failover_under_chaos(tmp_path, capsys):
    seed = (f"failover chaos seed {SEED} (reproduce: python -m tests.chaos.failover "
            f"--seed {SEED} --duration {DURATION:g})")
    with capsys.disabled():
        print(f"\n{seed}", flush=True)
    r = run(SEED, DURATION, tmp_path, min_masters=3)
    problems = check(r)
    with capsys.disabled():
        print(summary(r, problems), flush=True)
    # and captured, for the failure report: on pytest-xdist's workers the lines above are lost
    print(f"{seed}\n{summary(r, problems)}")
    assert not problems
    assert sum(1 for op in r.ops if op.status == 201) > 100      # writes went through
    assert len(master_epochs(r)) >= 3                              # elections


def history(**kw) -> Run:
    r = Run(seed=0, duration=0)
    r.final = {"master": ["a", "b"], "s1": ["a", "b"]}
    r.ops = [Op("a", 2, 0, 1, 201, 1), Op("b", 1, 0, 1, 201, 2)]
    for k, v in kw.items():
        setattr(r, k, v)
    return r


def test_a_clean_history_passes():
    assert check(history()) == []


def test_two_masters_in_one_epoch_are_caught():
    r = history(claims=[(1.0, "master", 3, "master"), (1.1, "s1", 3, "master")])
    assert any("epoch 3 had two masters" in p for p in check(r))


def test_a_seq_that_showed_two_messages_is_caught():
    r = history(lists=[(0.5, "s2", ["a", "x"])])
    assert any("seq 2 showed 'x'" in p for p in check(r))


def test_a_lost_majority_write_is_caught():
    r = history()
    r.ops.append(Op("c", 2, 0, 1, 201, 3))
    assert any("'c' acknowledged with w=2" in p for p in check(r))


def test_a_w1_write_lost_without_a_cut_is_caught():
    r = history()
    r.ops.append(Op("c", 1, 0, 1, 201, 3))
    assert any("lost silently" in p for p in check(r))
    r.cut = 1
    assert check(r) == []
