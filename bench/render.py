"""The report as text (the table printed at the end) and as a PNG chart.

Shared; imports no case module.
"""

from __future__ import annotations

from pathlib import Path

from .common import fmt_num, log
from .report import BUSY_OTHER_CORES, TARGET_CATCHUP_MESSAGES, TARGET_MEMORY_MESSAGES



def render_table(report: dict) -> str:
    lines = []
    m = report["meta"]
    p = report["params"]
    lines.append(
        f"replog benchmark  {m['date']}  {m['platform']}  python {m['python']}  cpus={m['cpu_count']}  "
        f"commit={m['commit']}  load average at start {m.get('loadavg_at_start')}"
    )
    lines.append(
        f"{p['clients']} clients in {p['procs']} load-generator processes, {p['seconds']} s per case "
        f"(+{p['warmup']} s warm-up), {p['size']}-byte messages; load generator, master, secondaries "
        f"and name server all share the machine's {m['cpu_count']} cores"
    )
    cases = report["cases"]
    ratios = report["ratios"]
    if cases:
        hdr = (f"{'case':<18}{'appends/s':>11}{'vs w=1':>8}{'vs ceil':>9}{'p50 ms':>9}{'p90 ms':>9}"
               f"{'p99 ms':>9}{'max ms':>9}{'errors':>8}{'cpu us':>8}  cores: master s1 s2 | client | server | machine")
        lines.append("")
        lines.append(hdr)
        lines.append("-" * len(hdr))
        for c in cases:
            r = ratios.get(c["case"], {})
            lat = c["latency_ms"]
            cpu = c.get("cpu_cores", {})
            if c["case"].startswith("ceiling"):
                cpus = (f"{'':>14} | {fmt_num(cpu.get('loadgen'), 2):>4} | {fmt_num(cpu.get('server'), 2):>4} |"
                        f" {fmt_num(cpu.get('machine'), 2)}")
            else:
                cpus = (f"{fmt_num(cpu.get('master'), 2):>4} {fmt_num(cpu.get('s1'), 2):>4} "
                        f"{fmt_num(cpu.get('s2'), 2):>4} | {fmt_num(cpu.get('loadgen'), 2):>4} |      |"
                        f" {fmt_num(cpu.get('machine'), 2)}")
            lines.append(
                f"{c['case']:<18}{fmt_num(c['appends_per_s']):>11}"
                f"{fmt_num(r.get('throughput_vs_w1'), 2):>8}{fmt_num(r.get('throughput_vs_ceiling'), 2):>9}"
                f"{fmt_num(lat['p50'], 2):>9}{fmt_num(lat['p90'], 2):>9}{fmt_num(lat['p99'], 2):>9}"
                f"{fmt_num(lat['max'], 1):>9}{c['errors']:>8}{fmt_num(c.get('server_cpu_us_per_append')):>8}  {cpus}"
            )
    if cases:
        lines.append(
            "cpu us: CPU microseconds of the master (ceilings: of the trivial server) per append; cores: "
            "average cores used in the measured window (client: whole life, an upper bound); machine: the "
            f"whole machine, out of {m['cpu_count']}; anything above our processes' sum is someone else's load"
        )
        busy = [f"{c['case']} (+{c['cpu_cores']['other']:.2f})" for c in cases
                if c.get("cpu_cores", {}).get("other", 0) > BUSY_OTHER_CORES]
        if busy:
            lines.append(
                f"WARNING: the machine ran other work (cores beyond ours) during: {', '.join(busy)}; "
                "those figures are low: rerun on a quiet machine"
            )
    cu = report.get("catchup")
    if cu:
        lines.append("")
        lines.append(
            f"catch-up ({len(cu['trials'])} trial{'s, median' if len(cu['trials']) > 1 else ''}): {cu['messages']:,} messages held "
            f"{fmt_num(cu['catchup_s'], 3)} s after the restarted secondary's first /health answer = "
            f"{fmt_num(cu['rate'])} msg/s (trials {fmt_num(cu['rate_min'])} .. {fmt_num(cu['rate_max'])}); "
            f"first message {fmt_num(cu['answer_to_first_message_s'], 3)} s after that answer; "
            f"filled at {fmt_num(cu['fill_rate'])} msg/s"
            + (" [smaller than the target's size: not comparable to targets]"
               if cu["messages"] < TARGET_CATCHUP_MESSAGES else "")
        )
        for i, t in enumerate(cu["trials"], 1):
            lines.append(
                f"  trial {i}: restart->answer {fmt_num(t['restart_to_answer_s'], 3)} s, answer->first message "
                f"{fmt_num(t['answer_to_first_message_s'], 3)} s, answer->all {fmt_num(t['catchup_s'], 3)} s, "
                f"{fmt_num(t['rate'])} msg/s (from {t['rate_basis']})"
            )
    mem = report.get("memory")
    if mem:
        lines.append(
            f"memory: {mem['messages']:,} messages of {mem['message_bytes']} B "
            f"(filled at {fmt_num(mem['fill_rate'])} msg/s): "
            + ", ".join(
                f"{k} {fmt_num(v['bytes_per_message'])} B/msg ({v['x_payload']:.2f}x, "
                f"RSS {v['rss_before'] / 2**20:.0f} -> {v['rss_after'] / 2**20:.0f} MiB)"
                for k, v in mem["nodes"].items()
            )
            + (" [smaller than the target's size: not comparable to targets]"
               if mem["messages"] < TARGET_MEMORY_MESSAGES else "")
        )
    if report["targets"]:
        lines.append("")
        lines.append("targets:")
        for t in report["targets"]:
            if t.get("comparable", True) is False and t["value"] is not None:
                state = "n/c"
            else:
                state = "n/a" if t["met"] is None else ("met" if t["met"] else "MISSED")
            val = t["value"]
            lines.append(
                f"  {state:<7}{t['text']:<58} {fmt_num(val, 3) if isinstance(val, float) and val < 100 else fmt_num(val)}"
                f" {t['op']} {fmt_num(t['limit'], 2) if t['limit'] < 100 else fmt_num(t['limit'])}"
                + (f"  (not comparable to the target: {t['note']})" if state == "n/c" else "")
            )
    return "\n".join(lines)


def draw_chart(report: dict, path: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib not installed: no chart (pip install '.[bench]')")
        return None
    cases = report["cases"]
    if not cases:
        return None
    names = [c["case"] for c in cases]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    width = 0.27
    xs = range(len(names))
    for i, (pct, color) in enumerate((("p50", "#4c72b0"), ("p90", "#dd8452"), ("p99", "#c44e52"))):
        vals = [c["latency_ms"][pct] or 0 for c in cases]
        ax1.bar([x + (i - 1) * width for x in xs], vals, width, label=pct, color=color)
    ax1.set_xticks(list(xs))
    ax1.set_xticklabels(names, rotation=30, ha="right")
    ax1.set_ylabel("latency (ms)")
    ax1.set_title(f"latency percentiles by w ({report['params']['clients']} clients)")
    ax1.legend()
    ax1.grid(axis="y", alpha=0.3)
    tps = [c["appends_per_s"] for c in cases]
    colors = ["#999999" if n.startswith("ceiling") else "#55a868" for n in names]
    ax2.bar(list(xs), tps, color=colors)
    for x, v in zip(xs, tps):
        ax2.text(x, v, f"{v:,.0f}", ha="center", va="bottom", fontsize=8)
    ax2.set_xticks(list(xs))
    ax2.set_xticklabels(names, rotation=30, ha="right")
    ax2.set_ylabel("appends/s")
    ax2.set_title("throughput (grey: trivial server, the ceiling)")
    ax2.grid(axis="y", alpha=0.3)
    m = report["meta"]
    fig.suptitle(f"replog on {m['cpu_count']} cores, Python {m['python']}, {m['date'][:10]}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)
