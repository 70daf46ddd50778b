"""Failover on real processes (issue 19): kill -9 and SIGSTOP of the master under writers,
the old master rejoining, 307s to the master, the name server out of the data path, Pyro5
clients. Every node runs with --failover (start_cluster(failover=True)); the first master
is whichever node wins the first election.

What every test checks in the end: each write acknowledged with w=2 is, after one more w=2
write on the master (so that it commits everything before it), at the seq it was
acknowledged with on every node; and no seq showed two messages in any two samples of any
nodes' GET /messages taken during the test (Sampler)."""
import pytest

from nodes.launcher import wait_until
from .conftest import start_cluster
from .failover_support import (FAILOVER_FLAGS, NAMES, Clock, Sampler, Writers,
                               check_acked_in, check_no_duplicates, failover_state, messages,
                               wait_converged, wait_master, write_until_acked)

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
