"""The node plane's authorization rules (nodes.tls) and the certificate maker (nodes.certs)."""
import os
import stat
import pytest

from nodes import certs, tls


def test_who_may_register_what():
    assert tls.owner_of("replog.master") == "master"
    assert tls.owner_of("replog.secondary.s1") == "s1"
    # roles and clients can never stand for a secondary; other names belong to nobody
    for name in ("replog.secondary.master", "replog.secondary.nameserver",
                 "replog.secondary.client-alice", "replog.secondary.", "Pyro.NameServer",
                 "example.echo", None, 3):
        assert tls.owner_of(name) is None


def test_every_node_owns_its_node_name():
    assert tls.owner_of("replog.node.master") == "master"
    assert tls.owner_of("replog.node.s1") == "s1"
    assert tls.owner_of("replog.node.nameserver") is None
    assert tls.owner_of("replog.node.client-alice") is None


@pytest.fixture
def failover():
    tls.FAILOVER = True
    yield
    tls.FAILOVER = False


def test_with_failover_any_node_may_be_master_and_master_a_secondary(failover):
    owner = tls.owner_of("replog.master")
    assert owner == tls.ANY_NODE
    assert tls.allows(owner, "s1") and tls.allows(owner, "master")
    assert not tls.allows(owner, "client-alice") and not tls.allows(owner, "nameserver")
    assert not tls.allows(owner, None)
    assert tls.owner_of("replog.secondary.master") == "master"
    assert tls.owner_of("replog.secondary.nameserver") is None
    assert tls.allows("s1", "s1") and not tls.allows("s1", "s2") and not tls.allows(None, "s1")


def test_which_certificate_a_server_must_show():
    assert tls.expected_peer("Pyro.NameServer") == "nameserver"
    assert tls.expected_peer("replog.master") == "master"
    assert tls.expected_peer("replog.secondary.s2") == "s2"
    assert tls.expected_peer("Pyro.Daemon") is None


def test_name_of_a_peer_certificate():
    cert = {"subject": ((("organizationName", "replog"),), (("commonName", "s1"),))}
    assert tls.name_of(cert) == "s1"
    assert tls.name_of(None) is None and tls.name_of({}) is None


def test_certs_layout_idempotence_add_and_renew(tmp_path):
    out = tmp_path / "c"
    assert certs.main(["--out", str(out), "--names", "nameserver,master,s1"]) == 0
    for name in ("nameserver", "master", "s1"):
        d = out / name
        assert sorted(p.name for p in d.iterdir()) == ["ca.crt", "node.crt", "node.key"]
        assert stat.S_IMODE(os.stat(d / "node.key").st_mode) == 0o600
        assert tls.own_name(d) == name
        tls.contexts(d)   # loads: key matches certificate, CA parses
    assert stat.S_IMODE(os.stat(out / "ca.key").st_mode) == 0o600
    first = (out / "s1" / "node.crt").read_bytes()
    ca = (out / "ca.crt").read_bytes()
    certs.main(["--out", str(out), "--names", "s1,s2"])            # s1 kept, s2 added
    assert (out / "s1" / "node.crt").read_bytes() == first
    assert (out / "s2" / "ca.crt").read_bytes() == ca
    certs.main(["--out", str(out), "--names", "s1", "--renew"])    # new key, same CA
    assert (out / "s1" / "node.crt").read_bytes() != first
    assert (out / "ca.crt").read_bytes() == ca
    renewed = (out / "s2" / "node.crt").read_bytes()
    certs.main(["--out", str(out), "--renew-within", "10000"])     # everything expires by then
    assert (out / "s2" / "node.crt").read_bytes() != renewed


def test_certs_separate_ca_dir_and_bad_names(tmp_path):
    certs.main(["--out", str(tmp_path / "nodes"), "--ca-dir", str(tmp_path / "ca"),
                "--names", "master"])
    assert (tmp_path / "ca" / "ca.key").exists() and not (tmp_path / "nodes" / "ca.key").exists()
    assert (tmp_path / "nodes" / "ca.crt").exists()
    with pytest.raises(SystemExit):
        certs.main(["--out", str(tmp_path / "x"), "--names", "../evil"])


def test_certs_flags_have_env_fallbacks(monkeypatch):
    monkeypatch.setenv("REPLOG_CERTS_NAMES", "a,b")
    assert certs.parser().parse_args([]).names == "a,b"
    assert "REPLOG_CERTS_OUT" in certs.parser().format_help()
