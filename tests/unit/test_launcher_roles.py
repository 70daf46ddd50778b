"""nodes/launcher/roles.py: what the launcher says about a failover cluster's roles, fed
the nodes' /health "failover" objects by hand."""
from nodes.launcher.roles import Roles, failover_of


def view(node, role, epoch, master):
    return {"node": node, "role": role, "epoch": epoch, "master": master,
            "elections_stood": 1}


def test_first_election_then_a_lost_master_a_new_one_and_the_old_one_back():
    r = Roles()
    assert r.update({"a": view("a", "secondary", 0, None), "b": None}, 0.0) == []
    assert r.master is None
    lines = r.update({"a": view("a", "master", 1, "a"), "b": view("b", "secondary", 1, "a")}, 1.0)
    assert lines == ["election: a is master of epoch 1"]
    assert r.role_of("a") == "MASTER (epoch 1)" and r.role_of("b") == "secondary"

    lines = r.update({"a": None, "b": view("b", "candidate", 2, None)}, 5.0)
    assert lines == ["master lost: a (master of epoch 1) does not answer (down or paused); "
                     "an election is under way"]
    assert r.master is None and r.role_of("a") == "no answer"

    lines = r.update({"a": None, "b": view("b", "master", 2, "b")}, 5.8)
    assert lines[0].startswith("election: b is master of epoch 2, seen 0.80 s after the "
                               "launcher saw a go")
    assert r.elections[-1] == {"master": "b", "epoch": 2, "previous": "a", "seconds": 0.8}

    # back, but it has not heard the new master yet: not said yet
    assert r.update({"a": view("a", "secondary", 1, None), "b": view("b", "master", 2, "b")},
                    6.0) == []
    lines = r.update({"a": view("a", "secondary", 2, "b"), "b": view("b", "master", 2, "b")}, 6.5)
    assert lines == ["a is back: a secondary of epoch 2, following b"]


def test_a_deposed_master_still_claiming_an_older_epoch_is_not_the_master():
    views = {"a": view("a", "master", 1, "a"), "b": view("b", "master", 2, "b"),
             "c": view("c", "secondary", 2, "b")}
    assert Roles.master_of(views) == ("b", 2)
    assert Roles.master_of({"a": None}) == (None, 0)
    r = Roles()
    r.update({"a": view("a", "master", 1, "a"), "b": view("b", "secondary", 1, "a")}, 0)
    lines = r.update(views, 1.0)
    assert lines[0] == ("master lost: a (master of epoch 1) still says master of epoch 1, but "
                        "epoch 2 began; b took over")
    assert lines[1].startswith("election: b is master of epoch 2, seen 0.00 s")


def test_failover_of_reads_the_health_body():
    assert failover_of({"role": "master"}) is None
    assert failover_of(None) is None
    assert failover_of({"failover": {"node": "a"}}) == {"node": "a"}
