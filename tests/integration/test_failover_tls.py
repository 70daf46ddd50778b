"""Failover over mutual TLS, as the launcher runs it (`--failover --certs DIR`): every node
keeps the certificate of its name; after kill -9 of the master another node holds
replog.master, an HTTP client follows the 307s, a Python Pyro5 client with a client
certificate (and REPLOG_FAILOVER's setting) reaches the new master, and a node's
certificate still cannot stand for another node."""
import Pyro5.api  # noqa: F401 (a stock client is Pyro5.api.Proxy)
import Pyro5.errors
import pytest
import requests

from nodes import rpc, tls
from nodes.launcher import LocalCluster, wait_until

from .conftest import _show_logs

NODES = ("master", "s1", "s2")


def role(proc) -> dict:
    try:
        return requests.get(f"{proc.url}/health", timeout=1).json().get("failover") or {}
    except (requests.RequestException, ValueError):
        return {}


def writable_master(procs) -> str | None:
    found = [n for n, p in procs.items() if role(p).get("role") == "master"
             and role(p).get("writable")]
    return found[0] if len(found) == 1 else None


def post_via(procs, nodes, message):
    for n in nodes:
        try:
            r = requests.post(f"{procs[n].url}/messages", json={"message": message, "w": 2},
                              timeout=3)
            if r.status_code == 201:
                return r.json()
        except requests.RequestException:
            pass
    return None


@pytest.fixture
def tls_failover(tmp_path):
    c = LocalCluster(tmp_path / "logs", tls_dir=tmp_path / "certs")
    try:
        c.start_nameserver(failover=True)
        cluster = list(NODES)
        procs = {n: c.start_secondary(n, failover=True, cluster=cluster,
                                      data_dir=str(tmp_path / n)) for n in ("s1", "s2")}
        procs["master"] = c.start_master(["s1", "s2"], failover=True,
                                         data_dir=str(tmp_path / "master"))
        yield c, procs
    except BaseException:
        _show_logs(c)
        raise
    finally:
        c.close()
        tls.uninstall()


def test_a_tls_cluster_fails_over_and_clients_reach_the_new_master(tls_failover):
    c, procs = tls_failover
    first = wait_until(lambda: writable_master(procs), 30, what="a first master")
    others = [n for n in NODES if n != first]
    assert wait_until(lambda: post_via(procs, others[:1], "before"), 10,
                      what="a write through a secondary's port")
    if first != "master":
        # so that the next master is not the node named master (whose certificate a client
        # without failover's rule would accept): it misses a write while paused, and a node
        # votes only for a log at least as up to date as its own
        procs["master"].pause()
        assert post_via(procs, [first], "missed by the node named master")
    procs[first].kill()
    if first != "master":
        procs["master"].resume()
    new = wait_until(lambda: writable_master({n: procs[n] for n in others}), 30,
                     what="a master among the others")
    assert new != "master"
    after = wait_until(lambda: post_via(procs, others, "after"), 10,
                       what="a write through a secondary's port")
    assert after["seq"] == (2 if first == "master" else 3)

    # a Pyro5 client: replog.master is the new master, whose certificate is not "master"
    rpc.configure_client(c.certs("client-alice"), failover=True)
    try:
        name = "PYRONAME:replog.master@127.0.0.1:%d" % c.ns_port
        with rpc.proxy(name, 5, serializer=None) as p:    # checks the server's certificate
            assert p.append("pyro", 2)["seq"] == after["seq"] + 1
            assert p.health()["name"] == new
        # without failover's rule, a client insists on the certificate named master
        tls.FAILOVER = False
        with rpc.proxy(name, 5, serializer=None) as p:
            with pytest.raises(Pyro5.errors.SecurityError, match="not of 'master'"):
                p.health()
    finally:
        tls.uninstall()
        tls.FAILOVER = False


def test_a_node_certificate_cannot_register_another_nodes_name(tls_failover):
    c, procs = tls_failover
    wait_until(lambda: writable_master(procs), 30, what="a first master")
    tls.install(c.certs("s1"))
    try:
        with Pyro5.api.locate_ns("127.0.0.1", c.ns_port) as ns:
            uri = ns.lookup("replog.node.s1")
            with pytest.raises(Exception, match="not allowed"):
                ns.register("replog.node.s2", uri)
            with pytest.raises(Exception, match="not allowed"):
                ns.register("replog.secondary.s2", uri)
    finally:
        tls.uninstall()
