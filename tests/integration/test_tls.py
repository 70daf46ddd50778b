"""Mutual TLS on the node plane (issue 13), on real processes: who can connect, who can call
what, who can register, and that a cluster with TLS replicates as usual."""
import contextlib
import ssl
import uuid

import Pyro5.api
import Pyro5.errors
import pytest
import requests

from nodes import certs, tls
from nodes.launcher import LocalCluster, wait_until
from .conftest import FAST, Client, _show_logs, start_cluster


@pytest.fixture(scope="module")
def tcluster(tmp_path_factory):
    """Name server, master, s1, s2 over mutual TLS (certificates made by LocalCluster)."""
    root = tmp_path_factory.mktemp("tls")
    c = LocalCluster(root / "logs", tls_dir=root / "certs")
    c.start_nameserver()
    try:
        master, secs = start_cluster(c, master_flags=FAST)
        with requests.Session() as s:
            Client(s, master.url).wait_writable()
        c.root = root
        yield c
    except BaseException:
        _show_logs(c)
        raise
    finally:
        c.close()
        tls.uninstall()


@contextlib.contextmanager
def identity(cert_dir=None, plain=False, ca=None):
    """Be, in this test process, a Pyro5 client with the certificate in cert_dir; with
    cert_dir None a TLS client without a certificate (trusting `ca`); plain: no TLS at all."""
    from Pyro5 import config, socketutil
    if plain:
        tls.uninstall()
    elif cert_dir is not None:
        tls.install(cert_dir)
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.load_verify_locations(cafile=str(ca))
        config.SSL = True
        vars(socketutil)["__ssl_client_context"] = ctx
    try:
        yield
    finally:
        tls.uninstall()


def uris(c):
    """Pyro5 URIs of the name server, the master and the secondaries (read over TLS)."""
    with identity(c.certs("client-reader")):
        with Pyro5.api.locate_ns("127.0.0.1", c.ns_port) as ns:
            found = ns.list(prefix="replog.")
            found["nameserver"] = str(ns._pyroUri)
    return found


def log_has(proc, text):
    return text in proc.log_path.read_text(errors="replace")


def log_count(proc, text):
    return proc.log_path.read_text(errors="replace").count(text)


def call(uri, method, *args, timeout=5):
    with Pyro5.api.Proxy(uri) as p:
        p._pyroTimeout = timeout
        return getattr(p, method)(*args)


def test_without_a_certificate_nobody_connects(tcluster):
    c = tcluster
    targets = uris(c)
    other_ca = certs.ensure(c.root / "other-ca", ["master"])   # a "master" of another CA
    names = {"nameserver": "nameserver", "replog.master": "master",
             "replog.secondary.s1": "s1"}
    for key, proc_name in names.items():
        uri = targets[key]
        method = "ping" if key == "nameserver" else "health"
        for ident in (dict(plain=True), dict(ca=c.tls_dir / "ca.crt"),
                      dict(cert_dir=other_ca / "master")):
            with identity(**ident), pytest.raises(Pyro5.errors.CommunicationError):
                call(uri, method)
        proc = c.procs[proc_name]
        wait_until(lambda: log_count(proc, "(no valid certificate): TLS handshake failed") >= 3,
                   10, what=f"{proc_name} to log three refused connections")
    # the same call with a client certificate of this cluster works
    with identity(c.certs("client-alice")):
        assert call(targets["replog.master"], "health")["role"] == "master"
        assert call(targets["replog.secondary.s1"], "health")["role"] == "secondary"
    # and HTTP for clients is unchanged
    with requests.Session() as s:
        assert Client(s, c.master.url).post("plain http", w=3).status_code == 201


def test_a_valid_certificate_of_another_node_cannot_replicate(tcluster):
    c = tcluster
    s1_uri = uris(c)["replog.secondary.s1"]
    with requests.Session() as s:
        cl = Client(s, c.master.url)
        assert cl.post("before", w=3).status_code == 201
        before = cl.wait_converged([c.procs["s1"]])
        log_id = cl.health()["log_id"]
        for who in ("s2", "client-eve", "nameserver"):
            with identity(c.certs(who)):
                for method, args in (("replicate", (log_id, 1, 1, ["evil"])),
                                     ("sync", ("rogue-log-id", [], 0, True)),
                                     ("heartbeat", (log_id, 1)),
                                     ("read", (log_id, 1, 10))):
                    with pytest.raises(PermissionError):
                        call(s1_uri, method, *args)
                # reading what anybody may read over HTTP stays open to certified peers
                assert call(s1_uri, "messages") == before
            wait_until(lambda: log_has(c.procs["s1"], f"refused replicate from 127.0.0.1:"),
                       10, what="s1 to log the refusal")
        assert f"(certificate '{who}'): only 'master' may call it" in \
            c.procs["s1"].log_path.read_text()
        assert cl.messages(c.procs["s1"].url) == before
        assert cl.post("after", w=3).status_code == 201        # the master still replicates
        assert cl.wait_converged([c.procs["s1"], c.procs["s2"]])[-1] == "after"


def test_a_node_cannot_register_as_another(tcluster):
    c = tcluster
    found = uris(c)
    ns_uri = found["nameserver"]
    for who, name in (("s2", "replog.secondary.s1"), ("s2", "replog.master"),
                      ("client-eve", "replog.secondary.client-eve"),
                      ("master", "replog.secondary.master")):
        with identity(c.certs(who)), Pyro5.api.Proxy(ns_uri) as ns:
            ns._pyroTimeout = 5
            with pytest.raises(PermissionError):
                ns.register(name, found["replog.secondary.s2"], safe=False)
            with pytest.raises(PermissionError):
                ns.remove("replog.secondary.s1")
            with pytest.raises(PermissionError):
                ns.remove(prefix="replog.")
        line = f"refused register of {name!r} from 127.0.0.1:"
        wait_until(lambda: log_has(c.procs["nameserver"], line), 10, what=line)
    after = uris(c)
    assert after == found


def test_the_master_ignores_a_registration_whose_endpoint_is_another_node(tcluster):
    """s9 holds a valid certificate and may register replog.secondary.s9, but points it at
    s1's Pyro5 port: the master must not count it (the quorum would move)."""
    c = tcluster
    found = uris(c)
    s1 = Pyro5.api.URI(found["replog.secondary.s1"])
    s2 = Pyro5.api.URI(found["replog.secondary.s2"])
    rogue = f"PYRO:replog.secondary.s9@{s1.host}:{s1.port}"         # s1 answers there
    with identity(c.certs("s9")), Pyro5.api.locate_ns("127.0.0.1", c.ns_port) as ns:
        ns.register("replog.secondary.s9", rogue, safe=False)
    line = "ignored the registration of replog.secondary.s9 at " + rogue
    wait_until(lambda: log_has(c.master, line), 15, what="the master to ignore s9")
    # A second rogue, registered after the first was ignored: once the master has ignored
    # it too, it has looked at s9 again at least once, and must not have logged it again.
    with identity(c.certs("s8")), Pyro5.api.locate_ns("127.0.0.1", c.ns_port) as ns:
        ns.register("replog.secondary.s8", str(s2), safe=False)
    wait_until(lambda: log_has(c.master, "ignored the registration of replog.secondary.s8"),
               15, what="the master to ignore s8")
    assert log_count(c.master, line) == 1
    with requests.Session() as s:
        h = Client(s, c.master.url).health()
    assert h["quorum"]["size"] == 3
    assert set(h["secondaries"]) == {"s1", "s2"}
    with requests.Session() as s:      # w=3 is still the whole cluster, and w=4 is refused
        assert Client(s, c.master.url).post("w3", w=3).status_code == 201
        assert Client(s, c.master.url).post("w4", w=4).status_code == 400


def test_a_cluster_with_tls_replicates_and_serves_python_clients(tcluster):
    c = tcluster
    with requests.Session() as s:
        cl = Client(s, c.master.url)
        for i in range(20):
            r = cl.post(f"tls-{i}", w=3)
            assert r.status_code == 201 and r.json()["acks"] == 3
        with identity(c.certs("client-alice")):
            with Pyro5.api.Proxy(f"PYRONAME:replog.master@127.0.0.1:{c.ns_port}") as m:
                m._pyroTimeout = 10
                assert m.append("from python", 3)["acks"] == 3
                assert m.append_many(["a", "b"], 3)["acks"] == 3
                expected = m.messages()
        assert expected[-3:] == ["from python", "a", "b"]
        assert cl.wait_converged([c.procs["s1"], c.procs["s2"]]) == expected
        h = cl.health()
        assert h["quorum"] == {"size": 3, "needed": 2, "available": 3}


def test_a_restarted_secondary_with_tls_catches_up(tcluster):
    c = tcluster
    s2 = c.procs["s2"]
    s2.kill()
    with requests.Session() as s:
        cl = Client(s, c.master.url)
        assert cl.post(f"while-down-{uuid.uuid4().hex[:6]}", w=2).status_code == 201
        s2.restart()
        wait_until(lambda: cl.status("s2") == "Healthy", 20, what="s2 Healthy again")
        assert cl.post("back", w=3).status_code == 201
        cl.wait_converged([s2])


def test_without_tls_every_node_warns_once(cluster):
    master, secs = start_cluster(cluster, master_flags=FAST)
    for proc in [cluster.procs["nameserver"], master, *secs]:
        wait_until(lambda: log_has(proc, "node plane is UNAUTHENTICATED"), 10,
                   what=f"{proc.name}'s warning")
        assert log_count(proc, "node plane is UNAUTHENTICATED") == 1


def test_a_node_with_another_nodes_certificate_does_not_start(tmp_path):
    c = LocalCluster(tmp_path / "logs", tls_dir=tmp_path / "certs")
    try:
        c.start_nameserver()
        proc = c.start_secondary("s1", tls_dir=c.certs("s2"), wait=False)
        proc.popen.wait(30)
        assert proc.popen.returncode != 0
        assert log_has(proc, "holds the certificate of 's2'")
    finally:
        c.close()


def test_a_stock_pyro5_client_with_a_client_certificate(tcluster):
    """What docs/security.md tells a client without replog installed: Pyro5's own SSL
    settings (host names checked: 127.0.0.1 is in the certificates by default)."""
    from Pyro5 import config
    d = tcluster.certs("client-bob")
    tls.uninstall()                      # empty Pyro5's context cache: it builds its own
    config.SSL = True
    config.SSL_CACERTS, config.SSL_CLIENTCERT, config.SSL_CLIENTKEY = (
        str(d / "ca.crt"), str(d / "node.crt"), str(d / "node.key"))
    try:
        with Pyro5.api.Proxy(f"PYRONAME:replog.master@127.0.0.1:{tcluster.ns_port}") as m:
            m._pyroTimeout = 10
            assert m.append("from stock pyro5", 3)["acks"] == 3
    finally:
        config.SSL_CACERTS = config.SSL_CLIENTCERT = config.SSL_CLIENTKEY = ""
        tls.uninstall()
