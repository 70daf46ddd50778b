"""Fixtures that start real processes (name server, master, secondaries) on free ports."""
import threading
import time

import pytest
import requests

from nodes.launcher import LocalCluster, wait_until

# Short health thresholds so that fault tests see transitions in a second or two.
FAST = dict(heartbeat_interval=0.2, heartbeat_timeout=0.5, suspect_after=0.6,
            unhealthy_after=1.5, retry_cap=0.5, discovery_interval=0.3)


def _show_logs(c):
    for proc in c.procs.values():
        if proc.log_path and proc.log_path.exists():
            lines = proc.log_path.read_text(errors="replace").splitlines()[-30:]
            print(f"\n----- {proc.name} (last {len(lines)} lines) -----")
            print("\n".join(lines))


@pytest.fixture
def cluster(tmp_path, request):
    c = LocalCluster(tmp_path / "logs")
    c.start_nameserver()
    yield c
    c.close()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:   # show what the nodes said
        _show_logs(c)


@pytest.fixture(scope="module")
def shared_two(tmp_path_factory):
    """One master and two secondaries shared by a module's read-mostly tests."""
    c = LocalCluster(tmp_path_factory.mktemp("shared") / "logs")
    c.start_nameserver()
    try:
        master, secs = start_cluster(c)
        with requests.Session() as s:
            pass  # writable from the moment HTTP answers
        yield c, master, secs
    finally:
        c.close()


@pytest.fixture
def http():
    with requests.Session() as s:
        yield s


class Client:
    """HTTP helpers with a timeout on every call."""

    def __init__(self, session, master_url):
        self.s = session
        self.url = master_url

    def post(self, message, w=None, http_timeout=30, **extra):
        """POST /messages; extra fields (timeout, id) go into the body."""
        body = {"message": message, **extra}
        if w is not None:
            body["w"] = w
        return self.s.post(self.url + "/messages", json=body, timeout=http_timeout)

    def messages(self, url=None):
        r = self.s.get((url or self.url) + "/messages", timeout=10)
        assert r.status_code == 200
        return r.json()["messages"]

    def health(self, url=None):
        r = self.s.get((url or self.url) + "/health", timeout=10)
        assert r.status_code == 200
        return r.json()

    def status(self, name):
        return self.health()["secondaries"][name]["status"]

    def wait_converged(self, procs, timeout=30):
        expected = self.messages()
        for p in procs:
            wait_until(lambda: self.messages(p.url) == expected, timeout,
                       what=f"{p.name} to hold the master's {len(expected)} messages")
        return expected

    def wait_writable(self, timeout=15):
        wait_until(lambda: not self.health()["read_only"], timeout, what="master writable")


def start_cluster(cluster, names=("s1", "s2"), master_flags=None, secondary_flags=None,
                  failover=False):
    """Secondaries `names`, then the master. failover=True: every node runs with --failover,
    --cluster master,NAMES and a data directory (DATA/NAME beside the logs folder), so any of
    them may become master (the node named "master" is just the first one started last)."""
    secondary_flags = secondary_flags or {}
    if failover:
        data = cluster.workdir.parent / "data"
        common = {"failover": True, "cluster": ["master", *names]}
        master_flags = {**common, "data_dir": data / "master", **(master_flags or {})}
        secondary_flags = {n: {**common, "data_dir": data / n, **secondary_flags.get(n, {})}
                           for n in names}
    secs = [cluster.start_secondary(n, **secondary_flags.get(n, {})) for n in names]
    master = cluster.start_master(list(names), **(master_flags or {}))
    return master, secs


def check_waiting_posts_block_nobody(c, waiting, release):
    """Start `waiting` w=3 POSTs that cannot complete yet; while they all wait, a w=1 POST
    and a GET must answer (none of the waiting ones completes meanwhile, so the quick ones
    did not queue behind them). Then `release()` lets them finish; all must be 201."""
    results = []

    def post(i):
        with requests.Session() as s:
            results.append(s.post(c.url + "/messages", json={"message": f"wait-{i}", "w": 3},
                                  timeout=120).status_code)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(waiting)]
    for t in threads:
        t.start()
    wait_until(lambda: c.health()["waiting"] == waiting, 30, what=f"{waiting} waiting POSTs")
    t0 = time.monotonic()
    assert c.post("quick", w=1).status_code == 201
    assert c.messages()[-1] == "quick"
    elapsed = time.monotonic() - t0
    assert c.health()["waiting"] == waiting and not results
    print(f"w=1 POST + GET answered in {elapsed * 1000:.1f} ms while {waiting} POSTs waited")
    release()
    for t in threads:
        t.join(120)
    assert results == [201] * waiting
