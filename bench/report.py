"""The report: its header (meta, params), the ratios and team targets computed from the
cases, and the JSON file. Rendering it as text or a chart is bench/render.py.

Shared; imports no case module.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
from pathlib import Path

from .common import REPO, SECONDARIES

# team targets (issue 5)
TARGET_W3_VS_W1 = 0.90
TARGET_W3_VS_CEILING = 0.75
TARGET_P99_W3_VS_W1 = 1.5
TARGET_CATCHUP_RATE = 75_000.0
TARGET_MEMORY_FACTOR = 2.5
# The catch-up and memory targets are judged at these sizes (the defaults). Smaller runs
# (--quick) are dominated by fixed costs: the ~0.5 s the master takes to notice a restarted
# secondary, and the baseline's allocator and buffer slack, so they are reported as not
# comparable rather than as a miss.
TARGET_CATCHUP_MESSAGES = 100_000
TARGET_MEMORY_MESSAGES = 1_000_000
# cores used on the machine beyond our own processes' above which a case is flagged as run
# on a busy machine (ours: master, secondaries, load generator, or the trivial server)
BUSY_OTHER_CORES = 0.25


def version_of(dist: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:  # noqa: BLE001
        return None


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=5
        )
        sha = out.stdout.strip() or None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        return f"{sha}{'+dirty' if dirty else ''}" if sha else None
    except Exception:  # noqa: BLE001
        return None


def new_report(args, master_flags: dict, secondary_flags: dict, now: _dt.datetime) -> dict:
    """The report before any part runs: what ran where, with which parameters."""
    return {
        "meta": {
            "date": now.isoformat(timespec="seconds"),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "platform": platform.platform(),
            "machine": platform.machine(),
            "hostname": platform.node(),
            "commit": git_commit(),
            "versions": {d: version_of(d) for d in ("Pyro5", "serpent", "bottle", "gevent", "greenlet", "loguru", "psutil")},
            "note": "load generator, master, secondaries and name server share the same cores",
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "params": {
            "quick": args.quick,
            "clients": args.clients,
            "procs": args.procs,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "size": args.size,
            "catchup_messages": args.catchup,
            "catchup_trials": args.catchup_trials,
            "memory_messages": args.memory,
            "batch": args.batch,
            "parts": args.parts,
            "ws": args.ws,
            "master_flags": master_flags,
            "secondary_flags": secondary_flags,
            "profile": args.profile,
        },
        "cases": [],
        "ratios": {},
        "catchup": None,
        "memory": None,
        "targets": [],
    }


def finish(report: dict, size: int) -> None:
    """Once every part ran: the table's order, the ratios and the targets."""
    # order: load cases first, ceilings last, in the table
    report["cases"].sort(key=lambda c: (c["case"].startswith("ceiling"), c["case"]))
    report["ratios"] = compute_ratios(report["cases"])
    report["targets"] = compute_targets(report["ratios"], report["catchup"], report["memory"], size)


def json_path(args, now: _dt.datetime) -> Path:
    """--out, or bench/results/<UTC date>.json; its directory is created."""
    out = Path(args.out) if args.out else REPO / "bench" / "results" / f"{now.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def write_json(report: dict, out: Path) -> None:
    out.write_text(json.dumps(report, indent=2) + "\n")


def by_case(cases: list[dict]) -> dict:
    return {c["case"]: c for c in cases}


def compute_ratios(cases: list[dict]) -> dict:
    c = by_case(cases)
    out = {}
    for mode in ("http", "pyro"):
        base = c.get(f"{mode}-w1")
        ceil = c.get(f"ceiling-{mode}")
        for w in (1, 2, 3):
            x = c.get(f"{mode}-w{w}")
            if not x:
                continue
            r = {}
            if base and base["appends_per_s"]:
                r["throughput_vs_w1"] = round(x["appends_per_s"] / base["appends_per_s"], 3)
                if base["latency_ms"]["p99"]:
                    r["p99_vs_w1"] = round(x["latency_ms"]["p99"] / base["latency_ms"]["p99"], 3)
            if ceil and ceil["appends_per_s"]:
                r["throughput_vs_ceiling"] = round(x["appends_per_s"] / ceil["appends_per_s"], 3)
            out[f"{mode}-w{w}"] = r
    return out


def compute_targets(ratios: dict, catchup: dict | None, memory: dict | None, size: int) -> list[dict]:
    t = []

    def add(name, value, op, limit, text, not_comparable: str | None = None):
        met = None if value is None else (value >= limit if op == ">=" else value <= limit)
        if not_comparable and value is not None:
            met = None
        t.append({"target": name, "value": value, "op": op, "limit": limit, "met": met, "text": text,
                  "comparable": not not_comparable, "note": not_comparable})

    r3 = ratios.get("http-w3", {})
    add("w3_vs_w1_throughput", r3.get("throughput_vs_w1"), ">=", TARGET_W3_VS_W1,
        "HTTP w=3 appends/s >= 90% of w=1's")
    add("w3_vs_ceiling_throughput", r3.get("throughput_vs_ceiling"), ">=", TARGET_W3_VS_CEILING,
        "HTTP w=3 appends/s >= 75% of the trivial-POST ceiling")
    add("w3_p99_vs_w1", r3.get("p99_vs_w1"), "<=", TARGET_P99_W3_VS_W1, "HTTP w=3 p99 <= 1.5x w=1's")
    small = None
    if catchup and catchup.get("messages", 0) < TARGET_CATCHUP_MESSAGES:
        small = (f"{catchup['messages']:,} messages: the fixed delay before the master notices the "
                 f"restart (up to a heartbeat interval) dominates; judged at {TARGET_CATCHUP_MESSAGES:,}")
    add("catchup_rate", (catchup or {}).get("rate"), ">=", TARGET_CATCHUP_RATE, "catch-up >= 75,000 msg/s",
        small)
    limit = TARGET_MEMORY_FACTOR * size
    nodes = (memory or {}).get("nodes", {})
    small = None
    if memory and memory.get("messages", 0) < TARGET_MEMORY_MESSAGES:
        small = (f"{memory['messages']:,} messages: allocator and buffer slack weigh too much; "
                 f"judged at {TARGET_MEMORY_MESSAGES:,}")
    add("memory_master", nodes.get("master", {}).get("bytes_per_message"), "<=", limit,
        f"master <= {TARGET_MEMORY_FACTOR}x payload bytes per message", small)
    sec = [nodes[n]["bytes_per_message"] for n in SECONDARIES if n in nodes]
    add("memory_secondary", max(sec) if sec else None, "<=", limit,
        f"secondary <= {TARGET_MEMORY_FACTOR}x payload bytes per message", small)
    return t
