"""Fixtures for the Swarm tests: a single-node swarm (created on 127.0.0.1 only when none is
active, and left afterwards only then), the image built by scripts/docker-build.sh, and
deploy/swarm/stack.yml deployed under a unique stack name on a free host port (Stack), or
deploy/swarm/stack-failover.yml with its three voters on three free host ports
(FailoverStack).

Every request goes to ports published on this host (127.0.0.1): the master's fixed one and
each secondary's random one (`mode: host`), found with `docker inspect`; with failover, each
voter's fixed one.

The node plane runs mutual TLS, as docs/deploy.md tells a user to: deploy/swarm/make-certs.sh
makes the certificates (in the image) into a temporary folder, REPLOG_CERTS_DIR points the
stack at it, `docker stack deploy` turns the files into secrets and `docker stack rm` removes
them. The client API is HTTPS with tokens, as the stack has it by default: make-tokens.sh
makes the token file and the admin token (REPLOG_TOKENS_DIR), and every request here trusts
the stack's CA and sends the admin token.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import NO_ENGINE
from tests.docker.conftest import (FAST_TIMING, HTTP_TIMEOUT, IMAGE, ROOT, NodesOverHttp,
                                   docker_engine_error, free_port, run, wait_until)

STACK_FILE = ROOT / "deploy" / "swarm" / "stack.yml"
FAILOVER_STACK_FILE = ROOT / "deploy" / "swarm" / "stack-failover.yml"
# stack-failover.yml: the voters (each its own service and replog name) and the settings
# that publish their HTTPS ports
VOTERS = ("master", "secondary1", "secondary2")
VOTER_PORT_VARS = {"master": "MASTER_PORT", "secondary1": "SECONDARY1_PORT",
                   "secondary2": "SECONDARY2_PORT"}
MAKE_CERTS = ROOT / "deploy" / "swarm" / "make-certs.sh"
MAKE_TOKENS = ROOT / "deploy" / "swarm" / "make-tokens.sh"
# The image the stack runs (REPLOG_TEST_IMAGE, default replog:latest), the HTTP timeout and
# the short failure-detector thresholds are the Docker tests' (tests/docker/conftest.py).
SECONDARY_HTTP = "5001/tcp"

# --- the swarm ----------------------------------------------------------------------------------

def swarm_state() -> tuple[str, bool]:
    """(LocalNodeState, ControlAvailable) of this engine: ('inactive', False), ('active', True)."""
    out = run(["docker", "info", "--format",
               "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}"], timeout=30).stdout
    state, control = out.split()
    return state, control == "true"


@pytest.fixture(scope="session")
def swarm() -> Any:
    """An active swarm whose manager is this engine. Created on 127.0.0.1 when none is active,
    and then left (docker swarm leave --force, and the docker_gwbridge network it made
    removed) at the end of the session; an existing swarm is used as it is and left alone."""
    err = docker_engine_error()
    if err:
        pytest.skip(f"{NO_ENGINE} ({err}): every test marked swarm was skipped")
    state, manager = swarm_state()
    created = False
    had_gwbridge = bool(run(["docker", "network", "ls", "-q", "--filter",
                             "name=^docker_gwbridge$"]).stdout.strip())
    if state == "inactive":
        run(["docker", "swarm", "init", "--advertise-addr", "127.0.0.1",
             "--listen-addr", "127.0.0.1:2377"], timeout=60)
        created = True
        state, manager = swarm_state()
    if state != "active" or not manager:
        pytest.fail(f"this Docker engine is in a swarm as {state!r} without the manager role: "
                    "stacks can only be deployed from a manager")
    try:
        yield
    finally:
        if created:
            run(["docker", "swarm", "leave", "--force"], timeout=60, check=False)
            if not had_gwbridge:   # made by `swarm init`; `swarm leave` leaves it behind
                run(["docker", "network", "rm", "docker_gwbridge"], timeout=60, check=False)


@pytest.fixture(scope="session")
def swarm_image(swarm: None) -> str:
    """The image, built exactly as CI builds it (scripts/docker-build.sh, idempotent)."""
    t0 = time.monotonic()
    res = run(["bash", str(ROOT / "scripts" / "docker-build.sh"), "--quiet", "--tag", IMAGE],
              timeout=1200)
    print(f"\n{res.stdout.strip()} {res.stderr.strip()} (fixture: {time.monotonic() - t0:.0f}s)")
    return IMAGE


# --- one deployed stack -------------------------------------------------------------------------

class Stack(NodesOverHttp):
    """`docker stack deploy -c deploy/swarm/stack.yml replog-swarm-<random>` on free ports."""
    stack_file = STACK_FILE
    roles = ("nameserver", "master", "secondary")     # its services

    def __init__(self, image: str, env_overrides: dict[str, str] | None = None) -> None:
        self.name = f"replog-swarm-{uuid.uuid4().hex[:8]}"
        self.master_port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("REPLOG_")}
        env.update({"REPLOG_IMAGE": image, "MASTER_PORT": str(self.master_port)})
        env.update(FAST_TIMING)
        self.certs = tempfile.mkdtemp(prefix=f"{self.name}-certs-")
        env["REPLOG_CERTS_DIR"] = self.certs
        self.tokens = tempfile.mkdtemp(prefix=f"{self.name}-tokens-")
        env["REPLOG_TOKENS_DIR"] = self.tokens
        env.update(env_overrides or {})
        self.env = env
        self.image = image
        self._http: requests.Session | None = None

    @property
    def http(self) -> requests.Session:     # once make_certs() made the CA and the tokens
        if self._http is None:
            self._http = self.session()
        return self._http

    def session(self, token: str | None = "admin") -> requests.Session:
        """HTTPS trusting the stack's CA, with the token made by make-tokens.sh (None: none)."""
        s = requests.Session()
        s.trust_env = False          # REQUESTS_CA_BUNDLE would win over s.verify
        s.verify = str(Path(self.certs) / "ca.crt")
        if token:
            s.headers["Authorization"] = "Bearer " + (Path(self.tokens) / f"{token}.token") \
                .read_text().strip()
        return s

    def post(self, message: str, w: int | None = None, timeout: float = HTTP_TIMEOUT,
             session: requests.Session | None = None, **extra: Any) -> requests.Response:
        body: dict[str, Any] = {"message": message, **extra}
        if w is not None:
            body["w"] = w
        if session is not None:
            return session.post(self.url("master", "/messages"), json=body, timeout=timeout)
        with self.session() as s:    # a fresh connection: tests post from several threads
            return s.post(self.url("master", "/messages"), json=body, timeout=timeout)

    # docker
    def service(self, role: str) -> str:
        return f"{self.name}_{role}"

    def make_certs(self) -> None:
        """deploy/swarm/make-certs.sh: nameserver, master, secondary1..5 (what the stack mounts);
        deploy/swarm/make-tokens.sh: the token file, the admin and the probe token."""
        run(["bash", str(MAKE_CERTS), "--out", self.certs, "--image", self.image], timeout=120)
        run(["bash", str(MAKE_TOKENS), "--out", self.tokens, "--image", self.image], timeout=120)

    def deploy(self) -> None:
        # --resolve-image never: the image is local, there is no registry to ask for a digest.
        run(["docker", "stack", "deploy", "--resolve-image", "never", "-c", str(self.stack_file),
             self.name], env=self.env, timeout=120)

    def scale(self, replicas: int) -> None:
        """Returns once Swarm says the service converged (its tasks run and are healthy)."""
        run(["docker", "service", "scale", f"{self.service('secondary')}={replicas}"],
            timeout=120)

    def containers(self, role: str) -> list[dict]:
        """docker inspect of the role's running containers."""
        ids = run(["docker", "ps", "-q", "--filter",
                   f"label=com.docker.swarm.service.name={self.service(role)}"]).stdout.split()
        if not ids:
            return []
        return json.loads(run(["docker", "inspect", *ids]).stdout)

    def secondaries(self) -> dict[str, dict]:
        """Running secondary tasks by replog name: {'secondary1': {'id', 'port', 'slot'}}."""
        found = {}
        for c in self.containers("secondary"):
            env = dict(e.split("=", 1) for e in c["Config"]["Env"])
            bindings = (c["NetworkSettings"]["Ports"] or {}).get(SECONDARY_HTTP) or []
            if not bindings:     # starting: no port yet
                continue
            found[env["REPLOG_NAME"]] = {
                "id": c["Id"], "port": int(bindings[0]["HostPort"]),
                "slot": int(c["Config"]["Labels"]["com.docker.swarm.task.name"].split(".")[1])}
        return found

    def logs(self) -> str:
        parts = []
        for role in self.roles:
            ps = run(["docker", "service", "ps", "--no-trunc", "--format",
                      "{{.Name}} {{.CurrentState}} {{.Error}}", self.service(role)],
                     check=False, timeout=30)
            logs = run(["docker", "service", "logs", "--no-trunc", "--timestamps",
                        self.service(role)], check=False, timeout=60)
            tail = (logs.stdout + logs.stderr).splitlines()[-80:]
            parts.append(f"----- {self.service(role)}: tasks -----\n{ps.stdout}{ps.stderr}"
                         f"----- {self.service(role)}: last {len(tail)} log lines -----\n"
                         + "\n".join(tail))
        return "\n".join(parts)

    def leftovers(self) -> dict[str, list[str]]:
        """Whatever of this stack still exists (everything is labelled with its namespace)."""
        label = f"label=com.docker.stack.namespace={self.name}"
        return {kind: run(cmd + ["--filter", label], check=False).stdout.split()
                for kind, cmd in (("services", ["docker", "service", "ls", "-q"]),
                                  ("containers", ["docker", "ps", "-aq"]),
                                  ("secrets", ["docker", "secret", "ls", "-q"]),
                                  ("networks", ["docker", "network", "ls", "-q"]))}

    def remove(self, timeout: float = 90) -> dict[str, list[str]]:
        """docker stack rm, wait until its services, containers and network are gone, then
        remove its volumes and the certificates' folder. Returns what was still there at the
        deadline (empty lists: clean)."""
        if self._http is not None:
            self._http.close()
        shutil.rmtree(self.certs, ignore_errors=True)
        shutil.rmtree(self.tokens, ignore_errors=True)
        run(["docker", "stack", "rm", self.name], check=False, timeout=60)
        deadline = time.monotonic() + timeout
        left = self.leftovers()
        while any(left.values()) and time.monotonic() < deadline:
            time.sleep(0.5)
            left = self.leftovers()
        label = f"label=com.docker.stack.namespace={self.name}"
        volumes = run(["docker", "volume", "ls", "-q", "--filter", label], check=False).stdout.split()
        if volumes:
            run(["docker", "volume", "rm", *volumes], check=False, timeout=60)
        left["volumes"] = run(["docker", "volume", "ls", "-q", "--filter", label],
                              check=False).stdout.split()
        return left

    # HTTP, always through ports published on this host
    def url(self, node: str, path: str) -> str:
        port = self.master_port if node == "master" else self.secondaries()[node]["port"]
        return f"https://127.0.0.1:{port}{path}"


    def wait_cluster(self, names: set[str], timeout: float = 90) -> dict:
        """Until the master counts exactly `names` (plus itself) in its cluster, every one of
        them Healthy with everything acknowledged, and it accepts writes."""
        def ready() -> dict | None:
            h = self.health()
            secs = h["secondaries"]
            ok = (not h["read_only"] and set(secs) == names
                  and h["quorum"]["size"] == 1 + len(names)
                  and all(s["status"] == "Healthy" and s["acked_seq"] == h["last_seq"]
                          for s in secs.values()))
            return h if ok else None
        return wait_until(ready, timeout, interval=0.3,
                          what=f"the master to count {sorted(names)}, all Healthy and caught up")


class FailoverStack(Stack):
    """`docker stack deploy -c deploy/swarm/stack-failover.yml replog-swarmfo-<random>`: the
    three voters, each its own service, on three free host ports (MASTER_PORT,
    SECONDARY1_PORT, SECONDARY2_PORT), advertised as https://localhost:PORT (the stack's
    default REPLOG_PUBLIC_HOST)."""
    stack_file = FAILOVER_STACK_FILE
    roles = ("nameserver", *VOTERS)

    def __init__(self, image: str, env_overrides: dict[str, str] | None = None) -> None:
        super().__init__(image, env_overrides)
        self.name = f"replog-swarmfo-{uuid.uuid4().hex[:8]}"
        self.ports = {"master": self.master_port,
                      **{n: free_port() for n in VOTERS if n != "master"}}
        for node, var in VOTER_PORT_VARS.items():
            self.env.setdefault(var, str(self.ports[node]))
            self.ports[node] = int(self.env[var])
        self.master_port = self.ports["master"]

    def url(self, node: str, path: str) -> str:
        return f"https://127.0.0.1:{self.ports[node]}{path}"

    def advertised(self, node: str) -> str:
        """The node's REPLOG_ADVERTISE_URL as the stack sets it."""
        return f"https://localhost:{self.ports[node]}"

    def node_at(self, url: str) -> str:
        """The voter whose published port a URL names."""
        port = urllib.parse.urlsplit(url).port
        (node,) = [n for n, p in self.ports.items() if p == port]
        return node

    def failover(self, node: str, timeout: float = 3) -> dict | None:
        """The node's /health "failover" object; None while it does not answer."""
        try:
            r = self.get(node, "/health", timeout=timeout)
            return r.json().get("failover") if r.status_code == 200 else None
        except (requests.RequestException, ValueError):
            return None

    def master(self, among: tuple[str, ...] = VOTERS, writable: bool = True) -> dict | None:
        """{"node", "epoch", "views"} when exactly one of `among` says it is master (and
        writable, unless writable=False: a master just elected is read-only until it knows
        a majority is with it) and every one of them answers and names it, in one epoch."""
        views = {n: self.failover(n) for n in among}
        masters = [v for v in views.values()
                   if v and v["role"] == "master" and (v["writable"] or not writable)]
        if len(masters) != 1:
            return None
        (m,) = masters
        if any(v is None or (v["master"], v["epoch"]) != (m["node"], m["epoch"])
               for v in views.values()):
            return None
        return {"node": m["node"], "epoch": m["epoch"], "views": views}

    def write(self, via: str, body: dict, session: requests.Session,
              timeout: float = HTTP_TIMEOUT) -> tuple[requests.Response, list[str]]:
        """POST /messages at a node's published port, following 307s as `curl
        --location-trusted` does: the same body and the same token to the Location (curl -L
        and requests drop the Authorization header when the port changes). Returns the last
        answer and every URL asked."""
        url, asked = self.url(via, "/messages"), []
        for _ in range(4):
            asked.append(url)
            r = session.post(url, json=body, timeout=timeout, allow_redirects=False)
            if r.status_code != 307:
                return r, asked
            url = urllib.parse.urljoin(url, r.headers["Location"])
        return r, asked


@pytest.fixture(scope="module")
def stack(swarm_image: str) -> Any:
    """deploy/swarm/stack.yml, deployed and answering: the master counts secondary1 and
    secondary2 as Healthy. Removed at the end of the module whatever happened (a test may
    have removed it already)."""
    s = Stack(swarm_image)
    try:
        s.make_certs()
        s.deploy()
        wait_until(lambda: s.get("master", "/health", timeout=2).status_code == 200, 120,
                   what=f"the master to answer on 127.0.0.1:{s.master_port}")
        s.wait_cluster({"secondary1", "secondary2"})
        yield s
    except BaseException:
        print(s.logs())
        raise
    finally:
        s.remove()


@pytest.fixture(autouse=True)
def _stack_logs_on_failure(request: pytest.FixtureRequest) -> Any:
    """When a test fails, print every service's tasks and the tail of its logs."""
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed and "stack" in request.fixturenames:
        s: Stack = request.getfixturevalue("stack")
        print(f"\n===== services of stack {s.name} =====\n{s.logs()}")
