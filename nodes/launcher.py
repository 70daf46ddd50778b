"""Start a whole cluster as local processes: for development, demos, tests and benchmarks.

    python -m nodes.launcher                 # name server, master, two secondaries
    python -m nodes.launcher --secondaries 3 --delay 2

LocalCluster is the same thing as a library: real processes on free loopback ports, with
kill -9, SIGSTOP/SIGCONT and restart, used by the integration tests, the chaos test and
the benchmark.
"""
from __future__ import annotations

import argparse
import json
import os
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
        def ready() -> bool:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}; "
                                   f"see {self.log_path}")
            return http_json("GET", self.url + "/health", timeout=1.0)[0] == 200
        wait_until(ready, timeout, what=f"{self.name} to answer /health")
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


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m nodes.launcher",
                                description="Start a name server, a master and N secondaries as "
                                            "local processes; Ctrl-C stops them all.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--secondaries", type=int, default=int(os.environ.get("REPLOG_SECONDARIES_COUNT", 2)),
                   help="how many secondaries [env REPLOG_SECONDARIES_COUNT]")
    p.add_argument("--base-port", type=int, default=int(os.environ.get("REPLOG_BASE_PORT", 5000)),
                   help="master's HTTP port; secondary i gets base+i [env REPLOG_BASE_PORT]")
    p.add_argument("--ns-port", type=int, default=int(os.environ.get("REPLOG_NS_PORT", 9090)),
                   help="name server port [env REPLOG_NS_PORT]")
    p.add_argument("--delay", type=float, default=float(os.environ.get("REPLOG_DELAY", 0)),
                   help="--delay of the last secondary, to watch blocking replication [env REPLOG_DELAY]")
    p.add_argument("--log-level", default=os.environ.get("REPLOG_LOG_LEVEL", "INFO"),
                   help="log level of every node [env REPLOG_LOG_LEVEL]")
    p.add_argument("--certs", default=os.environ.get("REPLOG_CERTS_OUT", ""),
                   help="run the node plane over mutual TLS with the certificates in CERTS/NAME "
                        "(what is missing is made, as python -m nodes.certs --out CERTS would); "
                        "empty: plain TCP [env REPLOG_CERTS_OUT]")
    args = p.parse_args(argv)
    cluster = LocalCluster(log_level=args.log_level, logs_to_files=False,
                           tls_dir=args.certs or None)
    names = [f"secondary{i}" for i in range(1, args.secondaries + 1)]
    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # explicit, because a shell starting us in the background may have ignored SIGINT
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        cluster.start_nameserver(args.ns_port)
        for i, name in enumerate(names, start=1):
            delay = args.delay if i == len(names) else 0
            cluster.start_secondary(name, http_port=args.base_port + i, delay=delay)
        cluster.start_master(names, http_port=args.base_port)
        print(f"\nname server  127.0.0.1:{args.ns_port}"
              + (f"   (mutual TLS, certificates in {args.certs})" if args.certs else ""),
              flush=True)
        for proc in [cluster.master] + [cluster.procs[n] for n in names]:
            print(f"{proc.name:<12} {proc.url}", flush=True)
        print("Ctrl-C stops them all.\n", flush=True)
        while all(proc.alive() for proc in cluster.procs.values()):
            time.sleep(0.5)
        print("a node exited; stopping the rest", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.close()


if __name__ == "__main__":
    main()
