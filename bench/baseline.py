"""``python -m bench --only baseline --baseline REF [--quick]``: the throughput cases of the current
tree beside those of a git ref, measured in the same run on the same machine.

Figures from different runs on a shared 2-core machine differ by more than most changes do,
so a before/after comparison has to alternate the two trees in one run. This makes a
temporary ``git worktree add --detach`` of REF, and for R rounds (3, quick 1) runs on each
tree, in the order baseline-current, current-baseline, ... (so a drift of the machine during
the run does not favour either tree):

- HTTP w=1 and w=3 appends/s and p99 (bench.load.load_case, the load generator of this tree);
- the catch-up rate of a restarted secondary (bench.catchup.catchup_case, one trial per round).

Both trees' nodes run with this Python (sys.executable, the project's .venv), with the
working directory at the tree's root: ``python -m nodes.master_node`` imports the nodes
package from its working directory first. The clients (load generator, the catch-up
watcher) are this tree's, the same for both. It prints the sum of each figure over the
rounds, the ratio current/baseline of the sums and each round's ratio, and removes the
worktree at the end, also on error or Ctrl-C.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

from .catchup import catchup_case
from .common import REPO, log, parse_flags
from .load import load_case
from .procs import Profiler
from .report import git_commit
from .trees import check_imports_from, node_cwd, reap_nodes, rooted_at, worktree  # noqa: F401

# main when the shell issue's "before" figures were taken
DEFAULT_BASELINE = "5b74b8d"
TREES = ("baseline", "current")
# (figure, which way is better)
METRICS = (
    ("http-w1 appends/s", "higher"),
    ("http-w3 appends/s", "higher"),
    ("http-w1 p99 ms", "lower"),
    ("http-w3 p99 ms", "lower"),
    ("catch-up msg/s", "higher"),
)


# --------------------------------------------------------------------------- pure logic


def schedule(rounds: int) -> list[tuple[int, str]]:
    """(round, tree) in run order: baseline first in even rounds, current first in odd ones,
    so neither tree always runs on the warmer (or busier) machine."""
    order = []
    for r in range(rounds):
        pair = TREES if r % 2 == 0 else TREES[::-1]
        order += [(r, t) for t in pair]
    return order


def _ratio(num, den):
    return None if num is None or den is None or den == 0 else round(num / den, 3)


def compare(runs: dict[str, list[dict]], metrics=METRICS) -> dict:
    """Per figure: the sums over the rounds where both trees have it, the ratio
    current/baseline of those sums, and each round's ratio (None where a tree lacks it,
    e.g. a catch-up that did not complete)."""
    base, cur = runs.get("baseline", []), runs.get("current", [])
    out = {}
    for name, better in metrics:
        pairs = [(b.get(name), c.get(name)) for b, c in zip(base, cur)]
        both = [(b, c) for b, c in pairs if b is not None and c is not None]
        bsum = sum(b for b, _ in both) if both else None
        csum = sum(c for _, c in both) if both else None
        out[name] = {
            "better": better,
            "baseline_sum": None if bsum is None else round(bsum, 3),
            "current_sum": None if csum is None else round(csum, 3),
            "ratio": _ratio(csum, bsum),
            "round_ratios": [_ratio(c, b) for b, c in pairs],
            "paired_rounds": len(both),
        }
    return out


def figures(load: dict[int, dict], catchup: dict | None) -> dict:
    """One round's figures of one tree, flat, from load_case results by w and catchup_case."""
    out = {}
    for w in (1, 3):
        res = load.get(w) or {}
        out[f"http-w{w} appends/s"] = res.get("appends_per_s")
        out[f"http-w{w} p99 ms"] = (res.get("latency_ms") or {}).get("p99")
    out["catch-up msg/s"] = (catchup or {}).get("rate")
    return out


# --------------------------------------------------------------------------- trees


def measure(root: Path, args, workdir: Path) -> dict:
    """One round of one tree: HTTP w=1 and w=3 on one cluster, then one catch-up trial."""
    from .cluster import Cluster

    mflags = parse_flags(getattr(args, "master_flag", []))
    sflags = parse_flags(getattr(args, "secondary_flag", []))
    load = {}
    with rooted_at(root):
        c = Cluster.__new__(Cluster)
        try:
            c.__init__(workdir / "load", mflags, sflags)
            cwd = node_cwd(c.pids().get("master"))
            if cwd is None or Path(cwd).resolve() != root.resolve():
                raise RuntimeError(f"the master runs in {cwd}, not in {root}")
            for w in (1, 3):
                log(f"baseline: {root.name}: HTTP w={w}, {args.clients} clients, {args.seconds} s")
                load[w] = load_case(args, c, "http", w, Profiler(None, 0, False))
        finally:
            if hasattr(c, "lc"):
                c.close()
        cu = catchup_case(args, workdir, mflags, sflags)
    return {"cwd": cwd, "figures": figures(load, cu),
            "load": {f"http-w{w}": {"appends_per_s": r["appends_per_s"],
                                    "latency_ms": r["latency_ms"], "errors": r["errors"],
                                    "cpu_cores": r.get("cpu_cores", {})}
                     for w, r in load.items()},
            "catchup": {k: cu.get(k) for k in ("messages", "rate", "catchup_s", "completed")}}


# --------------------------------------------------------------------------- part


def add_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("baseline comparison")
    g.add_argument("--baseline", default=None, metavar="REF",
                   help=f"git ref to compare the current tree with ("
                        f"default {DEFAULT_BASELINE}, main when the shell issue was measured)")
    g.add_argument("--baseline-rounds", type=int, default=None,
                   help="rounds of the baseline/current alternation (3, quick 1)")


def case_args(args) -> SimpleNamespace:
    """What load_case and catchup_case read, from args or the bench's defaults."""
    quick = bool(getattr(args, "quick", False))

    def pick(name, full, small):
        v = getattr(args, name, None)
        return v if v is not None else (small if quick else full)

    return SimpleNamespace(
        quick=quick,
        clients=pick("clients", 16, 16), procs=pick("procs", 2, 2),
        seconds=pick("seconds", 10.0, 2.0), warmup=pick("warmup", 1.0, 0.5),
        size=pick("size", 100, 100), batch=pick("batch", 10_000, 10_000),
        catchup=pick("catchup", 100_000, 10_000),
        catchup_timeout=pick("catchup_timeout", 120.0, 120.0),
        catchup_trials=1,          # the rounds repeat it
        master_flag=getattr(args, "master_flag", []), secondary_flag=getattr(args, "secondary_flag", []),
        rounds=pick("baseline_rounds", 3, 1),
        ref=getattr(args, "baseline", None) or DEFAULT_BASELINE,
    )


def run(args, out: dict) -> None:
    a = case_args(args)
    workdir = Path(tempfile.mkdtemp(prefix="replog-bench-baseline-"))
    res: dict = {"ref": a.ref, "rounds": a.rounds, "current": git_commit(),
                 "python": sys.executable,
                 "params": {k: getattr(a, k) for k in ("clients", "procs", "seconds", "warmup",
                                                        "size", "catchup")},
                 "order": [], "runs": {t: [] for t in TREES}}
    out["baseline"] = res
    try:
        with worktree(a.ref) as (base_root, sha):
            res["sha"] = sha
            res["imports_from"] = {"baseline": check_imports_from(base_root),
                                   "current": check_imports_from(REPO)}
            roots = {"baseline": base_root, "current": REPO}
            try:
                for r, tree in schedule(a.rounds):
                    log(f"baseline: round {r + 1}/{a.rounds}, {tree}")
                    res["order"].append(tree)
                    res["runs"][tree].append(measure(roots[tree], a, workdir / f"{tree}-{r}"))
            finally:
                reap_nodes()      # before the worktree they run in goes
    finally:
        if getattr(args, "keep_workdir", False):
            log(f"baseline: cluster logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    res["compare"] = compare({t: [x["figures"] for x in res["runs"][t]] for t in TREES})
    print(render(res))


def _n(x) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.2f}"


def render(res: dict) -> str:
    lines = ["", f"current ({res['current']}) against baseline {res['ref']} "
                 f"({(res.get('sha') or '?')[:10]}), {res['rounds']} round(s) in the order "
                 f"{' '.join(t[0].upper() for t in res['order'])} (B baseline, C current)",
             f"{'figure':<20}{'better':>7}{'baseline sum':>14}{'current sum':>13}"
             f"{'cur/base':>10}  rounds"]
    for name, c in res.get("compare", {}).items():
        rounds = " ".join("-" if x is None else f"{x:.3f}" for x in c["round_ratios"])
        ratio = "-" if c["ratio"] is None else f"{c['ratio']:.3f}"
        lines.append(f"{name:<20}{c['better']:>7}{_n(c['baseline_sum']):>14}"
                     f"{_n(c['current_sum']):>13}{ratio:>10}  {rounds}")
    return "\n".join(lines)
