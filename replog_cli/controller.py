"""Process control for the demos: the demo's own local cluster, or a running Docker one.

A Controller knows the master's URL and each secondary's, sets up the cluster a scenario
starts from (`fresh`), and stops, kills (-9), pauses (SIGSTOP), resumes and starts a
secondary. LocalController owns real processes (nodes.launcher.LocalCluster);
ComposeController drives `docker compose` (or `docker-compose` 1.29) services;
RemoteController has no process control: scenarios that need it are skipped."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

from nodes.launcher import LocalCluster, wait_until

from .client import ClientError, Http
from .narrator import Skipped

SECONDARIES = ("secondary1", "secondary2")

# The demo's own cluster uses short health timings (the integration tests' FAST), so that
# Suspected/Unhealthy/Healthy show within seconds; the master's defaults are 0.5/1.0/1.5/5 s.
FAST = dict(heartbeat_interval=0.2, heartbeat_timeout=0.5, suspect_after=0.6,
            unhealthy_after=1.5, retry_cap=0.5, discovery_interval=0.3)


def node_flags(module: str) -> set[str]:
    """The long flags a node entry point accepts (to use newer flags only where they exist)."""
    import importlib
    parser = importlib.import_module(module).parser()
    return {s for action in parser._actions for s in action.option_strings}


class Controller:
    can_control = True   # can it stop, kill, pause and start secondaries?
    own = False          # does the demo own this cluster (exact lists can be expected)?
    patience = 30.0      # seconds to wait for a health transition or a catch-up
    timing_note = ""

    master_url: str

    def url(self, name: str) -> str:
        raise NotImplementedError

    def fresh(self, up: tuple[str, ...] = SECONDARIES, delays: dict[str, float] | None = None
              ) -> None:
        """The cluster a scenario starts from: master, `up` running; the rest stopped."""
        raise NotImplementedError

    def fresh_failover(self) -> list[str]:
        """A failover cluster (every node --failover, each with a data directory): its node
        names. Only the demo's own cluster can be started so."""
        raise Skipped("needs the demo's own cluster: failover is opt-in (every node started "
                      "with --failover), so a running cluster cannot be switched to it")

    def start(self, name: str) -> None:
        raise NotImplementedError

    def kill(self, name: str) -> None:
        raise NotImplementedError

    def pause(self, name: str) -> None:
        raise NotImplementedError

    def resume(self, name: str) -> None:
        raise NotImplementedError

    def close(self, keep_logs: bool = False) -> str | None:
        return None

    def wait_answers(self, name: str) -> None:
        wait_until(lambda: Http(self.url(name), timeout=2).health(), self.patience,
                   what=f"{name} to answer /health")

    def set_delay(self, name: str, delay: float) -> None:
        Http(self.url(name)).set_faults(delay=delay)


class LocalController(Controller):
    """The demo's own cluster: name server, master, secondary1 and secondary2 as local
    processes on free loopback ports, with FAST health timings."""
    own = True
    patience = 15.0
    timing_note = ("own cluster on free loopback ports, with short health timings for the "
                   "demo: heartbeat every 0.2 s, Suspected after 0.6 s, Unhealthy after 1.5 s "
                   "(the master's defaults: 0.5 s, 1.5 s, 5 s)")

    def __init__(self, workdir: str | Path | None = None) -> None:
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="replog-demo-"))
        self.cluster = LocalCluster(self.workdir / "logs")
        self.cluster.start_nameserver()
        flags = node_flags("nodes.secondary_node")
        # fault injection is opt-in on newer nodes: turn it on where the flag exists
        self.secondary_flags: dict[str, Any] = (
            {"allow_faults": True} if "--allow-faults" in flags else {})
        self.master_url = ""

    def url(self, name: str) -> str:
        return self.cluster.procs[name].url

    def _stop_nodes(self) -> None:
        for name in [n for n in self.cluster.procs if n != "nameserver"]:
            self.cluster.procs.pop(name).stop(timeout=5)

    def fresh(self, up: tuple[str, ...] = SECONDARIES, delays: dict[str, float] | None = None
              ) -> None:
        self._stop_nodes()
        delays = delays or {}
        for name in up:
            self.cluster.start_secondary(name, delay=delays.get(name) or None,
                                         **self.secondary_flags)
        master = self.cluster.start_master(list(SECONDARIES), **FAST)
        self.master_url = master.url

    def fresh_failover(self) -> list[str]:
        """master, secondary1 and secondary2, each with --failover --cluster (all three) and
        a data directory (its votes and log survive kill -9), the election's default
        timings. Started together; who becomes master is the election's choice."""
        self._stop_nodes()
        names = ["master", *SECONDARIES]
        data = self.workdir / f"failover-{uuid.uuid4().hex[:6]}"
        fo = dict(failover=True, cluster=names)
        procs = [self.cluster.start_secondary(name, wait=False, data_dir=data / name, **fo,
                                              **self.secondary_flags) for name in SECONDARIES]
        procs.append(self.cluster.start_master(list(SECONDARIES), wait=False,
                                               data_dir=data / "master", **fo,
                                               **self.secondary_flags))
        for proc in procs:
            proc.wait_ready()
        self.master_url = ""                 # whoever the election makes master
        return names

    def start(self, name: str) -> None:
        proc = self.cluster.procs.get(name)
        if proc is None:
            self.cluster.start_secondary(name, **self.secondary_flags)
        else:
            proc.restart()

    def kill(self, name: str) -> None:
        self.cluster.procs[name].kill()

    def pause(self, name: str) -> None:
        self.cluster.procs[name].pause()

    def resume(self, name: str) -> None:
        self.cluster.procs[name].resume()

    def close(self, keep_logs: bool = False) -> str | None:
        self.cluster.close()
        if keep_logs:
            return str(self.workdir / "logs")
        shutil.rmtree(self.workdir, ignore_errors=True)
        return None


class RemoteController(Controller):
    """A running cluster reached over HTTP only: fault injection works (POST /faults),
    process control does not."""
    patience = 30.0
    can_control = False
    timing_note = "a running cluster: the master's own health timings"

    def __init__(self, master_url: str, urls: dict[str, str]) -> None:
        self.master_url = master_url.rstrip("/")
        self.urls = urls

    def url(self, name: str) -> str:
        if name not in self.urls:
            raise ClientError(f"no URL for {name}: give --secondary {name}=URL")
        return self.urls[name]

    def fresh(self, up: tuple[str, ...] = SECONDARIES, delays: dict[str, float] | None = None
              ) -> None:
        for name in SECONDARIES:
            if name not in up:
                raise Skipped(f"needs {name} stopped: process control (--control compose)")

    def _no_control(self, name: str) -> None:
        raise Skipped("needs process control of the secondaries (--control compose)")

    start = kill = pause = resume = _no_control


class ComposeController(RemoteController):
    """The Docker cluster of docker-compose.yml: services secondary1, secondary2."""
    can_control = True
    timing_note = ("the Docker cluster with the master's own health timings (set "
                   "REPLOG_SUSPECT_AFTER, REPLOG_UNHEALTHY_AFTER... in compose for faster ones)")

    def __init__(self, master_url: str, urls: dict[str, str], compose_file: str | None = None,
                 project: str | None = None) -> None:
        super().__init__(master_url, urls)
        self.base = self._compose_command()
        if compose_file:
            self.base += ["-f", compose_file]
        if project:
            self.base += ["-p", project]

    @staticmethod
    def _compose_command() -> list[str]:
        if shutil.which("docker"):
            probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
            if probe.returncode == 0:
                return ["docker", "compose"]
        if shutil.which("docker-compose"):
            return ["docker-compose"]
        raise ClientError("--control compose needs `docker compose` or `docker-compose`")

    def compose(self, *args: str) -> None:
        done = subprocess.run(self.base + list(args), capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise ClientError(f"{' '.join(self.base + list(args))}: "
                              f"{(done.stderr or done.stdout).strip()[-300:]}")

    def fresh(self, up: tuple[str, ...] = SECONDARIES, delays: dict[str, float] | None = None
              ) -> None:
        for name in SECONDARIES:
            if name in up:
                if self._paused(name):
                    self.compose("unpause", name)
                self.compose("start", name)
                self.wait_answers(name)
                self.set_delay(name, (delays or {}).get(name, 0.0))
            else:
                self.compose("stop", "-t", "2", name)

    def _paused(self, name: str) -> bool:
        done = subprocess.run(self.base + ["ps", "--status", "paused", "-q", name],
                              capture_output=True, text=True)
        return done.returncode == 0 and bool(done.stdout.strip())

    def start(self, name: str) -> None:
        self.compose("start", name)
        self.wait_answers(name)

    def kill(self, name: str) -> None:
        self.compose("kill", "-s", "SIGKILL", name)

    def pause(self, name: str) -> None:
        self.compose("pause", name)

    def resume(self, name: str) -> None:
        self.compose("unpause", name)
