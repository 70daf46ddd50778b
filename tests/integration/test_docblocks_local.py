"""README's and docs/'s command blocks for a local cluster, run as written (tests/docblocks.py):
the two commands, the API session (batches, long-poll, stream, /health), the `replog` command
line, the entry points of docs/configuration.md, the benchmark's setup line.

What a test changes, and only that: the ports (the documents' 5000-5003 and 9090 become free
ones, as the documents tell a user to choose them: `--base-port`, `--http-port`, or the
REPLOG_* variable behind every flag) and the data folder (REPLOG_DATA_ROOT, in a temporary
folder); a command that runs until Ctrl-C gets a Ctrl-C after a few seconds.
"""
import json
import os
import signal
import subprocess

import pytest
import requests

from nodes.launcher import ROOT, wait_until
from tests import docblocks
from tests.docblocks import Shell, bare, run_console, sh_commands, substitute
from tests.integration.test_launcher import free_base


def ports_and_env(tmp_path):
    base = free_base(5)
    ns = base + 5
    ports = {5000 + i: base + i for i in range(5)} | {9090: ns}
    env = dict(os.environ, REPLOG_BASE_PORT=str(base), REPLOG_NS_PORT=str(ns),
               REPLOG_DATA_ROOT=str(tmp_path / ".replog-data"), REPLOG_MASTER=f"http://127.0.0.1:{base}")
    return base, ns, ports, env


def start_run_sh(shell, tmp_path, command="bash scripts/run.sh --fresh"):
    """README's `bash scripts/run.sh --fresh &` (what the API session continues from)."""
    log = tmp_path / "run.out"
    pid = shell.background(command, log)
    wait_until(lambda: "Ctrl-C stops them all" in log.read_text(), 120, what="run.sh's table")
    return pid, log


@pytest.fixture
def local(tmp_path):
    base, ns, ports, env = ports_and_env(tmp_path)
    shell = Shell(ROOT, env, transcript=tmp_path / "transcript.txt")
    shell.base, shell.ns, shell.ports = base, ns, ports
    try:
        yield shell
    finally:
        shell.close()
        print((tmp_path / "transcript.txt").read_text()[-6000:])
        if (tmp_path / "run.out").exists():
            print((tmp_path / "run.out").read_text(errors="replace")[-3000:])


def test_readme_two_commands(local, tmp_path):
    """`bash scripts/run.sh` starts the cluster and Ctrl-C stops it; `bash scripts/test.sh`
    is what CI runs (.ci/run), so every CI run runs that line as written."""
    run_sh, test_sh = sh_commands(docblocks.block("two-commands"))
    assert bare(test_sh) == "bash scripts/test.sh"
    assert "\nbash scripts/test.sh\n" in (ROOT / ".ci" / "run").read_text()
    log = tmp_path / "run-sh.out"
    with open(log, "wb") as out:
        p = subprocess.Popen(["bash", "-c", run_sh], cwd=ROOT, env=local.env, stdout=out,
                             stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_until(lambda: "Ctrl-C stops them all" in log.read_text(), 120,
                       what="run.sh's table of nodes")
            health = requests.get(f"http://127.0.0.1:{local.base}/health", timeout=5).json()
            assert set(health["secondaries"]) == {"secondary1", "secondary2"}
        finally:
            os.killpg(p.pid, signal.SIGINT)       # Ctrl-C
            assert p.wait(30) == 0, log.read_text()[-3000:]


def test_readme_api_session(local, tmp_path):
    """The API's three console blocks as one session on a fresh `run.sh --fresh` cluster:
    the first appends (api-example), batches, a long-poll and a stream (api-batches), then
    /health (health-example)."""
    start_run_sh(local, tmp_path)
    wait_until(lambda: not requests.get(f"http://127.0.0.1:{local.base}/health",
                                        timeout=5).json()["read_only"], 30, what="writable")

    def post_d():     # "(POST it elsewhere)": seq 6 lands while the long-poll waits
        r = requests.post(f"http://127.0.0.1:{local.base}/messages", json={"message": "d"},
                          timeout=30)
        assert r.status_code == 201 and r.json()["seq"] == 6, r.text

    run_console(local, docblocks.block("api-example"), local.ports)
    run_console(local, docblocks.block("api-batches"), local.ports,
                during={"from=6&wait=30": post_d}, interrupt={"curl -sN": 3})
    run_console(local, docblocks.block("health-example"), local.ports,
                retry={"/health": 10})


def test_readme_cli_overview(local, tmp_path):
    """README's `replog` lines on a fresh cluster (REPLOG_MASTER, REPLOG_NS_PORT: the
    command's own variables for --master and --ns-port); `tail -f` and `watch` get a Ctrl-C."""
    start_run_sh(local, tmp_path)
    for command in sh_commands(docblocks.block("cli-overview")):
        if "-f" in command.split() or "replog watch" in command:
            rc, out = local.until_interrupted(command, 3)
            assert rc in (0, 124, 130), out
        else:
            local.check(command)
    out = local.check("replog list --json")
    assert '"hello world"' in out and '"300"' in out


def test_cli_examples(local, tmp_path):
    """docs/cli.md's session, every output compared with the one shown; the `tail -f` sees a
    message appended meanwhile."""
    start_run_sh(local, tmp_path)

    def append_meanwhile():
        r = requests.post(f"http://127.0.0.1:{local.base}/messages",
                          json={"message": "appended meanwhile"}, timeout=30)
        assert r.status_code == 201, r.text

    run_console(local, docblocks.block("cli-examples"), local.ports,
                interrupt={"tail -f": 3}, during={"tail -f": append_meanwhile},
                retry={"replog health": 10})


def test_configuration_entry_points(local, tmp_path):
    """docs/configuration.md's four entry points: the name server, master and a secondary
    started by hand (each in a terminal of its own) form a writable cluster; the launcher
    line starts its own (stopped with SIGTERM, as clean as Ctrl-C)."""
    commands = sh_commands(docblocks.block("entry-points"))
    assert [c.split()[2] for c in commands] == ["nameserver", "nodes.master_node",
                                               "nodes.secondary_node", "nodes.launcher"]
    for command in commands[:3]:
        local.background(substitute(command, local.ports), tmp_path / f"{command.split()[2]}.log")
    master = f"http://127.0.0.1:{local.base}"
    wait_until(lambda: requests.get(master + "/health", timeout=5).json()["secondaries"]
               ["secondary1"]["status"] == "Healthy", 60, what="secondary1 Healthy")
    assert requests.post(master + "/messages", json={"message": "m", "w": 2},
                         timeout=30).status_code == 201
    local.stop()
    log = tmp_path / "launcher.log"
    pid = local.background(substitute(commands[3], local.ports), log)
    wait_until(lambda: "Ctrl-C stops them all" in log.read_text(), 60, what="the launcher's table")
    local.stop(pid)


def test_bench_setup_line(local):
    """docs/performance.md's setup line (the benchmark runs themselves take minutes: the
    block after it is marked not-run, and tests/test_bench_smoke.py runs --quick)."""
    (setup,) = sh_commands(docblocks.block("bench-setup"))
    local.check(setup, timeout=300)


@pytest.fixture
def scratch(tmp_path):
    """A shell in an empty folder (where a block's relative data directories land), on free
    ports: REPLOG_NS_PORT for every node, the documents' 5000-5004 and 9090 where a line
    names them."""
    base, ns, ports, env = ports_and_env(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    shell = Shell(work, env, transcript=tmp_path / "transcript.txt")
    shell.base, shell.ns, shell.ports, shell.tmp = base, ns, ports, tmp_path
    try:
        yield shell
    finally:
        shell.close()
        print((tmp_path / "transcript.txt").read_text()[-6000:])
        for log in sorted(tmp_path.glob("*.log")):
            print(f"----- {log.name} -----\n{log.read_text(errors='replace')[-1500:]}")


def in_background(shell, command, name, **env):
    """A block's `... &` line: started in the background, as it says, its output in NAME.log."""
    assert bare(command).endswith(" &"), command
    return shell.background(substitute(bare(command)[:-1], shell.ports), shell.tmp / f"{name}.log",
                            env)


def test_durability_data_dir(scratch):
    """docs/durability.md's two lines (each in a terminal of its own, beside a name server)
    keep each node's log in its folder: after both are stopped and started again with the
    same lines, the log is still there."""
    master, secondary = sh_commands(docblocks.block("durability-data-dir"))
    url = f"http://127.0.0.1:{scratch.base}"
    scratch.background("python -m nameserver", scratch.tmp / "nameserver.log",
                       {"REPLOG_PORT": str(scratch.ns)})

    def start(run):
        scratch.background(master, scratch.tmp / f"master{run}.log",
                           {"REPLOG_HTTP_PORT": str(scratch.base),
                            "REPLOG_SECONDARIES": "secondary1"})
        scratch.background(secondary, scratch.tmp / f"secondary{run}.log",
                           {"REPLOG_HTTP_PORT": str(scratch.base + 1)})
        wait_until(lambda: requests.get(url + "/health", timeout=5).json()["secondaries"]
                   ["secondary1"]["status"] == "Healthy", 60, what="secondary1 Healthy")

    start(1)
    r = requests.post(url + "/messages", json={"message": "kept", "w": 2}, timeout=30)
    assert r.status_code == 201, r.text
    for d in ("data/master", "data/secondary1"):
        assert list((scratch.tmp / "work" / d / "segments").glob("*.log")), d
    scratch.stop(*scratch.started[1:])            # the two nodes; the name server stays
    start(2)
    assert requests.get(url + "/messages", timeout=5).json()["messages"] == ["kept"]
    assert requests.get(f"http://127.0.0.1:{scratch.base + 1}/messages",
                        timeout=5).json()["messages"] == ["kept"]


def test_failover_run(scratch):
    """docs/failover.md's block, every line as written, one after the other: four nodes
    started in the background with `&`, s1's /health (curl retries while s1 starts), and a
    POST to s1 that is redirected (307) to the master, which `curl -L` follows, and appended
    there (curl retries while no master can take writes yet: elected, but its lease not yet
    confirmed by a majority's heartbeat answers, which takes ~0.1 s).

    The block's comment says `master` wins the first election: it stands first, asks every
    node until it answers (an address not looked up yet included), and the others give it
    2 x --election-max on a cluster's first start (once, here, s1 or s2 won in half the
    runs under load: the check found that)."""
    *nodes, health, post = sh_commands(docblocks.block("failover-run"))
    assert len(nodes) == 4
    for command, name in zip(nodes, ("nameserver", "master", "s1", "s2")):
        in_background(scratch, command, name)

    def named():      # s1 may answer before the election: the user runs the line again
        out = scratch.check(substitute(health, scratch.ports), timeout=60)
        return json.loads(out)["failover"]["master"] and out
    fo = json.loads(wait_until(named, 30, interval=0.5, what="s1's /health to name a master"))
    fo = fo["failover"]
    assert fo["node"] == "s1" and fo["epoch"] >= 1, fo
    won = fo["master"]
    ports = {"master": scratch.base, "s1": scratch.base + 1, "s2": scratch.base + 2}
    master, s1 = f"http://127.0.0.1:{ports[won]}", f"http://127.0.0.1:{scratch.base + 1}"
    assert fo["master_url"] == master, fo

    out = scratch.check(substitute(post, scratch.ports), timeout=60)
    written = json.loads(out.splitlines()[-1])    # curl prints each try's answer: a 503 first
    assert written["seq"] == 1 and written["acks"] >= 2, written
    assert requests.get(master + "/messages", timeout=5).json()["messages"] == ["hi"]
    if won != "s1":
        assert fo["role"] == "secondary", fo
        r = requests.post(s1 + "/messages", json={"message": "probe", "w": 2}, timeout=30,
                          allow_redirects=False)           # what curl -L followed
        assert r.status_code == 307 and r.headers["Location"] == master + "/messages", \
            (r.status_code, r.headers, r.text)            # (a 307 appends nothing)
    assert won == "master", f"{won} won the first election, not `master` as the block shows"


def test_failover_sim_lines(local):
    """docs/failover.md's quick simulation lines: one seed replayed passes; the broken rule
    fails, with a nonzero exit and the violation named (the long run is marked not-run)."""
    replay, broken = sh_commands(docblocks.block("failover-sim"))
    local.check(replay, timeout=60)
    rc, out = local.run(broken, timeout=120)
    assert rc == 1 and "two masters in epoch" in out, (rc, out)
