"""The TLS part of ``python -m bench`` (``--only tls``): what mutual TLS on the node plane
costs. Clients still speak plain HTTP; only master <-> secondaries <-> name server change.

1. load: HTTP w=3 (every append waits for both secondaries, so every append crosses the
   node plane) on a plain cluster and on a TLS one, alternated in one run (plain, TLS,
   plain, TLS; one round with --quick), compared as the ratio of their sums;
2. catch-up: the catch-up case (s2 killed, N messages appended, s2 restarted) on a TLS
   cluster, printed beside the plain one (the catchup part's, or measured here).
"""
from __future__ import annotations

from pathlib import Path

from .catchup import catchup_case
from .cluster import Cluster
from .common import log
from .driver import run_loadgen

TARGET_TLS_VS_PLAIN = 0.80


def _client_tls(certs: Path):
    """TLS for this (bench) process's own Pyro5 calls: a client certificate."""
    from nodes import certs as make, tls
    make.ensure(certs, ["client-bench"])
    tls.install(certs / "client-bench")


def load_part(args, workdir: Path, master_flags: dict, secondary_flags: dict) -> dict:
    from nodes import tls
    certs = workdir / "tls-certs"
    rounds = 1 if args.quick else 2
    sums = {"plain": 0.0, "tls": 0.0}
    runs: dict[str, list] = {"plain": [], "tls": []}
    for r in range(rounds):
        for kind in ("plain", "tls"):
            log(f"tls: HTTP w=3 on a {kind} cluster (round {r + 1}/{rounds}), "
                f"{args.clients} clients, {args.seconds} s")
            if kind == "tls":
                _client_tls(certs)
            c = Cluster(workdir / f"tls-{kind}-{r}", master_flags, secondary_flags,
                        certs if kind == "tls" else None)
            try:
                pids = c.pids()
                pids.pop("nameserver", None)
                res = run_loadgen(args, "http", 3, url=c.master.url, pids=pids)
                c.wait_drained()
            finally:
                c.close()
                tls.uninstall()
            sums[kind] += res["appends_per_s"]
            runs[kind].append({"appends_per_s": res["appends_per_s"],
                               "latency_ms": res["latency_ms"], "errors": res["errors"],
                               "cpu_cores": res.get("cpu_cores", {})})
    return {"rounds": rounds, "runs": runs,
            "appends_per_s": {k: round(v / rounds, 1) for k, v in sums.items()},
            "ratio": round(sums["tls"] / sums["plain"], 3) if sums["plain"] else None}


def run(args, out: dict) -> None:
    """The part's entry point (bench/parts.py): beside the catchup part's plain figure when
    that part ran."""
    out["tls"] = measure(args, args.workdir, args.master_flags, args.secondary_flags,
                         out.get("catchup"))


def measure(args, workdir: Path, master_flags: dict, secondary_flags: dict,
            plain_catchup: dict | None = None) -> dict:
    from nodes import tls
    out = {"load": load_part(args, workdir, master_flags, secondary_flags)}
    if plain_catchup is None:
        log("tls: catch-up on a plain cluster")
        plain_catchup = catchup_case(args, workdir / "tls-cu-plain", master_flags, secondary_flags)
    certs = workdir / "tls-certs"
    log("tls: catch-up on a TLS cluster")
    _client_tls(certs)
    try:
        tls_catchup = catchup_case(args, workdir / "tls-cu-tls", master_flags, secondary_flags,
                                   certs)
    finally:
        tls.uninstall()
    out["catchup"] = {"messages": tls_catchup["messages"], "plain_rate": plain_catchup["rate"],
                      "tls_rate": tls_catchup["rate"], "tls": tls_catchup}
    ratio = out["load"]["ratio"]
    out["targets"] = [{"target": "HTTP w=3 appends/s, TLS node plane / plain", "value": ratio,
                       "op": ">=", "limit": TARGET_TLS_VS_PLAIN,
                       "met": ratio is not None and ratio >= TARGET_TLS_VS_PLAIN}]
    return out


def render(d: dict) -> str:
    load, cu = d["load"], d["catchup"]
    lines = ["", f"TLS on the node plane (HTTP w=3, plain vs mutual TLS, {load['rounds']} "
                 "round(s) alternated in this run)",
             f"{'case':<10}{'appends/s':>12}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"]
    for kind in ("plain", "tls"):
        for r in load["runs"][kind]:
            lat = r["latency_ms"]
            lines.append(f"{kind:<10}{r['appends_per_s']:>12,.0f}{lat['p50']:>9.2f}"
                         f"{lat['p99']:>9.2f}{r['errors']:>8}")
    lines.append(f"TLS / plain appends/s: {load['ratio']}")

    def rate(x):
        return "n/a" if x is None else f"{x:,.0f} msg/s"
    lines.append(f"catch-up of {cu['messages']:,} messages: plain {rate(cu['plain_rate'])}, "
                 f"TLS {rate(cu['tls_rate'])}")
    for t in d["targets"]:
        lines.append(f"  [{'met' if t['met'] else 'MISSED':>6}] {t['target']}: {t['value']} "
                     f"{t['op']} {t['limit']}")
    return "\n".join(lines)
