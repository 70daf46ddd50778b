"""Processes seen from outside: pids, CPU time, scheduling counters, RSS, and py-spy.

Shared by the cases and the load-generator driver; imports no case module.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from .common import log


def proc_pid(proc) -> int | None:
    """The OS pid of a launcher Proc (attribute names probed; falls back to the HTTP port)."""
    pid = getattr(proc, "pid", None)
    if isinstance(pid, int):
        return pid
    for attr in ("popen", "process", "proc", "_popen", "_proc", "p"):
        inner = getattr(proc, attr, None)
        if inner is not None and isinstance(getattr(inner, "pid", None), int):
            return inner.pid
    url = getattr(proc, "url", None)
    if url:
        return pid_listening_on(urlsplit(url).port)
    return None


def pid_listening_on(port: int | None) -> int | None:
    if not port:
        return None
    import psutil

    for c in psutil.net_connections(kind="tcp"):
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
            return c.pid
    return None


def cpu_seconds(pid: int | None) -> float | None:
    if pid is None:
        return None
    import psutil

    try:
        t = psutil.Process(pid).cpu_times()
        return t.user + t.system
    except psutil.Error:
        return None


def sched_counters(pid: int | None) -> tuple[float, int] | None:
    """(seconds spent runnable but waiting for a CPU, involuntary context switches) of a
    process's main thread, from /proc (Linux); None elsewhere. A node runs its event loop
    there, so these say how often, and for how long, other tasks took its CPU."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            waited = int(f.read().split()[1]) / 1e9
        with open(f"/proc/{pid}/status") as f:
            preempted = next(int(line.split(":")[1]) for line in f
                             if line.startswith("nonvoluntary_ctxt_switches"))
        return waited, preempted
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def rss_bytes(pid: int) -> int:
    import psutil

    return psutil.Process(pid).memory_info().rss


class WindowCpu:
    """CPU used by some processes during [t_start, t_end] (wall clock), in cores."""

    def __init__(self, pids: dict, t_start: float, t_end: float):
        self.pids = {k: v for k, v in pids.items() if v}
        self.t_start, self.t_end = t_start, t_end
        self.samples: dict = {}
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _sleep_until(self, t: float) -> None:
        while (d := t - time.time()) > 0:
            time.sleep(min(d, 0.1))

    def _snap(self) -> tuple[float, dict]:
        import psutil

        snap = {k: cpu_seconds(p) for k, p in self.pids.items()}
        t = psutil.cpu_times()
        snap["machine"] = t.user + t.nice + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0) \
            + getattr(t, "steal", 0)
        snap["steal"] = getattr(t, "steal", None)
        snap["sched"] = sched_counters(self.pids.get("master"))
        return time.perf_counter(), snap

    def _run(self) -> None:
        self._sleep_until(self.t_start)
        self.samples["start"] = self._snap()
        self._sleep_until(self.t_end)
        self.samples["end"] = self._snap()

    def result(self) -> dict:
        self.thread.join(timeout=5)
        if "start" not in self.samples or "end" not in self.samples:
            return {}
        (t0, c0), (t1, c1) = self.samples["start"], self.samples["end"]
        return {k: round((c1[k] - c0[k]) / (t1 - t0), 3) for k in [*self.pids, "machine"]
                if c0.get(k) is not None and c1.get(k) is not None}

    def sched(self) -> dict:
        """Over the window: the master's share of time spent waiting for a CPU while it
        could run, how often per second another task took its CPU (involuntary context
        switches), and the CPU time the hypervisor gave to other guests (steal, in cores).
        They tell a slow case caused by the machine from one caused by the code."""
        if "start" not in self.samples or "end" not in self.samples:
            return {}
        (t0, c0), (t1, c1) = self.samples["start"], self.samples["end"]
        out = {}
        if c0.get("steal") is not None and c1.get("steal") is not None:
            out["steal_cores"] = round((c1["steal"] - c0["steal"]) / (t1 - t0), 3)
        if c0.get("sched") and c1.get("sched"):
            out["master_runq_wait"] = round((c1["sched"][0] - c0["sched"][0]) / (t1 - t0), 3)
            out["master_preempted_per_s"] = round((c1["sched"][1] - c0["sched"][1]) / (t1 - t0))
        return out


class Profiler:
    """py-spy attached to one pid for a case (only with --profile)."""

    def __init__(self, outdir: Path | None, rate: int, gil: bool):
        self.outdir, self.rate, self.gil = outdir, rate, gil
        self.proc = None
        self.path = None

    def start(self, pid: int | None, label: str, duration: float) -> None:
        if self.outdir is None or pid is None:
            return
        exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        self.outdir.mkdir(parents=True, exist_ok=True)
        self.path = self.outdir / f"{label}.txt"
        cmd = [exe, "record", "-p", str(pid), "-r", str(self.rate), "-d", str(int(duration + 1)),
               "--format", "raw", "-o", str(self.path)]
        if self.gil:
            cmd.append("--gil")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def stop(self) -> str | None:
        if self.proc is None:
            return None
        try:
            _, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            _, err = self.proc.communicate()
        self.proc = None
        if self.path and self.path.exists():
            return str(self.path)
        log(f"py-spy wrote nothing: {err[-500:] if err else ''}")
        return None
