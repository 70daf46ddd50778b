"""The catch-up case (``--only catchup``): a secondary that was down while N messages were
appended rejoins; how fast it catches up.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from .cluster import Cluster, fill
from .common import http_json, log


def catchup_trial(args, workdir: Path, master_flags, secondary_flags, tls_dir=None) -> dict:
    """One catch-up on a fresh cluster: s2 down while N messages are appended, then back."""
    n = args.catchup
    cluster = Cluster(workdir, master_flags, secondary_flags, tls_dir)
    try:
        proxy = cluster.master_proxy()
        down = cluster.secondaries["s2"]
        down.kill()
        fill_s = fill(proxy, n, args.size, args.batch, 1, "c")
        cluster.wait_drained(names=("s1",))  # s1 is done: s2's catch-up competes with nothing
        url = down.url
        state = {"first_answer": None, "first_message": None, "done": None, "last": 0,
                 "messages_at_first_answer": None}
        stop = threading.Event()

        def watcher():
            deadline = time.monotonic() + args.catchup_timeout
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    status, body = http_json(url + "/health", timeout=2.0)
                except OSError:
                    time.sleep(0.002)
                    continue
                now = time.perf_counter()
                if status != 200:
                    time.sleep(0.002)
                    continue
                got = body.get("messages", 0)
                if state["first_answer"] is None:
                    state["first_answer"] = now
                    state["messages_at_first_answer"] = got
                state["last"] = got
                if got > 0 and state["first_message"] is None:
                    state["first_message"] = now
                if got >= n:
                    state["done"] = now
                    return
                time.sleep(0.002)

        t_restart = time.perf_counter()
        th = threading.Thread(target=watcher, daemon=True)
        th.start()
        down.restart()
        th.join(args.catchup_timeout + 5)
        stop.set()
        res = {
            "fill_s": round(fill_s, 3),
            "completed": state["done"] is not None,
            "held_at_end": state["last"],
            "messages_at_first_answer": state["messages_at_first_answer"],
            "restart_to_answer_s": None,
            "answer_to_first_message_s": None,
            "catchup_s": None,
            "restart_to_done_s": None,
            "rate": None,
            "rate_basis": None,
        }
        fa, fm, done = state["first_answer"], state["first_message"], state["done"]
        if fa is not None:
            res["restart_to_answer_s"] = round(fa - t_restart, 4)
        if fa is not None and fm is not None:
            res["answer_to_first_message_s"] = round(fm - fa, 4)
        if done is not None:
            res["catchup_s"] = round(done - fa, 4)
            res["restart_to_done_s"] = round(done - t_restart, 4)
            if done > fa:
                res["rate"], res["rate_basis"] = round(n / (done - fa), 1), "first /health answer"
            else:
                # it already held everything when /health first answered (it registers in the
                # name server, and is caught up, before its HTTP server starts): count from the
                # restart instead, which includes starting Python: a lower bound
                res["rate"], res["rate_basis"] = round(n / (done - t_restart), 1), "restart (already complete at first answer)"
        return res
    finally:
        cluster.close()


def catchup_case(args, workdir: Path, master_flags, secondary_flags, tls_dir=None) -> dict:
    n = args.catchup
    trials = []
    for i in range(args.catchup_trials):
        log(f"catch-up {i + 1}/{args.catchup_trials}: s2 killed, {n:,} messages appended "
            f"(append_many, w=1), s2 restarted")
        trials.append(catchup_trial(args, workdir / f"catchup{i}", master_flags, secondary_flags,
                                    tls_dir))
    rates = sorted(t["rate"] for t in trials if t["rate"] is not None)
    times = sorted(t["catchup_s"] for t in trials if t["catchup_s"] is not None)
    firsts = sorted(t["answer_to_first_message_s"] for t in trials if t["answer_to_first_message_s"] is not None)
    fills = [t["fill_s"] for t in trials]

    def median(xs):
        return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2 if xs else None

    return {
        "messages": n,
        "message_bytes": args.size,
        "trials": trials,
        "completed": all(t["completed"] for t in trials),
        "rate": median(rates) if len(rates) == len(trials) else None,  # the median trial
        "rate_min": rates[0] if rates else None,
        "rate_max": rates[-1] if rates else None,
        "catchup_s": median(times) if times else None,
        "catchup_s_max": times[-1] if times else None,
        "answer_to_first_message_s": median(firsts) if firsts else None,
        "fill_rate": round(n * len(fills) / sum(fills), 1) if fills else None,
    }
