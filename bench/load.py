"""The load cases (``--only http,pyro``) and the ceilings (``ceiling``, ``diagnostics``):
one load-generator run against the cluster's master, or against a trivial server.
"""

from __future__ import annotations

import subprocess
import sys

from .cluster import Cluster
from .common import REPO, log
from .driver import LOADGEN_STARTUP, per_append_us, run_loadgen
from .procs import Profiler


def load_case(args, cluster: Cluster, mode: str, w: int, profiler: Profiler) -> dict:
    label = f"{mode}-w{w}"
    pids = cluster.pids()
    pids.pop("nameserver", None)
    profiler.start(pids.get("master"), f"master-{label}", LOADGEN_STARTUP + args.warmup + args.seconds)
    if mode == "http":
        res = run_loadgen(args, "http", w, url=cluster.master.url, pids=pids)
    else:
        res = run_loadgen(args, "pyro", w, pyro_uri=cluster.master_uri(), pids=pids)
    prof = profiler.stop()
    if prof:
        res["profile"] = prof
    res["case"] = label
    res["server_cpu_us_per_append"] = per_append_us(res, "master")
    cluster.wait_drained()
    return res


def ceiling_case(args, kind: str, max_connections: int | None, hold: float | None = None) -> dict:
    cmd = [sys.executable, "-m", "bench.ceiling", "--kind", kind, "--port", "0"]
    if max_connections:
        cmd += ["--max-connections", str(max_connections)]
    if hold is not None:
        cmd += ["--hold", str(hold)]
    server = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline().strip()
        if not line.startswith("READY"):
            server.kill()
            raise RuntimeError(f"ceiling server did not start: {line!r} {server.stderr.read()[-2000:]}")
        parts = line.split()
        where = parts[1]
        info = dict(p.split("=", 1) for p in parts[2:] if "=" in p)
        if info.get("gevent_patched") != "yes":
            log(f"WARNING: the {kind} ceiling is not a gevent-patched process ({info}): not the master's stack")
        pids = {"server": server.pid}
        if kind == "pyro":
            res = run_loadgen(args, "pyro", 1, pyro_uri=where, pids=pids)
        else:
            res = run_loadgen(args, "http", 1, url=where, pids=pids)
        res["case"] = f"ceiling-{kind}" + ("-hold" if hold is not None else "")
        res["hold_s"] = hold
        res["server"] = info
        res["server_cpu_us_per_append"] = per_append_us(res, "server")
        return res
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
