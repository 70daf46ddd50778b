"""The launcher as a supervisor: start the cluster under a data root, then watch every node
(exits, pauses, restarts, nodes started again by hand) until Ctrl-C."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any, IO

from .cluster import LocalCluster
from .ports import _cmdline, listener_of, listener_pid, port_taken, proc_state, check_ports
from .procs import ROOT, Proc, http_json, wait_until
from .roles import Roles, failover_of


# what a launcher's folder holds: data directories, pid files, start scripts
_OURS = re.compile(r"(nameserver|master|secondary\d+)(\.pid)?|start-(nameserver|master|"
                   r"secondary\d+)\.sh|commands\.sh|https-certs")


class _Member:
    """One node under the launcher's watch."""

    def __init__(self, proc: Proc, port: int, restarts: Any) -> None:
        self.proc = proc
        self.port = port                  # the port that tells whether it runs (HTTP or NS)
        self.restarts = restarts
        self.started = time.monotonic()
        self.paused = False
        self.down_since: float | None = None   # exited, not started again by us
        self.restart_at: float | None = None
        self.outside_pid: int | None = None    # started again by hand
        self.next_look = 0.0                   # when to look for a hand-started one again


class Launcher:
    def __init__(self, args: Any, out: IO[str] = sys.stdout) -> None:
        from loguru import logger
        from ..core.supervise import Restarts
        self.args = args
        self.out = out
        self.log = logger
        self.root = Path(args.data_root).resolve()
        # the nodes run in the repository, not in the caller's folder: a relative --certs or
        # --tokens (`--certs certs`, as docs/security.md has it) is the caller's
        for flag in ("certs", "tokens"):
            if getattr(args, flag, ""):
                setattr(args, flag, str(Path(getattr(args, flag)).resolve()))
        self.names = [f"secondary{i}" for i in range(1, args.secondaries + 1)]
        self.cluster: LocalCluster | None = None   # created by start(): it makes the folder
        self.members: dict[str, _Member] = {}
        self._restarts = lambda: Restarts(args.restart, args.restart_delay)
        self._flags: dict[str, dict] = {}
        self.failover = bool(getattr(args, "failover", False))
        self.roles = Roles()                      # with --failover: who is master

    def ports(self) -> dict[int, str]:
        ports = {self.args.ns_port: "the name server"}
        ports.setdefault(self.args.base_port, "HTTP of master")
        for i, name in enumerate(self.names, start=1):
            ports.setdefault(self.args.base_port + i, f"HTTP of {name}")
        return ports

    def preflight(self) -> list[str]:
        a = self.args
        problems = []
        if len(self.ports()) != len(self.names) + 2:
            problems.append(f"--ns-port {a.ns_port} lies inside the HTTP ports "
                            f"{a.base_port}..{a.base_port + len(self.names)}")
        problems += check_ports(self.ports())
        if problems:
            problems.append(
                f"nothing was started. Choose other ports: --base-port N (HTTP ports N..N+"
                f"{len(self.names)}) and --ns-port M, e.g. `bash scripts/run.sh --base-port "
                f"{a.base_port + 1000} --ns-port {a.ns_port + 100}` (or REPLOG_BASE_PORT, "
                f"REPLOG_NS_PORT); or stop what holds them")
        return problems

    def start(self) -> None:
        a = self.args
        if a.fresh and self.root.exists():
            strangers = [p.name for p in self.root.iterdir() if not _OURS.fullmatch(p.name)]
            if strangers:   # never wipe a folder the launcher did not make (--data-root ~)
                raise RuntimeError(f"--fresh: {self.root} holds {sorted(strangers)[:5]}, which "
                                   "the launcher did not write; delete it yourself or choose "
                                   "another --data-root")
            shutil.rmtree(self.root)
            self.log.info("--fresh: deleted {}", self.root)
        self.cluster = LocalCluster(self.root, log_level=a.log_level, logs_to_files=False,
                                    tls_dir=a.certs or None, https=getattr(a, "https", False),
                                    tokens=getattr(a, "tokens", "") or None)
        if a.certs:
            self.log.info("node plane over mutual TLS, certificates in {}", a.certs)
        self.log.info("data directories under {} (one per node; --fresh deletes them)", self.root)
        c = self.cluster
        self._watch(c.start_nameserver(a.ns_port, failover=self.failover), a.ns_port)
        # with --failover every node may become master: all of them vote, named as without it
        failover = (dict(failover=True, cluster=["master"] + self.names) if self.failover
                    else dict(failover=False))
        for i, name in enumerate(self.names, start=1):
            flags = dict(delay=a.delay if i == len(self.names) else 0,
                         data_dir=str(self.root / name), **failover)
            self._watch(c.start_secondary(name, http_port=a.base_port + i, **flags),
                        a.base_port + i)
        self._watch(c.start_master(self.names, http_port=a.base_port,
                                   data_dir=str(self.root / "master"), **failover), a.base_port)
        self.write_commands()
        if self.failover:
            self.log.info("failover on: every node was started with --failover --cluster {}; "
                          "waiting for the first election", ",".join(["master"] + self.names))
            # the table is the sign to start (README): by then the master takes writes,
            # i.e. a majority has answered its heartbeats (its lease holds)
            wait_until(lambda: self.look_at_roles(time.monotonic()) is not None
                       and self.roles.master is not None
                       and (self.roles.views.get(self.roles.master) or {}).get("writable"),
                       30, interval=0.1, what="a master that accepts writes")
        print(f"\nname server  127.0.0.1:{a.ns_port}", file=self.out)
        for name in ["master"] + self.names:
            proc = c.procs[name]
            role = f"  {self.roles.role_of(name)}" if self.failover else ""
            print(f"{name:<12} {proc.url}  pid {proc.pid}  data {self.root / name}{role}",
                  file=self.out)
        if self.failover:
            print(f"the master is {self.roles.master} (epoch {self.roles.epoch}); writes to any "
                  "other node answer 307 to it (curl -L follows). When it dies another node is "
                  "elected; the launcher logs who", file=self.out)
        print(f"pids in {self.root}/NAME.pid; a node that exits "
              + ("is started again (--restart always)" if a.restart == "always" else
                 f"stays down: start it again with `bash {self.root}/start-NAME.sh` "
                 f"(all commands: {self.root / 'commands.sh'})")
              + ". Ctrl-C stops them all.\n", file=self.out, flush=True)

    def look_at_roles(self, now: float) -> list[str]:
        """--failover: read every running node's /health "failover" object (short timeouts:
        a paused node answers nothing), log what changed (an election, who won, a node back
        as a secondary) and, when the master changed, every node's role."""
        views: dict[str, dict | None] = {}
        for name in ["master"] + self.names:
            m = self.members[name]
            up = (m.down_since is None and m.proc.alive()) or m.outside_pid is not None
            report = None
            if up and not m.paused:
                try:
                    report = failover_of(http_json("GET", m.proc.url + "/health", timeout=0.3,
                                                   token=m.proc.token, ca=m.proc.ca)[1])
                except Exception:        # refused, reset, timed out: no answer this time
                    report = None
            views[name] = report
        before = self.roles.master
        lines = self.roles.update(views, now)
        for line in lines:
            if line.startswith("master lost"):
                self.log.warning("{}", line)
            else:
                self.log.info("{}", line)
        if lines and self.roles.master != before and self.roles.master is not None:
            self.log.info("roles: {}", self.roles.summary(list(views)))
        return lines

    def _watch(self, proc: Proc, port: int) -> None:
        self.members[proc.name] = _Member(proc, port, self._restarts())
        self._write_pid(proc.name, proc.pid)

    def _write_pid(self, name: str, pid: int) -> None:
        (self.root / f"{name}.pid").write_text(f"{pid}\n")

    def command(self, name: str) -> str:
        """The one line that starts `name` again by hand, with the same flags, ports, data."""
        return f"cd {shlex.quote(str(ROOT))} && {shlex.join(self.members[name].proc.argv)}"

    def write_commands(self) -> None:
        lines = ["# Start a node of this cluster again by hand, with the same flags, ports and "
                 "data directory", "# (written by the launcher; one line per node)."]
        for name in self.members:
            lines += [f"# {name}", self.command(name)]
            (self.root / f"start-{name}.sh").write_text(
                f"# Start {name} again by hand (written by the launcher)\n{self.command(name)}\n")
        (self.root / "commands.sh").write_text("\n".join(lines) + "\n")

    def check(self, now: float) -> None:
        """One look at every node: exits, pauses, restarts due, nodes started by hand."""
        from ..core.supervise import describe_exit, is_paused
        for name, m in self.members.items():
            proc = m.proc
            if m.down_since is None and proc.alive():
                paused = is_paused(proc_state(proc.pid))
                if paused and not m.paused:
                    self.log.warning("{} (pid {}) is paused (SIGSTOP); the cluster runs on; "
                                     "resume it with: kill -CONT {}", name, proc.pid, proc.pid)
                elif m.paused and not paused:
                    self.log.info("{} (pid {}) runs again", name, proc.pid)
                m.paused = paused
                continue
            if m.down_since is None:          # it just exited
                m.down_since, m.paused = now, False
                how = describe_exit(proc.popen.returncode)
                delay = m.restarts.after_exit(now - m.started)
                if delay is None:
                    self.log.warning("{} (pid {}) {}; the cluster runs on. Start it again with "
                                     "the line below, or `bash {}`:", name, proc.pid, how,
                                     self.root / f"start-{name}.sh")
                    print(self.command(name), file=self.out, flush=True)
                else:
                    m.restart_at = now + delay
                    self.log.warning("{} (pid {}) {}; the cluster runs on; starting it again "
                                     "in {:g} s (--restart always)", name, proc.pid, how, delay)
            if m.restart_at is not None:
                if now >= m.restart_at:
                    if port_taken(m.port):
                        self.log.warning("not restarting {}: port {} is taken by {}", name,
                                         m.port, listener_of(m.port) or "another process")
                        m.restart_at = now + 5.0
                        continue
                    proc.stop()
                    proc.start()
                    m.started, m.down_since, m.restart_at = now, None, None
                    self._write_pid(name, proc.pid)
                    self.log.info("started {} again (pid {})", name, proc.pid)
                continue
            # left down: notice when someone starts it by hand (it listens on its port again)
            if m.outside_pid is not None and proc_state(m.outside_pid) in (None, "Z"):
                self.log.warning("{} (pid {}, started by hand) is gone; start it again with: {}",
                                 name, m.outside_pid, self.command(name))
                m.outside_pid = None
            elif m.outside_pid is None and now >= m.next_look and port_taken(m.port):
                m.next_look = now + 2.0          # reading /proc costs: not four times a second
                pid = listener_pid(m.port)
                if pid is not None and pid != os.getpid():
                    m.outside_pid = pid
                    self._write_pid(name, pid)
                    self.log.info("{} is back (pid {}, started by hand); Ctrl-C here stops it "
                                  "too", name, pid)
        if self.failover:
            self.look_at_roles(now)

    def close(self) -> None:
        for name, m in self.members.items():
            if m.down_since is not None and m.outside_pid is not None:
                self._stop_outside(name, m.outside_pid)
        if self.cluster is not None:
            self.cluster.close()

    def _stop_outside(self, name: str, pid: int) -> None:
        module = self.members[name].proc.argv[2]
        if module not in _cmdline(pid):
            return
        try:
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGTERM)
        except OSError:
            return
        try:
            wait_until(lambda: proc_state(pid) in (None, "Z"), 10, what=f"{name} to stop")
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)
