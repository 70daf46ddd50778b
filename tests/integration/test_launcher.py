"""The launcher as users run it (python -m nodes.launcher / scripts/run.sh, a real process):
a node that dies or is paused leaves the cluster running, the printed restart command
works, --restart always brings a node back, a second launcher on taken ports starts nothing,
and README's Pyro5 example and fault walkthrough work as written (its curl sessions:
test_docblocks_local.py)."""
import json
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from nodes.launcher import ROOT, port_taken, proc_state, wait_until
from tests import docblocks

README = ROOT / "README.md"


def free_base(count: int) -> int:
    """A base port such that base..base+count are all free, below the ephemeral range
    (32768-60999 on Linux) where every port-0 bind of the other tests lands."""
    for _ in range(200):
        base = random.randrange(12_000, 32_000)
        if not any(port_taken(base + i) for i in range(count + 1)):
            return base
    raise RuntimeError("no run of free ports")


def free_ports():
    """(base_port, ns_port), all free, for a launcher with two secondaries."""
    base = free_base(3)
    ns = base + 3
    return base, ns


class Launched:
    """A launcher subprocess with its stdout and stderr in files we can read while it runs."""

    def __init__(self, tmp: Path, *flags: str, argv_head=None, name="launcher", env=None):
        self.base, self.ns = free_ports()
        self.root = tmp / f"{name}-data"
        self.out_path, self.err_path = tmp / f"{name}.out", tmp / f"{name}.err"
        self._out, self._err = open(self.out_path, "wb"), open(self.err_path, "wb")
        argv = (argv_head or [sys.executable, "-m", "nodes.launcher"]) + [
            "--base-port", str(self.base), "--ns-port", str(self.ns),
            "--data-root", str(self.root), *flags]
        self.popen = subprocess.Popen(argv, cwd=ROOT, stdout=self._out, stderr=self._err,
                                      stdin=subprocess.DEVNULL, env=env)

    def url(self, i: int = 0) -> str:
        return f"http://127.0.0.1:{self.base + i}"

    @property
    def out(self) -> str:
        return self.out_path.read_text(errors="replace")

    @property
    def err(self) -> str:
        return self.err_path.read_text(errors="replace")

    def pid(self, name: str) -> int:
        return int((self.root / f"{name}.pid").read_text())

    def wait_started(self, timeout: float = 60) -> "Launched":
        def started():
            assert self.popen.poll() is None, f"launcher exited:\n{self.err[-3000:]}"
            return "Ctrl-C stops them all" in self.out
        wait_until(started, timeout, what="the launcher's table of nodes")
        return self

    def health(self, i: int = 0) -> dict:
        return requests.get(self.url(i) + "/health", timeout=5).json()

    def stop(self) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._out.close()
        self._err.close()
        return self.popen.returncode


@pytest.fixture
def launch(tmp_path):
    started = []

    def start(*flags, **kw):
        launched = Launched(tmp_path, *flags, **kw)
        started.append(launched)
        return launched

    yield start
    for launched in started:
        launched.stop()
        print(f"----- {launched.err_path.name} (tail) -----\n{launched.err[-4000:]}")


def post(url, message, w=None, timeout=30):
    body = {"message": message} if w is None else {"message": message, "w": w}
    return requests.post(url + "/messages", json=body, timeout=timeout)


def status(launched, name):
    return launched.health()["secondaries"][name]["status"]


def test_kill_and_pause_leave_the_cluster_running_and_the_printed_command_restarts(launch):
    cl = launch().wait_started()
    wait_until(lambda: not cl.health()["read_only"], 30, what="master writable")
    assert post(cl.url(), "one", w=3).status_code == 201

    os.kill(cl.pid("secondary1"), signal.SIGKILL)
    cmd_line = wait_until(
        lambda: next((line for line in cl.out.splitlines()
                      if "-m nodes.secondary_node" in line and "--name secondary1" in line), None),
        30, what="the restart command of secondary1")
    assert "killed by SIGKILL" in cl.err and "the cluster runs on" in cl.err
    assert f"--http-port {cl.base + 1}" in cmd_line
    assert f"--data-dir {cl.root / 'secondary1'}" in cmd_line
    assert cl.popen.poll() is None                      # the launcher and the rest run on
    assert post(cl.url(), "two", w=2).status_code == 201
    assert (cl.root / "start-secondary1.sh").read_text().strip().endswith(cmd_line)

    s2 = cl.pid("secondary2")
    os.kill(s2, signal.SIGSTOP)
    try:
        wait_until(lambda: f"secondary2 (pid {s2}) is paused" in cl.err, 15,
                   what="the launcher to log the pause")
        assert cl.popen.poll() is None
    finally:
        os.kill(s2, signal.SIGCONT)
    wait_until(lambda: f"secondary2 (pid {s2}) runs again" in cl.err, 15, what="resume logged")

    # the printed command, run by hand as README says, brings secondary1 back with its log
    by_hand = subprocess.Popen(["bash", "-c", cmd_line], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(lambda: status(cl, "secondary1") == "Healthy", 30, what="secondary1 Healthy")
        wait_until(lambda: requests.get(cl.url(1) + "/messages", timeout=5).json()["messages"]
                   == ["one", "two"], 30, what="secondary1 to catch up")
        wait_until(lambda: "secondary1 is back" in cl.err, 15, what="the launcher to notice")
        hand_pid = cl.pid("secondary1")
        assert post(cl.url(), "three", w=3).status_code == 201
        assert cl.stop() == 0                           # Ctrl-C stops the hand-started one too
        wait_until(lambda: proc_state(hand_pid) in (None, "Z"), 15, what="secondary1 to stop")
    finally:
        if by_hand.poll() is None:
            os.killpg(by_hand.pid, signal.SIGKILL)
        by_hand.wait()


def test_restart_always_brings_a_killed_node_back(launch):
    cl = launch("--restart", "always", "--restart-delay", "0.2").wait_started()
    wait_until(lambda: not cl.health()["read_only"], 30, what="master writable")
    assert post(cl.url(), "before", w=3).status_code == 201
    old = cl.pid("secondary1")
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: cl.pid("secondary1") != old, 30, what="a new secondary1 pid")
    wait_until(lambda: "started secondary1 again" in cl.err, 5, what="the restart logged")
    wait_until(lambda: status(cl, "secondary1") == "Healthy", 30, what="secondary1 Healthy")
    assert post(cl.url(), "after", w=3).status_code == 201
    assert requests.get(cl.url(1) + "/messages", timeout=5).json()["messages"] == ["before",
                                                                                   "after"]
    assert cl.popen.poll() is None


def test_a_second_launcher_on_taken_ports_starts_nothing_and_disturbs_nothing(launch, tmp_path):
    cl = launch().wait_started()
    wait_until(lambda: not cl.health()["read_only"], 30, what="master writable")
    seen, stop = [], threading.Event()

    def watch():
        with requests.Session() as s:
            while not stop.is_set():
                h = s.get(cl.url() + "/health", timeout=5).json()
                seen.append((time.monotonic(), {n: v["status"] for n, v in h["secondaries"].items()},
                             {n: v["last_answer_age"] for n, v in h["secondaries"].items()}))
                stop.wait(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        second = subprocess.run(
            [sys.executable, "-m", "nodes.launcher", "--base-port", str(cl.base), "--ns-port",
             str(cl.ns), "--data-root", str(tmp_path / "second")],
            cwd=ROOT, capture_output=True, text=True, timeout=60)
        ended = time.monotonic()
        # every secondary has answered a heartbeat since the second launcher ended
        wait_until(lambda: seen[-1][0] > ended and all(
            seen[-1][0] - age > ended for age in seen[-1][2].values()), 30,
            what="fresh heartbeats")
    finally:
        stop.set()
        watcher.join()
    assert second.returncode != 0
    assert f"port {cl.ns} (the name server) is taken" in second.stderr
    assert f"port {cl.base} (HTTP of master) is taken" in second.stderr
    assert "nodes.master_node" in second.stderr           # by what
    assert "--base-port" in second.stderr and "--ns-port" in second.stderr
    assert "Traceback" not in second.stderr
    assert not (tmp_path / "second").exists()             # nothing started, nothing created
    assert all(s == "Healthy" for _, statuses, _ in seen for s in statuses.values()), seen
    assert post(cl.url(), "still writable", w=3).status_code == 201


def test_fresh_wipes_the_data_root_and_data_survives_a_restart_of_the_launcher(launch):
    cl = launch().wait_started()
    wait_until(lambda: not cl.health()["read_only"], 30, what="master writable")
    assert post(cl.url(), "kept", w=3).status_code == 201
    assert cl.stop() == 0
    again = launch("--data-root", str(cl.root), name="again").wait_started()
    wait_until(lambda: requests.get(again.url() + "/messages", timeout=5).json()["messages"]
               == ["kept"], 30, what="the log recovered from the data directory")
    assert again.stop() == 0
    fresh = launch("--data-root", str(cl.root), "--fresh", name="fresh").wait_started()
    wait_until(lambda: not fresh.health()["read_only"], 30, what="master writable")
    assert requests.get(fresh.url() + "/messages", timeout=5).json()["messages"] == []



def test_a_tls_cluster_starts_without_a_refused_connection_in_any_log(launch, tmp_path):
    """The launcher's readiness checks must not look like an intrusion: with --certs no
    node logs a connection refused for want of a certificate (what a plain-TCP probe of
    the name server's port caused on every start)."""
    cl = launch("--certs", str(tmp_path / "certs")).wait_started()
    wait_until(lambda: all(s["status"] == "Healthy" for s in
                           cl.health()["secondaries"].values()), 30, what="secondaries Healthy")
    assert post(cl.url(), "over tls", w=3).status_code == 201
    assert "mutual TLS" in cl.err
    # every node's log goes to the launcher's stdout and stderr
    assert "no valid certificate" not in cl.out + cl.err

def failover_view(launched, i):
    return launched.health(i)["failover"]


def test_failover_the_launcher_names_the_master_logs_the_election_and_the_old_one_rejoins(launch):
    """--failover: every node votes; the table says which one is master; kill -9 of it is
    logged with the winner of the election; the printed command brings the old master back
    as a secondary of the new one, which it then follows."""
    cl = launch("--failover").wait_started()
    names = ["master", "secondary1", "secondary2"]
    first = failover_view(cl, 0)["master"]
    assert first in names
    row = next(line for line in cl.out.splitlines() if line.startswith(f"{first} "))
    assert row.endswith("MASTER (epoch " + str(failover_view(cl, 0)["epoch"]) + ")")
    assert f"the master is {first}" in cl.out
    assert "--failover" in (cl.root / "start-master.sh").read_text()
    assert "--cluster master,secondary1,secondary2" in (cl.root / "start-secondary1.sh").read_text()
    other = next(i for i, n in enumerate(names) if n != first)
    # a write to a secondary is redirected (307) to the master; requests follows it
    wait_until(lambda: failover_view(cl, names.index(first))["writable"], 30, what="writable")
    assert post(cl.url(other), "before", w=3).status_code == 201

    os.kill(cl.pid(first), signal.SIGKILL)
    won = wait_until(lambda: re.search(r"election: (\S+) is master of epoch (\d+), seen "
                                       r"[\d.]+ s after the launcher saw " + first + " go",
                                       cl.err), 30, what="the election logged")
    new, epoch = won.group(1), int(won.group(2))
    assert new != first and new in names
    assert f"master lost: {first}" in cl.err
    cmd_line = wait_until(lambda: next((line for line in cl.out.splitlines()
                                        if "--failover" in line and "--http-port "
                                        f"{cl.base + names.index(first)}" in line), None),
                          30, what=f"the restart command of {first}")
    # elected, it writes once a majority answered its heartbeats (its lease): 503 till then
    wait_until(lambda: post(cl.url(names.index(new)), "during", w=2).status_code == 201, 30,
               what=f"{new} to accept a write")

    by_hand = subprocess.Popen(["bash", "-c", cmd_line], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(lambda: f"{first} is back: a secondary of epoch {epoch}, following {new}"
                   in cl.err, 30, what=f"{first} back as a secondary, logged")
        view = failover_view(cl, names.index(first))
        assert view["role"] == "secondary" and view["master"] == new, view
        # writes sent to the old master's port now go to the new master, and reach it too
        assert post(cl.url(names.index(first)), "after", w=3).status_code == 201
        wait_until(lambda: requests.get(cl.url(names.index(first)) + "/messages", timeout=5)
                   .json()["messages"][-3:] == ["before", "during", "after"], 30,
                   what=f"{first} to hold every message")
        assert cl.stop() == 0
    finally:
        if by_hand.poll() is None:
            os.killpg(by_hand.pid, signal.SIGKILL)
        by_hand.wait()


# -- README's fault walkthrough, run as written --------------------------------------------

def walkthrough_steps(marker: str = "walkthrough"):
    """(command, expected output or None) pairs of the README console block between two
    `<!-- marker -->` lines: the fault walkthrough, or `api-example` (the API's block)."""
    text = README.read_text()
    block = text.split(f"<!-- {marker} -->", 2)[1]
    block = block.split("```console", 1)[1].split("```", 1)[0]
    steps = []
    for line in block.strip().splitlines():
        if line.startswith("$ "):
            command = re.split(r"\s{2,}# ", line[2:], maxsplit=1)[0].strip()
            steps.append([command, None])
        elif steps and line.strip():
            steps[-1][1] = line.strip()
    return steps


def test_readme_walkthrough_steps_are_found():
    steps = walkthrough_steps()
    assert steps[0][0].startswith("bash scripts/run.sh") and steps[0][0].endswith("&")
    assert any(c.startswith("kill -9") for c, _ in steps)
    assert any(e and "read-only" in e for _, e in steps)


def test_readme_api_example_steps_are_found():
    steps = walkthrough_steps("api-example")
    assert len(steps) == 4 and all(expected for _, expected in steps)
    assert steps[0][0].startswith("curl -s -XPOST localhost:5000/messages")


_EVAL_LINES = r"""
import json, sys
shown = []     # [line number, code, the result its comment shows, repr of the real result]
for number, line in enumerate(sys.stdin.read().splitlines(), 1):
    code, _, comment = line.partition("  # ")
    code, comment = code.strip(), comment.strip()
    start = min([i for i in (comment.find("{"), comment.find("[")) if i >= 0], default=-1)
    if not code:
        continue
    if start < 0 or "=" in code.split("(")[0]:   # no shown result, or an assignment
        exec(code)
        continue
    literal = comment[start:max(comment.rfind("}"), comment.rfind("]")) + 1]
    shown.append([number, code, literal, repr(eval(code))])
print(json.dumps(shown))
"""


def shown_matches(actual: str, expected: str | None) -> bool:
    """README shows what a command prints: the real output must begin like it, '...'
    standing for any text."""
    return expected is None or re.match(
        ".*".join(map(re.escape, expected.split("..."))), actual) is not None


def test_readme_python_example_works_as_written(launch):
    """README's Pyro5 block, line by line, on a fresh cluster: every result it shows in a
    comment ('...' stands for any text) is the one the call returns. Only the name server's
    port differs (Pyro5 reads PYRO_NS_PORT from the environment)."""
    launched = launch("--fresh").wait_started()
    env = dict(os.environ, PYRO_NS_HOST="127.0.0.1", PYRO_NS_PORT=str(launched.ns))
    block = docblocks.block("pyro5-example").text
    assert "PYRONAME:replog.master" in block and block.count("  # ") >= 4
    out = subprocess.run([sys.executable, "-c", _EVAL_LINES], input=block, env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert len(shown) >= 3
    failures = [f"line {n}: {code} gave {got}, README shows {literal}"
                for n, code, literal, got in shown if not shown_matches(got, literal)]
    assert not failures, failures


def test_readme_fault_walkthrough_works_as_written(tmp_path):
    run_readme_steps(tmp_path, walkthrough_steps("walkthrough"))


def test_readme_failover_walkthrough_works_as_written(tmp_path):
    """README's failover block: a write through a secondary (307), kill -9 of the master,
    the next write through the same secondary lands on the new master, the old master
    restarted by its printed command rejoins as a secondary and holds both writes."""
    run_readme_steps(tmp_path, walkthrough_steps("failover-walkthrough"))


def run_readme_steps(tmp_path, steps):
    """Every command of a README block, on free ports (README's 5000-5002, 9090 and
    .replog-data replaced); the real output must begin as the one README shows, where '...'
    stands for any text. A `sleep N; CMD` step polls CMD until it matches, with a deadline."""
    base, ns = free_ports()
    root = tmp_path / "data"

    def local(command):
        for i in range(3):
            command = command.replace(f"localhost:{5000 + i}", f"localhost:{base + i}")
        return command.replace(".replog-data", str(root))

    env = dict(os.environ, REPLOG_BASE_PORT=str(base), REPLOG_NS_PORT=str(ns),
               REPLOG_DATA_ROOT=str(root))
    background = []
    log = open(tmp_path / "run.out", "wb")

    def run(command):
        return subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=60).stdout.strip()

    try:
        for command, expected in steps:
            command = local(command)
            if command.endswith("&"):
                background.append(subprocess.Popen(["bash", "-c", command[:-1]], cwd=ROOT,
                                                   env=env, stdout=log, stderr=log,
                                                   start_new_session=True))
                if "run.sh" in command:
                    wait_until(lambda: "Ctrl-C stops them all" in
                               (tmp_path / "run.out").read_text(), 120, what="run.sh's table")
                continue
            sleep = re.match(r"sleep ([0-9.]+); (.*)", command)
            if sleep or len(background) > 1:   # waiting for a fault, or a node to come back
                cmd = sleep.group(2) if sleep else command
                wait_until(lambda: shown_matches(run(cmd), expected),
                           float(sleep.group(1)) + 20 if sleep else 30, what=f"`{cmd}` to "
                           f"print {expected}")
            else:
                actual = run(command)
                assert shown_matches(actual, expected), (command, actual, expected)
    finally:
        for p in reversed(background):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGINT)
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
        log.close()
        print((tmp_path / "run.out").read_text(errors="replace")[-4000:])
