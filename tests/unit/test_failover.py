"""Failover's pieces in one process (the whole cluster runs in tests/integration/
test_failover.py and tests/sim): the vote file, the commit rule of the master's state and
of a secondary, the master's fence on appends, and the HTTP front's 307 and 503."""
import json

import pytest

from nodes.core import election as el
from nodes.core.health import HealthPolicy
from nodes.core.master import MasterState
from nodes.core.progress import Backoff
from nodes.failover.api import Front
from nodes.failover.votes import VoteFile
from nodes.secondary import Secondary


# -- the vote file ------------------------------------------------------------------------
def test_vote_file_keeps_epoch_and_vote_across_a_restart(tmp_path):
    VoteFile(tmp_path).save(el.Stored(7, "s2"))
    assert VoteFile(tmp_path).load() == el.Stored(7, "s2")
    assert not list(tmp_path.glob("*.tmp"))          # written whole, then renamed


def test_the_count_of_entries_cut_survives_a_restart(tmp_path):
    """/health's failover.cut must not forget a cut when the node restarts or changes role
    (the failover chaos run caught w=1 writes lost "silently" that were cut on a node that
    was killed, or elected, later)."""
    v = VoteFile(tmp_path)
    v.save(el.Stored(2, "m"))
    v.add_cut(3)
    again = VoteFile(tmp_path)
    assert again.load() == el.Stored(2, "m") and again.cut == 3


def test_a_secondary_reports_what_it_cuts_to_its_node():
    s = secondary()
    s.sync("L", [[1, 1], [2, 2]], 1)                 # seqs 2-3 of another epoch: cut
    assert s.fence.cut == 2


def test_vote_file_without_a_directory_is_memory_only(tmp_path):
    v = VoteFile(None)
    v.save(el.Stored(3, None))
    assert v.load() == el.Stored(3, None) and VoteFile(None).load() == el.Stored()


@pytest.mark.parametrize("text", ["{", '{"epoch": -1, "voted_for": null}',
                                  '{"epoch": true, "voted_for": null}', '{"epoch": 1}'])
def test_a_damaged_vote_file_stops_the_node_with_the_reason(tmp_path, text):
    (tmp_path / "election.json").write_text(text)
    with pytest.raises(ValueError, match="election.json is damaged"):
        VoteFile(tmp_path).load()


# -- the election's start-up --------------------------------------------------------------
def test_a_node_that_never_answered_a_master_votes_at_once_else_it_waits():
    cluster, timing = el.Cluster("s1", frozenset({"m", "s1", "s2"})), el.Timing()
    req = el.VoteRequest(1, "m", (0, 0))
    fresh = el.Election(cluster, timing, el.Stored(), 0.0, lambda: 0.5, never_heard=True)
    assert fresh.on_vote_request(req, (0, 0), 0.01).send[0][1].granted
    # epoch 3 on disk: it may have answered a master just before it crashed
    old = el.Election(cluster, timing, el.Stored(3), 0.0, lambda: 0.5, never_heard=True)
    assert old.on_vote_request(el.VoteRequest(4, "m", (0, 0)), (0, 0), 0.01).send == []


def test_the_preferred_node_stands_first():
    timing = el.Timing(election_min=1.0, election_max=2.0)
    e = el.Election(el.Cluster("m", frozenset({"m", "s1", "s2"})), timing, el.Stored(), 0.0,
                    lambda: 0.99, first_timeout=0.25)
    assert e.tick(0.2, (0, 0)).send == [] and e.tick(0.25, (0, 0)).send


# -- the master's commit ------------------------------------------------------------------
def master(named=("s1", "s2")):
    st = MasterState(HealthPolicy(1.0, 3.0), Backoff(0.1, 1.0), named=named, volatile=False)
    st.log.load(["a", "b"], {})
    st.begin("L", [[1, 1], [2, 3]], durable=2)        # seqs 1-2 of epoch 1; epoch 2 now
    st.commit_rule = True
    for n in named:
        st.set_uri(n, f"PYRO:x@{n}:1", 0.0)
        st.on_answer(n, "i-" + n, 2, 0.0, "L", 2)
    return st


def test_old_epoch_entries_commit_only_with_one_of_the_masters_own_epoch():
    st = master()
    assert st.commit == 0 and st.shown == 0     # seqs 1-2 held by all, but of epoch 1
    st.append("new", 1, 0.1)
    st.on_durable(3)
    assert st.shown == 0                        # seq 3 on the master only
    st.on_answer("s1", "i-s1", 3, 0.2)
    assert st.commit == 3 and st.take_ready().shown == 3   # a majority holds seq 3


def test_a_secondary_that_follows_another_epoch_does_not_count_for_the_commit():
    st = master()
    st.append("new", 1, 0.1)
    st.on_durable(3)
    st.on_answer("s1", "i-s1", 3, 0.2, "L", 1)   # not synced with epoch 2 yet
    assert st.commit == 0


def test_without_the_commit_rule_readers_see_the_durable_prefix():
    st = master()
    st.commit_rule = False
    st.append("x", 1, 0.1)
    st.on_durable(3)
    assert st.shown == 3


# -- a secondary's commit -----------------------------------------------------------------
class Fence:
    """A failover node that admits every master's call (the epoch rule is tested in
    tests/unit/test_election.py)."""

    def admit(self, leader):
        return leader["epoch"]

    def check(self, leader):
        return True, leader["epoch"]

    def report(self):
        return {}

    def on_cut(self, count):
        self.cut = getattr(self, "cut", 0) + count


def secondary(commit=0):
    s = Secondary("s1", commit=commit)
    s.fence = Fence() if commit is not None else None
    s.sync("L", [[1, 1]], 0)
    s.replicate("L", 1, 1, ["a", "b", "c"])
    return s


def test_a_secondary_shows_only_the_masters_commit_capped_by_what_it_holds():
    s = secondary()
    assert s.messages() == []
    s.replicate("L", 1, 4, ["d"], {"epoch": 1, "name": "m", "commit": 2})
    assert s.messages() == ["a", "b"]
    s.heartbeat("L", 1, {"epoch": 1, "name": "m", "commit": 9})
    assert s.messages() == ["a", "b", "c", "d"]       # capped by the ACK (4)


def test_a_secondary_ignores_the_commit_of_a_master_of_another_epoch():
    """Its entries past the common prefix may differ from that master's: showing them up
    to that master's commit could show a seq with a message the log does not keep."""
    s = secondary()
    s.heartbeat("L", 2, {"epoch": 2, "name": "m2", "commit": 3})
    assert s.messages() == []


def test_without_failover_a_secondary_shows_what_it_holds():
    assert secondary(commit=None).messages() == ["a", "b", "c"]


# -- the HTTP front -----------------------------------------------------------------------
class FakeNode:
    name = "s1"

    def __init__(self, master, url):
        self.role = object()           # a Secondary: no `state`
        self._r = {"epoch": 4, "master": master, "master_url": url}

    def report(self):
        return self._r


def call(front, method="POST", path="/messages", query=""):
    out = {}

    def start_response(status, headers):
        out["status"], out["headers"] = status, dict(headers)

    body = b"".join(front({"REQUEST_METHOD": method, "PATH_INFO": path,
                           "QUERY_STRING": query}, start_response))
    return out["status"], out["headers"], json.loads(body)


def test_a_write_to_a_secondary_is_sent_to_the_master():
    front = Front(FakeNode("s2", "http://h:5002"), lambda role: None)
    status, headers, body = call(front, query="x=1")
    assert status.startswith("307") and headers["Location"] == "http://h:5002/messages?x=1"
    assert body["master"] == "s2" and body["master_url"] == "http://h:5002"


def test_the_dashboard_of_a_secondary_is_the_masters():
    status, headers, _ = call(Front(FakeNode("s2", "http://h:5002"), lambda role: None), "GET",
                              "/dashboard/app.js")
    assert status.startswith("307") and headers["Location"] == "http://h:5002/dashboard/app.js"


def test_a_write_during_an_election_is_told_to_retry():
    status, headers, body = call(Front(FakeNode(None, None), lambda role: None))
    assert status.startswith("503") and headers["Retry-After"] == "1"
    assert "election" in body["error"]


def test_reads_on_a_secondary_go_to_its_own_app():
    seen = []

    def app(environ, start_response):
        seen.append(environ["PATH_INFO"])
        start_response("200 OK", [])
        return [b'{"messages": []}']

    status, _, _ = call(Front(FakeNode("s2", "u"), lambda role: app), "GET")
    assert status == "200 OK" and seen == ["/messages"]


# -- idempotency keys survive a failover ---------------------------------------------------
def test_keys_travel_with_the_entries_and_reach_the_next_master(tmp_path):
    from nodes.core.log import MasterLog
    from nodes.storage.store import Store
    m = MasterLog(track_keys=True)
    m.append("a", "k1")
    m.append("b")
    m.append("c", "k3")
    assert m.keys_between(1, 3) == {0: "k1", 2: "k3"} and m.keys_between(2, 2) == {}
    store = Store(tmp_path, offload=False)
    s = Secondary("s1", store=store, max_keys=10, commit=0)
    s.sync("L", [[1, 1]], 0)
    s.replicate("L", 1, 1, ["a", "b", "c"], None,
                {str(i): k for i, k in m.keys_between(1, 3).items()})
    assert s.hand_over()[4] == {"k1": 1, "k3": 3}
    store.close()
    again = Secondary("s1", store=Store(tmp_path, offload=False), max_keys=10, commit=0)
    assert again.hand_over()[4] == {"k1": 1, "k3": 3}      # and they were on its disk


def test_a_cut_forgets_the_keys_of_the_entries_cut():
    s = Secondary("s1", max_keys=10, commit=0)
    s.sync("L", [[1, 1]], 0)
    s.replicate("L", 1, 1, ["a", "b"], None, {"0": "k1", "1": "k2"})
    s.sync("L", [[1, 1], [2, 2]], 1)                        # seq 2 is another epoch's
    assert s.hand_over()[4] == {"k1": 1}


def test_without_failover_a_secondary_keeps_no_keys():
    s = Secondary("s1")
    s.sync("L", [[1, 1]], 0)
    s.replicate("L", 1, 1, ["a"], None, {"0": "k1"})
    assert s.hand_over()[4] == {}
