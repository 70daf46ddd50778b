"""The compose cluster runs its node plane over mutual TLS (issue 13): a container on the same
network without a certificate reaches nothing, and a client certificate can read but cannot
replicate or register as a node."""
from __future__ import annotations

import json

import pytest

from .conftest import IMAGE, Cluster

pytestmark = pytest.mark.docker

PROBE = r"""
import json, sys
import Pyro5.api, Pyro5.errors
from nodes import rpc
rpc.configure_client(sys.argv[1])
out = {}
def attempt(key, uri, method, *args):
    try:
        with Pyro5.api.Proxy(uri) as p:
            p._pyroTimeout = 5
            r = getattr(p, method)(*args)
            out[key] = "ok:" + (r.get("role", "") if isinstance(r, dict) else str(r))
    except PermissionError as e:
        out[key] = "refused"
    except Pyro5.errors.CommunicationError as e:
        out[key] = "no connection"
attempt("ns", "PYRO:Pyro.NameServer@nameserver:9090", "ping")
attempt("health", "PYRO:replog.secondary.secondary1@secondary1:9100", "health")
attempt("replicate", "PYRO:replog.secondary.secondary1@secondary1:9100", "replicate",
        "rogue-log-id", 1, 1, ["evil"])
attempt("register", "PYRO:Pyro.NameServer@nameserver:9090", "register",
        "replog.secondary.secondary1", "PYRO:replog.secondary.secondary1@evil:9100")
print(json.dumps(out))
"""


def probe(c: Cluster, tls_dir: str) -> dict:
    """Run PROBE in a fresh container on the cluster's network, with the certificates
    volume mounted read-only (tls_dir "" = no TLS at all)."""
    res = c.docker("run", "--rm", "--network", c.network(), "-v", f"{c.project}_certs:/certs:ro",
                   IMAGE, "python", "-c", PROBE, tls_dir, timeout=120)
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_compose_node_plane_is_mutual_tls(make_cluster) -> None:
    c = make_cluster(SECONDARY2_DELAY="0")
    c.wait_statuses({"secondary1": "Healthy", "secondary2": "Healthy"})
    assert c.post("before", w=3).status_code == 201
    logs = c.logs("nameserver", "master", "secondary1", "secondary2")
    for node in ("nameserver", "master", "secondary1", "secondary2"):
        assert f"node plane: mutual TLS with certificate '{node}'" in logs
    assert "UNAUTHENTICATED" not in logs

    plain = probe(c, "")
    assert plain == {"ns": "no connection", "health": "no connection",
                     "replicate": "no connection", "register": "no connection"}
    client = probe(c, "/certs/client-admin")
    assert client == {"ns": "ok:None", "health": "ok:secondary", "replicate": "refused",
                      "register": "refused"}
    assert c.messages("secondary1") == ["before"]
    logs = c.logs("nameserver", "secondary1")
    assert "refused a connection from" in logs
    assert "refused replicate from" in logs and "(certificate 'client-admin')" in logs
    assert "refused register of 'replog.secondary.secondary1'" in logs
    assert c.post("after", w=3).status_code == 201
    assert c.wait_caught_up(("secondary1", "secondary2")) == ["before", "after"]
