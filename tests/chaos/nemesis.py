"""The nemesis: a seeded schedule of faults and the thread that applies it.

:func:`make_schedule` is pure: the same seed, duration and node names always give the same
list of :class:`Step`. The secondaries' schedule is a sequence of *episodes* separated by quiet
gaps; each episode picks one, two or three secondaries and gives each one fault, with its own
start offset and length, so quorum is lost and regained in varying orders. About a third of the
episodes are "quorum" episodes: two or three secondaries killed or paused together for 2-4.5 s,
which leaves a four-node cluster without a majority once the master marks them Unhealthy. The
faults of a secondary:

* ``kill``  -> ``restart``   kill -9, later start again with its data directory: it comes back
                             with what it had synced to disk and is sent only the rest
* ``pause`` -> ``resume``    SIGSTOP / SIGCONT
* ``faults`` error_rate=r -> ``faults`` error_rate=0    error injection on ``POST /faults``
* ``faults`` delay=d -> ``faults`` delay=0              delay injection on ``POST /faults``

The master (``ScheduleConfig.master``; None leaves it alone) has its own schedule, drawn from a
second random stream of the same seed (so adding it left every seed's secondary faults as they
were): every ``master_gap`` seconds one fault, independent of what the secondaries go through:

* ``kill``  -> ``restart``   kill -9 of the master, restarted with its data directory after
                             ``master_down`` s: it resumes its log (same log id, its seqs go on)
* ``pause`` -> ``resume``    SIGSTOP / SIGCONT of the master

A node never has two faults at once, and every fault ends before ``duration``.
:class:`Nemesis` applies a schedule against real processes, records every action in the
history and can :meth:`Nemesis.heal` everything (resume, restart the dead, clear faults; the
master last, so that it finds its secondaries up when it starts).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

KINDS = ("kill", "pause", "error", "delay")
END_OF = {"kill": "restart", "pause": "resume"}
MASTER = "master"


@dataclass(frozen=True)
class Step:
    t: float  # seconds after the start of the fault phase
    action: str  # kill, restart, pause, resume, faults
    target: str
    params: tuple = ()  # ((key, value), ...) for "faults"

    def describe(self) -> str:
        p = " ".join(f"{k}={v}" for k, v in self.params)
        return f"{self.t:7.2f} {self.action:<7} {self.target} {p}".rstrip()


@dataclass
class ScheduleConfig:
    kind_weights: dict = field(default_factory=lambda: {"kill": 3, "pause": 3, "error": 2,
                                                        "delay": 2})
    targets_weights: dict = field(default_factory=lambda: {1: 4, 2: 4, 3: 2})
    warmup: float = 1.0  # no fault in the first seconds
    min_fault: float = 0.3
    max_fault: float | None = None  # default: scales with the duration (2.5 .. 8 s)
    short_fault_p: float = 0.25  # chance of a very short fault (faster than the health timers)
    max_stagger: float = 1.5  # targets of one episode start up to this much apart
    min_quiet: float = 0.3
    max_quiet: float = 2.5
    p_quorum_episode: float = 0.35  # chance that an episode kills/pauses 2-3 secondaries
    quorum_fault: tuple = (2.0, 4.5)  # length range of the faults of such an episode
    delays: tuple = (0.05, 0.2, 0.6, 1.2)
    error_rates: tuple = (0.3, 0.3, 0.6, 1.0)
    # the master's own faults
    master: str | None = MASTER  # its name in the schedule; None: no master faults
    master_kind_weights: dict = field(default_factory=lambda: {"kill": 3, "pause": 1})
    master_first: tuple = (2.0, 6.0)  # when its first fault starts
    master_gap: tuple = (4.0, 9.0)  # from the end of one master fault to the next
    master_down: tuple = (0.1, 1.2)  # kill -> restart
    master_pause: tuple = (0.3, 2.0)  # pause -> resume


def make_schedule(seed: int, duration: float, secondaries: list[str],
                  cfg: ScheduleConfig | None = None) -> list[Step]:
    cfg = cfg or ScheduleConfig()
    rng = random.Random(seed)
    nodes = list(secondaries)
    max_fault = cfg.max_fault if cfg.max_fault is not None else min(8.0, max(2.5, duration / 4))
    kinds = list(cfg.kind_weights)
    kind_w = [cfg.kind_weights[k] for k in kinds]
    counts = [k for k in cfg.targets_weights if k <= len(nodes)]
    count_w = [cfg.targets_weights[k] for k in counts]

    steps: list[Step] = []
    t = cfg.warmup
    while t + cfg.min_fault < duration:
        quorum = len(nodes) >= 2 and rng.random() < cfg.p_quorum_episode
        if quorum:  # two or three secondaries go down together, long enough to be noticed
            n = rng.choice([k for k in (2, 3) if k <= len(nodes)])
        else:
            n = rng.choices(counts, count_w)[0]
        targets = rng.sample(nodes, n)
        episode_end = t
        for target in targets:
            if quorum:
                start = t + rng.uniform(0.0, 0.5)
                length = rng.uniform(*cfg.quorum_fault)
                kind = rng.choice(("kill", "pause"))
            else:
                start = t + rng.uniform(0.0, cfg.max_stagger)
                if rng.random() < cfg.short_fault_p:
                    length = rng.uniform(cfg.min_fault, 1.0)
                else:
                    length = rng.uniform(1.0, max_fault)
                kind = rng.choices(kinds, kind_w)[0]
            end = min(start + length, duration)
            if end - start < cfg.min_fault:
                continue
            start, end = round(start, 3), round(end, 3)
            if kind in END_OF:
                steps.append(Step(start, kind, target))
                steps.append(Step(end, END_OF[kind], target))
            else:
                key = "error_rate" if kind == "error" else "delay"
                value = rng.choice(cfg.error_rates if kind == "error" else cfg.delays)
                steps.append(Step(start, "faults", target, ((key, value),)))
                steps.append(Step(end, "faults", target, ((key, 0.0),)))
            episode_end = max(episode_end, end)
        t = episode_end + rng.uniform(cfg.min_quiet, cfg.max_quiet)
    if cfg.master is not None:
        steps += _master_schedule(random.Random(seed * 7919 + 104729), duration, cfg)
    order = {"restart": 0, "resume": 0, "faults": 1, "kill": 2, "pause": 2}
    steps.sort(key=lambda s: (s.t, order.get(s.action, 3), s.target))
    return steps


def _master_schedule(rng: random.Random, duration: float, cfg: ScheduleConfig) -> list[Step]:
    kinds = list(cfg.master_kind_weights)
    weights = [cfg.master_kind_weights[k] for k in kinds]
    steps: list[Step] = []
    t = cfg.warmup + rng.uniform(*cfg.master_first)
    while True:
        kind = rng.choices(kinds, weights)[0]
        length = rng.uniform(*(cfg.master_down if kind == "kill" else cfg.master_pause))
        start, end = round(t, 3), round(t + length, 3)
        if end > duration or end - start < 0.05:
            break
        steps.append(Step(start, kind, cfg.master))
        steps.append(Step(end, END_OF[kind], cfg.master))
        t = end + rng.uniform(*cfg.master_gap)
    return steps


def master_steps(steps: list[Step], master: str = MASTER) -> list[Step]:
    return [s for s in steps if s.target == master]


def max_concurrent(steps: list[Step], master: str = MASTER) -> int:
    """The most secondaries faulted at the same time in a schedule (the master not counted)."""
    active: set[str] = set()
    best = 0
    for s in steps:
        if s.target == master:
            continue
        if s.action in ("kill", "pause") or (s.action == "faults" and any(v for _, v in s.params)):
            active.add(s.target)
        else:
            active.discard(s.target)
        best = max(best, len(active))
    return best


def down_windows(steps: list[Step], at_least: int = 2,
                 master: str = MASTER) -> list[tuple[float, float]]:
    """Intervals during which ``at_least`` secondaries are killed or paused at once (with 4
    nodes, two down secondaries leave no majority once the master marks them Unhealthy)."""
    down: set[str] = set()
    out: list[tuple[float, float]] = []
    start = None
    for s in steps:
        if s.target == master:
            continue
        if s.action in ("kill", "pause"):
            down.add(s.target)
        elif s.action in ("restart", "resume"):
            down.discard(s.target)
        if len(down) >= at_least and start is None:
            start = s.t
        elif len(down) < at_least and start is not None:
            if s.t > start:
                out.append((start, s.t))
            start = None
    return out


class Nemesis:
    """Applies a schedule to live processes (``procs``: name -> launcher ``Proc``)."""

    def __init__(self, procs: dict, history, steps: list[Step], http_timeout: float = 2.0,
                 log=print, master: str = MASTER):
        import requests  # only needed against a live cluster

        # the master heals last: it then finds its secondaries up when it starts
        self.procs = {n: p for n, p in procs.items() if n != master}
        if master in procs:
            self.procs[master] = procs[master]
        self.master = master
        self.history = history
        self.steps = steps
        self.http_timeout = http_timeout
        self.log = log
        self.state = {name: "up" for name in procs}  # up, killed, paused
        self.faults = {name: {} for name in procs}  # currently injected values
        self.applied = 0
        self.failed = 0
        self._stop = threading.Event()
        self._locks = {name: threading.Lock() for name in procs}
        self._sessions = threading.local()
        self._requests = requests
        self.thread: threading.Thread | None = None

    # -- running the schedule ----------------------------------------------------------------
    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="nemesis", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> bool:
        if self.thread is not None:
            self.thread.join(timeout)
            return not self.thread.is_alive()
        return True

    def _run(self) -> None:
        # one worker per node: a slow restart of one node does not delay the faults of the
        # others, and each node's own steps stay in order
        t0 = time.monotonic()
        workers = []
        for name in self.procs:
            mine = [s for s in self.steps if s.target == name]
            if mine:
                th = threading.Thread(target=self._run_steps, args=(t0, mine),
                                      name=f"nemesis-{name}", daemon=True)
                th.start()
                workers.append(th)
        for th in workers:
            th.join()

    def _run_steps(self, t0: float, steps: list[Step]) -> None:
        for step in steps:
            # pacing between faults: waiting on the stop event so stop() interrupts it
            if self._stop.wait(max(0.0, t0 + step.t - time.monotonic())):
                return
            self.apply(step)

    def apply(self, step: Step) -> None:
        with self._locks[step.target]:
            self._apply(step.action, step.target, dict(step.params))

    def _apply(self, action: str, target: str, params: dict) -> None:
        proc = self.procs[target]
        t = self.history.now()
        ok, err = True, None
        try:
            if action == "kill":
                proc.kill()
                self.state[target] = "killed"
                self.faults[target] = {}
            elif action == "restart":
                proc.restart()
                self.state[target] = "up"
                self.faults[target] = {}
            elif action == "pause":
                proc.pause()
                self.state[target] = "paused"
            elif action == "resume":
                proc.resume()
                self.state[target] = "up"
            elif action == "faults":
                r = self._post(proc.url + "/faults", params)
                if r.status_code != 200:
                    raise RuntimeError(f"POST /faults -> {r.status_code} {r.text[:200]}")
                self.faults[target].update(params)
            else:
                raise ValueError(f"unknown action {action}")
        except Exception as e:  # record and go on: the checker sees ok=False
            ok, err = False, f"{type(e).__name__}: {e}"
        took = self.history.now() - t
        ev = self.history.fault(action, target, params, ok=ok, error=err, t=t, took=took)
        if ok:
            self.applied += 1
        else:
            self.failed += 1
        self.log(f"[nemesis] {ev.describe()}")

    def _post(self, url: str, body: dict):
        session = getattr(self._sessions, "s", None)
        if session is None:  # a requests.Session per thread
            session = self._sessions.s = self._requests.Session()
        return session.post(url, json=body, timeout=self.http_timeout)

    # -- healing -----------------------------------------------------------------------------
    def heal(self) -> list[str]:
        """Resume paused, restart killed, clear injected faults on every secondary, then
        resume or restart the master.

        Returns the problems met (empty when everything healed)."""
        problems = []
        for name, proc in self.procs.items():
            with self._locks[name]:
                t = self.history.now()
                done, err = [], None
                try:
                    st = self.state[name]
                    if st == "paused":
                        proc.resume()
                        done.append("resume")
                    elif st == "killed":
                        proc.restart()
                        done.append("restart")
                    self.state[name] = "up"
                    if name == self.master:
                        pass  # no injected faults on the master
                    elif any(v for v in self.faults[name].values()) or st != "killed":
                        r = self._post(proc.url + "/faults", {"delay": 0.0, "error_rate": 0.0})
                        if r.status_code != 200:
                            raise RuntimeError(f"POST /faults -> {r.status_code}")
                        done.append("clear")
                    self.faults[name] = {}
                except Exception as e:
                    err = f"{type(e).__name__}: {e}"
                    problems.append(f"heal {name}: {err}")
                ev = self.history.fault("heal", name, {"did": "+".join(done) or "nothing"},
                                        ok=err is None, error=err, t=t,
                                        took=self.history.now() - t)
                self.log(f"[nemesis] {ev.describe()}")
        return problems

    def emergency_resume(self) -> None:
        """Best effort, no history: SIGCONT everything paused (so it can be terminated)."""
        for name, proc in self.procs.items():
            if self.state.get(name) == "paused":
                try:
                    proc.resume()
                    self.state[name] = "up"
                except Exception:
                    pass
