"""Durability on real processes and real files: kill -9 of any node or all of them, torn and
corrupt files, a master that lost its disk, an explicit new log."""
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import Pyro5.api
import pytest
import requests

from nodes.launcher import ROOT, wait_until
from .conftest import FAST, Client
from tests.histories import check_history


def durable_cluster(cluster, names=("s1", "s2"), fsync="always", **master_flags):
    secs = [cluster.start_secondary(n, data_dir=cluster.workdir / n, fsync=fsync)
            for n in names]
    master = cluster.start_master(list(names), data_dir=cluster.workdir / "master",
                                  fsync=fsync, **{**FAST, **master_flags})
    return master, secs


def writers(url, n, stop, w=1):
    """n clients appending unique messages until stop; returns {client: [acked messages]}."""
    acked = {i: [] for i in range(n)}

    def run(i):
        with requests.Session() as s:
            k = 0
            while not stop.is_set():
                k += 1
                msg = f"c{i}-{k}"
                try:
                    r = s.post(url + "/messages", json={"message": msg, "w": w}, timeout=5)
                except requests.RequestException:
                    time.sleep(0.02)      # the master is down: a client would retry later
                    continue
                if r.status_code == 201:
                    acked[i].append(msg)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    return acked, threads


@pytest.mark.parametrize("fsync", ["always", "never"])
def test_kill_9_master_under_load_loses_no_acknowledged_write(cluster, http, fsync):
    """In every fsync mode a process crash loses nothing: a write counts once the OS has it."""
    master, secs = durable_cluster(cluster, fsync=fsync)
    c = Client(http, master.url)
    log_id = c.health()["log_id"]
    stop = threading.Event()
    acked, threads = writers(master.url, 4, stop)
    wait_until(lambda: sum(map(len, acked.values())) >= 200, 30, what="200 acknowledged writes")
    master.kill()
    before = sum(map(len, acked.values()))
    master.restart()
    wait_until(lambda: sum(map(len, acked.values())) >= before + 100, 30,
               what="writes acknowledged after the restart")
    stop.set()
    for t in threads:
        t.join(10)
    log = c.wait_converged(secs)
    check_history(log, acked)
    h = c.health()
    # The same log, one epoch on. The master sends entries while its own write may still
    # run, so a secondary can hold a few the master's disk lacks; it adopts them from there.
    # They were never acknowledged: at most one in flight per writer, 4 in all.
    assert h["log_id"] == log_id and h["epoch"] == 2
    rec = h["recovery"]
    assert rec["source"] == "master" or (rec["source"] in ("s1", "s2") and 1 <= rec["fetched"] <= 4), rec


def test_restarted_secondary_serves_its_disk_and_is_sent_only_the_tail(cluster, http):
    master, (s1, s2) = durable_cluster(cluster)
    c = Client(http, master.url)
    with requests.Session() as s:
        for i in range(300):
            assert s.post(master.url + "/messages", json={"message": f"m{i}", "w": 3},
                          timeout=10).status_code == 201
    s1.kill()
    for i in range(300, 320):
        assert c.post(f"m{i}", w=2).status_code == 201
    master.pause()            # the master can send nothing: what s1 shows is its own disk
    try:
        s1.restart()
        assert c.messages(s1.url) == [f"m{i}" for i in range(300)]
        assert c.health(s1.url)["durable"]["loaded_from_disk"] == 300
    finally:
        master.resume()
    c.wait_converged([s1, s2])
    wait_until(lambda: c.health()["secondaries"]["s1"]["lag"] == 0, 10, what="s1 acked")
    assert c.health()["secondaries"]["s1"]["sent"] == 20      # the tail, not the log
    text = master.log_path.read_text()
    assert re.search(r"s1 caught up at seq=320: sent 20 messages", text), text[-2000:]


def test_kill_9_every_node_at_once(cluster, http):
    master, secs = durable_cluster(cluster, names=("s1", "s2", "s3"))
    stop = threading.Event()
    acked, threads = writers(master.url, 4, stop, w=2)
    wait_until(lambda: sum(map(len, acked.values())) >= 150, 30, what="150 acknowledged writes")
    for p in [master] + secs:
        p.popen.send_signal(signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join(10)
    for p in [master] + secs:
        p.kill()
    for p in secs:
        p.restart(wait=False)
    master.restart()
    c = Client(http, master.url)
    assert c.post("after", w=4).status_code == 201
    log = c.wait_converged(secs)
    check_history(log, acked)
    assert log[-1] == "after"


def segments(path):
    return sorted((path / "segments").iterdir())


def test_torn_tail_is_cut_off_and_logged(cluster, http):
    master, secs = durable_cluster(cluster)
    c = Client(http, master.url)
    for i in range(5):
        assert c.post(f"m{i}", w=3).status_code == 201
    master.stop()
    newest = segments(cluster.workdir / "master")[-1]
    with open(newest, "ab") as f:
        f.write(b"RLG1\x40\x00\x00\x00\x06\x00\x00\x00")     # a header, its payload never written
    master.restart()
    assert c.messages() == [f"m{i}" for i in range(5)]
    assert c.post("m5", w=3).status_code == 201
    assert "torn tail cut off" in master.log_path.read_text()


def test_corruption_in_the_middle_stops_the_node_with_file_and_offset(cluster, tmp_path):
    master, (s1, s2) = durable_cluster(cluster)
    with requests.Session() as s:
        for i in range(20):
            assert s.post(master.url + "/messages", json={"message": f"m{i}", "w": 3},
                          timeout=10).status_code == 201
    s1.stop()
    seg = segments(cluster.workdir / "s1")[0]
    data = bytearray(seg.read_bytes())
    data[25] ^= 0xFF                      # inside the first record's payload
    seg.write_bytes(bytes(data))
    before = seg.read_bytes()
    run = subprocess.run([sys.executable, "-m", "nodes.secondary_node", "--name", "s1",
                          "--http-port", "0", "--ns-port", str(cluster.ns_port),
                          "--data-dir", str(cluster.workdir / "s1")],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert f"{seg.name}: offset 0: checksum mismatch" in run.stderr
    assert "Traceback" not in run.stderr
    assert seg.read_bytes() == before


def test_master_that_lost_its_disk_recovers_from_the_secondaries(cluster, http):
    master, secs = durable_cluster(cluster)
    c = Client(http, master.url)
    with requests.Session() as s:
        for i in range(500):
            assert s.post(master.url + "/messages", json={"message": f"m{i}", "w": 2},
                          timeout=10).status_code == 201
    expected = c.wait_converged(secs)
    master.kill()
    shutil.rmtree(cluster.workdir / "master")
    master.restart()
    assert c.messages() == expected                 # nothing wiped, anywhere
    h = c.health()
    assert h["recovery"]["action"] == "serve" and h["recovery"]["source"] in ("s1", "s2")
    assert h["recovery"]["fetched"] == 500
    assert c.post("next", w=3).status_code == 201
    assert c.wait_converged(secs) == expected + ["next"]
    assert re.search(r"recovered 500 messages from s[12]", master.log_path.read_text())


def test_a_secondary_past_the_adopted_log_is_cut_back_loudly(cluster, http):
    master, (s1, s2) = durable_cluster(cluster, startup_wait=1.0)
    c = Client(http, master.url)
    for i in range(10):
        assert c.post(f"m{i}", w=3).status_code == 201
    s2.kill()                                       # s2 misses the next writes
    for i in range(10, 15):
        assert c.post(f"m{i}", w=2).status_code == 201
    master.kill()
    s1.kill()
    shutil.rmtree(cluster.workdir / "master")       # the master's disk and s1 are gone ...
    s2.restart()
    master.restart()                                # ... so it adopts s2's shorter log
    assert c.messages() == [f"m{i}" for i in range(10)]
    assert c.health()["recovery"]["source"] == "s2"
    assert c.post("new", w=2).status_code == 201
    s1.restart()                                    # s1 holds m10..m14: not in the log
    expected = [f"m{i}" for i in range(10)] + ["new"]
    wait_until(lambda: c.messages(s1.url) == expected, 15, what="s1 cut back and caught up")
    text = s1.log_path.read_text()
    assert re.search(r"cut back to the master's log: dropped seq=11\.\.15 \(5 messages", text)


def test_new_log_is_explicit_and_the_secondaries_drop_theirs(cluster, http):
    master, secs = durable_cluster(cluster)
    c = Client(http, master.url)
    for i in range(3):
        assert c.post(f"m{i}", w=3).status_code == 201
    old = c.health()["log_id"]
    master.stop()
    shutil.rmtree(cluster.workdir / "master")
    cluster.procs.pop("master")
    cluster.start_master(["s1", "s2"], http_port=master.http_port,
                         data_dir=cluster.workdir / "master", new_log=True, **FAST)
    assert c.health()["log_id"] != old
    assert c.post("fresh", w=3).status_code == 201
    assert c.wait_converged(secs) == ["fresh"]
    assert "started over on the master's new log" in secs[0].log_path.read_text()


def test_rogue_calls_cannot_replace_or_bloat_a_secondarys_log(cluster, http):
    """Without TLS anyone who reaches a secondary can call it; it still never throws its log
    away because of one call, and refuses a first_seq far past its ACK."""
    master, (s1, s2) = durable_cluster(cluster)
    c = Client(http, master.url)
    for i in range(50):
        assert c.post(f"m{i}", w=3).status_code == 201
    log_id, epoch = c.health()["log_id"], c.health()["epoch"]
    with Pyro5.api.Proxy(f"PYRONAME:replog.secondary.s1@127.0.0.1:{cluster.ns_port}") as p:
        p._pyroTimeout = 10
        with pytest.raises(Exception, match="not synced"):
            p.replicate("rogue-log-id", 1, 1, ["evil"])
        with pytest.raises(Exception, match="without an explicit new log"):
            p.sync("rogue-log-id", [[1, 1]], 1)
        with pytest.raises(Exception, match="past the ack"):
            p.replicate(log_id, epoch, 50 + 10_002, ["far"])
    assert c.messages(s1.url) == [f"m{i}" for i in range(50)]
    assert c.post("still", w=3).status_code == 201
    text = s1.log_path.read_text()
    assert text.count("refused") >= 3 and "from 127.0.0.1:" in text
