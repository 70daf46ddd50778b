"""The history checker: finds anomalies in a recorded chaos run.

:func:`check` returns a list of :class:`Anomaly`; an empty list means the run was correct.
Each anomaly names the operations, nodes and time window that show it, and
:func:`format_anomaly` prints just that part of the history (the ops, the replica samples
taken after them, the faults around them and the relevant slice of the lists).

The rules (``master`` below is the master's final ``GET /messages``). Faults may kill and
restart the master (with its data directory) as well as the secondaries; an acknowledged write
must survive every one of them:

lost_ack            an acknowledged (201) message is missing from the master or a secondary
                    (the master kills that followed the ack are named in the evidence).
duplicate           a message appears more than once in some node's final list.
phantom             a message that no client sent appears somewhere.
divergence          a secondary's final list differs from the master's (``reorder`` when it holds
                    the same messages in another order).
not_prefix          a list sampled during the run is not a prefix of the master's final list
                    (a secondary showed a message past a gap, in the wrong place, or one that
                    later vanished).
wrong_seq           the seq returned for a 201 (or a binding 504, below) is not the message's
                    index+1 in ``master``; or two binding answers for the same message
                    (idempotent retry) disagree. After a master restart seqs go on from its
                    disk, so the seq of a 201 is the message's final position, always.
seq_reused          one seq was returned in binding answers for two different messages (a
                    restarted master that handed out a seq again).
realtime_order      A's 201 or 504 (one whose seq is A's final position) came before B's
                    first attempt was sent, yet B precedes A in ``master``. B is any message in
                    ``master``, whatever its client heard (an indeterminate op that was appended
                    was appended after it was sent); positions are final positions, so this
                    holds across restarts.
read_only_appended  a message whose only answers were 503, a 4xx or a refused connection
                    (``unavailable``: the master was down, nothing was sent) appears somewhere.
under_replicated    a 201 for w=k, yet right after the ack fewer than k nodes held it. Each
                    secondary's gap-free count was sampled right after the ack (count >= seq
                    means it holds the message). A node that did not answer counts as "maybe";
                    so does one killed between the op's start (the first attempt's, for a
                    retry) and its sample, unless the history's meta says ``data_dirs`` (a
                    secondary then syncs before it ACKs and comes back with its disk, so a kill
                    loses nothing it acknowledged). Anomaly when
                    1 (master) + holding + maybe < k. Late sampling can only over-count, so the
                    rule never blames a correct node; it catches acks that come too early.
bad_ack             a 201 whose body says acks < w, or echoes another w.
unexpected_status   any answer other than 201/503/504 (clients only send valid requests).
unhealthy_at_end    after healing, the master is read-only, a secondary is not Healthy, or
                    last_seq differs from the master's list length. Master restarts change
                    nothing here: the master is restarted last when healing and must be
                    writable (a quorum) and see every secondary Healthy.
new_log             (only when meta has ``log_id``) the master serves another log id at the end
                    than at the start: a restart began a new log instead of resuming its own.
no_convergence      the nodes did not reach the same list within the deadline.
write_without_quorum  (only when the history's meta has ``down_grace``) a write was accepted
                    (201/504) although, during its whole life, so many secondaries had been
                    killed or paused for longer than ``down_grace`` that no majority could exist.
spurious_read_only  (only when meta has ``up_grace``) a 503 although no fault of any kind had
                    touched any node for ``up_grace`` seconds before and during the op (a
                    paused or restarted master has not heard from its secondaries for a while
                    and may be read-only until they answer again).
unfinished_op       an op never completed (a client thread hung past its timeout).

Messages from 504 and indeterminate ops may or may not appear, but at most once (duplicate) and,
for a binding 504, only at its seq (wrong_seq). A 504 is *binding* when the master was never
killed after the op was sent. After a kill it is not: the master replicates while its own sync
runs, so a 504's holders (its ``acks``) may be secondaries only; a master that restarts without
them cuts the entry off, hands its seq to another message, and an idempotent retry may append
it again elsewhere. Only a 201 waits for the master's own disk.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .history import (
    ERROR,
    INDETERMINATE,
    MASTER,
    OK,
    READ_ONLY,
    TIMEOUT,
    UNAVAILABLE,
    FaultEvent,
    History,
    Op,
)

MAX_PER_KIND = 5  # anomalies of one kind reported in detail; the rest are counted

# Actions of the nemesis, grouped.
DOWN_START = {"kill", "pause"}
DOWN_END = {"restart", "resume", "heal"}


@dataclass
class Anomaly:
    kind: str
    detail: str
    ops: list[int] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    window: tuple[float, float] | None = None
    evidence: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"[{self.kind}] {self.detail}"


class _Collector:
    def __init__(self):
        self.items: list[Anomaly] = []
        self.suppressed: Counter = Counter()

    def add(self, a: Anomaly) -> None:
        if sum(1 for x in self.items if x.kind == a.kind) >= MAX_PER_KIND:
            self.suppressed[a.kind] += 1
        else:
            self.items.append(a)

    def result(self) -> list[Anomaly]:
        out = list(self.items)
        for kind, n in sorted(self.suppressed.items()):
            out.append(Anomaly(kind, f"... and {n} more {kind} anomalies not shown"))
        return out


def _excerpt(lst: list[str], i: int, radius: int = 3) -> str:
    lo = max(0, i - radius)
    hi = min(len(lst), i + radius + 1)
    cells = [f"{j + 1}:{lst[j]}" for j in range(lo, hi)]
    return (" ... " if lo > 0 else "") + ", ".join(cells) + (" ..." if hi < len(lst) else "")


def _first_diff(a: list[str], b: list[str]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _may_append(op: Op) -> bool:
    """Could this op have put its message into the log?"""
    if op.outcome in (OK, TIMEOUT, INDETERMINATE, None):
        return True
    if op.outcome == ERROR:
        return op.status is None or op.status >= 500
    return False  # READ_ONLY, UNAVAILABLE (nothing was sent)


def _master_kills(h: History) -> list[float]:
    return sorted(f.t for f in h.faults if f.target == MASTER and f.action == "kill" and f.ok)


def _binding(op: Op, master_kills: list[float]) -> bool:
    """Does this answer fix the message's seq for good (see the module's docstring)?"""
    if op.seq is None:
        return False
    if op.outcome == OK:
        return True
    if op.outcome != TIMEOUT:
        return False
    return not any(k >= op.invoke for k in master_kills)


def check(h: History) -> list[Anomaly]:
    out = _Collector()
    by_msg = h.ops_by_message()
    ops = h.ops
    final = h.final
    master = final.lists.get(MASTER)

    # -- completion, convergence and health at the end ---------------------------------------
    for op in ops:
        if op.outcome is None:
            out.add(Anomaly("unfinished_op", f"op#{op.id} never completed", ops=[op.id]))
    if not final.converged:
        why = "; ".join(final.errors) or "no reason recorded"
        out.add(Anomaly("no_convergence", f"nodes did not converge: {why}"))
    if master is None:
        out.add(Anomaly("no_convergence", "no final list from the master"))
        return out.result()

    health = final.health
    start_log = h.meta.get("log_id")
    if start_log is not None and health is not None and health.get("log_id") != start_log:
        out.add(Anomaly("new_log", f"the master served log {start_log} at the start but "
                        f"{health.get('log_id')} at the end", nodes=[MASTER]))
    if health is None:
        out.add(Anomaly("unhealthy_at_end", "no final /health from the master"))
    else:
        if health.get("read_only"):
            out.add(Anomaly("unhealthy_at_end",
                            f"master still read-only at the end (reason: {health.get('reason')})"))
        secs = health.get("secondaries") or {}
        for name in h.secondaries:
            st = secs.get(name)
            if st is None:
                out.add(Anomaly("unhealthy_at_end", f"{name} missing from the master's /health",
                                nodes=[name]))
            elif st.get("status") != "Healthy":
                out.add(Anomaly("unhealthy_at_end",
                                f"{name} is {st.get('status')} at the end: {st}", nodes=[name]))
        last_seq = health.get("last_seq")
        if last_seq is not None and last_seq != len(master):
            out.add(Anomaly("unhealthy_at_end",
                            f"master last_seq={last_seq} but its list has {len(master)} messages"))

    # -- every final list: duplicates, phantoms, equality with the master --------------------
    for node, lst in final.lists.items():
        if lst is None:
            if node != MASTER:
                out.add(Anomaly("no_convergence", f"no final list from {node}", nodes=[node]))
            continue
        counts = Counter(lst)
        for msg, n in counts.items():
            if n > 1:
                where = [i + 1 for i, m in enumerate(lst) if m == msg]
                out.add(Anomaly("duplicate", f"{msg!r} appears {n} times on {node} at positions "
                                f"{where}", ops=[o.id for o in by_msg.get(msg, [])], nodes=[node],
                                evidence=[f"{node}: {_excerpt(lst, where[1] - 1)}"]))
            if msg not in by_msg:
                out.add(Anomaly("phantom", f"{msg!r} on {node} was never sent by a client",
                                nodes=[node]))
        if node != MASTER and lst != master:
            i = _first_diff(lst, master)
            if Counter(lst) == Counter(master):
                kind, what = "reorder", "holds the master's messages in another order"
            else:
                missing = len(set(master) - set(lst))
                extra = len(set(lst) - set(master))
                kind = "divergence"
                what = (f"differs from the master ({len(lst)} vs {len(master)} messages, "
                        f"{missing} missing, {extra} extra)")
            ev = [f"first difference at position {i + 1}",
                  f"master: {_excerpt(master, i)}", f"{node}: {_excerpt(lst, i)}"]
            suspects = [m for m in (lst[i:i + 1] + master[i:i + 1]) if m in by_msg]
            out.add(Anomaly(kind, f"{node}'s final list {what}", nodes=[node],
                            ops=[o.id for m in suspects for o in by_msg[m]], evidence=ev))

    index: dict[str, int] = {}
    for i, m in enumerate(master):
        index.setdefault(m, i)

    seen_anywhere: set[str] = set()
    for lst in final.lists.values():
        if lst is not None:
            seen_anywhere.update(lst)

    # -- samples taken during the run must be prefixes of the master's final list ------------
    reported_prefix: set[str] = set()
    for rec in h.list_samples:
        seen_anywhere.update(rec.tail)
    for node, t, lst in h.iter_list_samples():
        if len(lst) <= len(master) and master[:len(lst)] == lst:
            continue
        if node in reported_prefix:
            out.suppressed["not_prefix"] += 1
            continue
        reported_prefix.add(node)
        i = _first_diff(lst, master)
        bad = lst[i] if i < len(lst) else None
        ev = [f"first difference at position {i + 1}",
              f"sample of {node} at {t:.3f}: {_excerpt(lst, i)}",
              f"master final:      {_excerpt(master, i)}"]
        op_ids = [o.id for o in by_msg.get(bad, [])] if bad is not None else []
        out.add(Anomaly("not_prefix", f"{node}'s list at {t:.3f} is not a prefix of the master's "
                        f"final list (position {i + 1}: {bad!r} where the master has "
                        f"{master[i] if i < len(master) else None!r})",
                        ops=op_ids, nodes=[node], window=(t - 2.0, t), evidence=ev))

    # -- per message: acks present, seq right, rejected writes absent -------------------------
    sec_finals = {n: l for n, l in final.lists.items() if n != MASTER and l is not None}
    sec_sets = {n: set(l) for n, l in sec_finals.items()}
    kills = _master_kills(h)
    for msg, group in by_msg.items():
        seqs = {op.seq for op in group if _binding(op, kills)}
        if len(seqs) > 1:
            out.add(Anomaly("wrong_seq", f"{msg!r} got different seqs {sorted(seqs)} from "
                            "different answers", ops=[o.id for o in group]))
        for op in group:
            if op.outcome == OK:
                if op.seq is None:
                    out.add(Anomaly("bad_ack", f"201 without a seq for {msg!r}", ops=[op.id]))
                if (op.acks is not None and op.acks < op.w) or (
                        op.resp_w is not None and op.resp_w != op.w):
                    out.add(Anomaly("bad_ack", f"201 for w={op.w} answered acks={op.acks} "
                                    f"w={op.resp_w}", ops=[op.id]))
                missing = [n for n, s in sec_sets.items() if msg not in s]
                if msg not in index:
                    missing.insert(0, MASTER)
                if missing:
                    after = [k for k in kills if k >= op.invoke]
                    ev = [f"master killed at {', '.join(f'{k:.3f}' for k in after)}, after the "
                          "op was sent"] if after else []
                    if op.seq is not None and 0 < op.seq <= len(master):
                        ev.append(f"master final: {_excerpt(master, op.seq - 1)}")
                    out.add(Anomaly("lost_ack", f"acknowledged {msg!r} (seq={op.seq}, w={op.w}) "
                                    f"is missing from {', '.join(missing)}", ops=[op.id],
                                    nodes=missing, evidence=ev))
                if op.seq is not None and msg in index and index[msg] + 1 != op.seq:
                    out.add(Anomaly("wrong_seq", f"{msg!r} was acknowledged with seq={op.seq} but "
                                    f"is at position {index[msg] + 1} on the master",
                                    ops=[op.id], evidence=[f"master: {_excerpt(master, index[msg])}"]))
            elif op.outcome == TIMEOUT and _binding(op, kills):
                at = master[op.seq - 1] if 0 < op.seq <= len(master) else None
                if at != msg:
                    ev = [f"master: {_excerpt(master, op.seq - 1)}"] if at is not None else []
                    out.add(Anomaly("wrong_seq", f"504 for {msg!r} returned seq={op.seq}, but the "
                                    f"master's final list has {at!r} there", ops=[op.id],
                                    evidence=ev))
            elif op.outcome == ERROR:
                out.add(Anomaly("unexpected_status", f"HTTP {op.status} for a valid request: "
                                f"{op.error}", ops=[op.id]))
        if msg in seen_anywhere and not any(_may_append(op) for op in group):
            where = [n for n, l in final.lists.items() if l is not None and msg in l]
            kinds = sorted({o.outcome for o in group})
            out.add(Anomaly("read_only_appended", f"{msg!r} was refused ({'/'.join(kinds)}) but "
                            f"appears on {', '.join(where) or 'a node during the run'}",
                            ops=[o.id for o in group], nodes=where))

    # -- one seq, one message ----------------------------------------------------------------
    _check_seq_reuse(h, kills, out)

    # -- real-time order ---------------------------------------------------------------------
    _check_realtime(h, by_msg, index, master, out)

    # -- write concern -----------------------------------------------------------------------
    _check_write_concern(h, out)

    # -- read-only mode (needs the thresholds in meta) ----------------------------------------
    _check_quorum(h, out)

    return out.result()


def _check_seq_reuse(h: History, kills: list[float], out: _Collector) -> None:
    """Binding answers (201, binding 504) never give one seq to two messages."""
    by_seq: dict[int, dict[str, Op]] = {}
    for op in h.ops:
        if _binding(op, kills):
            by_seq.setdefault(op.seq, {}).setdefault(op.message, op)
    for seq, msgs in sorted(by_seq.items()):
        if len(msgs) < 2:
            continue
        group = sorted(msgs.values(), key=lambda o: o.invoke)
        t1, t2 = group[0].invoke, max(o.complete or o.invoke for o in group)
        between = [k for k in kills if t1 <= k <= t2]
        ev = [f"master killed at {', '.join(f'{k:.3f}' for k in between)}, between the "
              "answers"] if between else []
        out.add(Anomaly("seq_reused", f"seq={seq} was answered for {len(msgs)} different "
                        f"messages: {', '.join(repr(m) for m in msgs)}",
                        ops=[o.id for o in group], nodes=[MASTER], window=(t1, t2),
                        evidence=ev))


def _check_realtime(h: History, by_msg: dict[str, list[Op]], index: dict[str, int],
                    master: list[str], out: _Collector) -> None:
    """If A's 201 or 504 (one whose seq is A's final position) came before B's first attempt
    was sent, then A precedes B in the master's final list. B is any message in that list."""
    done = sorted(((op.complete, index[op.message], op) for op in h.ops
                   if op.outcome in (OK, TIMEOUT) and op.seq is not None
                   and op.complete is not None and index.get(op.message, -2) + 1 == op.seq),
                  key=lambda x: x[0])
    starts = sorted(((min(o.invoke for o in group), index[msg], msg)
                     for msg, group in by_msg.items() if msg in index), key=lambda x: x[0])
    best: tuple | None = None  # the answered message with the highest position so far
    j = 0
    for t, pos, msg in starts:
        while j < len(done) and done[j][0] < t:
            if best is None or done[j][1] > best[1]:
                best = done[j]
            j += 1
        if best is not None and best[1] > pos:
            a = best[2]
            b = min(by_msg[msg], key=lambda o: o.invoke)
            out.add(Anomaly("realtime_order", f"op#{a.id} ({a.message!r}) was answered "
                            f"{a.status} with seq={a.seq} at {a.complete:.3f}, before op#{b.id} "
                            f"({msg!r}) was sent at {b.invoke:.3f}, yet {msg!r} is at position "
                            f"{pos + 1}, before it", ops=[a.id, b.id],
                            evidence=[f"master: {_excerpt(master, pos)}"]))


def _kill_times(h: History) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for f in h.faults:
        if f.action == "kill":
            out.setdefault(f.target, []).append(f.t)
    return out


def _check_write_concern(h: History, out: _Collector) -> None:
    # without data directories a killed secondary comes back empty: it may have lost what it
    # acknowledged. With them it syncs before it ACKs, so a kill excuses nothing.
    kills = {} if h.meta.get("data_dirs") else _kill_times(h)
    # an idempotent retry is answered from what the master learnt since the first attempt,
    # so a kill since the first attempt of the message excuses a node
    first_invoke: dict[str, float] = {}
    for op in h.ops:
        first_invoke[op.message] = min(op.invoke, first_invoke.get(op.message, op.invoke))
    samples: dict[int, dict[str, object]] = {}
    for s in h.replica_samples:
        samples.setdefault(s.op_id, {}).setdefault(s.node, s)
    for op in h.ops:
        if op.outcome != OK or op.seq is None or op.w <= 1 or op.id not in samples:
            continue
        got = samples[op.id]
        holding, maybe, lacking = [], [], []
        for node in h.secondaries:
            s = got.get(node)
            since = first_invoke[op.message]
            killed = s is not None and any(since <= k <= s.t for k in kills.get(node, []))
            if s is None or s.count is None or killed:
                maybe.append(node)
            elif s.count >= op.seq:
                holding.append(node)
            else:
                lacking.append(node)
        if 1 + len(holding) + len(maybe) < op.w:
            t_end = max((got[n].t for n in got), default=op.complete)
            out.add(Anomaly("under_replicated", f"{op.message!r} seq={op.seq} acknowledged for "
                            f"w={op.w}, but right after the ack only {1 + len(holding)} node(s) "
                            f"held it (master{''.join(', ' + n for n in holding)}; lacking: "
                            f"{', '.join(lacking)})", ops=[op.id], nodes=lacking,
                            window=(op.invoke, t_end)))


def _intervals(h: History, starts: set[str], is_end) -> dict[str, list[tuple[float, float]]]:
    """Per secondary, [start, end) intervals opened by a fault in ``starts`` and closed by the
    first later event for which ``is_end(event)`` is true (or never: end = +inf)."""
    res: dict[str, list[tuple[float, float]]] = {n: [] for n in h.secondaries}
    open_at: dict[str, float] = {}
    for f in sorted(h.faults, key=lambda f: f.t):
        if f.target not in res:
            continue
        if f.action in starts and f.ok:
            open_at.setdefault(f.target, f.t)
        elif is_end(f) and f.target in open_at:
            res[f.target].append((open_at.pop(f.target), f.t))
    for n, t in open_at.items():
        res[n].append((t, float("inf")))
    return res


def _is_disturbing(f: FaultEvent) -> bool:
    if f.action in DOWN_START:
        return True
    if f.action == "faults":
        return any(v for v in f.params.values())
    return False


def _check_quorum(h: History, out: _Collector) -> None:
    size = 1 + len(h.secondaries)
    needed = size // 2 + 1
    down_grace = h.meta.get("down_grace")
    up_grace = h.meta.get("up_grace")

    if down_grace is not None:
        down = _intervals(h, DOWN_START, lambda f: f.action in DOWN_END)
        # definitely down (as the master must see it) from start+grace to the end
        sure = {n: [(a + down_grace, b) for a, b in iv if b > a + down_grace]
                for n, iv in down.items()}

        def down_throughout(node: str, t1: float, t2: float) -> bool:
            return any(a <= t1 and t2 <= b for a, b in sure[node])

        for op in h.ops:
            if op.outcome not in (OK, TIMEOUT) or op.complete is None:
                continue
            gone = [n for n in h.secondaries if down_throughout(n, op.invoke, op.complete)]
            if size - len(gone) < needed:
                out.add(Anomaly("write_without_quorum", f"op#{op.id} was accepted ({op.status}) "
                                f"while {', '.join(gone)} had been down for more than "
                                f"{down_grace:g}s (only {size - len(gone)} of {size} nodes up, "
                                f"{needed} needed)", ops=[op.id], nodes=gone,
                                window=(op.invoke - down_grace - 1, op.complete)))

    if up_grace is not None:
        # "disturbed": from any fault's start until its end + up_grace
        disturbed: dict[str, list[tuple[float, float]]] = {n: [] for n in h.secondaries}
        state: dict[str, dict[str, float]] = {n: {} for n in h.secondaries}
        for f in sorted(h.faults, key=lambda f: f.t):
            if f.target not in state:
                continue
            st = state[f.target]
            if f.action in DOWN_START:
                st.setdefault("down", f.t)
            elif f.action in ("restart", "resume"):
                if "down" in st:
                    disturbed[f.target].append((st.pop("down"), f.t + f.took + up_grace))
            elif f.action == "faults":
                if _is_disturbing(f):
                    st.setdefault("faults", f.t)
                elif "faults" in st:
                    disturbed[f.target].append((st.pop("faults"), f.t + f.took + up_grace))
            elif f.action == "heal":
                for k in list(st):
                    disturbed[f.target].append((st.pop(k), f.t + f.took + up_grace))
        for n, st in state.items():
            for t in st.values():
                disturbed[n].append((t, float("inf")))

        # a fault of the master (kill -> restart, pause -> resume) disturbs every secondary:
        # the master has not heard from them while it was down
        m_open: float | None = None
        for f in sorted(h.faults, key=lambda f: f.t):
            if f.target != MASTER:
                continue
            if f.action in DOWN_START and m_open is None:
                m_open = f.t
            elif f.action in DOWN_END and m_open is not None:
                for n in h.secondaries:
                    disturbed[n].append((m_open, f.t + f.took + up_grace))
                m_open = None
        if m_open is not None:
            for n in h.secondaries:
                disturbed[n].append((m_open, float("inf")))

        for op in h.ops:
            if op.outcome != READ_ONLY or op.complete is None:
                continue
            hit = [n for n in h.secondaries
                   if any(a <= op.complete and op.invoke - up_grace <= b for a, b in disturbed[n])]
            if not hit:
                out.add(Anomaly("spurious_read_only", f"op#{op.id} got 503 although no secondary "
                                f"had been touched by a fault for {up_grace:g}s",
                                ops=[op.id], window=(op.invoke - up_grace, op.complete)))


# -- reporting -------------------------------------------------------------------------------

def _active_at(h: History, t: float) -> list[FaultEvent]:
    """The fault events (kill, pause, faults with a value) still in effect at time t."""
    open_: dict[str, FaultEvent] = {}
    for f in sorted(h.faults, key=lambda f: f.t):
        if f.t > t:
            break
        if _is_disturbing(f):
            open_[f.target] = f
        elif f.action in ("restart", "resume", "heal", "faults"):
            open_.pop(f.target, None)
    return list(open_.values())


def format_anomaly(h: History, a: Anomaly, lookback: float | None = None) -> str:
    """The smallest part of the history that shows ``a``."""
    if lookback is None:
        lookback = float(h.meta.get("down_grace") or 2.0) + 1.0
    lines = [str(a)]
    ops = [h.ops[i] for i in a.ops if 0 <= i < len(h.ops)]
    if ops:
        lines.append("  operations:")
        lines += [f"    {op.describe()}" for op in ops]
        ids = {op.id for op in ops}
        rs = [s for s in h.replica_samples if s.op_id in ids]
        if rs:
            lines.append("  replica samples:")
            lines += [f"    {s.describe()}" for s in rs]
    window = a.window
    if window is None and ops:
        window = (min(op.invoke for op in ops) - lookback,
                  max((op.complete or op.invoke) for op in ops))
    if window is not None:
        def relevant(f: FaultEvent) -> bool:
            return not a.nodes or f.target in a.nodes
        active = [f for f in _active_at(h, window[0]) if relevant(f)] or _active_at(h, window[0])
        if active:
            lines.append(f"  faults in effect at {window[0]:.3f}:")
            lines += [f"    {f.describe()}" for f in active]
        fs = [f for f in h.faults if window[0] <= f.t <= window[1] and relevant(f)]
        if not fs:
            fs = [f for f in h.faults if window[0] <= f.t <= window[1]]
        lines.append(f"  faults between {window[0]:.3f} and {window[1]:.3f}:"
                     + ("" if fs else " none"))
        lines += [f"    {f.describe()}" for f in fs]
    if a.evidence:
        lines.append("  evidence:")
        lines += [f"    {e}" for e in a.evidence]
    return "\n".join(lines)
