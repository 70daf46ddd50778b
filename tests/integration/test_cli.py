"""The `replog` console script, run as a user runs it (the installed entry point, a
subprocess) against a real local cluster."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nodes.launcher import LocalCluster, free_port
from tests.fake_replog import FakeLog, FakeReplog
from .conftest import FAST

REPLOG = Path(sys.executable).with_name("replog")
COMMANDS = ["append", "list", "tail", "health", "nodes", "watch", "demo"]


def run(*args, env=None, input=None, timeout=60):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("REPLOG_")}
    full_env.update(env or {})
    return subprocess.run([str(REPLOG), *args], capture_output=True, text=True, input=input,
                          env=full_env, timeout=timeout)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """name server, master, secondary1, secondary2; env pointing the CLI at them."""
    c = LocalCluster(tmp_path_factory.mktemp("cli") / "logs")
    c.start_nameserver()
    try:
        secs = [c.start_secondary(n) for n in ("secondary1", "secondary2")]
        master = c.start_master(["secondary1", "secondary2"], **FAST)
        env = {"REPLOG_MASTER": master.url, "REPLOG_NS_PORT": str(c.ns_port)}
        yield c, master, secs, env
    finally:
        c.close()


def test_the_console_script_is_installed_and_every_command_has_help():
    assert REPLOG.exists(), f"{REPLOG} missing: run scripts/setup.sh"
    top = run("--help")
    assert top.returncode == 0
    for command in COMMANDS:
        assert command in top.stdout
        r = run(command, "--help")
        assert r.returncode == 0 and "Usage: replog " + command in r.stdout, r.stderr


def test_append_prints_seq_acks_and_time_and_list_shows_it(live):
    c, master, secs, env = live
    r = run("append", "hello", "replog", "world", "-w", "2", env=env)
    assert r.returncode == 0, r.stderr
    m = re.fullmatch(r"seq (\d+) · acks ([23]) \(w=2\) · [\d.]+ m?s\n", r.stdout)
    assert m, r.stdout
    seq = int(m.group(1))
    listed = run("list", "--from", str(seq), "--limit", "1", env=env)
    assert listed.returncode == 0
    assert listed.stdout.split() == [str(seq), "hello", "replog", "world"]


def test_append_json_and_id_appends_once(live):
    c, master, secs, env = live
    first = run("append", "once only", "--id", "cli-key-1", "--json", env=env)
    again = run("append", "once only", "--id", "cli-key-1", "--json", "--master", master.url)
    assert first.returncode == again.returncode == 0, (first.stderr, again.stderr)
    a, b = json.loads(first.stdout), json.loads(again.stdout)
    assert a["seq"] == b["seq"] and a["w"] == 3 and a["acks"] == 3
    listed = json.loads(run("list", "--json", env=env).stdout)["messages"]
    assert listed.count("once only") == 1


def test_append_stdin_lines_in_order_with_a_final_rate(live):
    c, master, secs, env = live
    lines = [f"stdin line {i}" for i in range(150)]
    r = run("append", "-", "-w", "2", env=env, input="\n".join(lines) + "\n\n")
    assert r.returncode == 0, r.stderr
    assert re.search(r"appended 150 messages in [\d.]+ m?s \([\d,]+/s\); 1 empty line", r.stdout)
    log = json.loads(run("list", "--json", env=env).stdout)["messages"]
    assert [m for m in log if m.startswith("stdin line")] == lines


def test_append_file_concurrently_appends_every_line(live, tmp_path):
    c, master, secs, env = live
    path = tmp_path / "lines.txt"
    lines = [f"file line {i}" for i in range(120)]
    path.write_text("\n".join(lines) + "\n")
    r = run("append", "--file", str(path), "-c", "8", "--json", env=env)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["appended"] == 120 and report["error"] is None
    log = json.loads(run("list", "--json", env=env).stdout)["messages"]
    assert sorted(m for m in log if m.startswith("file line")) == sorted(lines)


def test_refused_append_prints_the_servers_message_and_exits_1(live):
    c, master, secs, env = live
    r = run("append", "too many", "-w", "7", env=env)
    assert r.returncode == 1
    assert "400: 'w' must be between 1 and the cluster size 3, got 7" in r.stderr
    r = run("append", "-", env=env, input="fine\n" + "x" * (2 << 20) + "\n")
    assert r.returncode == 1 and "line 2: 413" in r.stderr and "(1 of 2 appended)" in r.stderr


def test_no_master_exits_1_with_one_line(live):
    port = free_port()
    for args in (["health"], ["list"], ["append", "x"], ["watch", "--count", "1", "--json"]):
        r = run(*args, "--master", f"http://127.0.0.1:{port}")
        if args[0] == "watch":       # watch keeps looking: it reports the error per look
            assert r.returncode == 0 and "cannot reach" in json.loads(r.stdout)["error"]
            continue
        assert r.returncode == 1, args
        assert f"cannot reach http://127.0.0.1:{port}" in r.stderr and "Traceback" not in r.stderr


def test_list_from_a_secondary_by_name_and_by_url(live):
    c, master, secs, env = live
    assert run("append", "for every node", env=env).returncode == 0    # w=3: all hold it
    whole = json.loads(run("list", "--json", env=env).stdout)["messages"]
    by_name = json.loads(run("list", "--node", "secondary1", "--json", env=env).stdout)
    by_url = json.loads(run("list", "--node", secs[1].url, "--json", env=env).stdout)
    assert by_name["messages"][:len(whole)] == whole
    assert by_url["messages"][:len(whole)] == whole
    page = json.loads(run("list", "--node", "secondary2", "--from", "2", "--limit", "3",
                          "--json", env=env).stdout)
    assert page == {"messages": whole[1:4], "from": 2, "next": 5}
    text = run("list", "--node", secs[0].url.replace("http://", ""), "--from", "2",
               "--limit", "1", env=env)
    assert text.returncode == 0 and text.stdout.startswith("     2  ")
    missing = run("list", "--node", "nosuch", env=env)
    assert missing.returncode == 1 and "no node named 'nosuch'" in missing.stderr


def test_health_table_and_json(live):
    c, master, secs, env = live
    r = run("health", env=env)
    assert r.returncode == 0, r.stderr
    for text in ("node", "status", "acked seq", "lag", "last answer", "master", "writable",
                 "secondary1", "secondary2", "Healthy", "quorum 3 of 3 (2 needed) · writable"):
        assert text in r.stdout
    h = json.loads(run("health", "--json", env=env).stdout)
    assert h["role"] == "master" and set(h["secondaries"]) == {"secondary1", "secondary2"}


def test_nodes_lists_the_registrations(live):
    c, master, secs, env = live
    r = run("nodes", env=env)
    assert r.returncode == 0, r.stderr
    for name in ("replog.master", "replog.secondary.secondary1", "replog.secondary.secondary2"):
        assert name in r.stdout
    registered = json.loads(run("nodes", "--json", env=env).stdout)
    assert set(registered) == {"replog.master", "replog.secondary.secondary1",
                               "replog.secondary.secondary2"}
    assert all(uri.startswith("PYRO:" + name) for name, uri in registered.items())
    gone = run("nodes", "--ns-port", str(free_port()))
    assert gone.returncode == 1 and "no name server" in gone.stderr


def test_watch_redraws_until_stopped(live):
    c, master, secs, env = live
    r = run("watch", "--count", "3", "--interval", "0.1", "--json", env=env)
    assert r.returncode == 0, r.stderr
    looks = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(looks) == 3 and all(look["health"]["role"] == "master" for look in looks)
    r = run("watch", "--count", "2", "--interval", "0.1", env=env)
    assert r.returncode == 0 and "secondary2" in r.stdout and "Ctrl-C" in r.stdout


def py_spy_dump(pid):
    spy = Path(sys.executable).with_name("py-spy")
    if not spy.exists():
        return "(py-spy is not installed)"
    r = subprocess.run([str(spy), "dump", "--pid", str(pid)], capture_output=True, text=True,
                       timeout=30)
    return r.stdout + r.stderr


# `python3 -c` that ignores SIGINT, then becomes the command: what `replog watch &` in a
# script amounts to (a shell without job control leaves SIGINT ignored in the background)
IGNORING_SIGINT = ["python3", "-c", "import os, signal, sys; signal.signal(signal.SIGINT, "
                   "signal.SIG_IGN); os.execv(sys.argv[1], sys.argv[1:])"]


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "SIGINT after a background start"])
def test_watch_stops_on_ctrl_c_and_sigterm(live, how):
    c, master, secs, env = live
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("REPLOG_")}
    prefix = IGNORING_SIGINT if how.endswith("background start") else []
    proc = subprocess.Popen(prefix + [str(REPLOG), "watch", "--interval", "0.1", "--json"],
                            env={**full_env, **env}, stdout=subprocess.PIPE, text=True)
    try:
        assert json.loads(proc.stdout.readline())["health"]["role"] == "master"
        proc.send_signal(getattr(subprocess.signal, how.split()[0]))
        try:
            proc.communicate(timeout=10)       # read what it prints, as a terminal does
        except subprocess.TimeoutExpired:
            pytest.fail(f"replog watch still runs 10 s after {how}; where it is:\n"
                        + py_spy_dump(proc.pid))
        assert proc.returncode == 0
    finally:
        proc.kill()


def test_append_stdin_in_batches_and_line_by_line_keep_the_order(live):
    c, master, secs, env = live
    lines = [f"batched {i}" for i in range(25)]
    for flags in (["--batch", "10"], ["--batch", "1"]):
        r = run("append", "-", "-w", "2", "--json", *flags, env=env, input="\n".join(lines))
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["appended"] == 25
    log = json.loads(run("list", "--json", env=env).stdout)["messages"]
    assert [m for m in log if m.startswith("batched")] == lines + lines


def test_tail_prints_the_last_messages_and_from_a_seq(live):
    c, master, secs, env = live
    for i in range(3):
        assert run("append", f"tail me {i}", "-w", "1", env=env).returncode == 0
    log = json.loads(run("list", "--json", env=env).stdout)["messages"]
    r = run("tail", "-n", "2", env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"{len(log) - 1:>6}  tail me 1", f"{len(log):>6}  tail me 2"]
    r = run("tail", "--from", str(len(log)), "--json", "--node", secs[0].url, env=env)
    assert r.returncode == 0, r.stderr
    assert [json.loads(line) for line in r.stdout.splitlines()] == [
        {"seq": len(log), "message": "tail me 2"}]
    gone = run("tail", "--master", f"http://127.0.0.1:{free_port()}")
    assert gone.returncode == 1 and "cannot reach" in gone.stderr and "Traceback" not in gone.stderr


def test_tail_f_follows_and_resumes_after_a_cut_and_a_node_restart():
    """Against fake nodes (until the real stream is on the server): the stream is cut in
    the middle of an event, then the node goes away and another serves the same log; every
    message shows once, in order."""
    log = FakeLog()
    log.append("one", "two", "three")
    first = FakeReplog(log)
    first.cut_stream_after = [2]
    second = FakeReplog(log)
    proc = subprocess.Popen([str(REPLOG), "tail", "-f", "--from", "2", "--json",
                             "--node", first.url, "--master", second.url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={k: v for k, v in os.environ.items()
                                 if not k.startswith("REPLOG_")})
    try:
        seen = [json.loads(proc.stdout.readline()) for _ in range(2)]
        first.close()                                   # the node restarts elsewhere
        log.append("four")
        seen += [json.loads(proc.stdout.readline()) for _ in range(1)]
        assert seen == [{"seq": 2, "message": "two"}, {"seq": 3, "message": "three"},
                        {"seq": 4, "message": "four"}]
        streams = [r for r in first.requests + second.requests
                   if r["path"] == "/messages/stream"]
        assert [s["headers"].get("Last-Event-ID") for s in streams][:2] == [None, "3"]
        proc.send_signal(subprocess.signal.SIGINT)
        proc.communicate(timeout=10)
        assert proc.returncode == 0
    finally:
        proc.kill()
        second.close()


def test_append_stdin_sends_batches_and_names_the_refused_line():
    """Against a fake node that takes batches (until the server does): --batch lines per
    POST, in order; a refused message is named by its line; nothing after it is sent."""
    fake = FakeReplog()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REPLOG_")}
    try:
        r = run("append", "-", "--batch", "2", "--master", fake.url, input="a\nb\n\nc\n",
                env=clean)
        assert r.returncode == 0, r.stderr
        assert "appended 3 messages" in r.stdout and "1 empty line" in r.stdout
        assert [p["body"]["messages"] for p in fake.requests] == [["a", "b"], ["c"]]
        assert fake.log.entries == ["a", "b", "c"]
        fake.script(201, {"first_seq": 4, "seq": 5, "acks": 3, "w": 3})
        fake.script(400, {"error": "every message must be a string", "index": 1})
        r = run("append", "-", "--batch", "2", "--master", fake.url, input="d\ne\nf\ng\nh\n",
                env=clean)
        assert r.returncode == 1
        assert "line 4: 400: every message must be a string (2 of 5 appended)" in r.stderr
        assert len(fake.requests) == 4                  # the fifth line was never sent
    finally:
        fake.close()
