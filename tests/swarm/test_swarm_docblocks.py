"""README's and docs/deploy.md's Swarm blocks, run as written (tests/docblocks.py) on the
single-node swarm of the `swarm` fixture, as ONE session on one stack:

1. README's block up to `docker service scale replog_secondary=4`;
2. deploy.md's "On one host" block up to `docker service logs -f` (its deploy updates the
   same stack: back to the stack file's 2 secondaries, then scaled to 3), the master pinned
   to a labelled host (this one; the deploy updates the stack again, back to 2 secondaries)
   and, while the stack runs, deploy.md's "Reaching it" and token-swap blocks;
3. the three removal lines, which both blocks end with, word for word (checked): once;
4. deploy.md's "With failover" block, on a stack of its own (stack-failover.yml), whole.

What differs from a user's terminal, and only that: the stack's name (`replog` becomes a
unique one, also in `replog_master`, `namespace=replog`, and the swapped secret's name, so
that it runs beside other stacks on a shared engine), the master's port (MASTER_PORT, the
documented setting; `localhost:5000` in a command follows it), `docker swarm init` answering
that a swarm is already active (the blocks say: if none is), and a pause where a comment
says to wait (`# wait for 4 tasks Running`) or a scaled service to be counted, and the
node label `replog.master` removed at the end unless the node had it before. The
certificates and tokens land in deploy/swarm/certs and deploy/swarm/tokens, as written;
ones already there are moved aside and put back.
"""
from __future__ import annotations

import re
import shutil
import time
import uuid

import pytest

from tests import docblocks
from tests.docblocks import Shell, bare, sh_commands, substitute
from tests.docker.conftest import FAST_TIMING, run, wait_until

from .conftest import VOTER_PORT_VARS, FailoverStack, Stack

pytestmark = [pytest.mark.docker, pytest.mark.swarm]

SWARM_DIR = docblocks.ROOT / "deploy" / "swarm"


@pytest.fixture(scope="module")
def session(swarm_image, tmp_path_factory):
    aside = tmp_path_factory.mktemp("swarm-aside")
    moved = []
    for sub in ("certs", "tokens"):
        if (SWARM_DIR / sub).exists():
            shutil.move(str(SWARM_DIR / sub), str(aside / sub))
            moved.append(sub)
    s = Stack(swarm_image)
    shutil.rmtree(s.certs, ignore_errors=True)
    shutil.rmtree(s.tokens, ignore_errors=True)
    s.name = f"replog-doc-{uuid.uuid4().hex[:6]}"
    s.certs, s.tokens = str(SWARM_DIR / "certs"), str(SWARM_DIR / "tokens")
    env = {k: v for k, v in s.env.items() if k not in ("REPLOG_CERTS_DIR", "REPLOG_TOKENS_DIR")}
    s.env = env | FAST_TIMING
    transcript = tmp_path_factory.mktemp("swarm-docblocks") / "transcript.txt"
    s.shell = Shell(docblocks.ROOT, s.env, transcript=transcript)
    s.ports = {5000: s.master_port}
    try:
        yield s
    finally:
        print(transcript.read_text()[-6000:])
        s.shell.close()
        left = s.remove()
        run(["docker", "secret", "rm", f"{s.name}-tokens-2"], check=False)
        for sub in moved:
            shutil.rmtree(SWARM_DIR / sub, ignore_errors=True)
            shutil.move(str(aside / sub), str(SWARM_DIR / sub))
        assert not any(left.values()), left


STACK_NAME = re.compile(r"(?<![\w./:-])replog(?=[_)\"]|\s|$)")   # the stack `replog` in a command


def rename(s: Stack, command: str) -> str:
    command = command.replace("replog-tokens-2", f"{s.name}-tokens-2")
    command = STACK_NAME.sub(s.name, command)
    return substitute(command, s.ports)


def step(s: Stack, command: str) -> None:
    """One line of a block, and what the user does after it (waits, as its comment says)."""
    line = bare(command)
    if line.startswith("docker swarm init"):
        rc, out = s.shell.run(rename(s, command))
        assert rc == 0 or "already part of a swarm" in out, out
    elif " -f " in f" {line} ":
        rc, out = s.shell.until_interrupted(rename(s, command), 4)
        assert rc in (0, 124, 130) and out.strip(), out
    else:
        out = s.shell.check(rename(s, command), timeout=600)
        if line.startswith("curl"):
            assert '"seq"' in out or '"role": "master"' in out, out
    if "docker stack deploy" in line:
        wait_until(lambda: s.get("master", "/health", timeout=2).status_code == 200, 180,
                   what=f"the master to answer on 127.0.0.1:{s.master_port}")
        s.wait_cluster({"secondary1", "secondary2"}, timeout=180)
    if m := re.match(r"docker service scale \S+=(\d+)", line):
        s.wait_cluster({f"secondary{i}" for i in range(1, int(m.group(1)) + 1)}, timeout=180)


def test_readme_swarm_block(session):
    readme = sh_commands(docblocks.block("swarm-readme"))
    session.readme_tail = readme[-3:]
    for command in readme[:-3]:
        step(session, command)
    assert session.health()["quorum"]["size"] == 5


def test_deploy_one_host_block(session):
    one_host = sh_commands(docblocks.block("swarm-one-host"))
    removal = one_host[-3:]
    assert [bare(c) for c in removal] == [bare(c) for c in session.readme_tail]
    for command in one_host[:-3]:
        step(session, command)
    assert session.health()["quorum"]["size"] == 4

    # "From one host to several", step 3: the master pinned by a node label (to this host,
    # the only one); the deploy updates the stack (back to the file's 2 secondaries), and
    # the master, rescheduled on the same host, keeps its volume and so its log
    label = "{{index .Spec.Labels \"replog.master\"}}"
    had_label = run(["docker", "node", "inspect", "self", "-f", label]).stdout.strip() == "true"
    before = session.messages("master")
    t0 = time.monotonic()
    try:
        for command in sh_commands(docblocks.block("swarm-pin-master")):
            step(session, command)
        spec = run(["docker", "service", "inspect", session.service("master"), "-f",
                    "{{json .Spec.TaskTemplate.Placement.Constraints}}"]).stdout
        assert "node.labels.replog.master == true" in spec, spec
        assert session.messages("master")[:len(before)] == before
        print(f"swarm-pin-master took {time.monotonic() - t0:.1f} s")

        curl, add_ci = sh_commands(docblocks.block("swarm-reach"))
        step(session, curl)
        ci = session.shell.check(add_ci).strip().splitlines()[-1]
        assert ci.startswith("rlg_"), ci
        for command in sh_commands(docblocks.block("swarm-tokens-swap")):
            step(session, command)
        session.wait_cluster({"secondary1", "secondary2"}, timeout=180)
        with session.session(token=None) as http:      # the new token file is in force
            r = http.post(session.url("master", "/messages"), json={"message": "by ci"},
                          headers={"Authorization": f"Bearer {ci}"}, timeout=30)
            assert r.status_code == 201, r.text

        for command in removal:
            step(session, command)
        assert not any(session.leftovers().values())
    finally:
        if not had_label:
            node = run(["docker", "info", "-f", "{{.Swarm.NodeID}}"]).stdout.strip()
            run(["docker", "node", "update", "--label-rm", "replog.master", node], check=False)


@pytest.fixture(scope="module")
def failover_session(session, swarm_image, tmp_path_factory):
    """A shell for deploy.md's failover block: its own stack name and three free ports (the
    documented MASTER_PORT, SECONDARY1_PORT, SECONDARY2_PORT); the certificates and tokens
    where the blocks put them (`session` moved any that were there aside)."""
    s = FailoverStack(swarm_image)
    shutil.rmtree(s.certs, ignore_errors=True)
    shutil.rmtree(s.tokens, ignore_errors=True)
    s.name = f"replog-docfo-{uuid.uuid4().hex[:6]}"
    s.certs, s.tokens = str(SWARM_DIR / "certs"), str(SWARM_DIR / "tokens")
    s.env = {k: v for k, v in s.env.items() if k not in ("REPLOG_CERTS_DIR", "REPLOG_TOKENS_DIR")}
    transcript = tmp_path_factory.mktemp("swarm-failover-docblock") / "transcript.txt"
    s.shell = Shell(docblocks.ROOT, s.env, transcript=transcript)
    documented = {"MASTER_PORT": 5000, "SECONDARY1_PORT": 5001, "SECONDARY2_PORT": 5002}
    s.doc_ports = {documented[var]: s.ports[node] for node, var in VOTER_PORT_VARS.items()}
    try:
        yield s
    finally:
        print(transcript.read_text()[-8000:])
        s.shell.close()
        left = s.remove()
        assert not any(left.values()), left


def test_deploy_failover_block(failover_session):
    """deploy.md's "With failover" block as written: the deploy, a write through a
    secondary's port, `docker kill` of the master, a write through another port answered by
    a new master, the killed node back as a secondary, the removal. Checked against each
    node's /health as the block goes."""
    s = failover_session
    commands = sh_commands(docblocks.block("swarm-failover"))
    assert [bare(c) for c in commands[-3:]] == \
        [bare(c) for c in sh_commands(docblocks.block("swarm-one-host"))[-3:]]
    run_ = lambda c, timeout=240: s.shell.check(      # noqa: E731
        substitute(STACK_NAME.sub(s.name, c), s.doc_ports), timeout=timeout)
    before = None
    t0 = time.monotonic()
    for command in commands:
        line = bare(command)
        out = run_(command)
        if line.startswith("until masters") and before is None:
            # the loop ended: all three name one master, which is all it waits for (the next
            # line's write, retried on a 503, finds the master writable; checked there)
            before = s.master(writable=False)
            assert before, str([s.failover(n) for n in VOTER_PORT_VARS])   # (str: in full)
        elif line.startswith("for port") and before is not None:
            rows = out.strip().splitlines()
            assert len(rows) == 3, out
            masters = [r.split()[0] for r in rows if r.split()[1] == "master"]
            assert len(masters) == 1, out
            assert all(r.endswith(f"master {masters[0]}") for r in rows), out
        elif line.startswith("rl -H") and '"a-1"' in line:
            assert '"seq": 1' in out and '"acks": 3' in out, out
        elif line.startswith("MASTER="):
            name = s.shell.check("echo $MASTER").strip()
            assert name == before["node"], (name, before)
        elif line.startswith("docker kill"):
            killed_at = time.monotonic()
        elif line.startswith("rl -H") and '"b-1"' in line:
            assert '"seq": 2' in out, out
            print(f"a new master answered {time.monotonic() - killed_at:.1f} s after the kill")
            after = wait_until(lambda: s.master(tuple(n for n in VOTER_PORT_VARS
                                                      if n != before["node"])), 30,
                               what="a new master among the others")
            assert after["node"] != before["node"] and after["epoch"] > before["epoch"]
        elif line.startswith("until masters"):
            now = s.master()
            assert now, str([s.failover(n) for n in VOTER_PORT_VARS])
            # still `after`, in its epoch: the restarted node only asked for pre-votes
            assert (now["node"], now["epoch"]) == (after["node"], after["epoch"]), now
            assert now["views"][before["node"]]["role"] == "secondary", now
            print(f"{before['node']} back as a secondary of {now['node']} "
                  f"{time.monotonic() - killed_at:.1f} s after the kill")
        elif line.startswith("docker service ps"):
            assert "Running" in out and ("Failed" in out or "Shutdown" in out), out
    assert not any(s.leftovers().values())
    print(f"the failover block took {time.monotonic() - t0:.1f} s")
