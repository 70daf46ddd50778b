"""The deployment files cannot drift from the nodes, nor from each other.

docker-compose.yml (one host), deploy/swarm/stack.yml (Docker Swarm) and deploy/k8s/
(Kubernetes) all start the same three entry points with REPLOG_* environment variables. This
reads the three, and checks them against what the nodes actually read (the argparse parsers
of nameserver, nodes.master_node and nodes.secondary_node, whose every flag --x-y falls back to
REPLOG_X_Y): every variable is a real flag with a value the node accepts; the ports, the
names (name server, secondaries) and the data directories agree; the settings are the same
in the three. Every Kubernetes manifest is validated against the API schema of a pinned
Kubernetes version with kubernetes-validate.

The failover variants, deploy/swarm/stack-failover.yml and deploy/k8s-failover/, pass the same
checks (flags, values, ports, TLS, HTTPS and tokens, volumes, schema), and their own: every
voter runs with failover and the cluster of exactly the voters the file starts, advertises
the URL it is published at, and has the settings of the fixed-master files.
Nothing is run: this takes a few seconds.
"""
from __future__ import annotations

import argparse
import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

import nameserver.__main__ as nameserver_main
from nodes import master_node, secondary_node
from nodes.config import ENV_PREFIX, env_name
from nodes.core.health import HealthPolicy

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
STACK = ROOT / "deploy" / "swarm" / "stack.yml"
K8S = ROOT / "deploy" / "k8s"
# The failover variants (docs/deploy.md, "With failover"): three voters, any of them master.
STACK_FAILOVER = ROOT / "deploy" / "swarm" / "stack-failover.yml"
K8S_FAILOVER = ROOT / "deploy" / "k8s-failover"
# The Kubernetes API version the manifests are validated against (kubernetes-validate ships
# the schemas; its version is pinned in pyproject.toml).
K8S_SCHEMA_VERSION = "1.34.0"

PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "nameserver": nameserver_main.parser,
    "master": master_node.parser,
    "secondary": secondary_node.parser,
}
MODULES = {"nameserver": "nameserver", "nodes.master_node": "master",
           "nodes.secondary_node": "secondary"}
# One-shot helpers a file may also run (not nodes: they have no REPLOG_* flags to check).
TOOLS = {"nodes.certs"}
# Variables that are not flags: the Kubernetes downward API, used to build REPLOG_* values.
K8S_HELPER_VARS = {"POD_NAME", "POD_NAMESPACE", "POD_INDEX", "PUBLIC_HOST"}
# The value a sample pod reads from a ConfigMap the docs tell the user to create (the failover
# variant's public host: docs/deploy.md's k8s-failover block).
SAMPLE_CONFIG = {("replog-public", "host"): "localhost"}
# Read by the healthcheck (python -m nodes.probe), not by the node: the file of its token.
PROBE_VARS = {"REPLOG_PROBE_TOKEN_FILE"}
SAMPLE_NAMESPACE = "replog"


# --- reading the files --------------------------------------------------------------------------

@dataclass
class Node:
    """One service (compose, stack) or workload (k8s) that runs a replog entry point."""
    source: str                          # compose | stack | k8s
    service: str                         # service key, or the workload's name
    role: str                            # nameserver | master | secondary
    env: dict[str, str | None]           # as written (None: passed through from the shell)
    ports: set[int]                      # container ports it publishes / declares
    mounts: set[str]                     # container paths a volume is mounted at
    sample_env: dict[str, str | None] = field(default_factory=dict)  # one instance, resolved
    raw: dict = field(default_factory=dict)
    variant: str = ""                    # "failover": stack-failover.yml, deploy/k8s-failover
    doc: dict = field(default_factory=dict)   # compose/stack: the whole file

    @property
    def label(self) -> str:
        return f"{self.source}{'-' + self.variant if self.variant else ''}:{self.service}"


_INTERPOLATION = re.compile(r"\$\{([A-Za-z0-9_]+)(?::?-([^}]*))?\}")


def interpolate(value: Any) -> Any:
    """${VAR:-default} -> default, ${VAR} -> '' (what compose and stack deploy do with an
    empty environment)."""
    if isinstance(value, str):
        return _INTERPOLATION.sub(lambda m: m.group(2) or "", value)
    return value


def role_of(command: list[str], where: str) -> str:
    assert command[:2] == ["python", "-m"] and command[2] in MODULES, \
        f"{where}: command {command} is not `python -m` of a replog entry point"
    return MODULES[command[2]]


def env_mapping(env: Any, where: str) -> dict[str, str | None]:
    if isinstance(env, list):        # KEY=value list form
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    assert isinstance(env, dict), f"{where}: environment must be a mapping"
    return {k: (None if v is None else str(v)) for k, v in env.items()}


def container_port(spec: Any) -> int:
    """The container side of a compose/stack port: "h:5000:5000", "5000/tcp", {target: 5000}."""
    if isinstance(spec, dict):
        return int(spec["target"])
    return int(str(interpolate(spec)).rsplit(":", 1)[-1].split("/")[0])


def mount_target(spec: Any) -> str:
    if isinstance(spec, dict):
        return spec["target"]
    parts = str(spec).split(":")
    return parts[1] if len(parts) > 1 else parts[0]


def mount_source(spec: Any) -> str | None:
    if isinstance(spec, dict):
        return spec.get("source")
    parts = str(spec).split(":")
    return parts[0] if len(parts) > 1 else None


def compose_like(path: Path, source: str, variant: str = "") -> tuple[dict, list[Node]]:
    doc = yaml.safe_load(path.read_text())
    nodes = []
    for name, svc in doc["services"].items():
        where = f"{source}:{name}"
        if svc["command"][:2] == ["python", "-m"] and svc["command"][2] in TOOLS:
            continue
        env = env_mapping(svc.get("environment", {}), where)
        node = Node(source, name, role_of(svc["command"], where), env,
                    {container_port(p) for p in svc.get("ports", [])},
                    {mount_target(v) for v in svc.get("volumes", [])}, raw=svc,
                    variant=variant, doc=doc)
        # Swarm templates: the sample is the task in slot 1.
        node.sample_env = {k: None if v is None else
                           interpolate(v).replace("{{.Task.Slot}}", "1") for k, v in env.items()}
        nodes.append(node)
    return doc, nodes


def k8s_resources(directory: Path = K8S) -> list[dict]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    docs = []
    for name in kustomization["resources"]:
        for doc in yaml.safe_load_all((directory / name).read_text()):
            if doc:
                doc["_file"] = name
                docs.append(doc)
    return docs


def k8s_pod_name(doc: dict, index: int = 0) -> str:
    """A pod of the workload: a StatefulSet's pod `index`, a Deployment's some pod."""
    return (f"{doc['metadata']['name']}-{index}" if doc["kind"] == "StatefulSet"
            else f"{doc['metadata']['name']}-abc12")


def k8s_pod_env(doc: dict, index: int = 0) -> dict[str, str | None]:
    """The container's environment as pod `index` sees it: the downward API, the ConfigMap
    keys of SAMPLE_CONFIG and every $(VAR) resolved (each must be defined before its use)."""
    (container,) = doc["spec"]["template"]["spec"]["containers"]
    where = f"k8s:{doc['metadata']['name']}"
    fields = {"metadata.name": k8s_pod_name(doc, index), "metadata.namespace": SAMPLE_NAMESPACE,
              "metadata.labels['apps.kubernetes.io/pod-index']": str(index)}
    sample: dict[str, str | None] = {}
    for item in container.get("env", []):
        name = item["name"]
        assert name not in sample, f"{where}: {name} set twice"
        if "valueFrom" in item:
            source = item["valueFrom"]
            if "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                sample[name] = SAMPLE_CONFIG[(ref["name"], ref["key"])]
            else:
                assert doc["kind"] == "StatefulSet" or "pod-index" not in \
                    source["fieldRef"]["fieldPath"], f"{where}: only a StatefulSet has ordinals"
                sample[name] = fields[source["fieldRef"]["fieldPath"]]
            continue

        def ref(m: re.Match) -> str:
            assert m.group(1) in sample, \
                f"{where}: {name} refers to $({m.group(1)}), not defined before it"
            return sample[m.group(1)] or ""
        sample[name] = re.sub(r"\$\(([A-Za-z0-9_]+)\)", ref, str(item["value"]))
    return sample


def k8s_nodes(docs: list[dict], variant: str = "") -> list[Node]:
    nodes = []
    for doc in docs:
        if doc["kind"] not in ("Deployment", "StatefulSet"):
            continue
        pod = doc["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        where = f"k8s:{doc['metadata']['name']}"
        env: dict[str, str | None] = {}
        for item in container.get("env", []):
            source = item.get("valueFrom")
            if source is None:
                env[item["name"]] = str(item["value"])
            elif "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                env[item["name"]] = f"<configmap {ref['name']}/{ref['key']}>"
            else:
                env[item["name"]] = f"<{source['fieldRef']['fieldPath']}>"
        node = Node("k8s", doc["metadata"]["name"], role_of(container["command"], where), env,
                    {p["containerPort"] for p in container.get("ports", [])},
                    {m["mountPath"] for m in container.get("volumeMounts", [])},
                    sample_env=k8s_pod_env(doc), raw=doc, variant=variant, doc={"docs": docs})
        nodes.append(node)
    return nodes


COMPOSE_DOC, COMPOSE_NODES = compose_like(COMPOSE, "compose")
STACK_DOC, STACK_NODES = compose_like(STACK, "stack")
K8S_DOCS = k8s_resources()
K8S_NODES = k8s_nodes(K8S_DOCS)
STACK_FO_DOC, STACK_FO_NODES = compose_like(STACK_FAILOVER, "stack", "failover")
K8S_FO_DOCS = k8s_resources(K8S_FAILOVER)
K8S_FO_NODES = k8s_nodes(K8S_FO_DOCS, "failover")
# The fixed-master files, which the checks of names, replicas and settings compare
SOURCES = {"compose": COMPOSE_NODES, "stack": STACK_NODES, "k8s": K8S_NODES}
# The failover variants: every voter may be master (checked on their own below)
FAILOVER_SOURCES = {"stack-failover": STACK_FO_NODES, "k8s-failover": K8S_FO_NODES}
ALL_NODES = COMPOSE_NODES + STACK_NODES + K8S_NODES + STACK_FO_NODES + K8S_FO_NODES
ALL_STACK_NODES = STACK_NODES + STACK_FO_NODES
ALL_K8S_NODES = K8S_NODES + K8S_FO_NODES
K8S_DIRS = {K8S: K8S_DOCS, K8S_FAILOVER: K8S_FO_DOCS}


def by_role(nodes: list[Node], role: str) -> list[Node]:
    return [n for n in nodes if n.role == role]


def one(nodes: list[Node], role: str) -> Node:
    found = by_role(nodes, role)
    assert len(found) == 1, f"expected one {role}, got {[n.label for n in found]}"
    return found[0]


def flag_actions(role: str) -> dict[str, argparse.Action]:
    """REPLOG_X_Y -> the parser's action for --x-y."""
    actions = {}
    for action in PARSERS[role]()._actions:
        for option in action.option_strings:
            if option.startswith("--") and option != "--help":
                actions[env_name(option)] = action
    return actions


def parse_with_env(role: str, env: dict[str, str | None],
                   monkeypatch: pytest.MonkeyPatch) -> argparse.Namespace:
    """What the node would run with: its parser built under exactly this environment."""
    import os
    for key in list(os.environ):
        if key.startswith(ENV_PREFIX):
            monkeypatch.delenv(key)
    for key, value in env.items():
        if value is not None:
            monkeypatch.setenv(key, value)
    return PARSERS[role]().parse_args([])


# --- every variable is a flag the node reads, with a value it accepts --------------------------

def test_every_file_starts_every_role() -> None:
    for source, nodes in SOURCES.items():
        assert {n.role for n in nodes} == {"nameserver", "master", "secondary"}, source
        assert len(by_role(nodes, "master")) == 1, f"{source}: one master"
        assert len(by_role(nodes, "nameserver")) == 1, f"{source}: one name server"


@pytest.mark.parametrize("node", ALL_NODES, ids=lambda n: n.label)
def test_every_variable_is_a_flag_of_the_node(node: Node) -> None:
    flags = flag_actions(node.role)
    for key in node.env:
        if (node.source == "k8s" and key in K8S_HELPER_VARS) or key in PROBE_VARS:
            continue
        assert key in flags, (f"{node.label} sets {key}, but {node.role} reads no such variable "
                              f"(it reads {sorted(flags)})")


@pytest.mark.parametrize("node", ALL_NODES, ids=lambda n: n.label)
def test_every_value_is_accepted_by_the_node(node: Node,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    env = {k: v for k, v in node.sample_env.items() if k.startswith(ENV_PREFIX)}
    try:
        args = parse_with_env(node.role, env, monkeypatch)
    except (ValueError, SystemExit) as e:
        pytest.fail(f"{node.label}: {node.role} refuses its environment {env}: {e!r}")
    flags = flag_actions(node.role)
    for key, value in env.items():
        action = flags.get(key)     # an unknown name fails test_every_variable_is_a_flag...
        if action is not None and action.choices is not None and value is not None:
            assert value in action.choices, f"{node.label}: {key}={value!r} not in {action.choices}"
    if node.role == "master":
        HealthPolicy(args.suspect_after, args.unhealthy_after)   # what main() checks
    if node.role == "secondary":
        assert args.name, f"{node.label}: a secondary needs a name"


@pytest.mark.parametrize("node", ALL_STACK_NODES, ids=lambda n: n.label)
def test_defaults_written_in_the_stack_are_the_nodes_defaults(node: Node) -> None:
    """`KEY: ${KEY:-default}` lets the shell override a setting; its default must be the
    node's own, or the file silently changes the node's behaviour. (Not for compose: a
    demo on one host, which may turn knobs on, e.g. fault injection.)"""
    flags = flag_actions(node.role)
    for key, value in node.env.items():
        m = _INTERPOLATION.fullmatch(value or "")
        if not m or m.group(1) != key or m.group(2) is None:
            continue
        action = flags[key]
        written = action.type(m.group(2)) if action.type else m.group(2)
        assert written == action.default or (not m.group(2) and not action.default), \
            f"{node.label}: {key} defaults to {m.group(2)!r}, the node to {action.default!r}"


# --- ports ------------------------------------------------------------------------------------

@pytest.mark.parametrize("source", [*SOURCES, *FAILOVER_SOURCES])
def test_ports_agree(source: str) -> None:
    nodes = {**SOURCES, **FAILOVER_SOURCES}[source]
    ns = one(nodes, "nameserver")
    ns_port = ns.sample_env.get("REPLOG_PORT") or str(PARSERS["nameserver"]().get_default("port"))
    for node in nodes:
        env = node.sample_env
        if node.role == "nameserver":
            continue
        assert env.get("REPLOG_NS_PORT") == ns_port, \
            f"{node.label}: REPLOG_NS_PORT {env.get('REPLOG_NS_PORT')} != name server {ns_port}"
        http = int(env["REPLOG_HTTP_PORT"])
        assert http in node.ports, f"{node.label}: HTTP port {http} not in its ports {node.ports}"
        pyro = int(env["REPLOG_PYRO_PORT"])
        assert pyro != 0, f"{node.label}: a fixed Pyro5 port, so that it can be declared"
        if source.startswith("k8s"):
            assert pyro in node.ports, f"{node.label}: Pyro5 port {pyro} not declared"
        else:   # Pyro5 stays on the container network: never published on a host
            assert pyro not in node.ports, f"{node.label}: Pyro5 port {pyro} is published"
    if source.startswith("k8s"):
        assert int(ns_port) in ns.ports
    else:
        assert int(ns_port) not in ns.ports, f"{source}: the name server's port is published"


def test_swarm_ports_are_published_in_host_mode() -> None:
    """Service virtual IPs (and so the routing mesh) are not relied on: see stack.yml."""
    for node in ALL_STACK_NODES:
        for port in node.raw.get("ports", []):
            assert isinstance(port, dict) and port.get("mode") == "host", \
                f"{node.label}: publish {port} with mode: host"
        assert node.raw["deploy"]["endpoint_mode"] == "dnsrr", f"{node.label}: dnsrr"


def test_healthchecks_ask_the_nodes_own_http_port() -> None:
    for node in COMPOSE_NODES + ALL_STACK_NODES:
        test = " ".join(node.raw["healthcheck"]["test"])
        if node.role == "nameserver":
            port = node.sample_env.get("REPLOG_PORT")
            assert f"locate_ns('127.0.0.1', {port}" in test, f"{node.label}: {test}"
            # TLS on: the ping needs the name server's own certificate
            assert "configure_client(os.environ.get('REPLOG_TLS_DIR'" in test, node.label
        elif node.source == "stack":    # HTTPS with a token: nodes.probe reads the node's env
            assert node.raw["healthcheck"]["test"] == ["CMD", "python", "-m", "nodes.probe"]
        else:
            assert "/health" in test and "os.environ['REPLOG_HTTP_PORT']" in test, node.label


def test_the_probe_asks_the_nodes_own_https_port_with_its_token() -> None:
    probe = (ROOT / "nodes" / "probe.py").read_text()
    for var in ("REPLOG_HTTP_PORT", "REPLOG_HTTPS_DIR", "REPLOG_PROBE_TOKEN_FILE"):
        assert f'os.environ.get("{var}"' in probe, var
    assert "/health" in probe and "127.0.0.1" in probe


# --- names ------------------------------------------------------------------------------------

def k8s_services(docs: list[dict] = K8S_DOCS) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}


def k8s_pod_labels(node: Node) -> dict:
    return node.raw["spec"]["template"]["metadata"]["labels"]


POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"   # set by the StatefulSet controller


def selected_pods(svc: dict, node: Node) -> list[str]:
    """The pods of the workload that a Service selects: all of them, one of a StatefulSet's
    (by the pod-name label its controller sets), or none."""
    selector = dict(svc["spec"]["selector"])
    labels = k8s_pod_labels(node)
    if node.raw["kind"] == "StatefulSet":
        pods = [k8s_pod_name(node.raw, i) for i in range(node.raw["spec"]["replicas"])]
    else:
        pods = [k8s_pod_name(node.raw)]
    if POD_NAME_LABEL in selector:
        wanted = selector.pop(POD_NAME_LABEL)
        pods = [p for p in pods if p == wanted and node.raw["kind"] == "StatefulSet"]
    return pods if all(labels.get(k) == v for k, v in selector.items()) else []


def service_selects(svc: dict, node: Node) -> bool:
    return bool(selected_pods(svc, node))


def initial_secondary_names(source: str) -> list[str]:
    """The secondaries that are started with the cluster, by their replog names."""
    secs = by_role(SOURCES[source], "secondary")
    if source == "compose":
        return [n.env["REPLOG_NAME"] for n in secs if not n.raw.get("profiles")]
    (sec,) = secs
    if source == "stack":
        template = sec.env["REPLOG_NAME"]
        assert "{{.Task.Slot}}" in template, "each task needs its own name"
        return [template.replace("{{.Task.Slot}}", str(slot))
                for slot in range(1, sec.raw["deploy"]["replicas"] + 1)]
    assert sec.env["REPLOG_NAME"] == "$(POD_NAME)", "a secondary is named after its pod"
    return [f"{sec.service}-{i}" for i in range(sec.raw["spec"]["replicas"])]


@pytest.mark.parametrize("source", SOURCES)
def test_the_master_names_the_secondaries_the_cluster_starts_with(source: str) -> None:
    master = one(SOURCES[source], "master")
    named = (master.env.get("REPLOG_SECONDARIES") or "").split(",")
    assert named == initial_secondary_names(source), \
        f"{master.label}: REPLOG_SECONDARIES={named}, but it starts {initial_secondary_names(source)}"
    assert len(set(named)) == len(named)


@pytest.mark.parametrize("source", [*SOURCES, *FAILOVER_SOURCES])
def test_every_node_finds_the_name_server_by_its_service_name(source: str) -> None:
    nodes = {**SOURCES, **FAILOVER_SOURCES}[source]
    ns = one(nodes, "nameserver")
    if source.startswith("k8s"):
        services = k8s_services(ns.doc["docs"])
        names = [n for n, svc in services.items() if service_selects(svc, ns)]
        assert len(names) == 1, f"one Service in front of the name server, got {names}"
        (ns_name,) = names
        port = int(ns.sample_env["REPLOG_PORT"])
        assert [p["port"] for p in services[ns_name]["spec"]["ports"]] == [port]
    else:
        ns_name = ns.service
    for node in nodes:
        if node.role != "nameserver":
            assert node.env.get("REPLOG_NS_HOST") == ns_name, \
                f"{node.label}: REPLOG_NS_HOST={node.env.get('REPLOG_NS_HOST')}, not {ns_name}"


def test_compose_nodes_advertise_their_service_names() -> None:
    for node in COMPOSE_NODES:
        assert node.env.get("REPLOG_ADVERTISE_HOST") == node.service, node.label
    names = [n.env["REPLOG_NAME"] for n in by_role(COMPOSE_NODES, "secondary")]
    assert len(set(names)) == len(names)


def test_swarm_nodes_advertise_their_task_address() -> None:
    """No name resolves to one task of a replicated service, so every node registers the IP
    its container's hostname resolves to (REPLOG_ADVERTISE_HOST unset, REPLOG_HOST 0.0.0.0)."""
    for node in ALL_STACK_NODES:
        assert "REPLOG_ADVERTISE_HOST" not in node.env, node.label
        assert node.env["REPLOG_HOST"] == "0.0.0.0", node.label


def test_k8s_nodes_advertise_stable_dns_names() -> None:
    services = k8s_services()
    master = one(K8S_NODES, "master")
    host = master.env["REPLOG_ADVERTISE_HOST"]
    assert host in services and service_selects(services[host], master)
    assert {p["targetPort"] for p in services[host]["spec"]["ports"]} >= {"http", "pyro"}

    sec = one(K8S_NODES, "secondary")
    headless = sec.raw["spec"]["serviceName"]
    assert headless in services and service_selects(services[headless], sec)
    assert services[headless]["spec"]["clusterIP"] == "None"
    assert sec.env["REPLOG_ADVERTISE_HOST"] == f"$(POD_NAME).{headless}.$(POD_NAMESPACE).svc"
    assert sec.sample_env["REPLOG_ADVERTISE_HOST"] == \
        f"{sec.service}-0.{headless}.{SAMPLE_NAMESPACE}.svc"


# --- data directories -------------------------------------------------------------------------

@pytest.mark.parametrize("node", ALL_NODES, ids=lambda n: n.label)
def test_data_directories_are_volumes(node: Node) -> None:
    if node.role == "nameserver":
        assert "REPLOG_DATA_DIR" not in node.env
        return
    data = node.sample_env.get("REPLOG_DATA_DIR")
    if node.source == "compose" and not data:
        return   # compose may keep the log in memory
    assert data, f"{node.label}: set REPLOG_DATA_DIR (a durable log)"
    assert data in node.mounts, f"{node.label}: no volume mounted at {data}"
    if node.source == "stack":
        (vol,) = [mount_source(v) for v in node.raw["volumes"] if mount_target(v) == data]
        if "{{.Task.Slot}}" in (node.env.get("REPLOG_NAME") or ""):   # a replicated service
            name = (node.doc["volumes"][vol] or {}).get("name", "")
            assert "{{.Task.Slot}}" in name, "each secondary task needs a volume of its own"
        else:       # one task: a volume no other service mounts
            assert node.raw["deploy"]["replicas"] == 1, node.label
            users = [n.service for n in ALL_STACK_NODES if n.doc is node.doc and vol in
                     {mount_source(v) for v in n.raw.get("volumes", [])}]
            assert users == [node.service], f"{node.label}: volume {vol} is shared by {users}"
    if node.source == "k8s":
        pod = node.raw["spec"]["template"]["spec"]
        (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["mountPath"] == data]
        if node.raw["kind"] == "StatefulSet":
            claims = [c["metadata"]["name"] for c in node.raw["spec"]["volumeClaimTemplates"]]
            assert mount["name"] in claims, f"{node.label}: /data from a volumeClaimTemplate"
        else:
            (vol,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
            claim = vol["persistentVolumeClaim"]["claimName"]
            assert any(d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == claim
                       for d in node.doc["docs"]), f"{node.label}: no PersistentVolumeClaim {claim}"


# --- the three files say the same --------------------------------------------------------------

# Differ by design: how a node is named and addressed on each platform, and per-instance knobs.
# (REPLOG_TLS_DIR: where each platform mounts the certificates; test_every_node_runs_tls checks it.)
PER_PLATFORM = {"REPLOG_NAME", "REPLOG_ADVERTISE_HOST", "REPLOG_SECONDARIES", "REPLOG_TLS_DIR",
                "REPLOG_HTTPS_DIR", "REPLOG_TOKENS", "REPLOG_PROBE_TOKEN_FILE"}


@pytest.mark.parametrize("role", ["nameserver", "master", "secondary"])
def test_stack_and_k8s_give_every_role_the_same_settings(role: str) -> None:
    stack = one(STACK_NODES, role)
    k8s = one(K8S_NODES, role)
    s_keys = set(stack.env) - PER_PLATFORM
    k_keys = set(k8s.env) - PER_PLATFORM - K8S_HELPER_VARS
    assert s_keys == k_keys, f"{role}: only in the stack {s_keys - k_keys}, only in k8s {k_keys - s_keys}"
    for key in s_keys:
        assert stack.sample_env[key] == k8s.sample_env[key], \
            f"{role}: {key} is {stack.sample_env[key]!r} in the stack, {k8s.sample_env[key]!r} in k8s"


@pytest.mark.parametrize("role", ["nameserver", "master", "secondary"])
def test_compose_agrees_with_the_stack_where_both_set_a_value(role: str) -> None:
    stack = one(STACK_NODES, role)
    for node in by_role(COMPOSE_NODES, role):
        per_instance = PER_PLATFORM | ({"REPLOG_HTTP_PORT", "REPLOG_DELAY"}
                                       if role == "secondary" else set())
        for key in (set(node.env) & set(stack.env)) - per_instance:
            if node.sample_env[key] is None:
                continue    # passed through from the shell
            assert node.sample_env[key] == stack.sample_env[key], \
                f"{node.label}: {key}={node.sample_env[key]!r}, the stack {stack.sample_env[key]!r}"


def test_every_service_runs_the_same_image() -> None:
    assert {n.raw["image"] for n in COMPOSE_NODES} == {"${REPLOG_IMAGE:-replog:latest}"}
    assert {n.raw["image"] for n in ALL_STACK_NODES} == {"${REPLOG_IMAGE:-replog:latest}"}
    for directory, docs in K8S_DIRS.items():
        images = {d["spec"]["template"]["spec"]["containers"][0]["image"]
                  for d in docs if d["kind"] in ("Deployment", "StatefulSet")}
        assert images == {"replog:latest"}, directory
        kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
        assert kustomization["images"] == [{"name": "replog", "newTag": "latest"}], directory


def test_replica_counts() -> None:
    stack = {n.role: n.raw["deploy"]["replicas"] for n in STACK_NODES}
    assert stack["master"] == 1 and stack["nameserver"] == 1
    master = one(K8S_NODES, "master").raw
    assert master["kind"] == "Deployment" and master["spec"]["replicas"] == 1
    assert master["spec"]["strategy"]["type"] == "Recreate"
    assert one(K8S_NODES, "secondary").raw["kind"] == "StatefulSet"


# --- Kubernetes: schema and wiring -------------------------------------------------------------

# The namespace each Kustomize directory deploys into (they can run side by side).
NAMESPACES = {K8S: SAMPLE_NAMESPACE, K8S_FAILOVER: "replog-failover"}


@pytest.mark.parametrize("directory", K8S_DIRS, ids=lambda d: d.name)
def test_kustomization_lists_every_manifest(directory: Path) -> None:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    assert set(kustomization) == {"apiVersion", "kind", "namespace", "resources", "images"}
    assert kustomization["namespace"] == NAMESPACES[directory]
    files = {p.name for p in directory.glob("*.yaml")} | {p.name for p in directory.glob("*.yml")}
    assert set(kustomization["resources"]) == files - {"kustomization.yaml"}
    (ns,) = [d for d in K8S_DIRS[directory] if d["kind"] == "Namespace"]
    assert ns["metadata"]["name"] == kustomization["namespace"]


@pytest.mark.parametrize("doc", K8S_DOCS + K8S_FO_DOCS,
                         ids=lambda d: f"{'k8s-failover/' if d in K8S_FO_DOCS else ''}"
                                       f"{d['_file']}:{d['kind']}/{d['metadata']['name']}")
def test_manifest_is_valid_against_the_kubernetes_schema(doc: dict) -> None:
    import kubernetes_validate
    resource = {k: v for k, v in doc.items() if k != "_file"}
    try:
        kubernetes_validate.validate(resource, K8S_SCHEMA_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        pytest.fail(f"{doc['_file']}: {doc['kind']}/{doc['metadata']['name']} is not valid "
                    f"Kubernetes {K8S_SCHEMA_VERSION}: {e.message} at {list(e.path)}")
    assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "replog"
    assert "namespace" not in doc["metadata"], "the kustomization sets the namespace"


def test_the_schema_check_catches_a_misspelt_field_and_a_wrong_type() -> None:
    import kubernetes_validate
    sts = copy.deepcopy(one(K8S_NODES, "secondary").raw)
    sts.pop("_file")
    kubernetes_validate.validate(sts, K8S_SCHEMA_VERSION, strict=True)
    typo = copy.deepcopy(sts)
    typo["spec"]["replica"] = typo["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, K8S_SCHEMA_VERSION, strict=True)
    wrong = copy.deepcopy(sts)
    wrong["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "5001"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong, K8S_SCHEMA_VERSION, strict=True)


@pytest.mark.parametrize("node", ALL_K8S_NODES, ids=lambda n: n.label)
def test_k8s_pods_are_probed_requested_and_run_as_the_images_user(node: Node) -> None:
    pod = node.raw["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("readinessProbe", "livenessProbe"):
        spec = container[probe]
        if node.role == "nameserver":   # no HTTP: a Pyro5 ping of its port, over TLS
            command = " ".join(spec["exec"]["command"])
            assert f"locate_ns('127.0.0.1', {node.sample_env['REPLOG_PORT']}" in command
            assert "configure_client(os.environ.get('REPLOG_TLS_DIR'" in command, node.label
        else:   # HTTPS with the probe token (an httpGet probe would need it in the manifest)
            assert spec["exec"]["command"] == ["python", "-m", "nodes.probe"], node.label
            assert named["http"] == int(node.sample_env["REPLOG_HTTP_PORT"])
    if node.role != "nameserver":
        assert named["pyro"] == int(node.sample_env["REPLOG_PYRO_PORT"])
    assert {"cpu", "memory"} <= set(container["resources"]["requests"]), node.label
    uid = int(re.search(r"--uid (\d+)", (ROOT / "Dockerfile").read_text()).group(1))
    assert pod["securityContext"]["runAsUser"] == uid, f"{node.label}: the image's user"
    if node.mounts:
        assert pod["securityContext"]["fsGroup"] == uid, f"{node.label}: a writable volume"


@pytest.mark.parametrize("directory", K8S_DIRS, ids=lambda d: d.name)
def test_k8s_services_reach_declared_ports(directory: Path) -> None:
    nodes = [n for n in ALL_K8S_NODES if n.doc["docs"] is K8S_DIRS[directory]]
    for name, svc in k8s_services(K8S_DIRS[directory]).items():
        targets = [n for n in nodes if service_selects(svc, n)]
        assert len(targets) == 1, f"Service {name} selects {[n.label for n in targets]}"
        (node,) = targets
        container = node.raw["spec"]["template"]["spec"]["containers"][0]
        named = {p["name"]: p["containerPort"] for p in container["ports"]}
        for port in svc["spec"]["ports"]:
            target = port["targetPort"]
            assert target in named or target in named.values(), f"Service {name}: {port}"
            assert named.get(target, target) == port["port"], \
                f"Service {name}: port {port['port']} should equal the container's, as documented"


# --- TLS: every node's node plane is mutual TLS, with its own certificate ----------------------

TLS_FILES = ("ca.crt", "node.crt", "node.key")
# The most secondaries each file mounts certificates for (docs/deploy.md says so).
MAX_SECONDARIES = {"stack": 5, "k8s": 5}


def image_uid() -> int:
    return int(re.search(r"--uid (\d+)", (ROOT / "Dockerfile").read_text()).group(1))


def tls_instances(node: Node) -> list[tuple[str, str]]:
    """(certificate name, REPLOG_TLS_DIR) of every instance the file can run of this node:
    a secondary service/StatefulSet up to its documented maximum scale."""
    env = node.env
    tls_dir = env.get("REPLOG_TLS_DIR")
    assert tls_dir, f"{node.label}: REPLOG_TLS_DIR is not set (the node plane would be plain)"
    if node.role != "secondary":
        return [(node.role, node.sample_env["REPLOG_TLS_DIR"])]
    if node.source == "compose" or "{{.Task.Slot}}" not in env["REPLOG_NAME"] and \
            node.source == "stack":     # one service per node (stack-failover.yml)
        return [(node.sample_env["REPLOG_NAME"], node.sample_env["REPLOG_TLS_DIR"])]
    out = []
    # a failover StatefulSet's pods are the voters, exactly: all of them have certificates
    count = node.raw["spec"]["replicas"] if node.variant == "failover" else \
        MAX_SECONDARIES[node.source]
    for i in range(count):
        if node.source == "stack":
            slot = str(i + 1)
            name = interpolate(env["REPLOG_NAME"]).replace("{{.Task.Slot}}", slot)
            out.append((name, interpolate(tls_dir).replace("{{.Task.Slot}}", slot)))
        else:
            pod = f"{node.raw['metadata']['name']}-{i}"
            resolve = lambda v: v.replace("$(POD_NAME)", pod)   # noqa: E731
            assert resolve(env["REPLOG_NAME"]) == pod
            out.append((pod, resolve(tls_dir)))
    return out


@pytest.mark.parametrize("node", ALL_NODES, ids=lambda n: n.label)
def test_every_node_runs_tls_with_its_own_certificate(node: Node) -> None:
    """REPLOG_TLS_DIR is set, and in every instance it names a folder where the platform
    mounts ca.crt, node.crt and node.key made for that very node name (nodes.certs makes
    DIR/NAME/...); the key is readable by the image's user only."""
    uid = image_uid()
    for name, tls_dir in tls_instances(node):
        where = f"{node.label} ({name})"
        if node.source == "compose":
            (certs,) = [v for v in node.raw["volumes"] if tls_dir.startswith(mount_target(v) + "/")]
            assert tls_dir == f"{mount_target(certs)}/{name}", where
            maker = next(s for s in COMPOSE_DOC["services"].values()
                         if s["command"][2:3] == ["nodes.certs"])
            assert mount_source(certs) in {mount_source(v) for v in maker["volumes"]}, where
            assert name in maker["environment"]["REPLOG_CERTS_NAMES"].split(","), where
        elif node.source == "stack":
            targets = {}
            for ref in node.raw["secrets"]:
                target = ref["target"]
                targets[target if target.startswith("/") else f"/run/secrets/{target}"] = ref
            for f in TLS_FILES:
                ref = targets.get(f"{tls_dir}/{f}")
                assert ref, f"{where}: no secret mounted at {tls_dir}/{f}"
                source = node.doc["secrets"][ref["source"]]["file"]
                assert source.endswith(f"/{name}/{f}"), f"{where}: {tls_dir}/{f} is {source}"
                if f == "node.key":
                    assert (int(ref["uid"]), ref["mode"]) == (uid, 0o400), where
        else:
            pod = node.raw["spec"]["template"]["spec"]
            mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
            volumes = {v["name"]: v for v in pod["volumes"]}
            (vname,) = [n for n, m in mounts.items()
                        if tls_dir == m["mountPath"] or tls_dir.startswith(m["mountPath"] + "/")]
            assert mounts[vname]["readOnly"], where
            rel = tls_dir[len(mounts[vname]["mountPath"]):].strip("/")
            vol = volumes[vname]
            if "secret" in vol:      # the whole Secret: its keys are the files' names
                assert rel == "" and vol["secret"]["secretName"] == f"replog-tls-{name}", where
                assert "items" not in vol["secret"], where
            else:
                (src,) = [s["secret"] for s in vol["projected"]["sources"]
                          if s["secret"]["name"] == f"replog-tls-{name}"]
                assert {i["key"]: i["path"] for i in src["items"]} == \
                    {f: f"{rel}/{f}" for f in TLS_FILES}, where
            assert pod["securityContext"]["fsGroup"] == uid, f"{where}: the key for its group"


TOKEN_SECRETS = {"tokens": "tokens.json", "probe-token": "probe.token"}


@pytest.mark.parametrize("doc", [STACK_DOC, STACK_FO_DOC], ids=["stack", "stack-failover"])
def test_stack_secrets_come_from_one_certificates_folder(doc: dict) -> None:
    """Every secret the stack defines is a file of nodes.certs' output folder (or, for the
    tokens, of deploy/swarm/make-tokens.sh's), and is used."""
    used = {ref["source"] for n in ALL_STACK_NODES if n.doc is doc
            for ref in n.raw.get("secrets", [])}
    assert used == set(doc["secrets"])
    for key, spec in doc["secrets"].items():
        if key in TOKEN_SECRETS:
            assert spec["file"] == "${REPLOG_TOKENS_DIR:-./tokens}/" + TOKEN_SECRETS[key]
            continue
        assert re.fullmatch(r"\$\{REPLOG_CERTS_DIR:-\./certs\}/[a-z0-9-]+/(ca\.crt|node\.crt|node\.key)",
                            spec["file"]), (key, spec)


# --- the client plane: HTTPS and tokens on Swarm and Kubernetes (docs/security.md) -----------

def mounted_files(node: Node) -> dict[str, str]:
    """Path in the container -> where it comes from (a stack secret or a k8s Secret's key)."""
    out = {}
    if node.source == "stack":
        for ref in node.raw.get("secrets", []):
            target = ref["target"]
            out[target if target.startswith("/") else f"/run/secrets/{target}"] = ref["source"]
        return out
    pod = node.raw["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    for m in pod["containers"][0]["volumeMounts"]:
        vol = volumes.get(m["name"], {})      # (a StatefulSet's claim templates: not here)
        if "secret" in vol and "items" not in vol["secret"]:
            out[m["mountPath"] + "/*"] = vol["secret"]["secretName"]
    return out


@pytest.mark.parametrize("node", [n for n in ALL_STACK_NODES + ALL_K8S_NODES
                                  if n.role != "nameserver"], ids=lambda n: n.label)
def test_swarm_and_k8s_serve_https_with_tokens_by_default(node: Node) -> None:
    env = node.env
    # HTTPS with the node's own certificate: the folder of its node plane's TLS
    assert env.get("REPLOG_HTTPS_DIR") == env.get("REPLOG_TLS_DIR"), node.label
    assert not env.get("REPLOG_PLAIN_HTTP_PORT"), f"{node.label}: no plain HTTP port"
    tokens = env.get("REPLOG_TOKENS")
    probe = env.get("REPLOG_PROBE_TOKEN_FILE")
    assert tokens and probe, f"{node.label}: REPLOG_TOKENS and REPLOG_PROBE_TOKEN_FILE"
    files = mounted_files(node)
    if node.source == "stack":
        assert files.get(tokens) == "tokens" and files.get(probe) == "probe-token", files
    else:
        assert tokens.startswith("/tokens/") and probe.startswith("/tokens/")
        assert files.get("/tokens/*") == "replog-tokens", files


def test_only_the_client_api_is_published() -> None:
    """Swarm publishes each node's HTTPS port and nothing else; Kubernetes exposes no Service
    outside the cluster (clients come through kubectl port-forward or an Ingress of yours),
    except that the failover variant publishes each voter's HTTPS port, and only that, as a
    NodePort (a 307 must name a URL a client outside reaches)."""
    for node in ALL_STACK_NODES:
        published = {container_port(p) for p in node.raw.get("ports", [])}
        http = {int(node.sample_env["REPLOG_HTTP_PORT"])} if node.role != "nameserver" else set()
        assert published == http, f"{node.label} publishes {published}"
    for name, svc in k8s_services().items():
        assert svc["spec"].get("type", "ClusterIP") == "ClusterIP", f"Service {name}"
    for name, svc in k8s_services(K8S_FO_DOCS).items():
        if svc["spec"].get("type", "ClusterIP") == "ClusterIP":
            continue
        assert svc["spec"]["type"] == "NodePort", f"Service {name}"
        assert [p["targetPort"] for p in svc["spec"]["ports"]] == ["http"], f"Service {name}"


def test_the_kubernetes_blocks_make_the_secrets_the_manifests_mount() -> None:
    """docs/deploy.md's kubectl blocks cannot run here (no cluster; marked not-run): the
    Secrets they create, and their keys, are the ones the manifests mount."""
    from tests import docblocks
    tls = docblocks.block("k8s-tls").text
    loop = re.search(r"for n in ([^;]+); do", tls).group(1).split()
    made = {f"replog-tls-{n}" for n in loop}
    assert "--from-file=certs/$n/" in tls
    tokens = docblocks.block("k8s-tokens").text
    assert "create secret generic replog-tokens --from-file=tokens.json --from-file=probe.token" \
        in tokens
    made.add("replog-tokens")
    mounted = set()
    for doc in k8s_resources():
        for found in re.findall(r"(?:secretName|name): (replog-(?:tls-[\w-]+|tokens))\b",
                                yaml.safe_dump(doc)):
            mounted.add(found)
    assert mounted == made, (sorted(mounted), sorted(made))
    keys = {"tokens.json", "probe.token"}
    assert all(k in yaml.safe_dump(k8s_resources()) for k in keys)


# --- the failover variants: every voter may be master ------------------------------------------
# deploy/swarm/stack-failover.yml and deploy/k8s-failover/ run three voters (REPLOG_FAILOVER,
# REPLOG_CLUSTER), each reachable by clients outside at a URL of its own (its
# REPLOG_ADVERTISE_URL, where the other voters' 307s point).

def voters(source: str) -> list[Node]:
    return [n for n in FAILOVER_SOURCES[source] if n.role != "nameserver"]


def instances(node: Node) -> list[tuple[str, dict[str, str | None]]]:
    """(replog name, resolved environment) of every node a voter service/StatefulSet runs.
    The master entry point is always named master (nodes/master_node.py)."""
    if node.source == "k8s":
        assert node.raw["kind"] == "StatefulSet", node.label
        return [(k8s_pod_name(node.raw, i), k8s_pod_env(node.raw, i))
                for i in range(node.raw["spec"]["replicas"])]
    assert "{{.Task.Slot}}" not in str(node.env), f"{node.label}: one task, one fixed name"
    return [(node.sample_env.get("REPLOG_NAME") or "master", node.sample_env)]


def started_voters(source: str) -> list[str]:
    return [name for n in voters(source) for name, _ in instances(n)]


@pytest.mark.parametrize("source", FAILOVER_SOURCES)
def test_every_voter_runs_failover_with_the_cluster_of_exactly_the_voters(
        source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What nodes/failover/run.py requires of each node, and what makes a cluster: every voter
    has REPLOG_FAILOVER on and the same REPLOG_CLUSTER, which names exactly the nodes the file
    starts, itself included; a timing the election accepts; names a certificate can carry; the
    node named master (if any) is the master entry point, every other one names itself; the
    name server lets any voter's certificate register replog.master."""
    from nodes.certs import NAME_RE
    from nodes.core import election as el
    names = started_voters(source)
    assert len(names) >= 3 and len(names) % 2 == 1, f"{source}: an odd number of voters {names}"
    assert len(set(names)) == len(names), names
    for node in voters(source):
        assert "REPLOG_SECONDARIES" not in node.env, f"{node.label}: REPLOG_CLUSTER says it"
        for name, env in instances(node):
            where = f"{node.label} ({name})"
            assert NAME_RE.match(name), where
            assert (node.role == "master") == (name == "master"), where
            args = parse_with_env(node.role, {k: v for k, v in env.items()
                                              if k.startswith(ENV_PREFIX)}, monkeypatch)
            assert args.failover, f"{where}: REPLOG_FAILOVER is off"
            assert args.cluster == names, f"{where}: REPLOG_CLUSTER={args.cluster}, voters {names}"
            if node.role == "secondary":
                assert args.name == name, where
            el.Timing(args.election_min, args.election_max, lease=args.lease,
                      heartbeat=min(args.heartbeat_interval, args.lease / 4)).check()
            assert args.data_dir, f"{where}: a voter keeps its vote on disk"
    ns = one(FAILOVER_SOURCES[source], "nameserver")
    env = {k: v for k, v in ns.sample_env.items() if k.startswith(ENV_PREFIX)}
    assert parse_with_env("nameserver", env, monkeypatch).failover, \
        f"{ns.label}: with TLS, only a name server started with --failover lets any voter " \
        "register replog.master"


def test_failover_stack_advertises_each_voters_published_port() -> None:
    """Each voter publishes its HTTPS port on a setting of its own (compose's: MASTER_PORT,
    SECONDARY1_PORT, ...), and advertises https://REPLOG_PUBLIC_HOST:<that setting>."""
    defaults = []
    for node in voters("stack-failover"):
        (port,) = node.raw["ports"]
        assert port["target"] == int(node.sample_env["REPLOG_HTTP_PORT"]), node.label
        published = str(port["published"])
        m = _INTERPOLATION.fullmatch(published)
        assert m and m.group(2), f"{node.label}: publish on a setting with a default: {published}"
        defaults.append(int(m.group(2)))
        assert node.env["REPLOG_ADVERTISE_URL"] == \
            "https://${REPLOG_PUBLIC_HOST:-localhost}:" + published, node.label
        compose = next(n for n in COMPOSE_NODES if n.service == node.service)
        assert compose.raw["ports"] == [f"${{REPLOG_BIND:-127.0.0.1}}:{published}:"
                                        f"{compose.sample_env['REPLOG_HTTP_PORT']}"], \
            f"{node.label}: compose publishes {compose.service} on another setting"
        assert compose.env["REPLOG_ADVERTISE_URL"].endswith(":" + published), compose.label
    assert len(set(defaults)) == len(defaults), f"two voters on one host port: {defaults}"


def test_failover_stack_pins_no_master_and_restarts_every_voter() -> None:
    """Any voter may be master: none is placed as "the master"; each is one task that Swarm
    restarts whatever ended it, on its own volume, mounting only its own secrets."""
    for node in STACK_FO_NODES:
        deploy = node.raw["deploy"]
        assert deploy["replicas"] == 1, node.label
        assert deploy["restart_policy"]["condition"] == "any", node.label
        assert "placement" not in deploy, f"{node.label}: no placement pins a role"
        own = node.sample_env.get("REPLOG_NAME") or node.service
        for ref in node.raw["secrets"]:
            assert ref["source"] in TOKEN_SECRETS or ref["source"].startswith(own + "-"), \
                f"{node.label} mounts {ref['source']}, not its own"


# Differ by design between voters of one file, or between files: each node's name, address,
# port and certificate, and how failover is switched on (compose: opt-in, REPLOG_FAILOVER=0).
PER_VOTER = PER_PLATFORM | {"REPLOG_HTTP_PORT", "REPLOG_ADVERTISE_URL", "REPLOG_CLUSTER"}


def test_failover_stack_agrees_with_stack_yml_and_compose() -> None:
    """The same settings as stack.yml's node of the same role, and as compose's node of the same
    name (whose failover cluster is the same), wherever both set a value."""
    for node in STACK_FO_NODES:
        fixed = one(STACK_NODES, node.role)
        for key in (set(node.env) & set(fixed.env)) - PER_VOTER:
            assert node.sample_env[key] == fixed.sample_env[key], \
                f"{node.label}: {key}={node.sample_env[key]!r}, stack.yml {fixed.sample_env[key]!r}"
        compose = next(n for n in COMPOSE_NODES if n.service == node.service)
        for key in (set(node.env) & set(compose.env)) - PER_PLATFORM - {
                "REPLOG_ADVERTISE_URL", "REPLOG_FAILOVER"}:
            if compose.sample_env[key] is None:
                continue    # passed through from the shell
            assert node.sample_env[key] == compose.sample_env[key], \
                f"{node.label}: {key}={node.sample_env[key]!r}, compose {compose.sample_env[key]!r}"


def test_failover_stack_and_k8s_give_every_voter_the_same_settings() -> None:
    (k8s,) = voters("k8s-failover")
    k_keys = set(k8s.env) - PER_VOTER - K8S_HELPER_VARS
    for node in voters("stack-failover"):
        s_keys = set(node.env) - PER_VOTER
        assert s_keys == k_keys, \
            f"{node.label}: only in the stack {s_keys - k_keys}, only in k8s {k_keys - s_keys}"
        for key in s_keys:
            assert node.sample_env[key] == k8s.sample_env[key], \
                f"{key} is {node.sample_env[key]!r} in the stack, {k8s.sample_env[key]!r} in k8s"


def test_k8s_failover_advertises_each_pods_node_port() -> None:
    """One NodePort Service per pod, selecting it by the label its StatefulSet sets, on the
    HTTPS port; the pod advertises https://<public host>:<that nodePort>."""
    (sts,) = voters("k8s-failover")
    host = SAMPLE_CONFIG[("replog-public", "host")]
    services = k8s_services(K8S_FO_DOCS)
    seen = []
    for i, (pod, env) in enumerate(instances(sts)):
        ports = [p for svc in services.values() if svc["spec"].get("type") == "NodePort"
                 and selected_pods(svc, sts) == [pod] for p in svc["spec"]["ports"]]
        assert len(ports) == 1, f"{pod}: {len(ports)} NodePorts"
        (port,) = ports
        assert port["targetPort"] == "http" and port["port"] == int(env["REPLOG_HTTP_PORT"])
        assert 30000 <= port["nodePort"] <= 32767, port
        assert env["REPLOG_ADVERTISE_URL"] == f"https://{host}:{port['nodePort']}", pod
        seen.append(port["nodePort"])
    assert len(set(seen)) == len(seen), seen
    for name, svc in services.items():     # every NodePort Service is one pod's
        if svc["spec"].get("type") == "NodePort":
            assert len(selected_pods(svc, sts)) == 1, f"Service {name}"


def test_k8s_failover_pods_have_stable_addresses_and_keep_a_majority() -> None:
    (sts,) = voters("k8s-failover")
    services = k8s_services(K8S_FO_DOCS)
    headless = sts.raw["spec"]["serviceName"]
    assert services[headless]["spec"]["clusterIP"] == "None"
    assert service_selects(services[headless], sts)
    assert sts.env["REPLOG_ADVERTISE_HOST"] == f"$(POD_NAME).{headless}.$(POD_NAMESPACE).svc"
    assert sts.env["REPLOG_NAME"] == "$(POD_NAME)"
    # a drain takes one voter at a time: two of three elect a master and take writes
    (pdb,) = [d for d in K8S_FO_DOCS if d["kind"] == "PodDisruptionBudget"]
    assert pdb["spec"]["selector"]["matchLabels"] == sts.raw["spec"]["selector"]["matchLabels"]
    replicas = sts.raw["spec"]["replicas"]
    assert replicas - pdb["spec"]["maxUnavailable"] >= replicas // 2 + 1
    assert [c["metadata"]["name"] for c in sts.raw["spec"]["volumeClaimTemplates"]] == ["data"]


def test_k8s_failover_shares_the_name_server_and_policy_of_deploy_k8s() -> None:
    """The same name server as deploy/k8s/ with REPLOG_FAILOVER on; the same network policy."""
    fixed, fo = one(K8S_NODES, "nameserver"), one(K8S_FO_NODES, "nameserver")
    assert fo.env == {**fixed.env, "REPLOG_FAILOVER": "1"}
    strip = lambda d: {k: v for k, v in d.items() if k != "_file"}   # noqa: E731
    pod = lambda n: {k: v for k, v in n.raw["spec"]["template"]["spec"].items()  # noqa: E731
                     if k != "containers"}
    assert pod(fo) == pod(fixed)
    policy = lambda docs: [strip(d) for d in docs if d["kind"] == "NetworkPolicy"]  # noqa: E731
    assert policy(K8S_FO_DOCS) == policy(K8S_DOCS)


# --- docs/deploy.md's k8s-failover block, with kubectl and curl standing in ---------------------

STANDIN = """#!/usr/bin/env python3
import json, os, sys
with open(os.environ["STANDIN_LOG"], "a") as f:
    f.write(json.dumps([os.path.basename(sys.argv[0]), *sys.argv[1:]]) + "\\n")
"""


def secrets_read(docs: list[dict]) -> tuple[dict[str, set[str]], set[tuple[str, str]]]:
    """{Secret: the keys the workloads read of it}, {(ConfigMap, key)} they read."""
    secrets: dict[str, set[str]] = {}
    configs = set()
    for doc in docs:
        if doc["kind"] not in ("Deployment", "StatefulSet"):
            continue
        pod = doc["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        replicas = doc["spec"]["replicas"] if doc["kind"] == "StatefulSet" else 1
        values = {v for i in range(replicas) for v in k8s_pod_env(doc, i).values() if v}
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        for vol in pod["volumes"]:
            if "secret" in vol:      # the whole Secret: the files the node's settings name
                where = mounts[vol["name"]]
                keys = {v[len(where) + 1:] for v in values if v.startswith(where + "/")}
                if where in values:  # a TLS folder
                    keys |= set(TLS_FILES)
                secrets.setdefault(vol["secret"]["secretName"], set()).update(keys)
            for source in vol.get("projected", {}).get("sources", []):
                secret = source["secret"]
                secrets.setdefault(secret["name"], set()).update(i["key"] for i in secret["items"])
        for item in container["env"]:
            ref = item.get("valueFrom", {}).get("configMapKeyRef")
            if ref:
                configs.add((ref["name"], ref["key"]))
    return secrets, configs


def test_k8s_failover_block_with_kubectl_and_curl_standing_in(tmp_path: Path) -> None:
    """docs/deploy.md's k8s-failover block, as written, in an empty folder (deploy/ linked into
    it), with `kubectl` and `curl` standing in: no cluster can run here. The certificates and
    tokens are made for real; each kubectl and curl call is recorded and checked against
    deploy/k8s-failover: the namespace, the Secrets and the ConfigMap it reads (with the keys
    it reads), the directory applied, a pod that exists; the certificates name every pod and
    the public host; every NodePort is asked at that host with the CA and a token of the
    token file, and a write follows its 307 with the token (--location-trusted)."""
    import json
    import os
    import urllib.parse

    from cryptography import x509

    from nodes import tokens
    from tests import docblocks
    from tests.docblocks import Shell, sh_commands

    bin_dir, work = tmp_path / "bin", tmp_path / "work"
    bin_dir.mkdir()
    work.mkdir()
    for tool in ("kubectl", "curl"):
        (bin_dir / tool).write_text(STANDIN)
        (bin_dir / tool).chmod(0o755)
    (work / "deploy").symlink_to(ROOT / "deploy")
    log = tmp_path / "calls.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.update(PATH=f"{bin_dir}:{os.environ['PATH']}", STANDIN_LOG=str(log))
    shell = Shell(work, env)
    try:
        for command in sh_commands(docblocks.block("k8s-failover")):
            shell.check(command, timeout=120)
        host = shell.check("echo $H").strip()
    finally:
        shell.close()
    calls = [json.loads(line) for line in log.read_text().splitlines()]

    namespace = NAMESPACES[K8S_FAILOVER]
    made: dict[str, set[str]] = {}
    configs: dict[tuple[str, str], str] = {}
    applied, deleted, done = [], [], []
    for tool, *args in calls:
        if tool != "kubectl":
            continue
        ns = None
        if args[:1] == ["-n"]:
            ns, args = args[1], args[2:]
        done.append(args[:2])
        if args[:2] == ["create", "namespace"]:
            assert args[2:] == [namespace], args
            continue
        assert ns == namespace or (ns is None and args[:2] == ["apply", "-k"]), \
            f"kubectl {args} in namespace {ns}, not {namespace}"     # (-k: the kustomization's)
        if args[:3] == ["create", "secret", "generic"]:
            keys = set()
            for arg in args[4:]:
                assert arg.startswith("--from-file="), arg
                key, _, path = arg[len("--from-file="):].rpartition("=")
                found = work / path
                if found.is_dir():
                    keys |= {f.name for f in found.iterdir() if f.is_file()}
                else:
                    assert found.is_file(), f"{arg}: no such file"
                    keys.add(key or found.name)
            made[args[3]] = keys
        elif args[:2] == ["create", "configmap"]:
            for arg in args[3:]:
                assert arg.startswith("--from-literal="), arg
                key, value = arg[len("--from-literal="):].split("=", 1)
                configs[(args[2], key)] = value
        elif args[:2] == ["apply", "-k"]:
            applied.append((work / args[2]).resolve())
        elif args[:2] == ["delete", "pod"]:
            deleted.append(args[2])
        else:
            assert args[:2] == ["get", "pods"], f"kubectl {args}: not checked here"
    assert done.index(["apply", "-k"]) > max(i for i, d in enumerate(done) if d[0] == "create"), \
        "the Secrets and the ConfigMap come before the apply"
    assert applied == [K8S_FAILOVER.resolve()]
    read, config_keys = secrets_read(K8S_FO_DOCS)
    assert set(made) == set(read), (sorted(made), sorted(read))
    for name, keys in read.items():
        assert keys <= made[name], f"Secret {name} lacks {keys - made[name]}"
    assert config_keys <= set(configs), (config_keys, configs)
    assert configs[("replog-public", "host")] == host
    assert deleted and set(deleted) <= set(started_voters("k8s-failover")), deleted

    for name in started_voters("k8s-failover"):     # HTTPS at the public host checks out
        cert = x509.load_pem_x509_certificate((work / "certs" / name / "node.crt").read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert host in sans.get_values_for_type(x509.DNSName), name

    node_ports = {p["nodePort"] for svc in k8s_services(K8S_FO_DOCS).values()
                  if svc["spec"].get("type") == "NodePort" for p in svc["spec"]["ports"]}
    stored = {t.digest: t.roles for t in tokens.read_file(work / "tokens.json")}
    asked = set()
    for tool, *args in calls:
        if tool != "curl":
            continue
        (url,) = [a for a in args if a.startswith("https://")]
        parts = urllib.parse.urlsplit(url)
        assert parts.hostname == host and parts.port in node_ports, url
        asked.add(parts.port)
        assert (work / args[args.index("--cacert") + 1]).resolve() == \
            (work / "certs" / "ca.crt").resolve(), args
        (auth,) = [a for a in args if a.startswith("Authorization: Bearer ")]
        roles = stored.get(tokens.digest(auth.split()[-1]))
        assert roles and "read" in roles, "a token of the token file"
        if "-d" in args:
            assert "append" in roles and "--location-trusted" in args, args
    assert asked == node_ports
