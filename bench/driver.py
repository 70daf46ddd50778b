"""Drives one case of the load generator (bench/loadgen.py, a separate process) and
measures the CPU of the given processes during its measured window.

Shared by the cases; imports no case module.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from .common import REPO
from .procs import WindowCpu


LOADGEN_STARTUP = 1.0  # seconds for the load generator to start Python, fork and connect


def run_loadgen(args, mode: str, w: int | None, url: str | None = None, pyro_uri: str | None = None,
                pids: dict | None = None) -> dict:
    """Run one case in a separate load-generator process; measure the CPU of `pids` in the window."""
    t_start = time.time() + LOADGEN_STARTUP + args.warmup
    t_end = t_start + args.seconds
    cmd = [
        sys.executable, "-m", "bench.loadgen",
        "--mode", mode,
        "--clients", str(args.clients),
        "--procs", str(args.procs),
        "--seconds", str(args.seconds),
        "--warmup", str(args.warmup),
        "--size", str(args.size),
        "--start-at", repr(t_start),
    ]
    if w is not None:
        cmd += ["--w", str(w)]
    if mode == "http":
        cmd += ["--url", url]
    else:
        cmd += ["--pyro-uri", pyro_uri]
    meter = WindowCpu(pids or {}, t_start, t_end)
    out = subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=args.seconds + args.warmup + 120
    )
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed ({out.returncode}): {out.stderr[-2000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["cpu_cores"] = meter.result()
    res["sched"] = meter.sched()
    # the load generator's own CPU, over its whole life (start-up included): an upper bound
    cores = res["cpu_cores"]
    cores["loadgen"] = round(res["client_cpu_s"] / (args.warmup + args.seconds), 3)
    if "machine" in cores:
        # what the machine ran beyond our processes (the load generator's figure is an upper
        # bound, so this errs low): someone else's load, which makes the figures low
        ours = sum(v for k, v in cores.items() if k != "machine")
        cores["other"] = round(max(0.0, cores["machine"] - ours), 3)
    return res


def per_append_us(res: dict, who: str) -> float | None:
    """CPU microseconds the server process spent per counted append (cores / appends per s)."""
    cores = res.get("cpu_cores", {}).get(who)
    if cores is None or not res.get("appends_per_s"):
        return None
    return round(cores / res["appends_per_s"] * 1e6, 1)
