"""Failover on real processes (issue 19): kill -9 and SIGSTOP of the master under writers,
the old master rejoining, 307s to the master, the name server out of the data path, Pyro5
clients. Every node runs with --failover (start_cluster(failover=True)); the first master
is whichever node wins the first election.

What every test checks in the end: each write acknowledged with w=2 is, after one more w=2
write on the master (so that it commits everything before it), at the seq it was
acknowledged with on every node; and no seq showed two messages in any two samples of any
nodes' GET /messages taken during the test (Sampler)."""
import json
import subprocess
import time

import Pyro5.api
import Pyro5.core
import pytest
import requests

from nodes.launcher import wait_until
from .conftest import start_cluster
from .failover_support import (FAILOVER_FLAGS, NAMES, Clock, Partition, Sampler, Writers,
                               check_acked_in, check_no_duplicates, cut_lines, failover_state,
                               health, messages, metric, post, set_delay, stepped_down_to,
                               wait_converged, writable_master,
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
    if sampler is not None:
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
    # The restarted node holds a tail on its disk that no other node may have until the new
    # master cuts it back: reads are commit-only, so it must never show it.
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
    new_epoch, new_won = (failover_state(new)[k] for k in ("epoch", "elections_won"))
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
    # No election on the way: the restarted node (the node named master stands first at
    # every start) asked for pre-votes, heard no yes from nodes that hear a live master, and
    # so never raised its epoch, which would have deposed the healthy master.
    assert state["elections_stood"] == 0 and state["epoch"] == new_epoch, state
    assert (failover_state(new)["epoch"], failover_state(new)["elections_won"]) == \
        (new_epoch, new_won)
    log = settle(procs, new, None, writers.acked)        # the restarted node too
    sampler.stop()
    assert not sampler.conflicts, sampler.describe()
    clock.mark(f"{len(log)} messages on every node; {writers.outcomes}; "
               f"{sum(sampler.samples.values())} samples")


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
    # It must follow the master of now (test_a_deposed_master_steps_down_without_standing
    # checks that this is the one elected meanwhile).
    current = wait_until(lambda: (m := writable_master(procs)) is not None and m is not old
                         and stepped_down_to(old, m) and m, 20,
                         what=f"{old.name} to step down and follow the master")
    clock.mark(f"{old.name} is a secondary of {current.name} (elected meanwhile: {new.name})")
    new = current
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
    # still master and writable (its 0.5 s lease may lapse for a moment on a busy machine)
    wait_until(lambda: health(new)["failover"]["writable"], 10, what=f"{new.name} writable")
    assert health(new)["failover"]["role"] == "master"
    clock.mark(f"{len(log)} messages on every node; cut {lines}; {writers.outcomes}")


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


def test_a_write_to_a_secondary_answers_307_to_the_master(cluster):
    procs, master = start(cluster)
    secondary = next(p for p in procs if p is not master)
    r = post(secondary.url, "not-followed", 2, follow=False)
    assert r.status_code == 307, r.text
    assert r.headers["Location"] == master.url + "/messages"
    body = r.json()
    assert body["master"] == master.name and body["master_url"] == master.url, body
    r = requests.post(secondary.url + "/messages?x=1", json={"message": "q", "w": 2},
                      allow_redirects=False, timeout=5)
    assert r.status_code == 307 and r.headers["Location"] == master.url + "/messages?x=1"
    r = post(secondary.url, "followed", 2)                    # requests follows 307s
    assert r.status_code == 201 and [h.status_code for h in r.history] == [307], r.text
    followed = r.json()["seq"]
    curl = subprocess.run(
        ["curl", "-sS", "-L", "--max-time", "10", "-H", "Content-Type: application/json",
         "-d", json.dumps({"message": "curl -L", "w": 2}), "-w", "\n%{http_code} %{num_redirects}",
         secondary.url + "/messages"], capture_output=True, text=True, timeout=20)
    assert curl.returncode == 0, curl.stderr
    answer, status = curl.stdout.rsplit("\n", 1)
    assert status == "201 1", curl.stdout
    seq = json.loads(answer)["seq"]
    log = wait_converged(procs, master)
    assert log[followed - 1] == "followed" and log[seq - 1] == "curl -L"
    assert "not-followed" not in log


def test_a_write_during_an_election_answers_503_with_retry_after(cluster, tmp_path):
    """One node of three: its election timeout ends again and again and no master can be
    elected (no majority answers even its pre-votes, so it never stands and its epoch stays
    where it was), so it is in an election for as long as it runs."""
    lone = cluster.start_secondary("s1", failover=True, cluster=["master", *NAMES],
                                   data_dir=tmp_path / "s1", **FAILOVER_FLAGS)
    wait_until(lambda: failover_state(lone)["prevote_rounds"] >= 2, 20,
               what="s1 to ask for pre-votes twice")
    assert failover_state(lone)["elections_stood"] == 0 and failover_state(lone)["epoch"] == 0
    r = post(lone.url, "no master", 2, follow=False)
    assert r.status_code == 503, r.text
    assert r.headers["Retry-After"] == "1"
    assert "election" in r.json()["error"] and failover_state(lone)["master"] is None
    assert messages(lone) == []


def test_name_server_out_of_the_data_path(cluster):
    """Kill the name server, then kill -9 the master: the others still elect one (they know
    each other's addresses) and writes go on. Start the name server again: every node is
    registered again (the time is printed, not asserted: the issue wants 2 s)."""
    clock = Clock()
    procs, old = start(cluster)
    ns = cluster.procs["nameserver"]
    writers = Writers(procs, count=2, w=2).start()
    wait_until(lambda: writers.count_acked() >= 100, 30, what="100 acknowledged writes")
    ns.kill()
    n = writers.count_acked()
    wait_until(lambda: writers.count_acked() >= n + 100, 30,
               what="100 acknowledged writes without a name server")
    old_epoch = failover_state(old)["epoch"]
    old.kill()
    clock.mark(f"name server and {old.name} killed")
    new = wait_master(procs, other_than=old, above_epoch=old_epoch)
    clock.mark(f"{new.name} elected without a name server")
    n = writers.count_acked()
    wait_until(lambda: writers.count_acked() >= n + 100, 30,
               what=f"100 acknowledged writes on {new.name} without a name server")
    live = [p for p in procs if p is not old]
    other = next(p for p in live if p is not new)
    ns.start()
    started = time.monotonic()
    wait_until(lambda: cluster._accepts(cluster.ns_port), 15, what="the name server")
    want = {f"replog.node.{p.name}" for p in live} | {"replog.master",
                                                      f"replog.secondary.{other.name}"}

    def registered():
        with Pyro5.api.locate_ns("127.0.0.1", cluster.ns_port) as names:
            listed = names.list(prefix="replog.")
        return set(listed) == want and listed
    listed = wait_until(registered, 30, interval=0.05, what=f"{sorted(want)} registered")
    took = time.monotonic() - started
    print(f"every node registered again {took:.2f} s after the name server started "
          f"(issue 19 wants 2 s)")
    node_uri = Pyro5.core.URI(listed[f"replog.node.{new.name}"])
    assert Pyro5.core.URI(listed["replog.master"]).location == node_uri.location
    writers.stop()
    settle(live, new, None, writers.acked)


def test_pyro_clients_follow_the_master(cluster):
    """PYRONAME:replog.master resolves to the new master after a failover; a call on the
    deposed master's own replog.master object raises an error naming the new master."""
    procs, old = start(cluster)
    by_name = f"PYRONAME:replog.master@127.0.0.1:{cluster.ns_port}"
    with Pyro5.api.Proxy(by_name) as m:
        m._pyroTimeout = 5
        assert m.health()["failover"]["node"] == old.name
        assert m.append("before", 2)["seq"] == 1 + messages(old).index("before")
    with Pyro5.api.locate_ns("127.0.0.1", cluster.ns_port) as names:
        direct = names.lookup("replog.master")      # the old master's object, by address
    old_epoch = failover_state(old)["epoch"]
    old.pause()
    new = wait_master([p for p in procs if p is not old], above_epoch=old_epoch)
    old.resume()
    wait_until(lambda: stepped_down_to(old, new), 20, what=f"{old.name} to step down")
    with Pyro5.api.Proxy(direct) as deposed:
        deposed._pyroTimeout = 5
        with pytest.raises(PermissionError, match=rf"(the master of epoch \d+ is|master:) "
                                                  rf"{new.name}\b") as raised:
            deposed.append("to the deposed master", 2)
    print(f"the deposed master answered: {raised.value}")

    def resolves_to_new():
        with Pyro5.api.Proxy(by_name) as m:
            m._pyroTimeout = 2
            return m.health()["failover"]["node"] == new.name
    wait_until(resolves_to_new, 20, what=f"{by_name} to resolve to {new.name}")
    with Pyro5.api.Proxy(by_name) as m:
        m._pyroTimeout = 5
        seq = m.append("after", 2)["seq"]
    log = wait_converged(procs, new)
    assert log[seq - 1] == "after" and "to the deposed master" not in log


def start_partitionable(cluster, tmp_path):
    """A failover cluster whose nodes each run under a group id of their own, so that a
    Partition can cut any of them off (skips where iptables cannot)."""
    why_not = Partition.available()
    if why_not:
        pytest.skip(f"a real partition {why_not}")
    part = Partition(tmp_path)
    python = cluster.python
    procs = []
    every = ["master", *NAMES]
    try:
        for name in every:
            cluster.python = part.python_for(name)
            flags = dict(FAILOVER_FLAGS, failover=True, cluster=every,
                         data_dir=tmp_path / "data" / name)
            procs.append(cluster.start_master(list(NAMES), **flags) if name == "master"
                         else cluster.start_secondary(name, **flags))
    finally:
        cluster.python = python
    return part, procs


def pyro_ports(cluster, procs) -> dict[str, int]:
    with Pyro5.api.locate_ns("127.0.0.1", cluster.ns_port) as names:
        return {p.name: Pyro5.core.URI(names.lookup(f"replog.node.{p.name}")).port
                for p in procs}


def test_a_secondary_cut_off_and_back_does_not_depose_the_master(cluster, tmp_path):
    """A secondary cut off from every other node (Partition) hears no master: its election
    timeout ends again and again. It asks for pre-votes, which no node receives, so it never
    raises its epoch; healed, it follows the same master in the same epoch. (Without the
    pre-vote it stood each time, and the master, hearing the higher epoch in its first
    answer, stepped down: an election lost for nothing.)"""
    part, procs = start_partitionable(cluster, tmp_path)
    try:
        master = wait_master(procs)
        epoch = failover_state(master)["epoch"]
        cut = next(p for p in procs if p is not master)
        write_until_acked([master], "before", 3)
        part.cut(cut.name, pyro_ports(cluster, procs))
        rounds = failover_state(cut)["prevote_rounds"]
        wait_until(lambda: failover_state(cut)["prevote_rounds"] >= rounds + 3, 20,
                   what=f"{cut.name}'s election timeout to end three times")
        write_until_acked([master], "while cut off", 2)      # the other two go on
        part.heal()
        wait_until(lambda: health(master)["secondaries"][cut.name]["status"] == "Healthy", 20,
                   what=f"{cut.name} Healthy again")
        write_until_acked([master], "after", 3)
        state = failover_state(cut)
        assert state["elections_stood"] == 0 and state["epoch"] == epoch, state
        assert state["master"] == master.name
        mstate = failover_state(master)
        assert mstate["role"] == "master" and mstate["epoch"] == epoch, mstate
        wait_converged(procs, master)
    finally:
        part.heal()


def test_a_master_cut_off_from_the_secondaries(cluster, tmp_path):
    """A network partition on loopback (Partition: iptables, by each node's group id): the
    master can reach no other node's Pyro5 port and none can reach its own; clients still
    reach every node over HTTP. The master stops accepting writes (its lease runs out), the
    other two elect a master and take writes; once healed, the old master steps down and
    converges, and no acknowledged w=2 write is lost."""
    clock = Clock()
    part, procs = start_partitionable(cluster, tmp_path)
    try:
        old = wait_master(procs)
        writers = Writers(procs, count=2, w=2).start()
        wait_until(lambda: writers.count_acked() >= 100, 30, what="100 acknowledged writes")
        ports = pyro_ports(cluster, procs)
        old_epoch = failover_state(old)["epoch"]
        part.cut(old.name, ports)
        clock.mark(f"{old.name} cut off (Pyro5 ports {ports})")
        wait_until(lambda: post(old.url, "refused?", 1, follow=False).status_code == 503, 10,
                   what=f"{old.name} to refuse writes")
        clock.mark(f"{old.name} refuses writes: {health(old)['reason']}")
        others = [p for p in procs if p is not old]
        new = wait_master(others, above_epoch=old_epoch)
        clock.mark(f"{new.name} elected by the other side")
        n = writers.count_acked()
        wait_until(lambda: writers.count_acked() >= n + 100, 30,
                   what=f"100 acknowledged writes on {new.name}")
        state = failover_state(old)
        assert not state["writable"] and state["epoch"] == old_epoch, state
        r = post(old.url, "to the cut-off master", 2, follow=False)
        assert r.status_code == 503, r.text
        part.heal()
        clock.mark("healed")
        wait_until(lambda: stepped_down_to(old, new), 20,
                   what=f"{old.name} to step down and follow {new.name}")
        clock.mark(f"{old.name} stepped down")
        writers.stop()
        log = settle(procs, new, None, writers.acked)
        assert "to the cut-off master" not in log and "refused?" not in log
        clock.mark(f"{len(log)} messages on every node; {writers.outcomes}")
    finally:
        part.heal()


def test_a_deposed_master_steps_down_without_standing(cluster):
    """The pause of test_sigstop_of_the_master_for_5_s without writers: the old master has a
    replicate call in flight to the new master (held there by the injected delay) when it
    runs again. It must step down without standing for election, and the master elected
    during the pause must stay master, in its epoch."""
    procs, old, new, follower, _, _, _, _ = pause_after_unreplicated_w1(cluster,
                                                                     writers_count=0)
    def stood() -> int:      # its log, readable while it is paused (its HTTP port is not)
        return old.log_path.read_text(errors="replace").count("standing for epoch")

    before = stood()
    epoch = failover_state(new)["epoch"]
    old.resume()
    wait_until(lambda: health(old)["role"] == "secondary", 20, what=f"{old.name} to step down")
    write_until_acked([new], "after", 2, timeout=10)
    assert stood() == before, old.log_path.read_text(errors="replace")[-3000:]
    state = failover_state(new)
    assert state["role"] == "master" and state["epoch"] == epoch, state
