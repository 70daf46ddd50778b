"""Node processes for the launcher and the tests: start, wait until ready, signal, stop;
and the small helpers every caller of the launcher uses (free_port, wait_until, http_json)."""
from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, IO

ROOT = Path(__file__).resolve().parents[2]     # the repository: nodes run with it as cwd
# False only while bench/trees.py starts an older tree's nodes, whose switches may have no
# --no-X form: an off switch is then left out (off is every switch's default)
NEGATE_SWITCHES = True


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


def http_json(method: str, url: str, body: Any = None, timeout: float = 10.0,
              token: str | None = None, ca: str | Path | None = None) -> tuple[int, Any]:
    """A tiny stdlib HTTP client: (status, decoded JSON body). token: sent as
    `Authorization: Bearer`; ca: the CA file an https:// server's certificate must chain to
    (host names are not checked: nodes.certs certificates name nodes, not addresses)."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    context = None
    if url.startswith("https:"):
        context = ssl.create_default_context(cafile=str(ca) if ca else None)
        context.check_hostname = False
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def _flags(options: dict[str, Any]) -> list[str]:
    argv: list[str] = []
    for key, value in options.items():
        if value is None:
            continue
        if isinstance(value, bool):      # a switch: --failover / --no-failover (explicit, so
            # that a REPLOG_* variable in the launcher's environment cannot turn it back on)
            if value or NEGATE_SWITCHES:
                argv.append(("--" if value else "--no-") + key.replace("_", "-"))
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
        self.scheme = "http"
        self.token: str | None = None       # the readiness probe's (with --tokens)
        self.ca: Path | None = None         # the CA of its HTTPS certificate (with HTTPS)
        self.popen: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.http_port}"

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
            return http_json("GET", self.url + "/health", timeout=1.0, token=self.token,
                             ca=self.ca)[0] == 200
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
