"""Failover on real processes (issue 19): kill -9 and SIGSTOP of the master under writers,
the old master rejoining, 307s to the master, the name server out of the data path, Pyro5
clients. Every node runs with --failover (start_cluster(failover=True)); the first master
is whichever node wins the first election.

What every test checks in the end: each write acknowledged with w=2 is, after one more w=2
write on the master (so that it commits everything before it), at the seq it was
acknowledged with on every node; and no seq showed two messages in any two samples of any
nodes' GET /messages taken during the test (Sampler)."""
import time

import pytest

from nodes.launcher import wait_until
from .conftest import start_cluster
from .failover_support import (FAILOVER_FLAGS, NAMES, Clock, Sampler, Writers,
                               check_acked_in, check_no_duplicates, cut_lines, failover_state,
                               health, messages, metric, post, set_delay, wait_converged,
                               wait_master, write_until_acked)

pytestmark = pytest.mark.slow      # each runs a cluster of real processes for 5-30 s


def start(cluster, **flags):
    master, secs = start_cluster(cluster, failover=True,
                                 master_flags={**FAILOVER_FLAGS, **flags},
                                 secondary_flags={n: {**FAILOVER_FLAGS, **flags} for n in NAMES})
    procs = [master, *secs]
    return procs, wait_master(procs)


def settle(live, master, sampler, acked):
    """One more w=2 write on the master, every live node showing the master's log, the
    checks of every test; returns the master's log."""
    write_until_acked([master], "barrier", 2)
    log = wait_converged(live, master)
    sampler.stop()
    check_acked_in(log, acked, f"{master.name} and every live node")
    check_no_duplicates(log, master.name)
    return log


def test_kill_9_of_the_master_under_writers(cluster):
    clock = Clock()
    procs, old = start(cluster)
    clock.mark(f"cluster up, {old.name} master")
    sampler = Sampler(procs).start()
    writers = Writers(procs, count=4, w=2).start()
    wait_until(lambda: writers.count_acked() >= 300, 30, what="300 acknowledged writes")
    old_epoch = failover_state(old)["epoch"]
    old.kill()                                                     # kill -9
    at_kill = writers.count_acked()
    clock.mark(f"killed {old.name} after {at_kill} acknowledged writes")
    new = wait_master(procs, other_than=old, above_epoch=old_epoch)
    clock.mark(f"{new.name} is master of epoch {failover_state(new)['epoch']}")
    wait_until(lambda: writers.count_acked() >= at_kill + 300, 30,
               what="300 more acknowledged writes after the kill")
    writers.stop()
    clock.mark(f"writers stopped: {writers.outcomes}, {writers.redirected} through a 307")
    live = [p for p in procs if p is not old]
    other = next(p for p in live if p is not new)
    assert failover_state(other)["master"] == new.name
    log = settle(live, new, sampler, writers.acked)
    clock.mark(f"{len(log)} messages on {[p.name for p in live]}; samples {dict(sampler.samples)}")
    assert writers.redirected > 0          # some writes went to a secondary and followed 307
    assert not sampler.conflicts, sampler.describe()


def test_old_master_restarted_with_its_command_rejoins_as_a_secondary(cluster):
    clock = Clock()
    procs, old = start(cluster)
    sampler = Sampler(procs).start()
    writers = Writers(procs, count=4, w=2).start()
    wait_until(lambda: writers.count_acked() >= 300, 30, what="300 acknowledged writes")
    old_epoch = failover_state(old)["epoch"]
    old.kill()
    clock.mark(f"killed {old.name} (master of epoch {old_epoch})")
    new = wait_master(procs, other_than=old, above_epoch=old_epoch)
    at_new = writers.count_acked()
    wait_until(lambda: writers.count_acked() >= at_new + 300, 30,
               what="300 acknowledged writes on the new master")
    clock.mark(f"{new.name} master; restarting {old.name} with {old.argv[2:]}")
    old.restart()                                  # the same command line, the same data dir
    clock.mark(f"{old.name} answers /health again")
    wait_until(lambda: failover_state(old)["master"] == new.name, 20,
               what=f"{old.name} to follow {new.name}")
    at_restart = writers.count_acked()
    wait_until(lambda: writers.count_acked() >= at_restart + 300, 30,
               what="300 acknowledged writes after the restart")
    writers.stop()
    state = failover_state(old)
    assert state["role"] == "secondary" and state["master"] == new.name, state
    assert failover_state(new)["role"] == "master"
    log = settle(procs, new, sampler, writers.acked)     # the restarted node too
    clock.mark(f"{len(log)} messages on every node; {writers.outcomes}")
    assert not sampler.conflicts, sampler.describe()


def pause_after_unreplicated_w1(cluster, writers_count=2, k=5):
    """The master acknowledges k w=1 writes that no secondary stores (both hold replicate
    calls 60 s: an injected --delay), then is paused (SIGSTOP); a new master is elected and
    its follower's delay is lifted once it follows the new epoch. Returns what the tests
    need; the old master is still paused."""
    procs, old = start(cluster)
    old_epoch = failover_state(old)["epoch"]
    writers = Writers(procs, count=writers_count, w=2).start() if writers_count else None
    if writers:
        wait_until(lambda: writers.count_acked() >= 100, 30, what="100 acknowledged writes")
    others = [p for p in procs if p is not old]
    for p in others:
        set_delay(p, 60.0)
    w1 = {}
    for i in range(k):
        r = post(old.url, f"w1-{i}", 1)
        assert r.status_code == 201, r.text
        w1[f"w1-{i}"] = r.json()["seq"]
    shown = messages(old)                 # what a reader of the old master sees now
    paused_at = time.monotonic()
    old.pause()                                                        # SIGSTOP
    new = wait_master(others, above_epoch=old_epoch)
    follower = next(p for p in others if p is not new)
    new_epoch = failover_state(new)["epoch"]
    wait_until(lambda: health(follower)["epoch"] == new_epoch, 20,
               what=f"{follower.name} synced to {new.name}'s epoch {new_epoch}")
    set_delay(follower, 0.0)      # its held calls of the old master are refused: stale epoch
    return procs, old, new, follower, writers, w1, shown, paused_at


def test_sigstop_of_the_master_for_5_s(cluster):
    """The old master is deposed while paused, steps down when it runs again and rejoins as a
    secondary; no w=2 write is lost; the w=1 writes only it held are cut, logged ("cut
    back") and counted ("cut", replog_secondary_cut_messages). The new master's own
    secondary held a replicate call of the old master across its election (the injected
    delay): that call must not touch the new master's log."""
    clock = Clock()
    procs, old, new, follower, writers, w1, shown, paused_at = \
        pause_after_unreplicated_w1(cluster)
    clock.mark(f"{old.name} paused with w=1 writes {w1}; {new.name} elected")
    at_new = writers.count_acked()
    wait_until(lambda: writers.count_acked() >= at_new + 100, 30,
               what=f"100 acknowledged writes on {new.name}")
    wait_until(lambda: time.monotonic() - paused_at >= 5.0, 10, what="5 s of pause")
    old.resume()                                                       # SIGCONT
    clock.mark(f"{old.name} resumed")
    wait_until(lambda: failover_state(old)["role"] == "secondary"
               and failover_state(old)["master"] == new.name, 20,
               what=f"{old.name} to step down and follow {new.name}")
    clock.mark(f"{old.name} is a secondary of {new.name}")
    state = failover_state(old)
    assert state["stepped_down"] >= 1 and state["epoch"] > 1, state
    at_rejoin = writers.count_acked()
    wait_until(lambda: writers.count_acked() >= at_rejoin + 100, 30,
               what="100 acknowledged writes after the rejoin")
    writers.stop()
    write_until_acked([new], "barrier", 2)
    log = wait_converged(procs, new)
    check_acked_in(log, writers.acked, "every node")             # no w=2 write lost
    check_no_duplicates(log, new.name)
    cut = {m: seq for m, seq in w1.items() if seq > len(log) or log[seq - 1] != m}
    assert cut == w1, f"the w=1 writes only {old.name} held were not all cut: {cut} of {w1}"
    lines = cut_lines(old)
    assert lines, f"no 'cut back' line in {old.log_path}"
    logged = {seq for first, last, _ in lines for seq in range(first, last + 1)}
    assert set(cut.values()) <= logged, (cut, lines)
    counted = health(old)["cut"]
    assert counted == sum(n for _, _, n in lines) >= len(cut), (counted, lines)
    assert metric(old, "replog_secondary_cut_messages_total") == counted
    assert health(new)["failover"]["writable"]
    clock.mark(f"{len(log)} messages on every node; cut {lines}; {writers.outcomes}")


@pytest.mark.xfail(strict=True, reason="reads show entries not yet held by a majority (the "
                   "master shows its durable prefix): a w=1 write a failover cuts was shown "
                   "first. docs/failover.md's 'shown' rule (commit-only reads) is not wired yet")
def test_a_write_that_a_failover_cuts_was_never_shown(cluster):
    """The same pause without writers: the old master's w=1 writes were read from it before
    the pause; once the new master writes, no seq may show another message."""
    procs, old, new, follower, _, w1, shown, _ = pause_after_unreplicated_w1(cluster,
                                                                           writers_count=0)
    sampler = Sampler(procs, interval=1)
    sampler.check(old.name, shown, 0)
    for p in (new, follower):
        sampler.check(p.name, messages(p), 0)
    write_until_acked([new], "barrier", 2)
    for i in range(len(w1)):
        write_until_acked([new], f"new-{i}", 2)
    wait_converged([new, follower], new)
    sampler.check(new.name, messages(new), 1)
    assert not sampler.conflicts, sampler.describe()


def test_a_call_of_the_old_master_held_across_an_election_leaves_the_new_log_alone(cluster):
    """A secondary holds a replicate call of the master (an injected 4 s delay) while the
    master is paused and it wins the election. When the call goes on, the store belongs to
    the new Master: the call must be refused, not write the old master's w=1 entry at the
    seq the new master writes next (that made the new master's disk fail: "append at seq N,
    but the log ends at N", read-only for good)."""
    delay = 4.0
    procs, old = start(cluster)
    old_epoch = failover_state(old)["epoch"]
    write_until_acked(procs, "first", 3)
    others = [p for p in procs if p is not old]
    for p in others:
        set_delay(p, delay)
    r = post(old.url, "only-on-the-old-master", 1)
    assert r.status_code == 201, r.text
    held_since = time.monotonic()
    old.pause()
    new = wait_master(others, above_epoch=old_epoch)
    assert time.monotonic() - held_since < delay, \
        "precondition: the election ended after the held call went on; raise `delay`"
    follower = next(p for p in others if p is not new)
    wait_until(lambda: health(follower)["epoch"] == failover_state(new)["epoch"], 20,
               what=f"{follower.name} synced to {new.name}")
    set_delay(follower, 0.0)
    wait_until(lambda: time.monotonic() - held_since > delay + 0.5, delay + 5,
               what="the injected delay of the held call to run out")
    seq, text, _ = write_until_acked([new], "after", 2, timeout=10)
    assert not health(new)["read_only"], health(new)["reason"]
    log = wait_converged([new, follower], new)
    assert log[seq - 1] == text and "only-on-the-old-master" not in log
    assert "disk failed" not in new.log_path.read_text()
