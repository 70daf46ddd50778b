"""`replog demo`: the narrated scenarios are tests too. Run as the installed console script."""
import re

import pytest

from nodes.launcher import LocalCluster

from .conftest import FAST, start_cluster
from .test_cli import run

NAMES = ("secondary1", "secondary2")


@pytest.mark.slow
def test_demo_all_on_its_own_cluster_exits_0():
    r = run("demo", "all", timeout=240)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    for header in ("== iteration1 ==", "== iteration2 ==", "== iteration3 ==", "== faults =="):
        assert header.replace("iteration", "iteration ") in r.stdout
    assert r.stdout.count("What we do:") == r.stdout.count("What happened:") >= 20
    assert "FAILED" not in r.stdout
    passed = re.search(r"(\d+) of (\d+) steps as expected", r.stdout)
    assert passed and passed.group(1) == passed.group(2)
    # the acceptance test as written: no waiting step before Msg1
    assert re.search(r"send Msg1 with w=1\n.*\n.*What happened:  201 seq=1 acks=\d", r.stdout)


def _remote_args(master, secs):
    args = ["--master", master.url]
    for name, proc in zip(NAMES, secs):
        args += ["--secondary", f"{name}={proc.url}"]
    return args


def test_demo_on_a_running_cluster_skips_what_needs_process_control(cluster):
    master, secs = start_cluster(cluster, NAMES, master_flags=FAST)
    r = run("demo", "all", *_remote_args(master, secs), timeout=120)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "skipped: iteration3, faults" in r.stdout and "FAILED" not in r.stdout
    alone = run("demo", "iteration3", *_remote_args(master, secs), timeout=60)
    assert alone.returncode == 1 and "needs process control" in alone.stdout


def test_demo_exits_1_when_an_expectation_fails(cluster):
    """A master whose secondaries are stopped cannot show blocking replication."""
    master, secs = start_cluster(cluster, NAMES, master_flags=FAST)
    for proc in secs:
        proc.kill()
    r = run("demo", "iteration1", *_remote_args(master, secs), timeout=60)
    assert r.returncode == 1
    assert "✗ FAILED" in r.stdout and "cannot reach" in r.stdout
    assert re.search(r"0 of 1 steps as expected\n  FAILED iteration 1 \[1\]", r.stdout)


def test_demo_exits_1_when_replication_did_not_block(cluster, tmp_path):
    """Point the demo's secondary2 at a decoy the master does not replicate to: slowing the
    decoy down slows no POST, and the demo must say that blocking replication was not seen."""
    master, secs = start_cluster(cluster, NAMES, master_flags=FAST)
    other = LocalCluster(tmp_path / "other")
    try:
        other.start_nameserver()
        decoy = other.start_secondary("secondary2")
        r = run("demo", "iteration1", "--master", master.url,
                "--secondary", f"secondary1={secs[0].url}",
                "--secondary", f"secondary2={decoy.url}", timeout=60)
    finally:
        other.close()
    assert r.returncode == 1, r.stdout
    assert re.search(r"What happened:  201 after only [\d.]+ s, less than the 1 s delay: not "
                     r"blocking  ✗ FAILED", r.stdout), r.stdout


def test_demo_failover_on_its_own_cluster_exits_0():
    """kill -9 of the elected master while two clients write: a new master, writes resume
    on it without an error, the old one rejoins as a secondary, and the cut (often 0) is
    reported as it is."""
    r = run("demo", "failover", timeout=90)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "== failover ==" in r.stdout and "FAILED" not in r.stdout
    assert re.search(r"7 of 7 steps as expected", r.stdout), r.stdout[-2000:]
    assert re.search(r"What happened:  (\S+) is master of epoch \d+, seen [\d.]+ s after the "
                     r"kill; the first write it acknowledged", r.stdout)
    assert re.search(r"is a secondary of epoch \d+ following \S+", r.stdout)
    assert re.search(r"cut nothing \(cut=0|cut \d+ message\(s\) when it rejoined", r.stdout)


def test_demo_failover_on_a_running_cluster_is_skipped(cluster):
    master, secs = start_cluster(cluster, NAMES, master_flags=FAST)
    r = run("demo", "failover", *_remote_args(master, secs), timeout=60)
    assert r.returncode == 1 and "failover skipped: needs the demo's own cluster" in r.stdout
