"""The deployment files cannot drift from the nodes, nor from each other.

docker-compose.yml (one host), deploy/swarm/stack.yml (Docker Swarm) and deploy/k8s/
(Kubernetes) all start the same three entry points with REPLOG_* environment variables. This
reads the three, and checks them against what the nodes actually read (the argparse parsers
of nameserver, nodes.master_node and nodes.secondary_node, whose every flag --x-y falls back to
REPLOG_X_Y): every variable is a real flag with a value the node accepts; the ports, the
names (name server, secondaries) and the data directories agree; the settings are the same
in the three. Every Kubernetes manifest is validated against the API schema of a pinned
Kubernetes version with kubernetes-validate. Nothing is run: this takes well under a second.
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
K8S_HELPER_VARS = {"POD_NAME", "POD_NAMESPACE"}
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

    @property
    def label(self) -> str:
        return f"{self.source}:{self.service}"


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


def compose_like(path: Path, source: str) -> tuple[dict, list[Node]]:
    doc = yaml.safe_load(path.read_text())
    nodes = []
    for name, svc in doc["services"].items():
        where = f"{source}:{name}"
        if svc["command"][:2] == ["python", "-m"] and svc["command"][2] in TOOLS:
            continue
        env = env_mapping(svc.get("environment", {}), where)
        node = Node(source, name, role_of(svc["command"], where), env,
                    {container_port(p) for p in svc.get("ports", [])},
                    {mount_target(v) for v in svc.get("volumes", [])}, raw=svc)
        # Swarm templates: the sample is the task in slot 1.
        node.sample_env = {k: None if v is None else
                           interpolate(v).replace("{{.Task.Slot}}", "1") for k, v in env.items()}
        nodes.append(node)
    return doc, nodes


def k8s_resources() -> list[dict]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs = []
    for name in kustomization["resources"]:
        for doc in yaml.safe_load_all((K8S / name).read_text()):
            if doc:
                doc["_file"] = name
                docs.append(doc)
    return docs


def k8s_nodes(docs: list[dict]) -> list[Node]:
    nodes = []
    for doc in docs:
        if doc["kind"] not in ("Deployment", "StatefulSet"):
            continue
        pod = doc["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        where = f"k8s:{doc['metadata']['name']}"
        env: dict[str, str | None] = {}
        sample: dict[str, str | None] = {}
        pod_name = (f"{doc['metadata']['name']}-0" if doc["kind"] == "StatefulSet"
                    else f"{doc['metadata']['name']}-abc12")
        for item in container.get("env", []):
            name = item["name"]
            assert name not in env, f"{where}: {name} set twice"
            if "valueFrom" in item:
                path = item["valueFrom"]["fieldRef"]["fieldPath"]
                env[name] = f"<{path}>"
                sample[name] = {"metadata.name": pod_name,
                                "metadata.namespace": SAMPLE_NAMESPACE}[path]
                continue
            value = str(item["value"])
            env[name] = value

            def ref(m: re.Match) -> str:
                assert m.group(1) in sample, \
                    f"{where}: {name} refers to $({m.group(1)}), not defined before it"
                return sample[m.group(1)] or ""
            sample[name] = re.sub(r"\$\(([A-Za-z0-9_]+)\)", ref, value)
        node = Node("k8s", doc["metadata"]["name"], role_of(container["command"], where), env,
                    {p["containerPort"] for p in container.get("ports", [])},
                    {m["mountPath"] for m in container.get("volumeMounts", [])},
                    sample_env=sample, raw=doc)
        nodes.append(node)
    return nodes


COMPOSE_DOC, COMPOSE_NODES = compose_like(COMPOSE, "compose")
STACK_DOC, STACK_NODES = compose_like(STACK, "stack")
K8S_DOCS = k8s_resources()
K8S_NODES = k8s_nodes(K8S_DOCS)
ALL_NODES = COMPOSE_NODES + STACK_NODES + K8S_NODES
SOURCES = {"compose": COMPOSE_NODES, "stack": STACK_NODES, "k8s": K8S_NODES}


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


@pytest.mark.parametrize("node", STACK_NODES, ids=lambda n: n.label)
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

@pytest.mark.parametrize("source", SOURCES)
def test_ports_agree(source: str) -> None:
    nodes = SOURCES[source]
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
        if source == "k8s":
            assert pyro in node.ports, f"{node.label}: Pyro5 port {pyro} not declared"
        else:   # Pyro5 stays on the container network: never published on a host
            assert pyro not in node.ports, f"{node.label}: Pyro5 port {pyro} is published"
    if source == "k8s":
        assert int(ns_port) in ns.ports
    else:
        assert int(ns_port) not in ns.ports, f"{source}: the name server's port is published"


def test_swarm_ports_are_published_in_host_mode() -> None:
    """Service virtual IPs (and so the routing mesh) are not relied on: see stack.yml."""
    for node in STACK_NODES:
        for port in node.raw.get("ports", []):
            assert isinstance(port, dict) and port.get("mode") == "host", \
                f"{node.label}: publish {port} with mode: host"
        assert node.raw["deploy"]["endpoint_mode"] == "dnsrr", f"{node.label}: dnsrr"


def test_healthchecks_ask_the_nodes_own_http_port() -> None:
    for node in COMPOSE_NODES + STACK_NODES:
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

def k8s_services() -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in K8S_DOCS if d["kind"] == "Service"}


def k8s_pod_labels(node: Node) -> dict:
    return node.raw["spec"]["template"]["metadata"]["labels"]


def service_selects(svc: dict, node: Node) -> bool:
    labels = k8s_pod_labels(node)
    return all(labels.get(k) == v for k, v in svc["spec"]["selector"].items())


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


@pytest.mark.parametrize("source", SOURCES)
def test_every_node_finds_the_name_server_by_its_service_name(source: str) -> None:
    ns = one(SOURCES[source], "nameserver")
    if source == "k8s":
        names = [n for n, svc in k8s_services().items() if service_selects(svc, ns)]
        assert len(names) == 1, f"one Service in front of the name server, got {names}"
        (ns_name,) = names
        port = int(ns.sample_env["REPLOG_PORT"])
        assert [p["port"] for p in k8s_services()[ns_name]["spec"]["ports"]] == [port]
    else:
        ns_name = ns.service
    for node in SOURCES[source]:
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
    for node in STACK_NODES:
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
    if node.source == "stack" and node.role == "secondary":
        (vol,) = [mount_source(v) for v in node.raw["volumes"] if mount_target(v) == data]
        name = (STACK_DOC["volumes"][vol] or {}).get("name", "")
        assert "{{.Task.Slot}}" in name, "each secondary task needs a volume of its own"
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
                       for d in K8S_DOCS), f"{node.label}: no PersistentVolumeClaim {claim}"


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
    assert {n.raw["image"] for n in STACK_NODES} == {"${REPLOG_IMAGE:-replog:latest}"}
    images = {d["spec"]["template"]["spec"]["containers"][0]["image"]
              for d in K8S_DOCS if d["kind"] in ("Deployment", "StatefulSet")}
    assert images == {"replog:latest"}
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert [i["name"] for i in kustomization["images"]] == ["replog"]


def test_replica_counts() -> None:
    stack = {n.role: n.raw["deploy"]["replicas"] for n in STACK_NODES}
    assert stack["master"] == 1 and stack["nameserver"] == 1
    master = one(K8S_NODES, "master").raw
    assert master["kind"] == "Deployment" and master["spec"]["replicas"] == 1
    assert master["spec"]["strategy"]["type"] == "Recreate"
    assert one(K8S_NODES, "secondary").raw["kind"] == "StatefulSet"


# --- Kubernetes: schema and wiring -------------------------------------------------------------

def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    assert set(kustomization) == {"apiVersion", "kind", "namespace", "resources", "images"}
    assert kustomization["namespace"] == SAMPLE_NAMESPACE
    files = {p.name for p in K8S.glob("*.yaml")} | {p.name for p in K8S.glob("*.yml")}
    assert set(kustomization["resources"]) == files - {"kustomization.yaml"}


@pytest.mark.parametrize("doc", K8S_DOCS,
                         ids=lambda d: f"{d['_file']}:{d['kind']}/{d['metadata']['name']}")
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


@pytest.mark.parametrize("node", K8S_NODES, ids=lambda n: n.label)
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


def test_k8s_services_reach_declared_ports() -> None:
    for name, svc in k8s_services().items():
        targets = [n for n in K8S_NODES if service_selects(svc, n)]
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
    if node.source == "compose":
        return [(node.sample_env["REPLOG_NAME"], node.sample_env["REPLOG_TLS_DIR"])]
    out = []
    for i in range(MAX_SECONDARIES[node.source]):
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
                source = STACK_DOC["secrets"][ref["source"]]["file"]
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


def test_stack_secrets_come_from_one_certificates_folder() -> None:
    """Every secret the stack defines is a file of nodes.certs' output folder (or, for the
    tokens, of deploy/swarm/make-tokens.sh's), and is used."""
    used = {ref["source"] for n in STACK_NODES for ref in n.raw.get("secrets", [])}
    assert used == set(STACK_DOC["secrets"])
    for key, spec in STACK_DOC["secrets"].items():
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


@pytest.mark.parametrize("node", [n for n in STACK_NODES + K8S_NODES if n.role != "nameserver"],
                         ids=lambda n: n.label)
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
    outside the cluster (clients come through kubectl port-forward or an Ingress of yours)."""
    for node in STACK_NODES:
        published = {container_port(p) for p in node.raw.get("ports", [])}
        http = {int(node.sample_env["REPLOG_HTTP_PORT"])} if node.role != "nameserver" else set()
        assert published == http, f"{node.label} publishes {published}"
    for name, svc in k8s_services().items():
        assert svc["spec"].get("type", "ClusterIP") == "ClusterIP", f"Service {name}"


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
