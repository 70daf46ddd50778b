"""Fixtures for the Docker tests: build the image once, run compose clusters under unique
project names on free host ports, tear them down whatever happens.

Every request goes to the published HTTP ports on 127.0.0.1 (never a container address).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest
import requests

from tests.conftest import NO_ENGINE

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
# The tag the tests build and run; set REPLOG_TEST_IMAGE to keep apart from other checkouts
# that build replog:latest on the same Docker engine.
IMAGE = os.environ.get("REPLOG_TEST_IMAGE", "replog:latest")
NODES = ("master", "secondary1", "secondary2", "secondary3")
PORT_VARS = {"master": "MASTER_PORT", "secondary1": "SECONDARY1_PORT",
             "secondary2": "SECONDARY2_PORT", "secondary3": "SECONDARY3_PORT"}
HTTP_TIMEOUT = 10.0

# Short failure-detector thresholds so that fault tests see transitions within seconds.
FAST_TIMING = {
    "REPLOG_HEARTBEAT_INTERVAL": "0.2",
    "REPLOG_HEARTBEAT_TIMEOUT": "0.5",
    "REPLOG_SUSPECT_AFTER": "1.0",
    "REPLOG_UNHEALTHY_AFTER": "2.5",
    "REPLOG_DISCOVERY_INTERVAL": "0.5",
    "HEALTHCHECK_INTERVAL": "1s",
}


# --- helpers ------------------------------------------------------------------------------------

def run(cmd: list[str], timeout: float = 120, env: dict | None = None,
        check: bool = True) -> subprocess.CompletedProcess:
    """Run a command, capture its output, fail the test with that output if it fails."""
    try:
        res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        out = b"".join(x if isinstance(x, bytes) else x.encode() for x in (e.stdout, e.stderr) if x)
        pytest.fail(f"timed out after {timeout}s: {' '.join(cmd)}\n{out.decode(errors='replace')}")
    if check and res.returncode != 0:
        pytest.fail(f"exit {res.returncode}: {' '.join(cmd)}\n--- stdout\n{res.stdout}"
                    f"\n--- stderr\n{res.stderr}")
    return res


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.2,
               what: str = "condition") -> Any:
    """Poll predicate until it returns something truthy; fail after `timeout` seconds.
    Exceptions from the predicate count as 'not yet' (the last one is reported)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last = value
        except Exception as e:  # noqa: BLE001 - polling a system that is coming up
            last = e
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def docker_engine_error() -> str | None:
    if shutil.which("docker") is None:
        return "the docker command is not installed"
    try:
        res = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30,
                             stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return "'docker info' did not answer within 30 s"
    if res.returncode != 0:
        return f"'docker info' failed: {(res.stderr or res.stdout).strip()[:300]}"
    return None


def compose_command() -> list[str] | None:
    """$REPLOG_TEST_COMPOSE if set (e.g. "docker compose"), else docker-compose (v1) if
    present, else the `docker compose` plugin (v2)."""
    override = os.environ.get("REPLOG_TEST_COMPOSE", "").split()
    if override:
        return override
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    res = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True,
                         stdin=subprocess.DEVNULL)
    if res.returncode == 0:
        return ["docker", "compose"]
    return None


# --- the cluster ----------------------------------------------------------------------------

class NodesOverHttp:
    """The HTTP calls a test makes to a cluster's nodes; the cluster gives url() and http."""
    http: requests.Session

    def url(self, node: str, path: str = "") -> str:
        raise NotImplementedError

    def get(self, node: str, path: str, timeout: float = HTTP_TIMEOUT) -> requests.Response:
        return self.http.get(self.url(node, path), timeout=timeout)

    def post(self, message: str, w: int | None = None, timeout: float = HTTP_TIMEOUT,
             session: requests.Session | None = None, **extra: Any) -> requests.Response:
        body: dict[str, Any] = {"message": message, **extra}
        if w is not None:
            body["w"] = w
        # a fresh connection unless a session is given: tests post from several threads
        return (session or requests).post(self.url("master", "/messages"), json=body,
                                          timeout=timeout)

    def messages(self, node: str) -> list[str]:
        r = self.get(node, "/messages")
        r.raise_for_status()
        return r.json()["messages"]

    def health(self, node: str = "master") -> dict:
        r = self.get(node, "/health")
        r.raise_for_status()
        return r.json()


class Cluster(NodesOverHttp):
    """One compose project: `docker-compose -p replog-test-<random> ...` on free host ports."""

    def __init__(self, compose: list[str], env_overrides: dict[str, str], logdir: Path) -> None:
        self.project = f"replog-test-{uuid.uuid4().hex[:8]}"
        self.compose_cmd = compose
        self.ports = {node: free_port() for node in NODES}
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("REPLOG_") and k not in PORT_VARS.values()}
        env.update({PORT_VARS[n]: str(p) for n, p in self.ports.items()})
        env.update({"REPLOG_BIND": "127.0.0.1", "REPLOG_IMAGE": IMAGE, "SECONDARY2_DELAY": "2"})
        env.update(FAST_TIMING)
        env.update(env_overrides)
        self.env = env
        self.delay = float(env["SECONDARY2_DELAY"])
        self.logdir = logdir
        self.http = requests.Session()

    # compose and docker
    def compose(self, *args: str, timeout: float = 180, check: bool = True,
                profile: bool = False) -> subprocess.CompletedProcess:
        cmd = [*self.compose_cmd, "-f", str(COMPOSE_FILE), "--project-directory", str(ROOT),
               "-p", self.project]
        if profile:
            cmd += ["--profile", "extra"]
        return run([*cmd, *args], timeout=timeout, env=self.env, check=check)

    def up(self, *services: str, profile: bool = False) -> None:
        # No --build: the session fixture built the image with scripts/docker-build.sh.
        self.compose("up", "-d", "--no-build", *services, profile=profile, timeout=240)

    def container(self, service: str) -> str:
        ids = self.compose("ps", "-a", "-q", service, profile=True).stdout.split()
        assert len(ids) == 1, f"expected one container for {service}, got {ids}"
        return ids[0]

    def docker(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return run(["docker", *args], timeout=timeout)

    def volume(self, service: str) -> str:
        """The name of the named volume mounted at /data in the service's container."""
        info = json.loads(self.docker("inspect", self.container(service)).stdout)[0]
        mounts = [m for m in info["Mounts"] if m["Destination"] == "/data"]
        assert len(mounts) == 1 and mounts[0]["Type"] == "volume", info["Mounts"]
        return mounts[0]["Name"]

    def network(self) -> str:
        info = json.loads(self.docker("inspect", self.container("master")).stdout)[0]
        nets = list(info["NetworkSettings"]["Networks"])
        assert len(nets) == 1, nets
        return nets[0]

    def logs(self, *services: str) -> str:
        return self.compose("logs", "--no-color", *services, profile=True,
                            check=False).stdout

    def down(self) -> None:
        self.http.close()
        self.compose("down", "-v", "--remove-orphans", "--timeout", "5", profile=True,
                     check=False, timeout=180)

    # HTTP, always through the published port on 127.0.0.1
    def url(self, node: str, path: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[node]}{path}"


    def statuses(self) -> dict[str, str]:
        return {name: s["status"] for name, s in self.health()["secondaries"].items()}

    # waiting
    def wait_http(self, node: str, timeout: float = 60) -> None:
        wait_until(lambda: self.get(node, "/health", timeout=2).status_code == 200, timeout,
                   what=f"{node} to answer GET /health on 127.0.0.1:{self.ports[node]}")

    def wait_statuses(self, expected: dict[str, str], timeout: float = 60) -> dict:
        def ok() -> dict | None:
            h = self.health()
            got = {n: h["secondaries"].get(n, {}).get("status") for n in expected}
            return h if got == expected else None
        return wait_until(ok, timeout, what=f"master to report {expected}")

    def wait_caught_up(self, nodes: tuple[str, ...], timeout: float = 60) -> list[str]:
        """Until every node's GET /messages equals the master's; returns that list."""
        def same() -> list[str] | None:
            master = self.messages("master")
            return master if all(self.messages(n) == master for n in nodes) else None
        return wait_until(same, timeout, interval=0.3,
                          what=f"{', '.join(nodes)} to hold exactly the master's messages")

    def save_logs(self) -> Path:
        self.logdir.mkdir(parents=True, exist_ok=True)
        path = self.logdir / f"{self.project}.log"
        path.write_text(self.logs())
        return path


# --- clients -----------------------------------------------------------------------------------

def post_at_once(c: Cluster, message: str, w: int, wait_for_port: bool = False,
                 limit: float = 90) -> dict[str, Any]:
    """A client that writes as soon as it can: it retries only while no HTTP answer comes
    back (the container's process is not listening yet: Docker's proxy on the published port
    closes the connection), and returns the first HTTP answer it gets.

    wait_for_port: first wait until the published port accepts a TCP connection. With Docker's
    userland proxy that is the moment the container starts, before the master listens."""
    out: dict[str, Any] = {"no_answer": 0, "port_waits": 0}
    deadline = time.monotonic() + limit
    if wait_for_port:
        while True:
            try:
                socket.create_connection(("127.0.0.1", c.ports["master"]), 0.5).close()
                break
            except OSError:
                out["port_waits"] += 1
                if time.monotonic() > deadline:
                    out["error"] = "the published port never accepted a connection"
                    return out
                time.sleep(0.001)
    with requests.Session() as s:
        while True:
            try:
                r = s.post(c.url("master", "/messages"), json={"message": message, "w": w},
                           timeout=60)
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as e:
                out["no_answer"] += 1
                out["last_error"] = type(e).__name__
                if time.monotonic() > deadline:
                    out["error"] = f"no HTTP answer within {limit}s"
                    return out
                time.sleep(0.005)
                continue
            except requests.RequestException as e:   # e.g. a read timeout: a real failure
                out["error"] = f"{type(e).__name__}: {e}"
                return out
            out["status"], out["body"] = r.status_code, r.text
            return out


# --- fixtures -----------------------------------------------------------------------------------

_active: list[Cluster] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item._docker_failed = rep.failed  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _compose_logs_on_failure(request: pytest.FixtureRequest):
    """When a test fails, print (into its report) the tail of every running cluster's logs."""
    yield
    if getattr(request.node, "_docker_failed", False):
        for c in list(_active):
            path = c.save_logs()
            tail = path.read_text().splitlines()[-120:]
            print(f"\n----- compose logs of {c.project}, last {len(tail)} lines "
                  f"(all: {path}) -----\n" + "\n".join(tail))


@pytest.fixture(scope="session")
def docker_ready() -> list[str]:
    """Skip every Docker test, loudly, when no Docker engine answers; else the compose command."""
    err = docker_engine_error()
    if err:
        pytest.skip(f"{NO_ENGINE} ({err}): every test marked docker was skipped")
    compose = compose_command()
    if compose is None:
        pytest.fail("a Docker engine answers but neither docker-compose nor `docker compose` "
                    "is installed")
    return compose


@pytest.fixture(scope="session")
def image(docker_ready: list[str]) -> str:
    """Build IMAGE (replog:latest) exactly as CI does: scripts/docker-build.sh (idempotent)."""
    t0 = time.monotonic()
    res = run(["bash", str(ROOT / "scripts" / "docker-build.sh"), "--quiet", "--tag", IMAGE],
              timeout=1200)
    print(f"\n{res.stdout.strip()} {res.stderr.strip()} (fixture: {time.monotonic() - t0:.0f}s)")
    return IMAGE


@pytest.fixture(scope="session")
def compose_cmd(docker_ready: list[str]) -> list[str]:
    return docker_ready


@pytest.fixture(scope="module")
def make_cluster(image: str, compose_cmd: list[str], tmp_path_factory: pytest.TempPathFactory):
    """Factory: make_cluster(services=..., **env) -> a running Cluster whose listed nodes answer
    GET /health. Every cluster made is torn down (down -v --remove-orphans) at the end of the
    module, whatever happened."""
    made: list[Cluster] = []

    def make(services: tuple[str, ...] = ("nameserver", "master", "secondary1", "secondary2"),
             wait: bool = True, **env: str) -> Cluster:
        """wait=False: return the moment `up -d` returns (a client that starts at once)."""
        c = Cluster(compose_cmd, env, tmp_path_factory.getbasetemp() / "docker-logs")
        made.append(c)
        _active.append(c)
        c.up(*services)
        if wait:
            for node in services:
                if node in NODES:
                    c.wait_http(node)
        return c

    try:
        yield make
    finally:
        for c in made:
            _active.remove(c)
            c.down()
