"""Start a whole cluster as local processes: for development, demos, tests and benchmarks.

    python -m nodes.launcher                 # name server, master, two secondaries
    python -m nodes.launcher --secondaries 3 --delay 2
    python -m nodes.launcher --restart always --base-port 6000 --ns-port 9190 --fresh

The launcher checks its ports before it starts anything, gives every node a data directory
under --data-root, and keeps the cluster running when a node dies or is paused: it logs it,
prints the one-line command that starts the node again (also in DATA_ROOT/commands.sh), and
with --restart always starts it again itself.

LocalCluster is the same thing as a library: real processes on free loopback ports, with
kill -9, SIGSTOP/SIGCONT and restart, used by the integration tests, the chaos test and
the benchmark.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, IO

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.05,
               what: str = "condition") -> Any:
    """Poll predicate until it returns something truthy; TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # the thing polled may not be up yet
            last_error = e
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}"
                               + (f" (last error: {last_error})" if last_error else ""))
        time.sleep(interval)


def http_json(method: str, url: str, body: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
    """A tiny stdlib HTTP client: (status, decoded JSON body)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def _flags(options: dict[str, Any]) -> list[str]:
    argv: list[str] = []
    for key, value in options.items():
        if value is None or value is False:
            continue
        if value is True:
            argv.append("--" + key.replace("_", "-"))
            continue
        if isinstance(value, (list, tuple)):
            value = ",".join(value)
        argv += ["--" + key.replace("_", "-"), str(value)]
    return argv


class Proc:
    """One node process. Its HTTP port (if any) stays the same across restarts."""

    def __init__(self, name: str, argv: list[str], log_path: Path | None,
                 http_port: int | None) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.http_port = http_port
        self.popen: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def start(self) -> "Proc":
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if self.log_path is not None:
            self._log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(self.argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                      stdout=self._log, stderr=subprocess.STDOUT if self._log else None)
        return self

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def wait_ready(self, timeout: float = 30.0) -> "Proc":
        def ready() -> str | bool:
            if not self.alive():
                return "exited"       # stop waiting at once (wait_until swallows exceptions)
            return http_json("GET", self.url + "/health", timeout=1.0)[0] == 200
        if wait_until(ready, timeout, what=f"{self.name} to answer /health") == "exited":
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode} during start-up; "
                               + (f"see {self.log_path}" if self.log_path else "its log is above"))
        return self

    def signal(self, sig: int) -> None:
        if self.alive():
            self.popen.send_signal(sig)

    def kill(self) -> None:
        """kill -9: no clean-up, no unregistering."""
        if self.alive():
            self.popen.kill()
        if self.popen is not None:
            self.popen.wait()

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def stop(self, timeout: float = 10.0) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGCONT)
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self, wait: bool = True) -> "Proc":
        """Start again (after kill or stop): a secondary comes back with an empty log."""
        self.stop()
        self.start()
        return self.wait_ready() if wait and self.http_port else self


class LocalCluster:
    """Name server, master and secondaries as real processes on free loopback ports."""

    def __init__(self, workdir: str | Path | None = None, python: str = sys.executable,
                 log_level: str = "INFO", logs_to_files: bool = True,
                 tls_dir: str | Path | None = None) -> None:
        """tls_dir: run the node plane over mutual TLS with the certificates in
        tls_dir/NAME (python -m nodes.certs layout); whatever is missing there (the CA, a
        node's certificate) is made on the spot."""
        self.tls_dir = Path(tls_dir) if tls_dir else None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="replog-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.python = python
        self.log_level = log_level
        self.logs_to_files = logs_to_files
        self.procs: dict[str, Proc] = {}
        self.ns_port: int | None = None

    def __enter__(self) -> "LocalCluster":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def certs(self, name: str) -> Path:
        """The --tls-dir of `name` (made if missing); needs tls_dir."""
        assert self.tls_dir is not None, "LocalCluster without tls_dir"
        from .certs import ensure
        return ensure(self.tls_dir, [name]) / name

    def _spawn(self, name: str, module: str, options: dict[str, Any],
               http_port: int | None) -> Proc:
        if self.tls_dir is not None and "tls_dir" not in options:
            options = {**options, "tls_dir": self.certs(name)}
        argv = [self.python, "-m", module] + _flags(options)
        log = self.workdir / f"{name}.log" if self.logs_to_files else None
        proc = Proc(name, argv, log, http_port).start()
        self.procs[name] = proc
        return proc

    def start_nameserver(self, port: int | None = None) -> Proc:
        self.ns_port = port or free_port()
        proc = self._spawn("nameserver", "nameserver",
                           {"port": self.ns_port, "log_level": self.log_level}, None)
        wait_until(lambda: socket.create_connection(("127.0.0.1", self.ns_port), 0.5).close()
                   or True, 15, what="the name server")
        return proc

    def _node_options(self, http_port: int | None, flags: dict[str, Any]) -> tuple[int, dict]:
        port = http_port or free_port()
        options = {"http_port": port, "ns_port": self.ns_port, "log_level": self.log_level}
        # issue 11: local clusters are for tests and demos, so fault injection is on
        # (pass allow_faults=False to see a production-like node)
        options["allow_faults"] = True
        options.update(flags)
        return port, options

    def start_master(self, secondaries: list[str] | tuple[str, ...] = (),
                     http_port: int | None = None, wait: bool = True, **flags: Any) -> Proc:
        port, options = self._node_options(http_port, flags)
        if secondaries:
            options["secondaries"] = list(secondaries)
        proc = self._spawn("master", "nodes.master_node", options, port)
        return proc.wait_ready() if wait else proc

    def start_secondary(self, name: str, http_port: int | None = None, wait: bool = True,
                        **flags: Any) -> Proc:
        port, options = self._node_options(http_port, flags)
        options["name"] = name
        proc = self._spawn(name, "nodes.secondary_node", options, port)
        return proc.wait_ready() if wait else proc

    @property
    def master(self) -> Proc:
        return self.procs["master"]

    def close(self) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.resume()
        for proc in reversed(list(self.procs.values())):
            proc.stop(timeout=5)


# -- the launcher as a command ----------------------------------------------------------

def listener_of(port: int) -> str | None:
    """Who listens on TCP `port` on this host: 'pid N (command line)' when /proc tells
    (processes of other users hide their sockets), else None."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            fds = list((pid_dir / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in wanted:
                    return f"pid {pid_dir.name} ({_cmdline(int(pid_dir.name))})"
            except OSError:
                continue
    return None


def listener_pid(port: int) -> int | None:
    owner = listener_of(port)
    return int(owner.split()[1]) if owner else None


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)


def proc_state(pid: int) -> str | None:
    """The state letter in /proc/PID/stat (R, S, T for stopped, Z, ...), None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def port_taken(port: int, host: str = "127.0.0.1") -> bool:
    """Would a server (binding with SO_REUSEADDR, as ours do) fail to bind host:port?"""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def check_ports(ports: dict[int, str]) -> list[str]:
    """One line per taken port: which port, for what, held by whom if we can tell."""
    problems = []
    for port, what in ports.items():
        if port_taken(port):
            owner = listener_of(port)
            if owner is None:
                try:
                    status, body = http_json("GET", f"http://127.0.0.1:{port}/health", timeout=1)
                    if isinstance(body, dict) and body.get("role"):
                        owner = f"a replog {body['role']} (it answers /health)"
                except Exception:
                    pass
            problems.append(f"port {port} ({what}) is taken"
                            + (f" by {owner}" if owner else " (by a process this user cannot see)"))
    return problems


def _env_flag(p: Any, flag: str, env: str, type: Callable[[str], Any], default: Any,
              help: str, **kw: Any) -> None:
    if env in os.environ:
        default = type(os.environ[env])
    p.add_argument(flag, type=type, default=default, help=f"{help} [env {env}]", **kw)


def parser() -> Any:
    from .config import Parser
    p = Parser(prog="python -m nodes.launcher",
               description="Start a name server, a master and N secondaries as local processes. "
                           "When a node dies or is paused the cluster runs on: the launcher logs "
                           "it and prints the command that starts the node again (or, with "
                           "--restart always, starts it itself). Ctrl-C stops them all.")
    # REPLOG_SECONDARIES is the master's list of names, so the count has its own variable
    _env_flag(p, "--secondaries", "REPLOG_SECONDARIES_COUNT", int, 2, "how many secondaries")
    p.flag("--base-port", type=int, default=5000,
           help="master's HTTP port; secondary i gets base+i")
    p.flag("--ns-port", type=int, default=9090, help="name server port")
    p.flag("--delay", type=float, default=0.0,
           help="--delay of the last secondary, to watch blocking replication")
    p.flag("--log-level", default="INFO", help="log level of every node")
    p.flag("--data-root", default=str(ROOT / ".replog-data"),
           help="folder of the nodes' data directories (DATA_ROOT/NAME), the restart "
                "commands (commands.sh) and pid files (NAME.pid)")
    p.switch("--fresh", help="delete DATA_ROOT first: start with empty logs")
    p.flag("--restart", default="no", choices=["no", "always"],
           help="no: a node that exits stays down (the launcher prints the command that "
                "starts it again); always: the launcher starts it again")
    _env_flag(p, "--certs", "REPLOG_CERTS_OUT", str, "",
              "run the node plane over mutual TLS with the certificates in CERTS/NAME (what is "
              "missing is made, as python -m nodes.certs --out CERTS would); empty: plain TCP")
    p.flag("--restart-delay", type=float, default=1.0,
           help="seconds before a restart; doubles (up to 30) while a node keeps dying "
                "within 10 s of its start")
    return p


# what a launcher's folder holds: data directories, pid files, start scripts
_OURS = re.compile(r"(nameserver|master|secondary\d+)(\.pid)?|start-(nameserver|master|"
                   r"secondary\d+)\.sh|commands\.sh")


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
        from .core.supervise import Restarts
        self.args = args
        self.out = out
        self.log = logger
        self.root = Path(args.data_root).resolve()
        self.names = [f"secondary{i}" for i in range(1, args.secondaries + 1)]
        self.cluster: LocalCluster | None = None   # created by start(): it makes the folder
        self.members: dict[str, _Member] = {}
        self._restarts = lambda: Restarts(args.restart, args.restart_delay)
        self._flags: dict[str, dict] = {}

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
                                    tls_dir=a.certs or None)
        if a.certs:
            self.log.info("node plane over mutual TLS, certificates in {}", a.certs)
        self.log.info("data directories under {} (one per node; --fresh deletes them)", self.root)
        c = self.cluster
        self._watch(c.start_nameserver(a.ns_port), a.ns_port)
        for i, name in enumerate(self.names, start=1):
            flags = dict(delay=a.delay if i == len(self.names) else 0,
                         data_dir=str(self.root / name))
            self._watch(c.start_secondary(name, http_port=a.base_port + i, **flags),
                        a.base_port + i)
        self._watch(c.start_master(self.names, http_port=a.base_port,
                                   data_dir=str(self.root / "master")), a.base_port)
        self.write_commands()
        print(f"\nname server  127.0.0.1:{a.ns_port}", file=self.out)
        for name in ["master"] + self.names:
            proc = c.procs[name]
            print(f"{name:<12} {proc.url}  pid {proc.pid}  data {self.root / name}", file=self.out)
        print(f"pids in {self.root}/NAME.pid; a node that exits "
              + ("is started again (--restart always)" if a.restart == "always" else
                 f"stays down: start it again with `bash {self.root}/start-NAME.sh` "
                 f"(all commands: {self.root / 'commands.sh'})")
              + ". Ctrl-C stops them all.\n", file=self.out, flush=True)

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
        from .core.supervise import describe_exit, is_paused
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




def main(argv: list[str] | None = None) -> None:
    from . import logs
    args = parser().parse_args(argv)
    if args.restart_delay < 0 or args.secondaries < 0:
        parser().error("--restart-delay and --secondaries must be >= 0")
    logs.setup("launcher", args.log_level)
    launcher = Launcher(args)
    problems = launcher.preflight()
    if problems:
        for line in problems[:-1]:
            launcher.log.error("cannot start: {}", line)
        launcher.log.error("{}", problems[-1])
        raise SystemExit(1)

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # explicit, because a shell starting us in the background may have ignored SIGINT
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    status = 0
    try:
        launcher.start()
        while True:
            launcher.check(time.monotonic())
            time.sleep(0.25)
    except KeyboardInterrupt:
        launcher.log.info("stopping every node")
    except (RuntimeError, TimeoutError) as e:   # a node did not come up
        launcher.log.error("cannot start the cluster: {}", e)
        status = 1
    finally:
        launcher.close()
    raise SystemExit(status)


if __name__ == "__main__":
    main()
