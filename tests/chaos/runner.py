"""Runs one chaos experiment against a local cluster and checks its history.

Phases (all bounded by deadlines):

1. start a name server, secondaries s1 s2 s3 and a master with short health timers
   (``nodes.launcher.LocalCluster``), every node with its own data directory (``--data-dir``,
   ``--fsync always``), and wait until the master reports all of them Healthy;
2. fault phase (``duration`` seconds): client threads append unique messages with random w
   and timeouts, a sampler thread reads every node's list, the nemesis applies its seeded
   schedule to the secondaries and to the master (kill -9 and restart with its data
   directory, SIGSTOP/SIGCONT); while the master is down clients get connection errors;
3. stop the clients, heal everything (resume, restart the dead, clear injected faults; the
   master last) and wait until the master is writable, every secondary Healthy and all lists
   equal;
4. one probe write with w = cluster size must succeed; wait for the lists to be equal again;
5. check the history (``checker.check``), print a summary and, on failure, the smallest part
   of the history that shows each anomaly, the seed and the node logs.

Every process is ended in a ``finally`` (paused ones are resumed first), also on
KeyboardInterrupt.
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from .checker import Anomaly, check, format_anomaly
from .history import (
    ERROR,
    INDETERMINATE,
    MASTER,
    OK,
    READ_ONLY,
    TIMEOUT,
    UNAVAILABLE,
    History,
)
from .nemesis import Nemesis, ScheduleConfig, make_schedule, max_concurrent

SECONDARIES = ("s1", "s2", "s3")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _import_launcher():
    try:
        from nodes import launcher
    except ImportError:
        if REPO_ROOT not in sys.path:
            sys.path.insert(0, REPO_ROOT)
        from nodes import launcher
    return launcher


@dataclass
class ChaosConfig:
    seed: int
    duration: float = 20.0  # length of the fault phase, seconds
    clients: int = 4
    workdir: str | None = None  # default: a fresh temporary directory
    keep: bool = False  # keep the workdir (logs, history.json) even when the run passes
    converge_timeout: float = 30.0
    startup_timeout: float = 30.0
    tls: bool = True  # node plane over mutual TLS (certificates made in the workdir)
    # clients
    # Even-numbered clients are "patient": any w, a body "timeout" half of the time (else
    # they wait up to default_wait). Odd-numbered ones are "impatient": mostly small w and
    # always a short timeout, so writes keep probing the master while patient clients are
    # blocked on a high w (this is what catches writes accepted without a quorum).
    w_weights: tuple = (3, 3, 2, 2)  # weights of w = 1, 2, 3, 4 (patient clients)
    p_timeout: float = 0.5  # chance to send a "timeout" in the body (patient clients)
    timeout_range: tuple = (0.2, 3.0)
    impatient_w_weights: tuple = (5, 3, 1, 1)
    impatient_timeout_range: tuple = (0.1, 1.0)
    p_key: float = 0.2  # chance to send an idempotency key ("id"); retried once if unanswered
    default_wait: float = 4.0  # client read timeout when the body has no "timeout"
    slack: float = 2.0  # extra client read timeout beyond the body's "timeout"
    think: float = 0.03  # up to this much pause between a client's operations
    unavailable_wait: tuple = (0.05, 0.15)  # pause after a refused connection (master down)
    sample_replicas: bool = True  # GET each secondary's /health after a 201 with w >= 2
    sample_interval: float = 0.5  # list sampler period
    # master health timers (short, so faults show quickly)
    heartbeat_interval: float = 0.2
    suspect_after: float = 0.6
    unhealthy_after: float = 1.5
    rpc_timeout: float = 0.5
    discovery_interval: float = 0.5
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    verbose: bool = True
    out: object = None  # file to print progress to (default sys.stdout)
    # False: the master keeps its log in memory (no --data-dir), so a master kill loses the
    # writes only it held. Not a supported setup under master kills: it shows the checker
    # catching lost acknowledged writes (python -m tests.chaos --master-in-memory).
    master_data_dir: bool = True

    @property
    def down_grace(self) -> float:
        """After a kill/pause lasting this long the master must have seen the node go."""
        return self.unhealthy_after + 1.0

    @property
    def up_grace(self) -> float:
        """After a fault ends (a restart has returned) the node must be back within this."""
        return self.discovery_interval + self.unhealthy_after + 3.0

    def repro(self) -> str:
        cmd = f"python -m tests.chaos --seed {self.seed} --duration {self.duration:g}"
        if self.clients != 4:
            cmd += f" --clients {self.clients}"
        if not self.master_data_dir:
            cmd += " --master-in-memory"
        if not self.tls:
            cmd += " --no-tls"
        return cmd


@dataclass
class RunResult:
    config: ChaosConfig
    history: History
    anomalies: list[Anomaly]
    schedule: list
    timings: dict
    workdir: str
    logs: dict  # node -> log path
    summary: str = ""

    @property
    def ok(self) -> bool:
        return not self.anomalies


def wait_for(predicate, timeout: float, interval: float = 0.1):
    """Poll ``predicate`` until it returns something truthy or the deadline passes.

    Returns the truthy value, or None on timeout. Exceptions count as "not yet"."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            v = predicate()
        except Exception:
            v = None
        if v:
            return v
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        time.sleep(min(interval, left))


# -- clients -----------------------------------------------------------------------------------

class Client(threading.Thread):
    def __init__(self, idx: int, cfg: ChaosConfig, history: History, urls, stop: threading.Event):
        super().__init__(name=f"client-{idx}", daemon=True)
        import requests

        self.requests = requests
        self.idx = idx
        self.cfg = cfg
        self.history = history
        self.urls = urls  # callable: node -> current HTTP base url
        self.stop_event = stop
        self.rng = random.Random(cfg.seed * 1009 + idx)
        self.impatient = idx % 2 == 1
        self.session = requests.Session()
        self.n = 0

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                self.n += 1
                msg = f"c{self.idx}-{self.n}"
                if self.impatient:
                    w = self.rng.choices((1, 2, 3, 4), self.cfg.impatient_w_weights)[0]
                    timeout = round(self.rng.uniform(*self.cfg.impatient_timeout_range), 2)
                else:
                    w = self.rng.choices((1, 2, 3, 4), self.cfg.w_weights)[0]
                    timeout = None
                    if self.rng.random() < self.cfg.p_timeout:
                        timeout = round(self.rng.uniform(*self.cfg.timeout_range), 2)
                key = f"k{self.idx}-{self.n}" if self.rng.random() < self.cfg.p_key else None
                op = self.append(msg, w, timeout, key)
                if key is not None and op.outcome in (INDETERMINATE, TIMEOUT) \
                        and not self.stop_event.is_set():
                    op = self.append(msg, w, timeout, key)  # idempotent retry: same message, id
                if op.outcome == UNAVAILABLE:  # the master is down: do not spin
                    self.stop_event.wait(self.rng.uniform(*self.cfg.unavailable_wait))
                self.stop_event.wait(self.rng.uniform(0.0, self.cfg.think))
        finally:
            self.session.close()

    def append(self, msg: str, w: int, timeout: float | None, key: str | None):
        op = post_message(self.session, self.requests, self.urls(MASTER), self.history,
                          f"c{self.idx}", msg, w, timeout, key, self.cfg)
        if op.outcome == OK and w >= 2 and self.cfg.sample_replicas:
            for node in SECONDARIES:
                count = None
                try:
                    r = self.session.get(self.urls(node) + "/health", timeout=(0.3, 0.5))
                    if r.status_code == 200:
                        count = int(r.json()["messages"])
                except Exception:
                    pass
                self.history.replica_sample(op.id, node, count)
        return op


def post_message(session, requests, master_url: str, history: History, client: str, msg: str,
                 w: int, timeout: float | None, key: str | None, cfg: ChaosConfig):
    body = {"message": msg, "w": w}
    if timeout is not None:
        body["timeout"] = timeout
    if key is not None:
        body["id"] = key
    read_timeout = (timeout if timeout is not None else cfg.default_wait) + cfg.slack
    op = history.invoke(client, msg, w, timeout, key)
    try:
        r = session.post(master_url + "/messages", json=body, timeout=(1.0, read_timeout))
    except requests.RequestException as e:
        if not_sent(e, requests):
            return history.complete(op, UNAVAILABLE, error=type(e).__name__)
        # the request may have reached the master: a read timeout, a connection reset or
        # closed by a master killed mid-request. Appended or not, nobody knows.
        return history.complete(op, INDETERMINATE, error=type(e).__name__)
    try:
        data = r.json()
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    seq, acks, rw = data.get("seq"), data.get("acks"), data.get("w")
    if r.status_code == 201:
        if not isinstance(seq, int):  # the checker reports a 201 without a seq (bad_ack)
            return history.complete(op, OK, status=201, acks=acks, resp_w=rw,
                                    error=f"201 with a bad body: {r.text[:100]!r}")
        return history.complete(op, OK, status=201, seq=seq, acks=acks, resp_w=rw)
    if r.status_code == 503:
        return history.complete(op, READ_ONLY, status=503, error=str(data.get("error"))[:100])
    if r.status_code == 504:
        return history.complete(op, TIMEOUT, status=504, seq=seq if isinstance(seq, int) else None,
                                acks=acks, resp_w=rw)
    return history.complete(op, ERROR, status=r.status_code,
                            error=str(data.get("error", r.text[:100]))[:200])


def not_sent(e: Exception, requests) -> bool:
    """True when the request never left the client: no connection could be made (refused, a
    connect timeout). urllib3 raises NewConnectionError (ConnectTimeoutError for a connect
    timeout) only while connecting, before a byte of the request is written."""
    if isinstance(e, requests.ConnectTimeout):
        return True
    if not isinstance(e, requests.ConnectionError):
        return False
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

    reason = getattr(e.args[0], "reason", None) if e.args else None
    return isinstance(reason, (NewConnectionError, ConnectTimeoutError))


class Sampler(threading.Thread):
    """Reads every node's list periodically (for the prefix check)."""

    def __init__(self, cfg: ChaosConfig, history: History, urls, stop: threading.Event):
        super().__init__(name="sampler", daemon=True)
        import requests

        self.cfg = cfg
        self.history = history
        self.urls = urls
        self.stop_event = stop
        self.session = requests.Session()
        self.count = 0

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                busy = 0.0  # time spent on answers (a paused node's timeout does not count)
                for node in (MASTER,) + SECONDARIES:
                    t = time.monotonic()
                    try:
                        r = self.session.get(self.urls(node) + "/messages", timeout=(0.3, 1.0))
                        if r.status_code == 200:
                            self.history.list_sample(node, r.json()["messages"])
                            self.count += 1
                            busy += time.monotonic() - t
                    except Exception:
                        pass
                # long logs make a round expensive: keep the sampler under ~25% of the time
                self.stop_event.wait(max(self.cfg.sample_interval, 3 * busy))
        finally:
            self.session.close()


# -- the run -----------------------------------------------------------------------------------

class Run:
    def __init__(self, cfg: ChaosConfig):
        import requests

        self.cfg = cfg
        self.requests = requests
        self.session = requests.Session()
        self.out = cfg.out or sys.stdout
        self.lines: list[str] = []
        self._log_lock = threading.Lock()
        self.cluster = None
        self.procs: dict = {}
        self.nemesis: Nemesis | None = None
        self.stop_clients = threading.Event()
        self.stop_sampler = threading.Event()
        self.threads: list[threading.Thread] = []
        self.timings: dict[str, float] = {}
        self.workdir = cfg.workdir or tempfile.mkdtemp(prefix=f"replog-chaos-{cfg.seed}-")
        os.makedirs(self.workdir, exist_ok=True)
        self.schedule = make_schedule(cfg.seed, cfg.duration, list(SECONDARIES), cfg.schedule)
        self.history = History(seed=cfg.seed, secondaries=list(SECONDARIES), meta={
            "duration": cfg.duration, "clients": cfg.clients,
            "down_grace": cfg.down_grace, "up_grace": cfg.up_grace,
            "heartbeat_interval": cfg.heartbeat_interval, "suspect_after": cfg.suspect_after,
            "unhealthy_after": cfg.unhealthy_after, "rpc_timeout": cfg.rpc_timeout,
            "discovery_interval": cfg.discovery_interval,
            # every node keeps its log in a data directory with --fsync always: a killed
            # secondary or master comes back with everything it acknowledged
            "data_dirs": True,
            "master_data_dir": cfg.master_data_dir,
        })

    def log(self, text: str) -> None:
        line = f"[chaos {self.history.now():7.2f}] {text}"
        with self._log_lock:
            self.lines.append(line)  # also written to <workdir>/chaos.log
        if self.cfg.verbose:
            print(line, file=self.out, flush=True)

    def url(self, node: str) -> str:
        return self.procs[node].url

    # -- HTTP helpers ------------------------------------------------------------------------
    def get_json(self, node: str, path: str, timeout: float = 2.0):
        r = self.session.get(self.url(node) + path, timeout=(0.5, timeout))
        r.raise_for_status()
        return r.json()

    def master_health(self):
        return self.get_json(MASTER, "/health")

    def all_healthy(self, h: dict | None = None) -> dict | None:
        h = h or self.master_health()
        secs = h.get("secondaries") or {}
        if h.get("read_only"):
            return None
        for name in SECONDARIES:
            st = secs.get(name)
            if not st or st.get("status") != "Healthy":
                return None
        return h

    def snapshot(self) -> tuple[dict | None, dict]:
        health = None
        try:
            health = self.master_health()
        except Exception:
            pass
        lists = {}
        for node in (MASTER,) + SECONDARIES:
            try:
                lists[node] = self.get_json(node, "/messages")["messages"]
            except Exception:
                lists[node] = None
        return health, lists

    def converged(self):
        health, lists = self.snapshot()
        if health is None or not self.all_healthy(health):
            return None
        last = health.get("last_seq")
        if any(st.get("acked_seq") != last for st in health["secondaries"].values()):
            return None
        m = lists[MASTER]
        if m is None or len(m) != last:
            return None
        if any(lists[n] != m for n in SECONDARIES):
            return None
        return health, lists

    # -- phases ------------------------------------------------------------------------------
    def start_cluster(self) -> None:
        t = time.monotonic()
        launcher = _import_launcher()
        self.cluster = launcher.LocalCluster(
            self.workdir, tls_dir=os.path.join(self.workdir, "certs") if self.cfg.tls else None)
        self.procs["ns"] = self.cluster.start_nameserver()
        data = os.path.join(self.workdir, "data")
        for name in SECONDARIES:
            self.procs[name] = self.cluster.start_secondary(
                name, data_dir=os.path.join(data, name), fsync="always")
        self.procs[MASTER] = self.cluster.start_master(
            secondaries=list(SECONDARIES),
            data_dir=os.path.join(data, MASTER) if self.cfg.master_data_dir else None,
            fsync="always",
            heartbeat_interval=self.cfg.heartbeat_interval,
            suspect_after=self.cfg.suspect_after,
            unhealthy_after=self.cfg.unhealthy_after,
            rpc_timeout=self.cfg.rpc_timeout,
            discovery_interval=self.cfg.discovery_interval,
        )
        h = wait_for(self.all_healthy, self.cfg.startup_timeout, 0.2)
        if not h:
            raise RuntimeError(f"cluster not healthy after {self.cfg.startup_timeout}s: "
                               f"{self._health_text()}")
        self.history.meta["log_id"] = h.get("log_id")  # a restarted master must keep it
        self.timings["startup"] = time.monotonic() - t
        self.log(f"cluster up in {self.workdir}")

    def _health_text(self) -> str:
        try:
            return str(self.master_health())
        except Exception as e:
            return f"(no /health: {e})"

    def fault_phase(self) -> None:
        cfg = self.cfg
        self.nemesis = Nemesis({n: self.procs[n] for n in SECONDARIES + (MASTER,)},
                               self.history, self.schedule, log=self.log, master=MASTER)
        sampler = Sampler(cfg, self.history, self.url, self.stop_sampler)
        clients = [Client(i + 1, cfg, self.history, self.url, self.stop_clients)
                   for i in range(cfg.clients)]
        self.threads = [sampler, *clients]
        t = time.monotonic()
        self.history.note("fault phase starts")
        for th in self.threads:
            th.start()
        self.nemesis.start()
        # the schedule ends by `duration`; a restart can take a while, so allow extra time
        if not self.nemesis.join(cfg.duration + 30.0):
            self.nemesis.stop()
            raise RuntimeError("nemesis did not finish its schedule in time")
        left = cfg.duration - (time.monotonic() - t)
        if left > 0:
            self.stop_clients.wait(left)  # clients keep running to the end of the phase
        self.stop_clients.set()
        budget = max(cfg.default_wait, cfg.timeout_range[1]) + cfg.slack + 3.0
        deadline = time.monotonic() + 2 * budget  # a retry can follow an unanswered op
        for th in clients:
            th.join(max(0.0, deadline - time.monotonic()))
        hung = [th.name for th in clients if th.is_alive()]
        if hung:
            self.history.note(f"clients still running after the deadline: {hung}")
        self.timings["fault_phase"] = time.monotonic() - t
        self.history.note("fault phase ends")

    def heal_and_converge(self) -> None:
        cfg = self.cfg
        problems = self.nemesis.heal()
        t = time.monotonic()
        self.history.note("healed" + (f" with problems: {problems}" if problems else ""))
        got = wait_for(self.converged, cfg.converge_timeout, 0.2)
        final = self.history.final
        final.errors.extend(problems)
        if got:
            self.timings["converge"] = final.converge_time = time.monotonic() - t
            self.log(f"converged in {final.converge_time:.2f}s")
            # liveness after healing: a write acknowledged by every node
            op = post_message(self.session, self.requests, self.url(MASTER), self.history,
                              "probe", f"probe-{cfg.seed}", len(SECONDARIES) + 1, 5.0, None, cfg)
            if op.outcome != OK:
                final.errors.append(f"probe write after healing failed: {op.describe()}")
            got = wait_for(self.converged, cfg.converge_timeout, 0.2)
        self.stop_sampler.set()
        for th in self.threads:
            th.join(3.0)
        if got:
            final.converged = True
            final.health, final.lists = got
            if any(e.startswith("probe") for e in final.errors):
                final.converged = False
        else:
            final.converged = False
            final.health, final.lists = self.snapshot()
            final.errors.append(f"not converged within {cfg.converge_timeout:g}s; "
                                f"health: {final.health}")
            self.log("did NOT converge")

    def cleanup(self) -> None:
        self.stop_clients.set()
        self.stop_sampler.set()
        if self.nemesis is not None:
            self.nemesis.stop()
            self.nemesis.emergency_resume()
        if self.cluster is not None:
            try:
                self.cluster.close()
            except Exception as e:  # still try to kill what is left
                self.log(f"cluster.close() failed: {e}")
                for p in self.procs.values():
                    try:
                        p.kill()
                    except Exception:
                        pass
        self.session.close()

    def logs(self) -> dict:
        out = {}
        for name, p in self.procs.items():
            path = getattr(p, "log_path", None)
            if path:
                out[name] = str(path)
        return out


def run(cfg: ChaosConfig) -> RunResult:
    r = Run(cfg)
    r.log(f"seed={cfg.seed} duration={cfg.duration:g}s clients={cfg.clients} "
          f"faults scheduled={len(r.schedule)} (up to {max_concurrent(r.schedule)} secondaries "
          "at once)")
    t_all = time.monotonic()
    harness_error = None
    try:
        r.start_cluster()
        r.fault_phase()
        r.heal_and_converge()
    except Exception as e:
        harness_error = f"{type(e).__name__}: {e}"
        r.history.final.errors.append(f"harness error: {harness_error}")
        r.log(f"harness error: {harness_error}")
    finally:
        r.cleanup()
    r.timings["total"] = time.monotonic() - t_all
    anomalies = check(r.history) if harness_error is None else [
        Anomaly("harness_error", harness_error)] + check(r.history)
    res = RunResult(cfg, r.history, anomalies, r.schedule, r.timings, r.workdir, r.logs())
    res.summary = summarize(res)
    if res.ok and not cfg.keep and cfg.workdir is None:
        shutil.rmtree(r.workdir, ignore_errors=True)
    else:
        try:
            r.history.save(os.path.join(r.workdir, "history.json"))
            with open(os.path.join(r.workdir, "chaos.log"), "w", encoding="utf-8") as f:
                f.write("\n".join(r.lines + ["", res.summary, ""]))
        except OSError:
            pass
    return res


def acked_around_master_restarts(h: History) -> tuple[int, int] | None:
    """(acknowledged before, after) the last restart of the master; None without one."""
    restarts = [f.t + f.took for f in h.faults if f.target == MASTER and f.ok
                and f.action in ("restart", "heal") and f.params.get("did", "restart")
                == "restart"]
    if not restarts:
        return None
    last = max(restarts)
    acked = [op for op in h.ops if op.outcome == OK and op.client != "probe"]
    return (sum(1 for op in acked if op.complete < last),
            sum(1 for op in acked if op.invoke > last))


def summarize(res: RunResult) -> str:
    h, cfg = res.history, res.config
    lines = []
    oc = Counter(op.outcome or "unfinished" for op in h.ops if op.client != "probe")
    order = (OK, READ_ONLY, TIMEOUT, INDETERMINATE, UNAVAILABLE, ERROR, "unfinished")
    lines.append(f"seed {cfg.seed}, duration {cfg.duration:g}s, {cfg.clients} clients")
    lines.append("operations: " + ", ".join(f"{k}={oc.get(k, 0)}" for k in order)
                 + f" (total {sum(oc.values())})")
    by_w = Counter((op.w, op.outcome) for op in h.ops if op.client != "probe")
    lines.append("ok by w: " + ", ".join(f"w={w}:{by_w.get((w, OK), 0)}" for w in (1, 2, 3, 4)))
    fc = Counter(f.action for f in h.faults if f.ok and f.target != MASTER)
    mc = Counter(f.action for f in h.faults if f.ok and f.target == MASTER)
    bad = sum(1 for f in h.faults if not f.ok)
    lines.append("faults applied: " + (", ".join(f"{k}={v}" for k, v in sorted(fc.items()))
                                       or "none")
                 + (f" ({bad} failed)" if bad else "")
                 + f"; up to {max_concurrent(res.schedule)} secondaries at once; master: "
                 + (", ".join(f"{k}={v}" for k, v in sorted(mc.items())) or "none"))
    after = acked_around_master_restarts(h)
    if after is not None:
        lines.append(f"acknowledged writes: {after[0]} before the last master restart, "
                     f"{after[1]} after it")
    n_list = len(h.list_samples)
    n_rep = len(h.replica_samples)
    lines.append(f"samples: {n_list} list samples, {n_rep} replica samples")
    final = h.final
    m = final.lists.get(MASTER) if final.lists else None
    conv = f"{final.converge_time:.2f}s" if final.converge_time is not None else "never"
    lines.append(f"final log: {len(m) if m is not None else '?'} messages; converged after "
                 f"healing in {conv}")
    t = res.timings
    lines.append("timings: " + ", ".join(f"{k}={v:.1f}s" for k, v in t.items()))
    if res.anomalies:
        lines.append(f"FAILED: {len(res.anomalies)} anomalies")
        for a in res.anomalies:
            lines.append(format_anomaly(h, a))
        lines.append(f"reproduce with: {cfg.repro()}")
        lines.append(f"workdir (node logs, chaos.log, history.json): {res.workdir}")
        for name, path in res.logs.items():
            lines.append(f"  log {name}: {path}")
        if h.notes:
            lines.append("run notes:")
            lines += [f"  {n}" for n in h.notes]
    else:
        lines.append("PASSED: no anomalies")
    return "\n".join(lines)
