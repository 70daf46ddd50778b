"""A node that cannot start says why in one line and exits non-zero, without a traceback
and without touching the running cluster; the name server stops on SIGINT and SIGTERM even
when started with SIGINT ignored; a write to a secondary says that writes go to the master."""
import os
import signal
import socket
import subprocess
import sys

import Pyro5.api
import pytest
import requests

from nodes.launcher import ROOT, free_port, wait_until


def run_node(module, *flags, timeout=60, env=None):
    return subprocess.run([sys.executable, "-m", module, *flags], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          env=None if env is None else {**os.environ, **env})


def errors(out):
    return [line for line in out.stderr.splitlines() if "| ERROR" in line]


def registered(cluster, name):
    with Pyro5.api.locate_ns("127.0.0.1", cluster.ns_port) as ns:
        ns._pyroTimeout = 5
        return ns.list(prefix=name).get(name)


def test_a_name_held_by_a_live_node_is_refused_and_the_live_one_is_untouched(cluster):
    live = cluster.start_secondary("s1")
    uri = registered(cluster, "replog.secondary.s1")
    out = run_node("nodes.secondary_node", "--name", "s1", "--http-port", str(free_port()),
                   "--ns-port", str(cluster.ns_port))
    assert out.returncode == 1
    assert len(errors(out)) == 1, out.stderr
    assert "replog.secondary.s1 is registered" in errors(out)[0] and "answers" in errors(out)[0]
    assert "Traceback" not in out.stderr + out.stdout
    assert registered(cluster, "replog.secondary.s1") == uri
    assert requests.get(live.url + "/health", timeout=5).json()["name"] == "s1"


def test_a_stale_registration_is_replaced(cluster):
    first = cluster.start_secondary("s1")
    stale = registered(cluster, "replog.secondary.s1")
    first.kill()                                   # kill -9: the entry stays behind
    assert registered(cluster, "replog.secondary.s1") == stale
    cluster.start_secondary("s1")
    wait_until(lambda: registered(cluster, "replog.secondary.s1") not in (None, stale), 10,
               what="the new registration")


def test_a_second_master_is_refused_before_it_touches_the_cluster(cluster):
    cluster.start_secondary("s1")
    master = cluster.start_master(["s1"])
    uri = registered(cluster, "replog.master")
    out = run_node("nodes.master_node", "--secondaries", "s1", "--new-log", "--http-port",
                   str(free_port()), "--ns-port", str(cluster.ns_port))
    assert out.returncode == 1 and len(errors(out)) == 1, out.stderr
    assert "replog.master is registered" in errors(out)[0]
    assert "Traceback" not in out.stderr
    assert registered(cluster, "replog.master") == uri
    r = requests.post(master.url + "/messages", json={"message": "m", "w": 2}, timeout=30)
    assert r.status_code == 201 and r.json()["seq"] == 1   # the same log, not a new one


@pytest.mark.parametrize("module,name,port_flag", [
    ("nodes.secondary_node", "replog.secondary.busy", "--http-port"),
    ("nodes.master_node", "replog.master", "--http-port"),
    ("nodes.secondary_node", "replog.secondary.busy", "--pyro-port"),
])
def test_a_port_in_use_is_one_line_and_no_registration(cluster, module, name, port_flag):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        flags = [port_flag, str(port), "--ns-port", str(cluster.ns_port)]
        if port_flag == "--pyro-port":
            flags += ["--http-port", str(free_port())]
        if module == "nodes.secondary_node":
            flags += ["--name", "busy"]
        out = run_node(module, *flags)
    assert out.returncode == 1
    assert len(errors(out)) == 1, out.stderr
    assert f"{port}" in errors(out)[0] and port_flag in errors(out)[0]
    assert "Traceback" not in out.stderr + out.stdout
    assert registered(cluster, name) is None


def test_a_secondary_without_a_name_server_gives_up_with_one_line():
    ns_port = free_port()
    out = run_node("nodes.secondary_node", "--name", "lonely", "--http-port", str(free_port()),
                   "--ns-port", str(ns_port), "--ns-wait", "0.5")
    assert out.returncode == 1
    assert len(errors(out)) == 1, out.stderr
    assert f"python -m nameserver --host 127.0.0.1 --port {ns_port}" in errors(out)[0]
    assert "Traceback" not in out.stderr + out.stdout


def test_a_bad_value_in_the_environment_is_argparses_one_line_error(tmp_path):
    # No name server needed: the value is refused before anything starts. (The flags make
    # a node that got past it fail fast instead of serving.)
    out = run_node("nodes.secondary_node", "--data-dir", str(tmp_path / "data"), "--http-port",
                   str(free_port()), "--ns-port", str(free_port()), "--ns-wait", "0.5",
                   env={"REPLOG_FSYNC": "alwayz"})
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    assert [line for line in out.stderr.splitlines() if "error:" in line] == [
        "python -m nodes.secondary_node: error: argument --fsync (from REPLOG_FSYNC): invalid "
        "choice: 'alwayz' (choose from 'always', 'interval', 'never')"]
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_nameserver_started_with_sigint_ignored_stops_on_signal(sig):
    port = free_port()
    p = subprocess.Popen([sys.executable, "-m", "nameserver", "--port", str(port)], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        wait_until(lambda: socket.create_connection(("127.0.0.1", port), 0.5).close() or True,
                   15, what="the name server")
        p.send_signal(sig)
        assert p.wait(15) == 0
        assert "stopping" in p.stdout.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_node_started_with_sigint_ignored_stops_on_signal(cluster, sig):
    port = free_port()
    p = subprocess.Popen([sys.executable, "-m", "nodes.secondary_node", "--name", "quiet",
                          "--http-port", str(port), "--ns-port", str(cluster.ns_port)],
                         cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/health",
                                        timeout=1).status_code == 200, 30,
                   what="the secondary")
        p.send_signal(sig)
        assert p.wait(15) == 0
        assert registered(cluster, "replog.secondary.quiet") is None   # it unregistered
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_a_write_to_a_secondary_is_405_and_points_to_the_master(cluster, method):
    s = cluster.start_secondary("s1")
    r = requests.request(method, s.url + "/messages", json={"message": "x"}, timeout=10)
    assert r.status_code == 405
    assert r.headers["Content-Type"].startswith("application/json")
    assert "master" in r.json()["error"] and "read-only" in r.json()["error"]
    assert requests.get(s.url + "/messages", timeout=10).json() == {"messages": []}
