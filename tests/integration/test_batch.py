"""POST /messages with "messages": a batch, all of it or none, one write-concern wait."""
import pytest

from .conftest import Client, start_cluster


def post_batch(c, messages, **fields):
    return c.s.post(c.url + "/messages", json={"messages": messages, **fields}, timeout=30)


def test_a_batch_at_w3_lands_everywhere_in_order(shared_two, http):
    _, master, secs = shared_two
    c = Client(http, master.url)
    assert c.post("before batch", w=1).status_code == 201
    start = len(c.messages())
    batch = [f"batch-{i}" for i in range(500)]
    r = post_batch(c, batch, w=3)
    assert r.status_code == 201, r.text
    assert r.json() == {"first_seq": start + 1, "seq": start + 500, "acks": 3, "w": 3}
    assert c.post("after batch", w=3).status_code == 201
    expected = c.messages()
    assert expected[start:start + 500] == batch and expected[-1] == "after batch"
    for s in secs:          # acks=3: both secondaries held the batch when it was answered
        assert c.messages(s.url) == expected


@pytest.mark.parametrize("messages,index", [
    (["ok", 7, "ok"], 1), ([None], 0), (["a", "b", {"m": 1}], 2), (["a", ["b"]], 1)])
def test_a_bad_element_refuses_the_whole_batch_naming_its_index(shared_two, http, messages,
                                                                 index):
    _, master, _ = shared_two
    c = Client(http, master.url)
    before = c.messages()
    r = post_batch(c, messages, w=1)
    assert r.status_code == 400 and r.headers["Content-Type"].startswith("application/json")
    assert r.json()["index"] == index and f"[{index}]" in r.json()["error"]
    assert c.messages() == before


@pytest.mark.parametrize("body,fragment", [
    ({"messages": []}, "non-empty"),
    ({"messages": "abc"}, "non-empty"),
    ({"messages": ["a"], "message": "b"}, "not both"),
    ({"messages": ["a"], "w": 9}, "'w'"),
    ({"messages": ["a"], "timeout": -1}, "'timeout'"),
    ({"messages": ["a"], "id": 5}, "'id'"),
])
def test_malformed_batches_are_400_and_append_nothing(shared_two, http, body, fragment):
    _, master, _ = shared_two
    c = Client(http, master.url)
    before = c.messages()
    r = c.s.post(master.url + "/messages", json=body, timeout=10)
    assert r.status_code == 400 and fragment in r.json()["error"], r.text
    assert "index" not in r.json()
    assert c.messages() == before


def test_batches_over_max_batch_or_max_body_are_413(cluster, http):
    master, _ = start_cluster(cluster, master_flags={"max_batch": 100, "max_body": 5000})
    c = Client(http, master.url)
    r = post_batch(c, ["x"] * 101, w=1)
    assert r.status_code == 413 and "--max-batch" in r.json()["error"]
    r = post_batch(c, ["y" * 100] * 60, w=1)          # 60 messages, over 5,000 bytes
    assert r.status_code == 413 and "limit" in r.json()["error"]
    assert c.messages() == []
    r = post_batch(c, ["z"] * 100, w=3)
    assert r.status_code == 201 and (r.json()["first_seq"], r.json()["seq"]) == (1, 100)


def test_a_batch_retried_with_its_key_appends_once_also_after_a_master_restart(cluster, http):
    master, secs = start_cluster(cluster, master_flags={"data_dir": cluster.workdir / "master"})
    c = Client(http, master.url)
    assert c.post("first", w=1).status_code == 201
    batch = ["k1", "k2", "k3"]
    r = post_batch(c, batch, w=3, id="batch-key")
    assert r.status_code == 201 and (r.json()["first_seq"], r.json()["seq"]) == (2, 4)
    again = post_batch(c, batch, w=3, id="batch-key")
    assert again.status_code == 201 and again.json() == r.json()
    assert c.post("m5", w=3, id="single-key").status_code == 201
    master.restart()
    c.wait_writable()
    after = post_batch(c, batch, w=3, id="batch-key")
    assert after.status_code == 201, after.text
    assert (after.json()["first_seq"], after.json()["seq"]) == (2, 4)
    assert c.post("m5", w=3, id="single-key").json()["seq"] == 5
    assert c.messages() == ["first", "k1", "k2", "k3", "m5"]
    assert post_batch(c, ["new"], w=3, id="another").json()["seq"] == 6


def test_pyro_append_many_still_works_next_to_http_batches(shared_two, http):
    import Pyro5.api
    cluster, master, _ = shared_two
    c = Client(http, master.url)
    start = len(c.messages())
    with Pyro5.api.Proxy(f"PYRONAME:replog.master@127.0.0.1:{cluster.ns_port}") as m:
        m._pyroTimeout = 10
        r = m.append_many(["p1", "p2"], 3)
    assert (r["first_seq"], r["seq"]) == (start + 1, start + 2)
    assert post_batch(c, ["h1"], w=3).json()["first_seq"] == start + 3
